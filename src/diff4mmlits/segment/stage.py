"""Run-folder side of the segment stage: what ``train`` and ``predict`` read and write.

``train``: registered cases of the train and validation splits (``RUN/registered/``), synthetic
cases (``RUN/synthetic/``, offline) or the normal CT of the *train* split (``RUN/normal/``, for
on-the-fly synthesis) → ``RUN/models/segmenter/``. ``predict``: one case folder or a dataset of
any layout, registered here when it is not already → ``OUTPUT/<case>.nii.gz`` on each case's
annotated-phase grid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.data.dataset import read_case_or_dataset
from diff4mmlits.data.io import write_volume
from diff4mmlits.distributed import DistributedContext, cleanup_distributed, init_distributed
from diff4mmlits.errors import InputError
from diff4mmlits.progress import progress
from diff4mmlits.register import register_case
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.segment.cascade import (
    LIVER_MODEL,
    crop_to_liver,
    liver_spacing,
    small_tumor_diameter_mm,
    tumor_spacing,
)
from diff4mmlits.segment.config import SegmentConfig
from diff4mmlits.segment.dataset import TumorPainter, prepare_case, resample_case
from diff4mmlits.segment.plan import SegmenterPlan, fingerprint, plan_segmenter
from diff4mmlits.segment.predict import Segmenter, load_segmenter, segment_case
from diff4mmlits.segment.report import section_segmenter
from diff4mmlits.segment.train import TrainResult, train_segmenter
from diff4mmlits.stage import Stage
from diff4mmlits.synthesize.painters import load_painter

log = logging.getLogger(__name__)


# --- training ----------------------------------------------------------------------------------
def load_painter_for(run: RunFolder, config: Config, device: str) -> TumorPainter:
    """The synthesize stage's tumor painter (for on-the-fly synthesis)."""
    return load_painter(run, config.segment.synthesis_method, config.segment.synthesis_mode, device)


def train_run(run: RunFolder, config: Config, resume: bool = False, context: DistributedContext | None = None,
              painter: TumorPainter | None = None, echo: Callable[[str], None] = print) -> TrainResult:
    """Train ``RUN/models/segmenter/`` from the run's registered (and synthetic) cases.

    With ``segment.cascade`` (default) two models, one folder for the user: stage one finds the
    liver on a coarse grid (``models/segmenter/liver/``), stage two segments liver and tumor in the
    liver's bounding box at a fine spacing (``models/segmenter/``); see :mod:`segment.cascade`.
    Returns stage two's (or the single model's) result.
    """
    own_context = context is None
    context = context or init_distributed(config.device)

    def fit(what: str, seg: SegmentConfig, plan: SegmenterPlan, fp: Any, out_dir: Path, train: list[Case],
            validation: list[Case], synthetic: list[Case], normal: list[Case], extra: dict[str, Any],
            paint_at_plan_spacing: bool = True) -> TrainResult:
        if context.is_main:
            echo(f"{what}: " + plan.describe())
        prepared_train = [prepare_case(c, plan, seg.phases) for c in progress(train, desc="prepare", unit="case")]
        prepared_val = [prepare_case(c, plan, seg.phases) for c in validation]
        prepared_synthetic = [prepare_case(c, plan, seg.phases) for c in synthetic]
        # the painter works on crops of a fixed number of voxels: on a cascade's fine, anisotropic grid
        # it paints at the case's own spacing and the painted case is resampled (as offline cases are)
        resampled_normal = [resample_case(c, plan.target_spacing_mm) for c in normal] if paint_at_plan_spacing else normal
        if context.is_main:
            echo(f"training data: {len(prepared_train)} real, {len(prepared_synthetic)} offline synthetic, "
                 f"{len(resampled_normal)} normal CT for on-the-fly synthesis (ratio "
                 f"{seg.synthetic_ratio if prepared_synthetic or resampled_normal else 0:g}), "
                 f"{len(prepared_val)} validation; phases {','.join(seg.phases)}")
        start = time.time()
        result = train_segmenter(
            prepared_train, prepared_val, plan, seg, out_dir, seed=config.seed, context=context,
            synthetic=prepared_synthetic, normal=resampled_normal, painter=painter if resampled_normal else None,
            fingerprint=fp, resume=resume, extra_config=extra,
        )
        if context.is_main:
            echo(f"trained {result.epochs_done} epoch(s) in {time.time() - start:.0f} s; best validation Dice "
                 f"{'–' if result.best_val_dice is None else f'{result.best_val_dice:.3f}'}; "
                 f"{result.steps_per_second:.2f} steps/s, {100 * result.loader_wait_fraction:.0f}% of the loop waiting for data")
        return result

    try:
        seg = config.segment
        if not run.split("train"):
            raise InputError("the train split is empty; the dataset needs at least 1 training case", run.manifest_path)
        train_cases = run.read_cases("registered", "train")
        val_cases = run.read_cases("registered", "validation")
        synthetic: list[Case] = []
        normal: list[Case] = []
        if seg.synthetic == "offline" and seg.synthetic_ratio > 0:
            synthetic = read_offline_synthetic(run)
        elif seg.synthetic == "on-the-fly" and seg.synthetic_ratio > 0:
            normal = run.read_cases("normal", "train")
            if painter is None:
                # paint in the loader workers on the CPU, or in this process on its device
                painter = load_painter_for(run, config, "cpu" if seg.loader_workers > 0 else str(context.device))
        extra: dict[str, Any] = {"run_config": config.model_dump(mode="json")}
        if not seg.cascade:
            fp = fingerprint(train_cases, seg.window_hu)
            return fit("segmenter", seg, plan_segmenter(fp, seg), fp, run.segmenter_dir, train_cases, val_cases,
                       synthetic, normal, extra)
        whole = fingerprint(train_cases, seg.window_hu)
        liver_plan = plan_segmenter(whole, seg, liver_spacing(whole.spacings_mm, whole.shapes, seg.cascade_liver_max_vox))
        liver_config = seg.model_copy(update={"cascade": False, "synthetic": "none", "synthetic_ratio": 0.0,
                                              "epochs": seg.cascade_liver_epochs or seg.epochs})
        fit("stage 1 of 2, the liver on a coarse grid", liver_config, liver_plan, whole, run.segmenter_dir / LIVER_MODEL,
            train_cases, val_cases, [], [], extra)
        margin = seg.cascade_margin_mm
        train_cases, val_cases, synthetic, normal = ([crop_to_liver(c, margin) for c in cases]
                                                     for cases in (train_cases, val_cases, synthetic, normal))
        fp = fingerprint(train_cases, seg.window_hu)
        spacing = tumor_spacing(np.median(np.asarray(fp.spacings_mm), axis=0), small_tumor_diameter_mm(train_cases),
                                seg.cascade_min_tumor_vox)
        extra["cascade"] = {"liver_model": LIVER_MODEL, "margin_mm": margin}
        return fit("stage 2 of 2, liver and tumor in the liver's box", seg, plan_segmenter(fp, seg, spacing), fp,
                   run.segmenter_dir, train_cases, val_cases, synthetic, normal, extra, paint_at_plan_spacing=False)
    finally:
        if own_context:
            cleanup_distributed()


