"""nnU-Net v2 raw datasets: import (``dataset.json`` + ``imagesTr/`` + ``labelsTr/``) and export.

Import maps ``dataset.json``'s ``channel_names`` to our phases by name or alias (a single channel
named ``CT`` is read as the annotated phase) and its ``labels`` to 0 background, 1 liver, 2 tumor.
Export writes ``OUT/DatasetNNN_NAME/`` that nnU-Net v2 trains as it is, so a hybrid real +
synthetic set can be trained by nnU-Net itself (``nnUNetv2_plan_and_preprocess -d NNN``).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from diff4mmlits import LABEL_BACKGROUND, LABEL_LIVER, LABEL_TUMOR, PHASES
from diff4mmlits.data.case import ANNOTATED_PHASE, Case
from diff4mmlits.data.casefiles import CaseFiles, read_case_files
from diff4mmlits.data.io import write_volume
from diff4mmlits.data.native import canonical_phase_name
from diff4mmlits.data.volume import require_same_grid
from diff4mmlits.errors import InputError
from diff4mmlits.files import named_as_final, write_json_atomic

log = logging.getLogger(__name__)

DATASET_JSON = "dataset.json"
SPLITS_FILE = "splits_final.json"
"""nnU-Net reads it from ``nnUNet_preprocessed/DatasetNNN_NAME/``; the export writes it beside ``dataset.json``."""
NNUNET_LABELS: dict[str, int] = {"background": LABEL_BACKGROUND, "liver": LABEL_LIVER, "tumor": LABEL_TUMOR}
"""The ``labels`` entry of an exported ``dataset.json`` (nnU-Net v2: name → id)."""

LABEL_NAME_IDS: dict[str, int] = {
    "background": LABEL_BACKGROUND, "bg": LABEL_BACKGROUND,
    "liver": LABEL_LIVER,
    "tumor": LABEL_TUMOR, "tumour": LABEL_TUMOR, "cancer": LABEL_TUMOR, "lesion": LABEL_TUMOR,
    "liver_tumor": LABEL_TUMOR, "liver_tumour": LABEL_TUMOR, "hcc": LABEL_TUMOR,
}
"""Class names accepted in an imported ``dataset.json`` (lower case) and our id for each."""

_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


# --- import --------------------------------------------------------------------------------
def read_dataset_json(dataset: Path) -> dict[str, Any]:
    """``dataset.json`` as a dict (one-line errors for a missing or malformed file)."""
    path = dataset / DATASET_JSON
    if not path.is_file():
        raise InputError(f"no {DATASET_JSON}; an nnU-Net v2 raw dataset needs one (channel_names, labels, file_ending)", dataset)
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"not valid JSON ({err}); fix the file", path) from None
    if not isinstance(meta, dict):
        raise InputError("must hold a JSON object with channel_names, labels and file_ending", path)
    return meta


def channel_phases(meta: dict[str, Any], path: Path, annotated_phase: str = ANNOTATED_PHASE) -> dict[int, str]:
    """Channel index → phase, from ``channel_phases`` (our exports) or ``channel_names`` / ``modality``.

    Names go through the phase aliases (``arterial`` → AP…); a dataset with one channel whose name
    is no phase (``CT``) is read as the annotated phase, and the mapping is logged.
    """
    raw = meta.get("channel_phases") or meta.get("channel_names") or meta.get("modality")
    if not isinstance(raw, dict) or not raw:
        raise InputError("has no channel_names; add e.g. \"channel_names\": {\"0\": \"PVP\"}", path)
    mapping: dict[int, str] = {}
    unknown: list[str] = []
    for key, name in raw.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise InputError(f"channel key {key!r} is not a channel number; use \"0\", \"1\"…", path) from None
        phase = canonical_phase_name(str(name))
        if phase is None:
            unknown.append(f"{key}: {name!r}")
            continue
        if phase in mapping.values():
            raise InputError(f"two channels are phase {phase}; give each phase one channel", path)
        if str(name) != phase:
            log.info("%s: channel %s (%s) read as phase %s", path.parent.name, key, name, phase)
        mapping[index] = phase
    if unknown and len(raw) == 1:
        key, name = next(iter(raw.items()))
        log.info("%s: the single channel %s (%s) read as phase %s", path.parent.name, key, name, annotated_phase)
        return {int(key): annotated_phase}
    if unknown:
        raise InputError(
            f"channel(s) {', '.join(unknown)} are not CT phases; name the channels {', '.join(PHASES)} "
            "(or aliases such as plain, arterial, portal, delayed)",
            path,
        )
    if annotated_phase not in mapping.values():
        raise InputError(f"no channel is the annotated phase {annotated_phase} (channels: {', '.join(mapping.values())}); name the channel the labels are drawn on {annotated_phase}", path)
    return mapping


def label_ids(meta: dict[str, Any], path: Path) -> dict[int, int]:
    """The dataset's class id → our id (0 background, 1 liver, 2 tumor), from ``labels``.

    Accepts nnU-Net v2 (``{"liver": 1}``) and v1 / MSD (``{"1": "liver"}``) forms.
    """
    labels = meta.get("labels")
    if labels is None:
        return {LABEL_BACKGROUND: LABEL_BACKGROUND, LABEL_LIVER: LABEL_LIVER, LABEL_TUMOR: LABEL_TUMOR}
    if not isinstance(labels, dict) or not labels:
        raise InputError("'labels' must map class names to ids, e.g. {\"background\": 0, \"liver\": 1, \"tumor\": 2}", path)
    pairs: list[tuple[str, Any]] = []
    for key, value in labels.items():
        if isinstance(value, str) and str(key).isdigit():
            pairs.append((value, int(key)))  # v1 / MSD: "1": "liver"
        else:
            pairs.append((str(key), value))
    mapping: dict[int, int] = {}
    for name, value in pairs:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"label {name!r} has id {value!r}; region-based labels cannot be imported, give one integer id per class", path)
        ours = LABEL_NAME_IDS.get("_".join(name.strip().lower().split()))
        if ours is None:
            raise InputError(f"label {name!r} ({value}) is neither background, liver nor tumor; merge it into one of them or remove it", path)
        mapping[value] = ours
    return mapping


def nnunet_case_files(dataset: str | Path, require_label: bool = True, annotated_phase: str = ANNOTATED_PHASE) -> list[CaseFiles]:
    """The cases of an nnU-Net v2 raw dataset: ``imagesTr`` with ``labelsTr``, and ``imagesTs``
    (unlabelled, listed only when ``require_label`` is False)."""
    dataset = Path(dataset)
    meta = read_dataset_json(dataset)
    json_path = dataset / DATASET_JSON
    channels = channel_phases(meta, json_path, annotated_phase)
    ids = label_ids(meta, json_path)
    ending = str(meta.get("file_ending", ".nii.gz"))
    if not (dataset / "imagesTr").is_dir():
        raise InputError("no imagesTr folder; an nnU-Net v2 raw dataset keeps its training images there", dataset)
    cases = _list_split(dataset, "imagesTr", "labelsTr", ending, channels, ids)
    if not require_label:
        cases += _list_split(dataset, "imagesTs", "labelsTs", ending, channels, ids)
    seen: set[str] = set()
    for files in cases:
        if files.case_id in seen:
            raise InputError(f"case {files.case_id!r} is in both imagesTr and imagesTs; keep it in one", dataset)
        seen.add(files.case_id)
    if not cases:
        raise InputError(f"empty dataset: no images named <case>_0000{ending} in imagesTr", dataset)
    return cases


def _list_split(dataset: Path, images: str, labels: str, ending: str, channels: dict[int, str], ids: dict[int, int]) -> list[CaseFiles]:
    folder = dataset / images
    if not folder.is_dir():
        return []
    found: dict[str, dict[int, Path]] = {}
    stray: dict[str, list[tuple[Path, str]]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.name.endswith(ending):
            continue
        match = _CHANNEL_FILE.match(entry.name[: -len(ending)])
        if match is None:
            stray.setdefault(entry.name[: -len(ending)], []).append(
                (entry, f"not named <case>_<channel>{ending} (e.g. case_001_0000{ending}); rename it"))
            continue
        found.setdefault(match["case"], {})[int(match["channel"])] = entry
    cases: list[CaseFiles] = []
    for case_id in sorted(set(found) | set(stray)):
        by_channel = found.get(case_id, {})
        issues = list(stray.get(case_id, []))
        phases: dict[str, Path] = {}
        for channel, path in sorted(by_channel.items()):
            if channel not in channels:
                issues.append((path, f"channel {channel:04d} is not in dataset.json channel_names; add it there or remove the file"))
                continue
            phases[channels[channel]] = path
        for channel, phase in channels.items():
            if channel not in by_channel and by_channel:
                issues.append((folder / f"{case_id}_{channel:04d}{ending}", f"missing: case {case_id} has no channel {channel:04d} ({phase}); every case needs every channel"))
        label = dataset / labels / f"{case_id}{ending}"
        cases.append(CaseFiles(case_id=case_id, location=folder, phases=phases, label=label if label.is_file() else None,
                               issues=tuple(issues), label_ids=ids, expected={"label": label}))
    return cases


def read_nnunet_dataset(dataset: str | Path, require_label: bool = True, annotated_phase: str = ANNOTATED_PHASE) -> list[Case]:
    """Read an nnU-Net v2 raw dataset into cases (imagesTs too when ``require_label`` is False)."""
    return [read_case_files(files, annotated_phase, require_label)
            for files in nnunet_case_files(dataset, require_label, annotated_phase)]


# --- export --------------------------------------------------------------------------------
ChannelNames = Literal["ct", "phases"]


def export_nnunet_dataset(
    cases: Sequence[Case],
    out: str | Path,
    dataset_id: int,
    name: str,
    channel_names: ChannelNames = "ct",
    overwrite: bool = False,
    patients: Mapping[str, str] | None = None,
    synthetic: Iterable[str] = (),
    test: Iterable[str] = (),
    folds: int = 5,
    seed: int = 0,
) -> Path:
    """Write ``cases`` as the nnU-Net v2 raw dataset ``out/DatasetNNN_NAME/``; return its folder.

    ``test`` cases go to ``imagesTs`` (their labels, if any, to ``labelsTs``, which nnU-Net does not
    read). With ``patients`` (case → patient, e.g. a synthetic case → the real case it was painted
    into) or ``synthetic`` cases, ``splits_final.json`` is written too: ``folds`` folds over the
    patients of the real training cases, each validating on real cases of its patients only and
    training on every other case except those patients' synthetic copies (nnU-Net's default split
    would validate patients whose own synthetic copies it trains on). ``dataset.json`` lists the
    synthetic cases under ``synthetic_cases``.

    Channels are the phases present in any case, in the order NC, AP, PVP, DP; a case that lacks
    one gets a copy of its annotated phase there (the paper fills missing phases by duplication),
    recorded in ``dataset.json`` under ``filled_phases``. Labelled cases go to ``imagesTr`` +
    ``labelsTr``, unlabelled ones to ``imagesTs``. Every case must be registered (all phases on the
    annotated phase's grid), as nnU-Net requires of its channels.

    ``channel_names="ct"`` names every channel ``CT`` so that nnU-Net applies its CT intensity
    normalisation; the phase of each channel is kept in ``channel_phases`` (nnU-Net ignores it,
    :func:`read_nnunet_dataset` reads it). ``"phases"`` writes the phase names as channel names
    (nnU-Net then z-scores each channel).

    The dataset is written to a temporary folder beside its final place and renamed when complete.
    """
    out = Path(out)
    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"--dataset-id {dataset_id}: nnU-Net dataset ids are 1 to 999 (custom datasets usually ≥ 500)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name):
        raise InputError(f"--name {name!r}: use letters, digits, '-' and '_' only (it becomes the folder name)")
    if channel_names not in ("ct", "phases"):
        raise InputError(f"channel names {channel_names!r}: choose ct or phases")
    if not cases:
        raise InputError("no cases to export", out)
    ids = [case.case_id for case in cases]
    duplicates = sorted({case_id for case_id in ids if ids.count(case_id) > 1})
    if duplicates:
        raise InputError(f"case id(s) {duplicates} occur more than once; give every case its own id", out)
    for case in cases:
        for phase, volume in case.phases.items():
            require_same_grid(case.annotated, volume, what=f"{case.case_id}/{phase} vs {case.annotated_phase}",
                              hint="nnU-Net needs the channels of a case on one grid: export registered cases (RUN/registered)")
    target = out / f"Dataset{int(dataset_id):03d}_{name}"
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise InputError("already exists and is not empty; choose another --dataset-id or --name, or pass --overwrite", target)
    others = sorted(p.name for p in out.glob(f"Dataset{int(dataset_id):03d}_*") if p != target) if out.is_dir() else []
    if others:
        raise InputError(f"dataset id {dataset_id} is already used by {others[0]}; nnU-Net needs unique ids, choose another --dataset-id", out)

    phases = [phase for phase in PHASES if any(phase in case.phases for case in cases)]
    test_ids, synthetic_ids = set(test), set(synthetic)
    patient_of = {case.case_id: (patients or {}).get(case.case_id, case.case_id) for case in cases}
    leaking = sorted(c for c in synthetic_ids if patient_of.get(c) in test_ids)
    if leaking:
        raise InputError(f"synthetic case(s) {leaking[:3]} were painted into test cases; they cannot be exported "
                         "without leaking the test set", out)
    training = [c.case_id for c in cases if c.label is not None and c.case_id not in test_ids]
    splits = (make_patient_splits(training, patient_of, synthetic_ids, folds, seed)
              if patients is not None or synthetic_ids else None)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=out))
    try:
        with named_as_final(staging, target):
            filled = _write_cases(cases, staging, phases, test_ids)
        labelled = len(training)
        meta: dict[str, Any] = {
            "channel_names": {str(i): ("CT" if channel_names == "ct" else phase) for i, phase in enumerate(phases)},
            "labels": dict(NNUNET_LABELS),
            "numTraining": labelled,
            "file_ending": ".nii.gz",
            "name": name,
            "description": "Multi-phase liver CT exported by diff4mmlits (channels are CT phases, labels on the annotated phase).",
            "channel_phases": {str(i): phase for i, phase in enumerate(phases)},
        }
        if filled:
            meta["filled_phases"] = filled
        if synthetic_ids:
            meta["synthetic_cases"] = sorted(synthetic_ids)
        write_json_atomic(staging / DATASET_JSON, meta)
        if splits is not None:
            write_json_atomic(staging / SPLITS_FILE, splits)
        _replace_folder(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log.info("nnU-Net export: %d training and %d test case(s), channels %s, in %s",
             labelled, len(cases) - labelled, ", ".join(phases), target)
    return target


def make_patient_splits(training: Sequence[str], patient_of: Mapping[str, str], synthetic: set[str], folds: int,
                        seed: int) -> list[dict[str, list[str]]]:
    """nnU-Net's ``splits_final.json`` grouped by patient: each fold validates on the real cases of
    its patients and trains on every other training case except those patients' synthetic copies."""
    real_patients = sorted({patient_of[c] for c in training if c not in synthetic})
    if len(real_patients) < 2:
        raise InputError(f"{len(real_patients)} real training patient(s): cross-validation needs at least 2")
    order = [real_patients[i] for i in np.random.default_rng(seed).permutation(len(real_patients))]
    count = min(folds, len(order))
    if count < folds:  # --folds 100 over 5 patients wrote 5 folds without a word
        log.warning("nnU-Net export: %d folds asked for, %d written (one per real training patient)", folds, count)
    groups = [set(order[k::count]) for k in range(count)]
    return [{"train": sorted(c for c in training if patient_of[c] not in group),
             "val": sorted(c for c in training if patient_of[c] in group and c not in synthetic)} for group in groups]


def _write_cases(cases: Sequence[Case], folder: Path, phases: list[str], test: set[str]) -> dict[str, dict[str, str]]:
    from diff4mmlits.progress import progress

    filled: dict[str, dict[str, str]] = {}
    for case in progress(cases, desc="nnU-Net export", unit="case"):
        in_test = case.label is None or case.case_id in test
        images = folder / ("imagesTs" if in_test else "imagesTr")
        for channel, phase in enumerate(phases):
            volume = case.phases.get(phase)
            if volume is None:
                volume = case.annotated
                filled.setdefault(case.case_id, {})[phase] = case.annotated_phase
            write_volume(volume, images / f"{case.case_id}_{channel:04d}.nii.gz")
        if case.label is not None:
            write_volume(case.label, folder / ("labelsTs" if in_test else "labelsTr") / f"{case.case_id}.nii.gz")
    for case_id, fills in filled.items():
        log.info("%s: phase(s) %s missing, filled with a copy of the annotated phase", case_id, ", ".join(fills))
    return filled


def _replace_folder(staging: Path, target: Path) -> None:
    """Move the finished ``staging`` folder to ``target`` (an old ``target`` is removed after)."""
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{staging.name.rsplit('-', 1)[-1]}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old)
