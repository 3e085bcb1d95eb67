"""Quality control of a registration: numbers (qc.json) and a picture (qc.png).

Numbers per phase, before (the phase resampled onto the annotated grid with the identity, i.e. as
the scanner left it) and after registration: normalised mutual information of the intensities in
the liver, or the body without a liver label (higher is better), liver and tumor Dice against the
annotated label where the phase's own label is known (the phantom's truth), and the target
registration error where the true displacement is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.data.case import Case
from diff4mmlits.data.measures import dice
from diff4mmlits.data.volume import Volume
from diff4mmlits.files import read_json_or_none
from diff4mmlits.register.resample import displacement_field_mm, resample_onto

QC_JSON = "qc.json"
"""Per case: similarity and Dice before/after per phase, fallbacks, run time; written last."""
QC_PNG = "qc.png"


def read_qc(folder: str | Path) -> dict | None:
    """A registered case folder's ``qc.json``, or ``None`` when it is missing or unreadable."""
    return read_json_or_none(Path(folder) / QC_JSON)


def region_nmi(fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray, window_hu: tuple[float, float],
               bins: int = 32) -> float | None:
    """Normalised mutual information ``(H(A) + H(B)) / H(A, B)`` in ``[1, 2]`` over ``mask`` (higher: more alike).

    Both images are clipped to ``window_hu`` first; fixed and moving are ``(z, y, x)`` HU on one grid.
    """
    mask = np.asarray(mask, bool)
    if mask.sum() < 16:
        return None
    low, high = window_hu
    a = np.clip(fixed[mask], low, high)
    b = np.clip(moving[mask], low, high)
    joint, _, _ = np.histogram2d(a, b, bins=bins, range=[[low, high], [low, high]])
    joint = joint / joint.sum()

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    h_joint = entropy(joint)
    if h_joint == 0:
        return None
    return (entropy(joint.sum(axis=1)) + entropy(joint.sum(axis=0))) / h_joint


def label_dice(truth_label: Volume, reference_label: Volume, transform: sitk.Transform | None) -> dict[str, float | None]:
    """Liver (label > 0) and tumor (label 2) Dice of a phase's own label, moved onto the annotated grid.

    Args:
        truth_label: the phase's label on the phase's grid (the phantom's truth).
        reference_label: the annotated label (on the annotated grid).
        transform: fixed → moving transform; ``None`` for the identity (before registration).
    """
    moved = resample_onto(truth_label, reference_label, transform).array
    ref = reference_label.array
    return {"liver": dice(moved > 0, ref > 0, empty=None), "tumor": dice(moved == LABEL_TUMOR, ref == LABEL_TUMOR, empty=None)}


def target_registration_error(transform: sitk.Transform | None, reference: Volume, true_displacement_mm: np.ndarray,
                              mask: np.ndarray) -> np.ndarray:
    """TRE ``|T(p) − (p + d_true(p))|`` (mm) at the voxels ``p`` of ``mask`` on ``reference``'s grid.

    Args:
        transform: estimated fixed → moving transform (``None``: the identity, TRE before).
        reference: the annotated phase (its grid holds ``p``).
        true_displacement_mm: ``(z, y, x, 3)`` true displacement, (z, y, x) components, mm.
        mask: boolean ``(z, y, x)`` voxels where the error is measured (the liver).

    Returns:
        ``(n,)`` errors in mm, one per mask voxel.
    """
    estimated = np.zeros(reference.shape + (3,)) if transform is None else displacement_field_mm(transform, reference)
    return np.linalg.norm(estimated[mask] - np.asarray(true_displacement_mm)[mask], axis=-1)