def stage_train(run: RunFolder, config: Config, resume: bool = False, echo: Callable[[str], None] | None = None) -> TrainResult:
    """Stage ``train``: ``train_run`` with its messages in the log (or given to ``echo``)."""
    return train_run(run, config, resume=resume, echo=echo or log.info)


def read_offline_synthetic(run: RunFolder) -> list[Case]:
    """Synthetic cases made from train-split normal CT only (validation and test never leak in)."""
    cases = run.read_cases("synthetic", "train")
    if not cases:
        raise InputError("no synthetic case made from a training case; run 'diff4mmlits synthesize' first "
                         "or use --synthetic none", run.synthetic_dir)
    return cases


# --- prediction --------------------------------------------------------------------------------
def read_prediction_inputs(path: str | Path, annotated_phase: str = "PVP") -> list[Case]:
    """One case folder, or every case of a dataset of any layout (labels not needed)."""
    return read_case_or_dataset(path, annotated_phase)


def ensure_registered(case: Case, run_config: dict[str, Any] | None) -> Case:
    """``case`` itself when every phase is on the annotated grid, else registered by the register stage."""
    if case.is_registered():
        return case
    config = Config.model_validate(run_config or {})
    return register_case(case, config.register).case


def predict_cases(cases: Sequence[Case], segmenter: Segmenter, output: str | Path, tta: bool | None = None,
                  registered: dict[str, Case] | None = None) -> list[Path]:
    """Segment each case and write ``OUTPUT/<case>.nii.gz`` on its annotated phase's grid."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    bar = progress(cases, desc="predict", unit="case")
    for case in bar:
        bar.set_postfix(case=case.case_id)
        ready = (registered or {}).get(case.case_id) or ensure_registered(case, segmenter.model_config.get("run_config"))
        label = segment_case(ready, segmenter, tta=tta)
        written.append(write_volume(label, output / f"{case.case_id}.nii.gz"))
    return written


def predict_path(model_dir: str | Path, input_path: str | Path, output: str | Path, device: str = "auto",
                 tta: bool | None = None) -> list[Path]:
    """``diff4mmlits predict``: every case under ``input_path`` → ``output/<case>.nii.gz``."""
    segmenter = load_segmenter(model_dir, device=device)
    annotated_phase = (segmenter.model_config.get("run_config") or {}).get("data", {}).get("annotated_phase", "PVP")
    cases = read_prediction_inputs(input_path, annotated_phase)
    return predict_cases(cases, segmenter, output, tta=tta)


def stage_predict(run: RunFolder, config: Config) -> None:
    """Stage ``predict``: the run's test split → ``RUN/predictions/`` (its registered cases when there)."""
    test_ids = run.split("test")
    if not test_ids:
        log.info("predict: no test cases in this run; nothing to predict")
        return
    segmenter = load_segmenter(run.segmenter_dir, device=config.device)
    cases = run.read_input_cases("test")
    registered = {case_id: run.read_case("registered", case_id, require_label=False) for case_id in test_ids
                  if run.is_complete_case("registered", case_id)}
    predict_cases(cases, segmenter, run.predictions_dir, registered=registered)
    log.info("predict: %d case(s) written to %s", len(cases), run.predictions_dir)


def _train_needs(config: Config) -> tuple[str, ...]:
    """What training reads: registered cases, and synthetic cases or normal CT plus the painter."""
    seg = config.segment
    if seg.synthetic_ratio <= 0 or seg.synthetic == "none":
        return ("register",)
    if seg.synthetic == "offline":
        return ("register", "synthesize")
    return ("register", "inpaint") + (("train-autoencoder", "train-synthesizer") if seg.synthesis_method == "ldm" else ())


STAGES: list[Stage] = [
    Stage("train", "the 4-phase segmenter trained on real + synthetic cases (models/segmenter/)", stage_train,
          ("segment",), ("register", "inpaint", "synthesize"), needs=_train_needs, report=section_segmenter),
    Stage("predict", "labels of the held-out test cases (predictions/)", stage_predict, ("segment",), ("train",)),
]
