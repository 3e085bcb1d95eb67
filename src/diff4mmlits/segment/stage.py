"""Run-folder side of the segment stage: what ``train`` and ``predict`` read and write.

``train``: registered cases of the train and validation splits (``RUN/registered/``), synthetic
cases (``RUN/synthetic/``, offline) or the normal CT of the *train* split and the healthy scans
(``RUN/normal/``, for on-the-fly synthesis) → ``RUN/models/segmenter/``. ``predict``: one case
folder or a dataset of any layout, registered here when it is not already → ``OUTPUT/<case>.nii.gz``
on each case's annotated-phase grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from diff4mmlits.config import Config, rename_old_settings
from diff4mmlits.data.case import ANNOTATED_PHASE, Case
from diff4mmlits.data.io import write_volume
from diff4mmlits.distributed import DistributedContext, cleanup_distributed, init_distributed
from diff4mmlits.errors import InputError
from diff4mmlits.files import refuse_output_in_input, require_writable
from diff4mmlits.progress import progress
from diff4mmlits.register import register_case
from diff4mmlits.runfolder import PAINTED_SPLITS, RunFolder
from diff4mmlits.segment.config import SegmentConfig
from diff4mmlits.segment.dataset import TumorPainter
from diff4mmlits.segment.predict import Segmenter, load_segmenter, locate_liver, segment_case
from diff4mmlits.segment.predict_io import (
    OUTPUT_SUFFIXES,
    is_dicom_series_folder,
    label_paths,
    label_statistics,
    missing_phases_note,
    out_of_domain,
    read_prediction_inputs,
    single_file_output,
    write_statistics,
)
from diff4mmlits.segment.report import section_segmenter
from diff4mmlits.segment.train import TrainResult, loader_worker_count, train_model
from diff4mmlits.stage import Stage
from diff4mmlits.threads import worker_processes

log = logging.getLogger(__name__)


# --- training ----------------------------------------------------------------------------------
def load_painter_for(run: RunFolder, config: Config, device: str) -> TumorPainter:
    """The synthesize stage's tumor painter (for on-the-fly synthesis)."""
    from diff4mmlits.synthesize.painters import load_painter  # here: predict does not pay its import (2.5 s)

    return load_painter(run, config.segment.synthesis_method, config.segment.synthesis_mode, device, config=config)


def train_run(run: RunFolder, config: Config, resume: bool = False, context: DistributedContext | None = None,
              painter: TumorPainter | None = None, echo: Callable[[str], None] = print) -> TrainResult:
    """Train ``RUN/models/segmenter/`` from the run's registered (and synthetic) cases
    (:func:`~diff4mmlits.segment.train.train_model`: the cascade's two stages, or one model)."""
    own_context = context is None
    context = context or init_distributed(config.device)
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
            normal = run.read_cases("normal", PAINTED_SPLITS)
            if painter is None:
                painter = load_painter_for(run, config, painter_device(seg, context.device))
        return train_model(train_cases, val_cases, seg, run.segmenter_dir, seed=config.seed, context=context,
                           synthetic=synthetic, normal=normal, painter=painter, resume=resume, echo=echo,
                           extra_config={"run_config": config.model_dump(mode="json")})
    finally:
        if own_context:
            cleanup_distributed()


def painter_device(seg: SegmentConfig, device: torch.device) -> str:
    """Where on-the-fly synthesis paints: with the pool (``synthetic_pool`` > 0) in a thread of the
    training process, on its device; without it in the loader workers (CPU processes) when there are
    any. (Before, the pool painted on the CPU whenever loader workers existed: on a GPU the paper
    preset's diffusion painter then ran on the CPU.)"""
    if seg.synthetic_pool == 0 and loader_worker_count(seg.loader_workers, device) > 0:
        return "cpu"
    return str(device)


def stage_train(run: RunFolder, config: Config, resume: bool = False, echo: Callable[[str], None] | None = None) -> TrainResult:
    """Stage ``train``: ``train_run`` with its messages in the log (or given to ``echo``)."""
    return train_run(run, config, resume=resume, echo=echo or log.info)


def read_offline_synthetic(run: RunFolder) -> list[Case]:
    """Synthetic cases painted into the normal CT of the training cases and healthy scans only
    (validation and test never leak in)."""
    cases = run.read_cases("synthetic", PAINTED_SPLITS)
    if not cases:
        raise InputError("no synthetic case made from a training case; run 'diff4mmlits synthesize' first "
                         "or use --synthetic none", run.synthetic_dir)
    return cases


# --- prediction --------------------------------------------------------------------------------
def ensure_registered(case: Case, run_config: dict[str, Any] | None, keep_in: Path | None = None,
                      segmenter: Segmenter | None = None) -> Case:
    """``case`` itself when every phase is on the annotated grid, else registered by the register stage
    (with ``keep_in``: the registered phases, transforms, ``qc.json`` and ``qc.png`` written there).

    An unlabelled case registers on the liver that ``segmenter``'s stage one finds before registration
    (:func:`~diff4mmlits.segment.predict.locate_liver`; paper step 1 aligns the liver), else on the body.
    """
    if case.is_registered():
        return case
    config = Config.model_validate(rename_old_settings(run_config or {}, "the model's run_config"))
    target = case
    if case.label is None and segmenter is not None:
        liver = locate_liver(case, segmenter)
        if liver is not None:
            target = Case(case.case_id, case.phases, liver, case.annotated_phase, case.extras)
    result = register_case(target, config.register, workers=worker_processes(jobs=len(case.phases) - 1))
    if target is not case:  # stage one's liver only chose the region: the case stays unlabelled
        done = result.case
        result = replace(result, case=Case(done.case_id, done.phases, None, done.annotated_phase, done.extras))
        result.qc["region"]["found_by"] = "the segmenter's stage one, before registration"
    if keep_in is not None:
        from diff4mmlits.register.stage import write_registered_case

        write_registered_case(result, case, keep_in)
    return result.case


