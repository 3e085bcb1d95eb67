"""Shared test set-up: quiet progress bars, one torch thread, seeded randomness."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("DIFF4MMLITS_NO_PROGRESS", "1")
os.environ.setdefault("DIFF4MMLITS_THREADS", "1")  # one core per test process: results do not depend on the machine

REAL_DATA = Path(os.environ.get("DIFF4MMLITS_REAL_DATA") or next(
    (p / "shared" / "data" / "real" for p in Path(__file__).resolve().parents if (p / "shared" / "data" / "real").is_dir()),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))
"""``shared/data/real`` in the nearest folder above the checkout that has one (or
``$DIFF4MMLITS_REAL_DATA``); tests using it skip when it is absent."""


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    np.random.seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def phantom_case():
    """A small phantom case (32 voxels in-plane, 24 slices): four misaligned phases and the truth."""
    from diff4mmlits.data.phantom import make_phantom_case

    return make_phantom_case(0, seed=0, size=32)


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom dataset folder with 3 cases of size 32 (native layout plus ``_truth/``), seed 0."""
    from diff4mmlits.data.phantom import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("phantom") / "dataset", cases=3, seed=0, size=32)


@pytest.fixture
def tiny_dataset_for_report(tmp_path: Path) -> Path:
    """Five tiny two-phase case folders (AP, PVP) with labels, for pipeline-level tests."""
    from builders import tiny_case
    from diff4mmlits.data.native import write_case_folder

    for i in range(5):
        write_case_folder(tiny_case(f"case_{i:03d}", i), tmp_path / "data" / f"case_{i:03d}")
    return tmp_path / "data"
