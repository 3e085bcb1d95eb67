"""Prediction on new CT (paper §III-C inference, §IV-B post-processing).

One registered case in, one label out on the annotated phase's *original* grid:

1. stack the phases the model knows (missing ones duplicated, :mod:`segment.inputs`), at the plan's
   spacing, windowed and z-scored;
2. MONAI ``sliding_window_inference`` with the training patch, Gaussian blending and the configured
   overlap; optionally test-time flips along every axis (8 predictions, probabilities averaged);
3. class probabilities resampled back onto the annotated phase's grid, then the argmax;
4. the largest liver component is kept and only the tumors inside it (:mod:`segment.postprocess`).

A cascade model (:mod:`segment.cascade`) runs this twice: stage one on the whole case finds the
liver, stage two on the case cropped to the liver's box plus the margin; its labels are pasted back
onto the annotated phase's grid (nothing outside the box).
"""

from __future__ import annotations

import itertools
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diff4mmlits.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_weights, model_config_errors, read_model_config
from diff4mmlits.config import rename_old_settings
from diff4mmlits.data.case import Case
from diff4mmlits.data.orientation import orientation_code, reorient
from diff4mmlits.data.volume import Volume
from diff4mmlits.distributed import resolve_device
from diff4mmlits.errors import InputError
from diff4mmlits.segment.cascade import crop_case, largest_component, liver_box, paste_label
from diff4mmlits.segment.config import SegmentConfig
from diff4mmlits.segment.dataset import LIVER_EXTRA, prepare_case
from diff4mmlits.segment.networks import BEST_NAME, MODEL_KIND, build_network, main_output, network_autocast
from diff4mmlits.segment.plan import PLAN_FILE, SegmenterPlan, read_plan
from diff4mmlits.segment.postprocess import postprocess_label
from diff4mmlits.segment.predict_io import VOLUME_FACTOR
from diff4mmlits.segment.resample import resample_channels_onto, resample_onto, target_grid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segmenter:
    """A trained segmenter ready to predict: network (eval mode, on its device), plan and settings."""

    network: torch.nn.Module
    plan: SegmenterPlan
    config: SegmentConfig
    device: torch.device
    model_config: dict[str, Any]
    liver: Segmenter | None = None
    """Stage one of a cascade (finds the liver); ``None`` for a single-stage model."""
    margin_mm: float = 0.0
    """A cascade's margin around stage one's liver box, mm."""

    @property
    def phases(self) -> tuple[str, ...]:
        """The phases this model reads: those of its settings that its training cases held. A phase
        the training cases never had has no intensity statistics in the plan and its channel was
        always filled from another phase, so a study's own copy of it is left out."""
        trained = self.plan.intensity_stats
        return tuple(name for name in self.config.phases if not trained or name in trained)


def load_segmenter(model_dir: str | Path, device: str = "auto", weights: str = "best") -> Segmenter:
    """Load ``RUN/models/segmenter/`` (``best`` weights when present, else the last)."""
    model_dir = Path(model_dir)
    if model_dir.is_file() and zipfile.is_zipfile(model_dir):
        raise InputError(f"is a model zip; unpack it first: diff4mmlits import-model {model_dir} DIR, then --model DIR",
                         model_dir)
    if not model_dir.is_dir():
        raise InputError("model folder not found; train one with 'diff4mmlits train --run RUN'", model_dir)
    model_config = read_model_config(model_dir, kind=MODEL_KIND)
    plan = read_plan(model_dir / PLAN_FILE)
    resolved = resolve_device(device)
    with model_config_errors(model_dir):
        # a model saved before phase dropout existed was trained without it (the default is now on)
        saved = rename_old_settings({"segment": model_config["segment"]}, str(model_dir / CONFIG_NAME))["segment"]
        config = SegmentConfig.model_validate({"phase_dropout_prob": 0.0, **saved})
        network = build_network(plan, config)
        cascade = model_config.get("cascade")
        liver_model, margin_mm = (cascade["liver_model"], float(cascade["margin_mm"])) if cascade else (None, 0.0)
    path = model_dir / (BEST_NAME if weights == "best" and (model_dir / BEST_NAME).is_file() else WEIGHTS_NAME)
    load_weights(network, path)
    network.to(resolved).eval()
    if liver_model is not None:
        liver = load_segmenter(model_dir / liver_model, device=device, weights=weights)
        return Segmenter(network, plan, config, resolved, model_config, liver, margin_mm)
    return Segmenter(network, plan, config, resolved, model_config)


@torch.no_grad()
def predict_probabilities(segmenter: Segmenter, image: np.ndarray, tta: bool = False) -> np.ndarray:
    """Softmax ``(3, z, y, x)`` float32 for a prepared image ``(4, z, y, x)`` at the plan's spacing."""
    from monai.inferers import sliding_window_inference

    config, plan = segmenter.config, segmenter.plan
    inputs = torch.from_numpy(np.ascontiguousarray(image))[None].to(segmenter.device)
    flips = [()] + [axes for n in (1, 2, 3) for axes in itertools.combinations((2, 3, 4), n)] if tta else [()]
    total = None
    for axes in flips:
        x = torch.flip(inputs, axes) if axes else inputs
        with network_autocast(segmenter.device, config):
            logits = sliding_window_inference(
                x, roi_size=list(plan.patch_size_vox), sw_batch_size=config.sliding_window_batch,
                predictor=lambda patch: main_output(segmenter.network(patch)),
                overlap=config.sliding_window_overlap, mode="gaussian",
            )
        if not torch.isfinite(logits).all():
            raise InputError("the segmenter's output holds NaN or Inf for this case: the input or the model is "
                             "damaged (check the input's intensities; re-train a model whose weights are intact)")
        probs = torch.softmax(logits.float(), dim=1)
        probs = torch.flip(probs, axes) if axes else probs
        total = probs if total is None else total + probs
    return (total / len(flips))[0].cpu().numpy().astype(np.float32)


