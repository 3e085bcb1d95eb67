"""The run folder: where every stage reads its inputs and writes its outputs.

```
runs/<name>/
  config.yaml            the full resolved configuration (preset + overrides)
  manifest.json          dataset, cases, phases, geometry, input checksums, the train/val/test split
  previews/<case>.png    the phases side by side with the label contour
  registered/<case>/     <PHASE>.nii.gz, label.nii.gz, <PHASE>.tfm, qc.json (written last), qc.png
  normal/<case>/         <PHASE>.nii.gz tumor-free, inpaint_mask.nii.gz, label.nii.gz (tumor → liver)
  synthetic/<case>_sNNN/ <PHASE>.nii.gz, label.nii.gz, provenance.json; synthetic/summary.json
  models/<model>/        config.json, weights.safetensors, training_state.pt, log.csv, curves.png
  predictions/<case>.nii.gz
  report/                index.html, metrics.csv, figures/*.png
  .stages/<stage>.json   what each finished stage was run with (for up-to-date checks)
```
Nothing is kept only in memory between stages: each stage can be run alone, re-run or resumed.
:class:`RunFolder` is the one reader and writer of the case areas (``registered/``, ``normal/``,
``synthetic/``): a case folder is written into ``.<case>.tmp/`` and renamed into place, so a reader
never sees half a case, and cases are read with the annotated phase the dataset was ingested with.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from diff4mmlits.config import Config, config_to_yaml, read_run_config
from diff4mmlits.data.case import ANNOTATED_PHASE, Case
from diff4mmlits.data.dataset import load_dataset
from diff4mmlits.data.native import is_case_folder_name, read_case_folder, write_case_folder
from diff4mmlits.errors import InputError
from diff4mmlits.files import read_json_or_none, write_json_atomic, write_text_atomic

CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
MANIFEST_KEYS = ("dataset", "cases", "split")
"""What every ``manifest.json`` holds (``ingest.ingest_dataset`` writes it)."""
INPAINT_MASK = "inpaint_mask"
"""The closed and dilated tumor mask the inpainter filled, kept beside each normal case."""
PROVENANCE_FILE = "provenance.json"
QC_FILE = "qc.json"
OPTIONAL_SPLITS = ("healthy",)
"""Splits a manifest holds only when used (``healthy``: the tumor-free scans of ``data.healthy_cases``)."""
PAINTED_SPLITS = ("train", "healthy")
"""The cases whose normal CT synthetic tumors are painted into: the training cases and the healthy scans."""


@dataclass(frozen=True)
class CaseArea:
    """A folder of case folders that one stage writes and later stages read."""

    folder: str
    writer: str
    """The command that writes it (for the message when a case is missing)."""
    extras: tuple[str, ...] = ()
    """Volumes kept beside the phases and the label (read into ``Case.extras``)."""
    last_file: str | None = None
    """A file the writer puts in place last: a folder without it is incomplete."""
    from_manifest: bool = True
    """Its case ids are the dataset's (``manifest.json``); else whatever complete folders it holds."""


