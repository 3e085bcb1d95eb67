"""Run-folder side of the segment stage: what ``train`` and ``predict`` read and write.

``train``: registered cases of the train and validation splits (``RUN/registered/``), synthetic
cases (``RUN/synthetic/``, offline) or the normal CT of the *train* split (``RUN/normal/``, for
on-the-fly synthesis) → ``RUN/models/segmenter/``. ``predict``: one case folder or a dataset of
any layout, registered here when it is not already → ``OUTPUT/<case>.nii.gz`` on each case's
annotated-phase grid.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.data.dataset import read_case_or_dataset
from diff4mmlits.data.io import write_volume
from diff4mmlits.data.native import list_case_folders, read_case_folder
from diff4mmlits.distributed import DistributedContext, cleanup_distributed, init_distributed
from diff4mmlits.errors import InputError
from diff4mmlits.progress import progress
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.segment.dataset import PreparedCase, TumorPainter, prepare_case, resample_case
from diff4mmlits.segment.plan import fingerprint, plan_segmenter
from diff4mmlits.segment.predict import Segmenter, load_segmenter, segment_case
from diff4mmlits.segment.train import TrainResult, train_segmenter

log = logging.getLogger(__name__)

SEGMENTER_MODEL = "segmenter"


# --- training ----------------------------------------------------------------------------------
def read_stage_cases(folder: Path, case_ids: Sequence[str], what: str, hint: str, annotated_phase: str = "PVP",
                     require_label: bool = True) -> list[Case]:
    """Read ``folder/<case>/`` for each id (native layout), with a clear error when one is missing."""
    cases = []
    for case_id in case_ids:
        path = folder / case_id
        if not path.is_dir():
            raise InputError(f"{what} case {case_id} not found; {hint}", path)
        cases.append(read_case_folder(path, annotated_phase=annotated_phase, require_label=require_label, extra_names=("inpaint_mask",)))
    return cases


def synthetic_source(folder: Path) -> str | None:
    """The real case a synthetic case was made from (``provenance.json``), or None when unrecorded."""
    path = folder / "provenance.json"
    if not path.is_file():
        return None
    try:
        provenance = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputError("provenance.json is not valid JSON; re-run 'diff4mmlits synthesize'", path) from None
    for key in ("source_case", "normal_case", "source", "case_id"):
        value = provenance.get(key)
        if isinstance(value, str):
            return value
    return None


def read_offline_synthetic(run: RunFolder, train_ids: Sequence[str], annotated_phase: str = "PVP") -> list[Case]:
    """Synthetic cases made from train-split normal CT only (validation/test never leak in)."""
    if not run.synthetic_dir.is_dir():
        raise InputError("no synthetic cases; run 'diff4mmlits synthesize --run RUN' first or use --synthetic none", run.synthetic_dir)
    allowed = set(train_ids)
    cases = []
    for folder in list_case_folders(run.synthetic_dir):
        source = synthetic_source(folder)
        if source is None:
            source = next((cid for cid in allowed if folder.name == cid or folder.name.startswith(f"{cid}_")), None)
        if source in allowed:
            cases.append(read_case_folder(folder, annotated_phase=annotated_phase, require_label=True))
    if not cases:
        raise InputError("no synthetic case made from a training case; re-run 'diff4mmlits synthesize'", run.synthetic_dir)
    return cases


def load_painter_for(run: RunFolder, config: Config, device: str) -> TumorPainter:
    """The synthesize stage's tumor painter (for on-the-fly synthesis)."""
    from diff4mmlits.synthesize.painters import load_painter

    return load_painter(run, config.segment.synthesis_method, config.segment.synthesis_mode, device)


@dataclass(frozen=True)
class TrainingData:
    train: list[PreparedCase]
    validation: list[PreparedCase]
    synthetic: list[PreparedCase]
    normal: list[Case]


