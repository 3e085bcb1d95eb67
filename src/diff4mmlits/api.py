"""The Python API: the command line's main steps on SimpleITK images (or file paths) in memory.

::

    import SimpleITK as sitk
    from diff4mmlits.api import Segmenter, register_phases, paint_tumors

    segmenter = Segmenter.load("runs/mine/models/segmenter")
    label = segmenter.predict({"PVP": "case/PVP.nii.gz", "AP": sitk.ReadImage("case/AP.nii.gz")})
    sitk.WriteImage(label, "case_label.nii.gz")          # 0 background, 1 liver, 2 tumor on PVP's grid
    volumes = segmenter.statistics(label, {"PVP": "case/PVP.nii.gz"})   # mL, lesions, HU per phase

    registered = register_phases({"PVP": ..., "AP": ..., "NC": ..., "DP": ...}, label="case/label.nii.gz")
    phases, new_label = paint_tumors("runs/mine", registered, liver=..., seed=3)

Every function takes a phase name → image mapping (``NC``, ``AP``, ``PVP``, ``DP``; any subset) whose
values are ``SimpleITK.Image`` objects or paths, and returns ``SimpleITK.Image`` objects in the
geometry of the reference phase (the annotated phase when present, else the nearest in timing).
Bad input raises :class:`~diff4mmlits.errors.InputError` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from diff4mmlits.data.case import Case
from diff4mmlits.data.casefiles import checked_image
from diff4mmlits.data.io import from_sitk, read_volume, to_sitk
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError

ImageLike = sitk.Image | str | Path


def _volume(image: ImageLike, kind: str = "image", name: str = "image") -> Volume:
    """``image`` as a :class:`Volume`; a CT image (``kind="image"``) through the checks the command
    line makes (spacing, NaN/Inf, constant or non-HU values)."""
    if isinstance(image, sitk.Image):
        volume = from_sitk(image, kind=kind)
    elif isinstance(image, (str, Path)):
        volume = read_volume(image, kind=kind)
    else:
        raise InputError(f"{name}: expected a SimpleITK.Image or a file path, got {type(image).__name__}")
    return checked_image(volume, image if isinstance(image, (str, Path)) else name) if kind == "image" else volume


def _phase_mapping(phases: object, argument: str = "phases") -> Mapping[str, ImageLike]:
    """``phases`` when it is a mapping; one image or path given alone is the commonest slip."""
    if not isinstance(phases, Mapping):
        raise InputError(f"{argument} must map phase names to images, e.g. {{'PVP': image}} (got "
                         f"{type(phases).__name__})")
    return phases


def _case(phases: Mapping[str, ImageLike], label: ImageLike | None, annotated_phase: str, case_id: str) -> Case:
    from diff4mmlits import PHASES
    from diff4mmlits.segment.predict_io import reference_phase

    phases = _phase_mapping(phases)
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise InputError(f"unknown phase name(s) {unknown}; use {', '.join(PHASES)}")
    volumes = {name: _volume(image, name=name) for name, image in phases.items()}
    reference = reference_phase(sorted(volumes), annotated_phase)
    return Case(case_id, volumes, _volume(label, "label", "label") if label is not None else None, reference)


@dataclass(frozen=True)
class Segmenter:
    """A trained segmenter (``RUN/models/segmenter/``), ready to segment new cases."""

    model: Any
    """The loaded :class:`diff4mmlits.segment.predict.Segmenter` (network, plan, settings)."""

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> Segmenter:
        """Load a segmenter folder (weights checked against ``checksums.json``)."""
        from diff4mmlits.segment.predict import load_segmenter

        if not isinstance(folder, (str, Path)):
            raise InputError(f"Segmenter.load takes a model folder's path, got {type(folder).__name__}")
        return cls(load_segmenter(folder, device=device))

    @property
    def annotated_phase(self) -> str:
        return (self.model.model_config.get("run_config") or {}).get("data", {}).get("annotated_phase", "PVP")

    @property
    def phases(self) -> tuple[str, ...]:
        return self.model.phases

    def predict(self, phases: Mapping[str, ImageLike], tta: bool | None = None, case_id: str = "case") -> sitk.Image:
        """The label (uint8: 0 background, 1 liver, 2 tumor) on the reference phase's grid. Phases
        that are not on one grid are registered first, on the liver that stage one finds, as
        ``diff4mmlits predict`` does."""
        from diff4mmlits.segment.predict import segment_case
        from diff4mmlits.segment.stage import ensure_registered

        case = _case(phases, None, self.annotated_phase, case_id)
        ready = ensure_registered(case, self.model.model_config.get("run_config"), segmenter=self.model)
        return to_sitk(segment_case(ready, self.model, tta=tta))

    @staticmethod
    def statistics(label: ImageLike, phases: Mapping[str, ImageLike] | None = None) -> dict[str, Any]:
        """Liver and tumor volumes (mL), lesion count, per lesion its volume, centre (mm) and mean HU
        in each given phase (phases on the label's grid)."""
        from diff4mmlits import PHASES
        from diff4mmlits.data.checks import check_label_values
        from diff4mmlits.segment.predict_io import label_statistics

        grid = _volume(label, "label", "label")
        for problem in check_label_values(grid, "label"):  # a CT or a 0/100/200 map gave nonsense volumes
            raise InputError(problem.message)
        phases = _phase_mapping(phases or {})
        unknown = sorted(set(phases) - set(PHASES))
        if unknown:
            raise InputError(f"unknown phase name(s) {unknown}; use {', '.join(PHASES)}")
        volumes = {name: _volume(image, name=name) for name, image in phases.items()}
        for name, volume in volumes.items():  # it was left out without a word (no HU for that phase)
            if not volume.same_grid(grid):
                raise InputError(f"{name} is not on the label's grid; give the phases the label was predicted on "
                                 "(register_phases puts them there)")
        return label_statistics(grid, volumes)


def register_phases(phases: Mapping[str, ImageLike], label: ImageLike | None = None, annotated_phase: str = "PVP",
                    preset: str = "demo", overrides: list[str] | None = None) -> dict[str, sitk.Image]:
    """Every phase registered onto the annotated phase (liver-focused when ``label`` is given, else on
    the body) and resampled onto its grid: phase name → image (the annotated phase as given)."""
    from diff4mmlits import PHASES
    from diff4mmlits.config import resolve_config
    from diff4mmlits.register import register_case
    from diff4mmlits.threads import worker_processes

    if annotated_phase not in PHASES:
        raise InputError(f"annotated_phase {annotated_phase!r}: use one of {', '.join(PHASES)}")
    config = resolve_config(preset, None, overrides or [])
    result = register_case(_case(phases, label, annotated_phase, "case"), config.register,
                           workers=worker_processes(jobs=len(phases) - 1))
    return {name: to_sitk(volume) for name, volume in result.case.phases.items()}


def paint_tumors(run: str | Path, phases: Mapping[str, ImageLike], liver: ImageLike, seed: int = 0,
                 method: str = "ldm", device: str = "cpu") -> tuple[dict[str, sitk.Image], sitk.Image]:
    """New tumors painted into tumor-free, registered phases with the painter ``method`` trained in
    the run folder ``run`` (``ldm``: the latent diffusion model; ``handcrafted``; ``cut``). ``liver``
    is the liver mask (non-zero) on the phases' grid. Returns the painted phases and their label."""
    from diff4mmlits.runfolder import RunFolder
    from diff4mmlits.synthesize.painters import load_painter

    liver_volume = _volume(liver, "label", "liver")
    mask = to_sitk(liver_volume.with_array((liver_volume.array > 0).astype(np.uint8), kind="label"))
    case = _case(phases, mask, RunFolder(run).annotated_phase(), "normal")
    if not case.is_registered():
        raise InputError("the phases and the liver mask must be on one grid; register them first (register_phases)")
    painter = load_painter(RunFolder(run), method, "paper", device)
    painted = painter.paint(case, np.random.default_rng(seed))
    return {name: to_sitk(v) for name, v in painted.phases.items()}, to_sitk(painted.label)


__all__ = ["Segmenter", "paint_tumors", "register_phases"]
