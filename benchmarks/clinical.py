"""A clinical-size four-phase case for the benchmarks: the phantom at size 128, each phase
up-sampled in-plane ×4 on its own grid (its own field of view, orientation and motion kept):
about 512 × 512 × 96 voxels per phase, 0.45–0.6 mm pixels. The truth (displacements, labels)
stays on the size-128 grids: registration transforms are in world coordinates, so the target
registration error is measured there."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diff4mmlits.data.case import Case
from diff4mmlits.data.phantom import make_phantom_case
from diff4mmlits.data.volume import Volume
from diff4mmlits.register.resample import resample_onto

IN_PLANE_ZOOM = 4


def clinical_phase(volume: Volume, zoom: int = IN_PLANE_ZOOM) -> Volume:
    """``volume`` on a grid ``zoom``× finer in-plane over the same box (same direction), linear, float32."""
    spacing = np.asarray(volume.spacing_mm, float)
    factors = np.array([1, zoom, zoom])
    fine_spacing = spacing / factors
    origin = np.asarray(volume.origin_mm) + volume.direction @ ((fine_spacing - spacing) / 2)  # same first corner
    reference = Volume(np.zeros(tuple(np.array(volume.shape) * factors), np.float32), tuple(fine_spacing),
                       tuple(origin), volume.direction)
    fine = resample_onto(volume, reference)
    return fine.with_array(fine.array.astype(np.float32))


def clinical_case(seed: int = 0, site: str = "default", index: int = 0):
    """(the case at clinical size — phases on their own grids, the label up-sampled with the PVP —,
    the phantom case at size 128 with its truth)."""
    phantom = make_phantom_case(index, seed=seed, site=site, size=128)
    phases = {name: clinical_phase(volume) for name, volume in phantom.case.phases.items()}
    label = resample_onto(phantom.case.label, phases[phantom.case.annotated_phase])
    return Case(f"clinical_{site}_{index}", phases, label, annotated_phase=phantom.case.annotated_phase), phantom


def two_step_segmenter(out: Path, preset: str, seed: int, cascade: bool = True) -> Path:
    """A segmenter of the preset's network after two training steps on two registered phantom cases of
    size 128 (prediction cost does not depend on the weights), saved in ``out`` with the preset's
    settings as ``diff4mmlits train`` saves them (so ``predict`` registers with its ``register`` section)."""
    from diff4mmlits.config import resolve_config
    from diff4mmlits.segment.train import train_model

    train = []
    for index in (1, 2):
        case = make_phantom_case(index, seed=seed, site="default", size=128).case
        train.append(Case(case.case_id, {k: resample_onto(v, case.annotated) for k, v in case.phases.items()}, case.label))
    run_config = resolve_config(preset)
    config = run_config.segment.model_copy(update={
        "epochs": 1, "steps_per_epoch": 2, "cascade_liver_epochs": 1, "loader_workers": 0, "cascade": cascade})
    train_model(train, [], config, out, seed=0, echo=lambda _: None,
                extra_config={"run_config": run_config.model_dump(mode="json")})
    return out