def train_run(run: RunFolder, config: Config, resume: bool = False, context: DistributedContext | None = None,
              painter: TumorPainter | None = None, echo: Callable[[str], None] = print) -> TrainResult:
    """Train ``RUN/models/segmenter/`` from the run's registered (and synthetic) cases."""
    own_context = context is None
    context = context or init_distributed(config.device)
    try:
        seg = config.segment
        hint = "run 'diff4mmlits register --run RUN' first"
        train_ids, val_ids = run.split("train"), run.split("validation")
        if not train_ids:
            raise InputError("the train split is empty; the dataset needs at least 1 training case", run.manifest_path)
        phase = config.data.annotated_phase
        train_cases = read_stage_cases(run.registered_dir, train_ids, "registered", hint, phase)
        val_cases = read_stage_cases(run.registered_dir, val_ids, "registered", hint, phase)
        fp = fingerprint(train_cases, seg.window_hu)
        plan = plan_segmenter(fp, seg)
        if context.is_main:
            echo(plan.describe())
        prepared_train = [prepare_case(c, plan, seg.phases) for c in progress(train_cases, desc="prepare", unit="case")]
        prepared_val = [prepare_case(c, plan, seg.phases) for c in val_cases]
        synthetic: list[PreparedCase] = []
        normal: list[Case] = []
        if seg.synthetic == "offline" and seg.synthetic_ratio > 0:
            synthetic = [prepare_case(c, plan, seg.phases) for c in read_offline_synthetic(run, train_ids, phase)]
        elif seg.synthetic == "on-the-fly" and seg.synthetic_ratio > 0:
            normal_hint = "run 'diff4mmlits inpaint --run RUN' first or use --synthetic none"
            normal = [resample_case(c, plan.target_spacing_mm) for c in read_stage_cases(run.normal_dir, train_ids, "normal", normal_hint, phase)]
            if painter is None:
                # paint in the loader workers on the CPU, or in this process on its device
                painter = load_painter_for(run, config, "cpu" if seg.loader_workers > 0 else str(context.device))
        if context.is_main:
            echo(f"training data: {len(prepared_train)} real, {len(synthetic)} offline synthetic, "
                 f"{len(normal)} normal CT for on-the-fly synthesis (ratio {seg.synthetic_ratio if synthetic or normal else 0:g}), "
                 f"{len(prepared_val)} validation; phases {','.join(seg.phases)}")
        start = time.time()
        result = train_segmenter(
            prepared_train, prepared_val, plan, seg, run.model_dir(SEGMENTER_MODEL), seed=config.seed, context=context,
            synthetic=synthetic, normal=normal, painter=painter, fingerprint=fp, resume=resume,
            extra_config={"run_config": config.model_dump(mode="json")},
        )
        if context.is_main:
            echo(f"trained {result.epochs_done} epoch(s) in {time.time() - start:.0f} s; best validation Dice "
                 f"{'–' if result.best_val_dice is None else f'{result.best_val_dice:.3f}'}; "
                 f"{result.steps_per_second:.2f} steps/s, {100 * result.loader_wait_fraction:.0f}% of the loop waiting for data")
        return result
    finally:
        if own_context:
            cleanup_distributed()


def stage_train(run: RunFolder, config: Config) -> None:
    """Pipeline stage ``train``."""
    train_run(run, config, echo=log.info)


# --- prediction --------------------------------------------------------------------------------
def read_prediction_inputs(path: str | Path, annotated_phase: str = "PVP") -> list[Case]:
    """One case folder, or every case of a dataset of any layout (labels not needed)."""
    return read_case_or_dataset(path, annotated_phase)


def ensure_registered(case: Case, run_config: dict[str, Any] | None) -> Case:
    """``case`` itself when every phase is on the annotated grid, else registered by the register stage."""
    if case.is_registered():
        return case
    from diff4mmlits.config import Config as FullConfig
    from diff4mmlits.register import register_case

    config = FullConfig.model_validate(run_config or {})
    return register_case(case, config.register).case  # type: ignore[attr-defined]


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
    """Pipeline stage ``predict``: the run's test split → ``RUN/predictions/``."""
    test_ids = run.split("test")
    if not test_ids:
        log.info("predict: no test cases in this run; nothing to predict")
        return
    segmenter = load_segmenter(run.model_dir(SEGMENTER_MODEL), device=config.device)
    from diff4mmlits.pipeline import load_split_cases

    cases = load_split_cases(run, "test")
    registered = {}
    for case_id in test_ids:
        folder = run.registered_dir / case_id
        if folder.is_dir():
            registered[case_id] = read_case_folder(folder, annotated_phase=config.data.annotated_phase, require_label=False)
    predict_cases(cases, segmenter, run.predictions_dir, registered=registered)
    log.info("predict: %d case(s) written to %s", len(cases), run.predictions_dir)