AREAS: dict[str, CaseArea] = {
    "registered": CaseArea("registered", "register DATASET", last_file=QC_FILE),
    "normal": CaseArea("normal", "inpaint", extras=(INPAINT_MASK,)),
    "synthetic": CaseArea("synthetic", "synthesize", last_file=PROVENANCE_FILE, from_manifest=False),
}


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder. Creating the object touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # --- fixed files ---
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    # --- stage folders ---
    @property
    def previews_dir(self) -> Path:
        return self.root / "previews"

    @property
    def registered_dir(self) -> Path:
        return self.root / "registered"

    @property
    def normal_dir(self) -> Path:
        return self.root / "normal"

    @property
    def synthetic_dir(self) -> Path:
        return self.root / "synthetic"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def figures_dir(self) -> Path:
        return self.report_dir / "figures"

    @property
    def stamps_dir(self) -> Path:
        return self.root / ".stages"

    def model_dir(self, name: str) -> Path:
        """``models/<name>/``; the named properties below are the folders the stages use."""
        return self.models_dir / name

    # --- model folders (every name decided here) ---
    @property
    def inpainter_dir(self) -> Path:
        return self.model_dir("inpainter")

    @property
    def autoencoder_dir(self) -> Path:
        return self.model_dir("autoencoder")

    def diffusion_dir(self, mode: str) -> Path:
        """``models/diffusion`` (paper mode) or ``models/diffusion-<mode>``."""
        return self.model_dir("diffusion" if mode == "paper" else f"diffusion-{mode}")

    @property
    def segmenter_dir(self) -> Path:
        return self.model_dir("segmenter")

    def translator_dir(self, method: str) -> Path:
        return self.model_dir(f"translator-{method}")

    @property
    def cut_painter_dir(self) -> Path:
        """The CUT tumor painter (``synthesize --method cut``, the paper's Table V baseline)."""
        return self.model_dir("cut-painter")

    @property
    def handcrafted_dir(self) -> Path:
        """The handcrafted painter's measured contrasts (``contrast.json``)."""
        return self.model_dir("handcrafted")

    # --- config and manifest ---
    def exists(self) -> bool:
        return self.config_path.is_file()

    def save_config(self, config: Config) -> Path:
        return write_text_atomic(self.config_path, config_to_yaml(config))

    def load_config(self) -> Config:
        if not self.config_path.is_file():
            raise InputError(
                f"not a run folder (no {CONFIG_FILE}); start one with 'diff4mmlits run DATASET --run {self.root}'",
                self.root,
            )
        return read_run_config(self.config_path)

    def save_manifest(self, manifest: dict[str, Any]) -> Path:
        return write_json_atomic(self.manifest_path, manifest)

    def load_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            raise InputError(
                f"no {MANIFEST_FILE} in the run folder; run 'diff4mmlits run DATASET --run {self.root}' first",
                self.root,
            )
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"damaged ({type(err).__name__}); write it again with 'diff4mmlits run DATASET --run "
                             f"{self.root}' (finished stages whose inputs did not change are kept)", self.manifest_path) from None
        missing = [key for key in MANIFEST_KEYS if not isinstance(manifest, dict) or key not in manifest]
        if missing:
            raise InputError(f"damaged (no '{missing[0]}'); write it again with 'diff4mmlits run DATASET --run "
                             f"{self.root}' (finished stages whose inputs did not change are kept)", self.manifest_path)
        return manifest

    def dataset_path(self) -> Path:
        """The dataset this run was made from (recorded in the manifest)."""
        return Path(self.load_manifest()["dataset"])

    def split(self, name: str) -> list[str]:
        """Case ids of a split: ``train``, ``validation``, ``test``, or ``healthy`` (the tumor-free scans
        of ``data.healthy_cases``, only painted into; empty when the manifest has none)."""
        return self.case_ids(name)

    def case_ids(self, split: str | Iterable[str] | None = None) -> list[str]:
        """The dataset's case ids, sorted; or those of one split, or of several splits one after the
        other (``("train", "validation")``: the train ids, then the validation ids)."""
        manifest = self.load_manifest()
        if split is None:
            return sorted(entry["id"] for entry in manifest["cases"])
        splits = manifest["split"]
        return [case_id for name in ([split] if isinstance(split, str) else split)
                for case_id in (splits.get(name, []) if name in OPTIONAL_SPLITS else splits[name])]

    def annotated_phase(self) -> str:
        """The phase the labels are drawn on, as the dataset was ingested (``manifest.json``)."""
        if self.manifest_path.is_file():
            return str(self.load_manifest().get("annotated_phase", ANNOTATED_PHASE))
        return self.load_config().data.annotated_phase

    # --- the input cases ---
    def read_input_cases(self, split: str | Iterable[str] | None = None, require_label: bool = True) -> list[Case]:
        """Cases of the run's dataset (all, or those of a split), as ingested."""
        cases = load_dataset(self.dataset_path(), require_label=require_label, annotated_phase=self.annotated_phase())
        if split is None:
            return cases
        wanted = set(self.case_ids(split))
        return [case for case in cases if case.case_id in wanted]

    # --- case areas: registered/, normal/, synthetic/ ---
    def area_dir(self, area: str) -> Path:
        return self.root / _area(area).folder

    def is_complete_case(self, area: str, case_id: str) -> bool:
        """The case folder is in place and its writer finished it."""
        folder = self.area_dir(area) / case_id
        marker = _area(area).last_file
        return folder.is_dir() and (marker is None or (folder / marker).is_file())

    def complete_case_ids(self, area: str) -> list[str]:
        """Ids of the complete case folders an area holds now, sorted."""
        root = self.area_dir(area)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir()
                      if p.is_dir() and is_case_folder_name(p.name) and self.is_complete_case(area, p.name))

    def read_case(self, area: str, case_id: str, require_label: bool = True, annotated_phase: str | None = None) -> Case:
        """One case folder of an area; a missing or incomplete one is an :class:`InputError` with the fix.
        ``annotated_phase`` defaults to the ingested one (given by :meth:`read_cases`, which reads it once)."""
        spec = _area(area)
        folder = self.area_dir(area) / case_id
        if not self.is_complete_case(area, case_id):
            state = "incomplete (its writer was interrupted)" if folder.is_dir() else "missing"
            raise InputError(f"{spec.folder}/{case_id} is {state}; run 'diff4mmlits {spec.writer} --run {self.root}' "
                             "(or 'diff4mmlits run') first", folder)
        return read_case_folder(folder, annotated_phase=annotated_phase or self.annotated_phase(),
                                require_label=require_label, extra_names=spec.extras)

    def area_case_ids(self, area: str, split: str | Iterable[str] | None = None) -> list[str]:
        """The case ids an area must hold (for ``split``): the dataset's, or for synthetic cases the
        complete ones made from a case of the split (``provenance.json``'s ``normal_case``)."""
        if _area(area).from_manifest:
            return self.case_ids(split)
        ids = self.complete_case_ids(area)
        if split is None:
            return ids
        sources = set(self.case_ids(split))
        return [case_id for case_id in ids if self.case_source(area, case_id) in sources]

    def case_source(self, area: str, case_id: str) -> str | None:
        """The real case a synthetic case was painted into (``provenance.json``), or ``None``."""
        provenance = read_json_or_none(self.area_dir(area) / case_id / PROVENANCE_FILE) or {}
        source = provenance.get("normal_case")
        return source if isinstance(source, str) else None

    def read_cases(self, area: str, split: str | Iterable[str] | None = None, require_label: bool = True) -> list[Case]:
        """Every case of an area (or of a split): complete folders only, read with the run's annotated phase."""
        phase = self.annotated_phase()
        return [self.read_case(area, case_id, require_label, phase) for case_id in self.area_case_ids(area, split)]

    def write_case(self, area: str, case: Case, case_id: str | None = None, json_files: Mapping[str, Any] | None = None,
                   writers: Iterable[Callable[[Path], Any]] = ()) -> Path:
        """Write one case folder of an area as a whole: into ``.<case>.tmp/``, then renamed into place.

        ``json_files`` (name → object) and ``writers`` (each called with the temporary folder, e.g.
        transforms or a QC figure) add files beside the volumes; the area's last file is written last.
        """
        spec = _area(area)
        case_id = case_id or case.case_id
        return write_case_atomically(replace(case, case_id=case_id), self.area_dir(area) / case_id, json_files,
                                     writers, last_file=spec.last_file)

    def clear_area(self, area: str) -> None:
        """Remove an area and everything in it (a stage that rewrites all its cases starts clean)."""
        shutil.rmtree(self.area_dir(area), ignore_errors=True)

    # --- stage stamps ---
    def stamp_path(self, stage: str) -> Path:
        return self.stamps_dir / f"{stage}.json"

    def read_stamp(self, stage: str) -> dict[str, Any] | None:
        return read_json_or_none(self.stamp_path(stage))

    def write_stamp(self, stage: str, fingerprint: str, extra: dict[str, Any] | None = None) -> None:
        write_json_atomic(self.stamp_path(stage), {"stage": stage, "fingerprint": fingerprint, **(extra or {})})

    def clear_stamp(self, stage: str) -> None:
        self.stamp_path(stage).unlink(missing_ok=True)