def predict_cases(cases: Sequence[Case], segmenter: Segmenter, output: str | Path, tta: bool | None = None,
                  registered: dict[str, Case] | None = None, statistics: bool = False,
                  save_registered: bool = False, dicom_series: Path | None = None) -> list[Path]:
    """Segment each case and write its label on its annotated phase's grid: ``OUTPUT/<case>.nii.gz``,
    or ``OUTPUT`` itself when it ends in ``.nii.gz``/``.nii`` (one case); with ``statistics``,
    volumes and per-lesion HU beside them (:mod:`diff4mmlits.segment.predict_io`); with
    ``save_registered``, what registration made of each case in ``<case>_registered/`` beside them;
    with ``dicom_series`` (one case read from that series), a DICOM-SEG referencing it instead of NIfTI."""
    paths = label_paths([c.case_id for c in cases], output, "nifti" if dicom_series is None else "dicom-seg")
    written, stats = [], {}
    bar = progress(cases, desc="predict", unit="case")
    for case in bar:
        bar.set_postfix(case=case.case_id)
        keep = paths[case.case_id].parent / f"{case.case_id}_registered" if save_registered else None
        ready = (registered or {}).get(case.case_id) or ensure_registered(case, segmenter.model_config.get("run_config"), keep, segmenter)
        note = missing_phases_note(ready.phase_names, segmenter.phases, segmenter.config.phase_dropout_prob)
        if note:
            log.warning("%s: %s", case.case_id, note)
        unused = [name for name in ready.phase_names if name not in segmenter.phases]
        if unused:
            log.warning("%s: %s not used: the model was trained without %s", case.case_id, ", ".join(unused),
                        "it" if len(unused) == 1 else "them")
        label = segment_case(ready, segmenter, tta=tta)
        reasons = out_of_domain(label, ready.phases, segmenter.model_config.get("training_livers") or {})
        if reasons:
            log.warning("%s: unlike the training data (%s): another scanner, body region or contrast timing? "
                        "check the label before using it", case.case_id, "; ".join(reasons))
        if dicom_series is None:
            written.append(write_volume(label, paths[case.case_id]))
        else:
            from diff4mmlits.segment.dicom_seg import write_dicom_seg

            written.append(write_dicom_seg(label, dicom_series, paths[case.case_id]))
        if statistics:
            stats[case.case_id] = label_statistics(label, ready.phases)
    if statistics and stats:
        write_statistics(stats, paths)
    return written


def predict_path(model_dir: str | Path, input_path: str | Path, output: str | Path, device: str = "auto",
                 tta: bool | None = None, statistics: bool = False, save_registered: bool = False,
                 output_type: str = "nifti") -> list[Path]:
    """``diff4mmlits predict``: every case under ``input_path`` (an image file, a DICOM series, a case
    folder or a dataset) → ``output/<case>.nii.gz`` (or the one file ``output``)."""
    if output_type not in OUTPUT_SUFFIXES:
        raise InputError(f"--output-type {output_type!r}: choose {' or '.join(OUTPUT_SUFFIXES)}")
    refuse_output_in_input(input_path, output, "the labels")
    if output_type == "dicom-seg" and not is_dicom_series_folder(Path(input_path)):
        raise InputError("--output-type dicom-seg: the input must be a DICOM series folder (the segmentation "
                         "references its slices); use nifti for other inputs", input_path)
    segmenter = load_segmenter(model_dir, device=device)
    annotated_phase = (segmenter.model_config.get("run_config") or {}).get("data", {}).get("annotated_phase", ANNOTATED_PHASE)
    cases = read_prediction_inputs(input_path, annotated_phase)
    label_paths([c.case_id for c in cases], output, output_type)  # a bad output path stops before any work
    require_writable(Path(output).parent if single_file_output(output, output_type) else output)
    return predict_cases(cases, segmenter, output, tta=tta, statistics=statistics, save_registered=save_registered,
                         dicom_series=Path(input_path) if output_type == "dicom-seg" else None)


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
    painter = {"ldm": ("train-autoencoder", "train-synthesizer"), "cut": ("train-cut-painter",)}
    return ("register", "inpaint") + painter.get(seg.synthesis_method, ())


STAGES: list[Stage] = [
    Stage("train", "the 4-phase segmenter trained on real + synthetic cases (models/segmenter/)", stage_train,
          ("segment",), ("register", "inpaint", "train-autoencoder", "train-synthesizer", "train-cut-painter", "synthesize"),
          needs=_train_needs, report=section_segmenter, outputs=("models/segmenter/config.json",)),
    Stage("predict", "labels of the held-out test cases (predictions/)", stage_predict, ("segment",), ("train",)),
]
