"""The run folder: where every stage reads its inputs and writes its outputs.

```
runs/<name>/
  config.yaml            the full resolved configuration (preset + overrides)
  manifest.json          dataset, cases, phases, geometry, input checksums, the train/val/test split
  previews/<case>.png    the phases side by side with the label contour
  registered/<case>/     <PHASE>.nii.gz, label.nii.gz, <PHASE>.tfm, qc.json, qc.png
  normal/<case>/         <PHASE>.nii.gz, inpaint_mask.nii.gz
  synthetic/<case>/      <PHASE>.nii.gz, label.nii.gz, provenance.json
  models/<model>/        config.json, weights.safetensors, logs and curves
  predictions/<case>.nii.gz
  report/                index.html, metrics.csv, figures/*.png
  logs/                  one log file per command (tracebacks of unexpected errors land here)
  .stages/<stage>.json   what each finished stage was run with (for up-to-date checks)
```
Nothing is kept only in memory between stages: each stage can be run alone, re-run or resumed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diff4mmlits.config import Config, config_to_yaml, read_run_config
from diff4mmlits.errors import InputError
from diff4mmlits.files import read_json_or_none, write_json_atomic, write_text_atomic

CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"


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
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def stamps_dir(self) -> Path:
        return self.root / ".stages"

    def model_dir(self, name: str) -> Path:
        """``models/<name>/`` (inpainter, autoencoder, diffusion, translator, segmenter)."""
        return self.models_dir / name

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
        return json.loads(self.manifest_path.read_text())

    def dataset_path(self) -> Path:
        """The dataset this run was made from (recorded in the manifest)."""
        return Path(self.load_manifest()["dataset"])

    def split(self, name: str) -> list[str]:
        """Case ids of a split: ``train``, ``validation`` or ``test`` (from the manifest)."""
        return list(self.load_manifest()["split"][name])

    # --- stage stamps ---
    def stamp_path(self, stage: str) -> Path:
        return self.stamps_dir / f"{stage}.json"

    def read_stamp(self, stage: str) -> dict[str, Any] | None:
        return read_json_or_none(self.stamp_path(stage))

    def write_stamp(self, stage: str, fingerprint: str, extra: dict[str, Any] | None = None) -> None:
        write_json_atomic(self.stamp_path(stage), {"stage": stage, "fingerprint": fingerprint, **(extra or {})})

    def clear_stamp(self, stage: str) -> None:
        self.stamp_path(stage).unlink(missing_ok=True)


def fingerprint_of(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (config sections, upstream fingerprints)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
