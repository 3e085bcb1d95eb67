"""Fixtures of the reliability tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import tiny_case
from diff4mmlits.data.native import write_case_folder


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Five tiny two-phase case folders (AP, PVP)."""
    for i in range(5):
        write_case_folder(tiny_case(f"case_{i:03d}", i), tmp_path / "data" / f"case_{i:03d}")
    return tmp_path / "data"


@pytest.fixture
def trained_model(tmp_path: Path) -> Path:
    """A smoke segmenter (two training steps) trained on two tiny four-phase cases stored LPS."""
    from segment_cases import make_case

    from diff4mmlits.config import resolve_config
    from diff4mmlits.segment.train import train_model

    config = resolve_config("smoke")
    segment = config.segment.model_copy(update={"epochs": 1, "steps_per_epoch": 2})
    cases = [make_case(f"c{i}", seed=i) for i in range(2)]
    train_model(cases, [], segment, tmp_path / "model", seed=0, echo=lambda _: None,
                extra_config={"run_config": config.model_dump(mode="json")})
    return tmp_path / "model"


@pytest.fixture
def new_case_folder(tmp_path: Path) -> Path:
    """One unseen four-phase case folder (PVP.nii.gz, AP.nii.gz…) for predict."""
    from segment_cases import make_case

    folder = tmp_path / "new" / "case_new"
    write_case_folder(make_case("case_new", seed=9), folder)
    return folder
