"""Toy CT / MRI pairs for the translate tests: a few ellipsoids, tiny grids, fixed seeds."""

from __future__ import annotations

import numpy as np
import pytest

from diff4mmlits.data.case import Case
from diff4mmlits.data.phantom.mri import render_mri
from diff4mmlits.data.volume import Volume

TOY_TISSUES = {0: "air", 1: "fat", 2: "muscle", 7: "liver", 13: "spleen", 30: "hcc"}
CT_HU = {0: -1000.0, 1: -100.0, 2: 50.0, 7: 110.0, 13: 125.0, 30: 75.0}


def toy_tissues(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Body (fat with a muscle rim), a liver with a tumor, a spleen, air around."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    shift = rng.uniform(-0.08, 0.08, size=2)
    tissues = np.zeros(shape, dtype=np.uint8)
    body = (y / 0.8) ** 2 + (x / 0.9) ** 2 < 1
    tissues[body] = 2
    tissues[(y / 0.7) ** 2 + (x / 0.8) ** 2 < 1] = 1
    liver = ((y - shift[0]) / 0.45) ** 2 + ((x + 0.3 - shift[1]) / 0.4) ** 2 + (z / 0.9) ** 2 < 1
    tissues[liver] = 7
    tissues[((y - 0.1) / 0.2) ** 2 + ((x - 0.45) / 0.18) ** 2 + (z / 0.7) ** 2 < 1] = 13
    tissues[((y - shift[0]) / 0.15) ** 2 + ((x + 0.3) / 0.15) ** 2 + (z / 0.5) ** 2 < 1] = 30
    return tissues


def toy_case(index: int, shape: tuple[int, int, int] = (8, 32, 32), modality: str = "ct") -> Case:
    """One toy study: CT (HU with noise) or MRI (rendered), label 1 liver / 2 tumor, 1.5 mm in-plane grid."""
    rng = np.random.default_rng(index)
    tissues = toy_tissues(shape, rng)
    spacing = (2.5, 1.5, 1.5)
    label = np.where(tissues == 30, 2, np.where(tissues == 7, 1, 0)).astype(np.uint8)
    if modality == "ct":
        lookup = np.zeros(31, dtype=np.float32)
        for tissue, hu in CT_HU.items():
            lookup[tissue] = hu
        image = lookup[tissues] + rng.normal(0, 10, shape).astype(np.float32)
    else:
        image = render_mri(tissues, TOY_TISSUES, rng)
    origin = (float(index), -20.0, 10.0)
    volume = Volume(image.astype(np.float32), spacing, origin)
    return Case(case_id=f"toy_{index:02d}", phases={"PVP": volume}, label=Volume(label, spacing, origin, kind="label"))


@pytest.fixture(scope="session")
def toy_ct() -> list[Case]:
    return [toy_case(i, modality="ct") for i in range(3)]


@pytest.fixture(scope="session")
def toy_mri() -> list[Case]:
    return [toy_case(10 + i, modality="mri") for i in range(3)]