def segment_case(case: Case, segmenter: Segmenter, tta: bool | None = None, announce: bool = True) -> Volume:
    """Label ``(z, y, x)`` uint8 of a registered case on its annotated phase's grid (post-processed).

    A cascade finds the liver with stage one, then segments the liver's box with stage two. A case
    stored in another orientation than the training cases (``config.json``'s ``orientation``, e.g.
    RAS against LPS) is reoriented for the network (no resampling) and its label turned back, with a
    log line unless ``announce`` is off (the coarse pass that locates the liver: one line a case).
    """
    case.require_registered()
    trained_in = segmenter.model_config.get("orientation")
    stored_in = orientation_code(case.annotated)
    if trained_in and stored_in != trained_in:  # the network saw one orientation: turn the case into it and back
        log.log(logging.INFO if announce else logging.DEBUG,
                "%s: stored as %s, the model was trained on %s: predicted in %s, the label turned back to %s",
                case.case_id, stored_in, trained_in, trained_in, stored_in)
        turned = Case(case.case_id, {name: reorient(v, trained_in) for name, v in case.phases.items()}, None,
                      case.annotated_phase)
        label = reorient(segment_case(turned, segmenter, tta), stored_in)
        return case.annotated.with_array(label.array, kind="label")
    if segmenter.liver is None:
        return _segment_whole(case, segmenter, tta)
    coarse = _segment_whole(case, segmenter.liver, False)
    liver = largest_component(coarse.array > 0)
    if not liver.any():
        log.warning("%s: stage one found no liver; the whole volume goes to stage two", case.case_id)
    box = liver_box(liver, case.annotated.spacing_mm, segmenter.margin_mm)
    if segmenter.plan.normalization == "liver":  # stage two reads enhancement relative to stage one's liver
        extras = {**case.extras, LIVER_EXTRA: case.annotated.with_array(liver.astype(np.uint8), kind="label")}
        case = Case(case.case_id, case.phases, None, case.annotated_phase, extras)
    fine = _segment_whole(crop_case(case, box), segmenter, tta)
    return paste_label(fine, case.annotated, box)


def locate_liver(case: Case, segmenter: Segmenter) -> Volume | None:
    """The liver of an *unregistered* case, found by a cascade's stage one before registration: a label
    (1 = liver) on the annotated phase's grid, or ``None`` (a single-stage model, or no plausible liver).

    Paper step 1 aligns the liver, so registration needs its region; an unlabelled case has none. Every
    phase is resampled as it lies in the scanner's frame (no transform) onto stage one's coarse grid
    over the annotated phase — misaligned by the breathing motion that registration will remove, which
    a liver-sized structure survives — and stage one's largest liver component is taken if its volume
    lies within a factor 2 of the training livers' (``config.json``'s ``training_livers``; without
    them, 200 mL to 8 L).
    """
    stage_one = segmenter.liver
    if stage_one is None:
        return None
    grid = target_grid(case.annotated, stage_one.plan.target_spacing_mm)
    phases = {name: resample_onto(volume, grid, default=float(volume.array.min())) for name, volume in case.phases.items()}
    coarse = segment_case(Case(case.case_id, phases, None, case.annotated_phase), stage_one, tta=False, announce=False)
    liver = largest_component(coarse.array > 0)
    volume_ml = float(liver.sum()) * float(np.prod(coarse.spacing_mm)) / 1000.0
    low, high = (segmenter.model_config.get("training_livers") or {}).get("volume_ml") or [400.0, 4000.0]
    if not low / VOLUME_FACTOR <= volume_ml <= high * VOLUME_FACTOR:
        log.info("%s: stage one found no plausible liver before registration (%.0f mL; training livers %.0f–%.0f mL); "
                 "registering on the body", case.case_id, volume_ml, low, high)
        return None
    log.info("%s: registering on the liver stage one found (%.0f mL)", case.case_id, volume_ml)
    return resample_onto(coarse.with_array(liver.astype(np.uint8), kind="label"), case.annotated)


def _segment_whole(case: Case, segmenter: Segmenter, tta: bool | None) -> Volume:
    """One model on the whole of a registered case: the label on its annotated phase's grid."""
    unlabelled = Case(case.case_id, case.phases, None, case.annotated_phase, case.extras)
    prepared = prepare_case(unlabelled, segmenter.plan, segmenter.phases)
    probs = predict_probabilities(segmenter, prepared.image, segmenter.config.tta if tta is None else tta)
    probs = resample_channels_onto(probs, prepared.grid, case.annotated)
    label = postprocess_label(probs.argmax(0).astype(np.uint8), case.annotated.spacing_mm, segmenter.config.min_tumor_volume_mm3)
    return case.annotated.with_array(label, kind="label")