# --- the picture ------------------------------------------------------------------------------
def plot_registration_qc(original: Case, registered: Case, path: str | Path, roi: np.ndarray | None = None,
                         window_hu: tuple[float, float] = (-160.0, 240.0)) -> Path:
    """``qc.png``: per phase, axial and coronal slices before and after, with the annotated liver contour.

    The slices pass through the centre of the liver and are cropped to the region of interest
    (``roi``, boolean ``(z, y, x)`` on the annotated grid). Where the case has no liver label, each
    panel is a checkerboard of the annotated phase and the phase (misalignment shows as broken
    edges at the tile borders), with the region's contour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diff4mmlits.figures import (
        LIVER_COLOUR,
        display_case,
        display_volume,
        draw_label_contours,
        mark_sides,
        save_figure,
    )

    if roi is not None:  # everything in the display orientation (radiological axial view)
        roi = display_volume(original.annotated.with_array(roi.astype(np.uint8), kind="label")).array > 0
    original, registered = display_case(original), display_case(registered)
    annotated = original.annotated
    label = original.label.array if original.label is not None and (original.label.array > 0).any() else None
    region = roi if roi is not None and roi.any() else np.ones(annotated.shape, bool)
    focus = label > 0 if label is not None else region
    box = _bounding_box(region)
    z, y = _focus_slices(focus[box], annotated)
    spacing = annotated.spacing_mm
    names = [n for n in registered.phase_names if n != original.annotated_phase]
    rows = max(1, len(names))
    crop = annotated.array[box]
    outline = (label if label is not None else region)[box]
    height = 3.2 * max(crop.shape[1] * spacing[1], crop.shape[0] * spacing[0]) / max(crop.shape[2] * spacing[2], 1.0)
    fig, axes = plt.subplots(rows, 4, figsize=(13, min(4.0, max(2.2, height)) * rows + 0.4), squeeze=False)
    for row, name in enumerate(names):
        before = resample_onto(original.phases[name], annotated).array[box]
        after = registered.phases[name].array[box]
        for col, (title, image) in enumerate((("before", before), ("after", after))):
            shown = image if label is not None else _checkerboard(crop, image, tiles=6)
            for view in range(2):
                ax = axes[row][2 * view + col]
                slice_, contour, aspect = _view(shown, outline, z, y, view, spacing)
                ax.imshow(slice_, cmap="gray", vmin=window_hu[0], vmax=window_hu[1], aspect=aspect,
                          interpolation="nearest", origin="upper" if view == 0 else "lower")
                if label is None:
                    if contour.any():
                        ax.contour(contour, levels=[0.5], colors=LIVER_COLOUR, linewidths=0.8)
                else:
                    draw_label_contours(ax, contour)
                ax.set_title(f"{name} {title} ({'axial' if view == 0 else 'coronal'})", fontsize=9)
                ax.axis("off")
                mark_sides(ax)
    for ax in axes.ravel()[4 * len(names):]:
        ax.axis("off")
    what = (f"{original.annotated_phase} liver (green) and tumor (red) contours" if label is not None
            else f"checkerboard with {original.annotated_phase}, body contour")
    fig.suptitle(f"{original.case_id}: each phase on the {original.annotated_phase} grid; {what}", fontsize=10)
    # about one figure pixel per voxel of the crop, so real CT (a 512² slice) stays readable; 85 dpi at least
    panel_inches = 2.5  # the width an image takes in its panel
    dpi = int(np.clip(max(crop.shape[1:]) / panel_inches, 85, 200))
    return save_figure(fig, path, dpi=dpi)


def _bounding_box(mask: np.ndarray, pad: float = 0.05) -> tuple[slice, slice, slice]:
    """Slices of the mask's bounding box grown by ``pad`` of the volume on each side."""
    index = np.argwhere(mask)
    lo, hi = index.min(axis=0), index.max(axis=0) + 1
    grow = np.ceil(pad * np.asarray(mask.shape)).astype(int)
    lo, hi = np.maximum(lo - grow, 0), np.minimum(hi + grow, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def _focus_slices(focus: np.ndarray, volume: Volume) -> tuple[int, int]:
    """Axial and coronal slice indices through the centre of the focus region."""
    if focus.any():
        centre = np.argwhere(focus).mean(axis=0)
        return int(round(centre[0])), int(round(centre[1]))
    return focus.shape[0] // 2, focus.shape[1] // 2


def _view(image: np.ndarray, contour: np.ndarray, z: int, y: int, view: int,
          spacing_mm: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, float]:
    """An axial (view 0) or coronal (view 1) slice of an image and of its contour mask, and the aspect."""
    if view == 0:
        return image[z], contour[z], spacing_mm[1] / spacing_mm[2]
    return image[:, y, :], contour[:, y, :], spacing_mm[0] / spacing_mm[2]


def _checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Alternate ``tiles`` × ``tiles`` blocks (in every axis) of two same-shape ``(z, y, x)`` images."""
    idx = [np.arange(n) * tiles // max(n, 1) for n in a.shape]
    parity = (idx[0][:, None, None] + idx[1][None, :, None] + idx[2][None, None, :]) % 2 == 0
    return np.where(parity, a, b)