def write_case_atomically(case: Case, folder: Path, json_files: Mapping[str, Any] | None = None,
                          writers: Iterable[Callable[[Path], Any]] = (), last_file: str | None = None) -> Path:
    """Write a case folder as a whole: into ``.<name>.tmp/`` beside it, then renamed into place.

    The volumes come first, then ``writers`` (each called with the temporary folder), then the JSON
    files, ``last_file`` last. An interrupted write leaves the previous folder (or none) and a
    hidden temporary folder that readers skip and the next write removes.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    write_case_folder(case, tmp)
    for write in writers:
        write(tmp)
    files = dict(json_files or {})
    last = files.pop(last_file, None) if last_file else None
    for name, obj in files.items():
        write_json_atomic(tmp / name, obj)
    if last is not None:
        write_json_atomic(tmp / last_file, last)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def _area(area: str) -> CaseArea:
    if area not in AREAS:
        raise ValueError(f"unknown case area {area!r}; areas are {', '.join(AREAS)}")
    return AREAS[area]


def fingerprint_of(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (config sections, upstream fingerprints)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def annotated_phase_parts(phase: str) -> list[dict[str, str]]:
    """The annotated phase as extra :func:`fingerprint_of` parts: none for PVP, so that fingerprints made
    before the phase was part of them still hold for the PVP-annotated run folders they were made for."""
    return [] if phase == ANNOTATED_PHASE else [{"annotated_phase": phase}]
