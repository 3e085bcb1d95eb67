"""The ``evaluate`` configuration section (the paper's metrics)."""

from __future__ import annotations

from diff4mmlits.settings import Section


class EvaluateConfig(Section):
    """Evaluation: the paper's metrics (DSC, Jaccard, sensitivity, precision), HD95, lesion detection."""

    lesion_min_overlap_voxels: int = 1
    """A true lesion is detected when a predicted tumor component overlaps it by at least this many voxels."""
    lesion_iou_thresholds: tuple[float, ...] = (0.0, 0.1, 0.5)
    """Lesion detection also at these overlaps: a lesion counts when its IoU with the predicted
    components touching it exceeds the threshold (0: any overlap)."""
    lesion_size_classes_mm: tuple[float, float] = (10.0, 20.0)
    """Equivalent-sphere diameter limits between small, medium and large lesions, mm."""
    hd_percentile: float = 95.0
    overlay_cases: int = 3
    """Overlay figures: best, median and worst case by tumor DSC (up to this many)."""
    window_hu: tuple[float, float] = (-160.0, 240.0)
    """Display window of overlay figures, HU."""
