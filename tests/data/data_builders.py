"""Tiny hand-made volumes and datasets for the data tests (the phantom is tested elsewhere).

A plain module, not a conftest: ``from data_builders import Build`` (pytest puts tests/data on the
path). A second conftest.py would shadow tests/conftest.py for ``from conftest import REAL_DATA``.
"""

from __future__ import annotations

import locale
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.case import Case
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.data.volume import Volume

SHAPE = (8, 10, 12)
SPACING = (2.5, 0.8, 0.8)


class Build:
    """Builders of small CT volumes, labels, cases and native datasets (z, y, x order)."""

    @staticmethod
    def ct(shape: tuple[int, int, int] = SHAPE, spacing=SPACING, origin=(0.0, 0.0, 0.0), direction=None, seed: int = 0) -> Volume:
        """Air (−1000 HU) around a soft-tissue body (40 HU) holding a liver (100 HU) and a tumor (30 HU), noise σ 5."""
        rng = np.random.default_rng(seed)
        array = np.full(shape, -1000.0, dtype=np.float32)
        body = _ellipsoid(shape, radii=(0.9, 0.8, 0.8))
        array[body] = 40.0
        array[_liver(shape)] = 100.0
        array[_tumor(shape)] = 30.0
        array += rng.normal(0.0, 5.0, shape).astype(np.float32)
        return Volume(array, spacing, origin, np.eye(3) if direction is None else direction)

    @staticmethod
    def label(ct: Volume) -> Volume:
        """Liver (1) with one tumor (2) inside it, on ``ct``'s grid."""
        array = np.zeros(ct.shape, dtype=np.uint8)
        array[_liver(ct.shape)] = 1
        array[_tumor(ct.shape)] = 2
        return ct.with_array(array, kind="label")

    def case(self, case_id: str = "case_000", phases: Iterable[str] = ("NC", "AP", "PVP", "DP"), labelled: bool = True, **grid) -> Case:
        """A registered case (every phase on one grid) with a label on PVP."""
        volumes = {name: self.ct(seed=i, **grid) for i, name in enumerate(phases)}
        label = self.label(volumes["PVP"]) if labelled else None
        return Case(case_id=case_id, phases=volumes, label=label)

    def dataset(self, root: Path, n_cases: int = 2, phases: Iterable[str] = ("NC", "AP", "PVP", "DP")) -> Path:
        """A clean native dataset of ``n_cases`` cases ``case_000``…"""
        for i in range(n_cases):
            write_case_folder(self.case(f"case_{i:03d}", phases), root / f"case_{i:03d}")
        return root

    @staticmethod
    def dicom_series(folder: Path, array: np.ndarray, spacing=(2.5, 0.7, 0.7), origin=(-300.0, 20.0, -10.0)) -> list[Path]:
        """Write ``array`` (z, y, x; HU) as a CT DICOM series with SimpleITK, one file a slice.

        GDCM's writer switches the process locale to "C" (Python's default text encoding then
        becomes ASCII); the locale is put back afterwards so that later tests are unaffected.
        """
        saved = locale.setlocale(locale.LC_ALL)
        try:
            return Build._write_dicom_series(folder, array, spacing, origin)
        finally:
            locale.setlocale(locale.LC_ALL, saved)

    @staticmethod
    def _write_dicom_series(folder: Path, array: np.ndarray, spacing, origin) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        image = sitk.GetImageFromArray(array.astype(np.int16))
        image.SetSpacing(tuple(reversed(spacing)))
        image.SetOrigin(tuple(reversed(origin)))
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        series = "1.2.826.0.1.3680043.2.1125.1.4242"
        paths = []
        for k in range(image.GetDepth()):
            slice_ = image[:, :, k]
            for tag, value in {
                "0008|0060": "CT", "0020|000d": f"{series}.1", "0020|000e": series, "0020|0013": str(k + 1),
                "0008|0018": f"{series}.{k + 1}", "0020|0037": "1\\0\\0\\0\\1\\0",
                "0020|0032": "\\".join(f"{v:.4f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            }.items():
                slice_.SetMetaData(tag, value)
            path = folder / f"slice_{k:03d}.dcm"
            writer.SetFileName(str(path))
            writer.Execute(slice_)
            paths.append(path)
        return paths

    @staticmethod
    def snapshot(root: Path) -> dict[str, tuple[int, int]]:
        """Every file and folder under ``root``: (size, mtime_ns); to check that nothing was written."""
        entries = {}
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                stat = path.stat()
                entries[str(path.relative_to(root))] = (stat.st_size if path.is_file() else 0, stat.st_mtime_ns)
        return entries


def _ellipsoid(shape, radii, centre=(0.5, 0.5, 0.5)) -> np.ndarray:
    grids = np.meshgrid(*[(np.arange(n) + 0.5) / n for n in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0 / 4


def _liver(shape) -> np.ndarray:
    return _ellipsoid(shape, radii=(0.7, 0.5, 0.6), centre=(0.5, 0.45, 0.4))


def _tumor(shape) -> np.ndarray:
    return _ellipsoid(shape, radii=(0.3, 0.2, 0.2), centre=(0.5, 0.45, 0.4))

