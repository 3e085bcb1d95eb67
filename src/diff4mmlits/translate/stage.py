"""Dataset-level work behind ``train-translator`` and ``translate`` (file I/O lives here, not in the methods).

``train-translator`` reads two unpaired datasets (any layout ``load_dataset`` knows): the source
(labelled for EssNet) and the target. ``translate`` writes, for every input case, the translated
source phase as the target phase with the label copied unchanged, in the native layout that the
segmenter trains on (``OUTPUT/<case>/PVP.nii.gz`` + ``label.nii.gz``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.data.casefiles import read_checked_image
from diff4mmlits.data.dataset import load_dataset, read_case_or_dataset
from diff4mmlits.data.intensity import intensity_map
from diff4mmlits.data.io import volume_extension, write_volume
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.data.volume import require_same_grid
from diff4mmlits.errors import InputError
from diff4mmlits.files import refuse_output_in_input
from diff4mmlits.progress import progress
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.stage import Stage
from diff4mmlits.translate.config import TranslateConfig
from diff4mmlits.translate.report import section_translators
from diff4mmlits.translate.sampling import SampleSource
from diff4mmlits.translate.train import METHODS, TranslatorData, fit_translator
from diff4mmlits.translate.translator import complete_missing_phase, load_translator, translate_case, translate_volume

log = logging.getLogger(__name__)


def prepare_data(source: Sequence[Case], target: Sequence[Case], config: TranslateConfig, need_labels: bool) -> TranslatorData:
    """Normalise both datasets to [-1, 1] (float16 in memory) and check phases, grids and labels."""
    source_map = intensity_map(config.source_intensity, config.source_window_hu, config.percentiles)
    target_map = intensity_map(config.target_intensity, config.target_window_hu, config.percentiles)
    source_arrays = [_phase(case, config.source_phase, "source").array for case in source]
    target_arrays = [_phase(case, config.target_phase, "target").array for case in target]
    target_map = target_map.fitted(target_arrays)
    labels = None
    if need_labels:
        labels = []
        for case in source:
            if case.label is None:
                raise InputError(f"{case.case_id}: no label; EssNet trains its segmentation constraint on the source labels "
                                 f"(add label.nii.gz or use --method cyclegan/cut)")
            require_same_grid(case.phases[config.source_phase], case.label, what=f"{case.case_id}/label vs {config.source_phase}",
                              hint="the label must lie on the translated phase's grid (register first)")
            top = int(case.label.array.max())
            if top >= config.segmentation_classes:
                raise InputError(f"{case.case_id}: label value {top} ≥ translate.segmentation_classes={config.segmentation_classes}; "
                                 f"raise the setting or fix the label")
            labels.append(np.asarray(case.label.array, dtype=np.uint8))
    return TranslatorData(
        source=SampleSource([source_map.to_unit(a)[None].astype(np.float16) for a in source_arrays], labels),
        target=SampleSource([target_map.to_unit(a)[None].astype(np.float16) for a in target_arrays]),
        source_map=source_map,
        target_map=target_map,
        source_phase=config.source_phase,
        target_phase=config.target_phase,
    )


def _phase(case: Case, phase: str, side: str):
    if phase not in case.phases:
        raise InputError(f"{case.case_id}: the {side} dataset has no phase {phase} (present: {', '.join(case.phase_names)}); "
                         f"set translate.{side}_phase")
    return case.phases[phase]


def train_translator(
    source: Sequence[Case], target: Sequence[Case], config: TranslateConfig, out_dir: str | Path,
    *, device: str = "auto", resume: bool = False, seed: int = 0,
) -> Path:
    """Train ``config.method`` on in-memory source and target cases; write the model folder."""
    data = prepare_data(source, target, config, need_labels=METHODS[config.method].needs_labels)
    extra = {"source_cases": [c.case_id for c in source], "target_cases": [c.case_id for c in target]}
    return fit_translator(data, config, out_dir, device=device, resume=resume, seed=seed, extra_config=extra)


def train_translator_from_datasets(source: Path, target: Path, run: RunFolder, config: Config, resume: bool = False) -> Path:
    """``train-translator``: read both datasets, train, return the model folder."""
    if Path(source).resolve() == Path(target).resolve() and config.translate.source_phase == config.translate.target_phase:
        raise InputError("--source and --target are the same dataset and phase; give the target modality's dataset")
    settings = config.translate
    source_cases = load_dataset(source, require_label=METHODS[settings.method].needs_labels)
    target_cases = load_dataset(target, require_label=False)
    log.info("translate: %d source case(s) from %s, %d target case(s) from %s", len(source_cases), source, len(target_cases), target)
    return train_translator(source_cases, target_cases, settings, run.translator_dir(settings.method),
                            device=config.device, resume=resume, seed=config.seed)


def translate_path(model: Path, input_path: Path, output: Path, device: str = "cpu", complete_missing: bool = False) -> list[Path]:
    """``translate``: one volume file → one file, or a dataset / case folder → native case folders.

    With ``complete_missing``, each case keeps all its phases and gains the translator's target
    phase where it lacks it (a phase-to-phase translator filling a missing phase).
    """
    input_path, output = Path(input_path), Path(output)
    if not input_path.exists():
        raise InputError("input not found; give a volume file, a case folder or a dataset folder", input_path)
    refuse_output_in_input(input_path, output, "the translated data")
    translator = load_translator(model, device=device)
    if input_path.is_file():
        if volume_extension(input_path) is None:
            raise InputError("not a volume file (.nii.gz, .nii, .nrrd, .mha)", input_path)
        if volume_extension(output) is None:
            raise InputError("OUTPUT must be a volume file name (e.g. out.nii.gz) when INPUT is a file", output)
        return [write_volume(translate_volume(read_checked_image(input_path), translator), output)]
    if volume_extension(output) is not None:
        raise InputError("OUTPUT must be a folder when INPUT is a case or dataset folder (one case folder is "
                         "written per case)", output)
    cases = read_case_or_dataset(input_path)
    written = []
    for case in progress(cases, desc="translate", unit="case"):
        result = complete_missing_phase(case, translator) if complete_missing else translate_case(case, translator)
        written.append(write_case_folder(result, output / case.case_id))
    return written


def stage_train_translator(run: RunFolder, config: Config, source: Path, target: Path, resume: bool = False) -> Path:
    """Stage ``train-translator`` (a command over a run folder; ``run`` does not run it)."""
    return train_translator_from_datasets(source, target, run, config, resume=resume)


STAGES: list[Stage] = [
    Stage("train-translator", "an unpaired translator from one modality to another (models/translator-METHOD/); "
          "not part of 'run'", stage_train_translator, ("translate",), report=section_translators),
]
"""Commands over a run folder outside the paper's pipeline (``run`` does not run them; the report shows them)."""
