"""CUT as a tumor painter: the Diff4MMLiTS paper's Table V baseline (``synthesize --method cut``).

The paper compares its diffusion synthesizer with CUT-GAN painting tumors. Here CUT learns, without
pairs, the mapping from (normal CT + a tumor mask) to (CT with a real tumor in that mask):

- domain A: cubic crops of the run's *normal* (tumor-free) training cases around random tumor masks,
  drawn exactly as the synthesizer draws them (:mod:`diff4mmlits.synthesize.tumor_masks`);
- domain B: the same-size crops of the *registered real* training cases around their real tumors,
  with their own masks.

A sample is every phase (HU windowed to [-1, 1]) plus the dilated tumor mask as a condition
channel (-1 outside, +1 inside). CUT's generator reads phases + mask and writes the phases; its
discriminator judges phases and mask together (so it learns what a tumor looks like inside its
mask); PatchNCE keeps the rest of the crop in place. Training runs slice by slice (2D) like every
translator here.

Painting goes through the synthesize stage's shared routine (``synthesize.painting.paint_tumors``:
random tumors, one mask for every phase, a crop per tumor, the feathered blend, the label), with this
model painting each crop; the tumors and crops are those the diffusion painter would draw, so the
two methods are compared on the same budget.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from diff4mmlits import PHASES
from diff4mmlits.checkpoint import WEIGHTS_NAME
from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.data.intensity import IntensityMap
from diff4mmlits.errors import InputError
from diff4mmlits.runfolder import PAINTED_SPLITS, RunFolder
from diff4mmlits.synthesize.contrast import TumorContrast
from diff4mmlits.synthesize.crops import crop_box, dilate_tumor_mask, extract_crop
from diff4mmlits.synthesize.painting import largest_semi_axis_mm, paint_tumors
from diff4mmlits.synthesize.quality import quality_control
from diff4mmlits.synthesize.tumor_masks import draw_tumor_mask, sample_tumor_params
from diff4mmlits.training import CROP_STREAM
from diff4mmlits.translate.config import TranslateConfig
from diff4mmlits.translate.sampling import SampleSource
from diff4mmlits.translate.train import TranslatorData, fit_translator
from diff4mmlits.translate.translator import Translator, load_translator, translate_array

log = logging.getLogger(__name__)

FILL_HU = -1000.0


def painter_phases(cases: Sequence[Case]) -> list[str]:
    """The phases every case holds, in channel order (``NC, AP, PVP, DP``)."""
    common = [name for name in PHASES if all(name in case.phases for case in cases)]
    if not common:
        raise InputError("the training cases share no phase; the CUT painter needs the same phases in every case")
    return common


def painter_sample(case: Case, tumor: np.ndarray, phases: Sequence[str], window: IntensityMap, crop_vox: int,
                   close_vox: int, dilate_vox: int) -> np.ndarray:
    """One training sample: the crop around ``tumor`` of each phase in [-1, 1] and the dilated mask, ``(P + 1, c, c, c)`` float16."""
    centre = ndimage.center_of_mass(tumor)
    box = crop_box(np.asarray(centre), crop_vox, tumor.shape)
    condition = extract_crop(dilate_tumor_mask(tumor, close_vox, dilate_vox), box, fill=0.0) > 0.5
    channels = [window.to_unit(extract_crop(case.phases[name].array, box, fill=FILL_HU)) for name in phases]
    channels.append(np.where(condition, 1.0, -1.0).astype(np.float32))
    return np.stack(channels).astype(np.float16)


def real_tumor_masks(case: Case, min_voxels: int = 8) -> list[np.ndarray]:
    """One boolean mask per real tumor (connected component of label 2) of at least ``min_voxels`` voxels."""
    components, count = ndimage.label(case.tumor_mask)
    return [components == index for index in range(1, count + 1) if (components == index).sum() >= min_voxels]


def painter_training_data(
    normal: Sequence[Case], real: Sequence[Case], config: Config, rng: np.random.Generator, crops_per_case: int = 4,
) -> TranslatorData:
    """Domain A (normal crops + random masks) and domain B (real tumor crops + their masks)."""
    crop, close, dilate = config.diffusion.crop_vox, config.inpaint.close_kernel_vox, config.inpaint.dilate_kernel_vox
    window = IntensityMap("window", *config.translate.source_window_hu)
    phases = painter_phases([*normal, *real])
    source = []
    for case in normal:
        case.require_registered()
        liver, grid = case.liver_mask, case.annotated
        cap = largest_semi_axis_mm(crop, grid.spacing_mm, config.synthesize.feather_mm, dilate, config.synthesize.tumor)
        for _ in range(crops_per_case):
            for params in sample_tumor_params(rng, liver, grid.spacing_mm, config.synthesize.tumor, max_semi_axis_mm=cap)[:1]:
                mask = draw_tumor_mask(params, grid, liver)
                if mask.any():
                    source.append(painter_sample(case, mask, phases, window, crop, close, dilate))
    target = [painter_sample(case, mask, phases, window, crop, close, dilate) for case in real for mask in real_tumor_masks(case)]
    if not target:
        raise InputError("the registered training cases hold no tumor (label 2) to learn from; the CUT painter needs real tumors")
    if not source:
        raise InputError("no tumor mask could be drawn in the normal cases' livers; check their labels")
    return TranslatorData(source=SampleSource(source), target=SampleSource(target), source_map=window, target_map=window,
                          source_phase="+".join(phases), target_phase="+".join(phases), condition_channels=1)


def painter_settings(config: Config) -> TranslateConfig:
    """The translate settings for the painter: CUT, full crop slices."""
    crop = config.diffusion.crop_vox
    if crop % 4:
        raise InputError(f"diffusion.crop_vox={crop}: the CUT painter needs a multiple of 4")
    return config.translate.model_copy(update={"method": "cut", "crop_vox": crop})


def train_cut_painter(run: RunFolder, config: Config, resume: bool = False) -> Path:
    """``train-translator --run RUN --painter``: train the CUT tumor painter on the run's normal CT (training
    cases and healthy scans) and the training cases' real tumors."""
    normal = run.read_cases("normal", PAINTED_SPLITS)
    real = run.read_cases("registered", "train")
    data = painter_training_data(normal, real, config, np.random.default_rng([config.seed, CROP_STREAM]))
    log.info("cut painter: %d normal crops with random masks, %d real tumor crops", len(data.source.images), len(data.target.images))
    extra = {"painter": True, "phases": data.source_phase.split("+"), "crop_vox": config.diffusion.crop_vox,
             "close_kernel_vox": config.inpaint.close_kernel_vox, "dilate_kernel_vox": config.inpaint.dilate_kernel_vox}
    return fit_translator(data, painter_settings(config), run.cut_painter_dir, device=config.device,
                          resume=resume, seed=config.seed, extra_config=extra)


@dataclass
class CutPainter:
    """Paints tumors with a CUT generator (phases + mask → phases), slice by slice in each crop.

    Attributes:
        translator: the trained generator and its HU window.
        phases: the phases it reads and writes, in channel order.
        config: the ``synthesize`` section (tumor masks, feather).
        crop_vox, close_vox, dilate_vox: crop edge and mask preparation, as at training.
    """

    translator: Translator
    phases: list[str]
    config: Any
    crop_vox: int
    close_vox: int = 5
    dilate_vox: int = 3
    real_tumors: list[TumorContrast] = field(default_factory=list)

    def paint(self, normal: Case, rng: np.random.Generator) -> Case:
        """The synthetic case: ``normal``'s phases with new tumors and the label 0/1/2 on the same grid."""
        return self.paint_with_provenance(normal, rng)[0]

    def paint_with_provenance(self, normal: Case, rng: np.random.Generator) -> tuple[Case, dict[str, Any]]:
        """The synthetic case and its provenance (``method``, the tumors drawn)."""
        case, provenance = paint_tumors(normal, rng, self.paint_crop, self.config.tumor, self.crop_vox,
                                        self.config.feather_mm, self.close_vox, self.dilate_vox, real_tumors=self.real_tumors,
                                        quality=quality_control(self.config, self.real_tumors),
                                        retries=self.config.quality_retries)
        return case, {"method": "cut", **provenance}

    def paint_crop(self, crops_hu: dict[str, np.ndarray], condition: np.ndarray, tumor: np.ndarray,
                   liver: np.ndarray, rng: np.random.Generator, profile_hu: dict[str, float] | None = None,
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Every phase of one ``(c, c, c)`` crop through the generator (HU in, HU out).

        A phase the model reads but the case lacks is filled with the annotated phase's crop (the
        paper's duplication rule) and is not returned.
        """
        window = self.translator.source_map
        fallback = crops_hu.get("PVP", next(iter(crops_hu.values())))
        channels = [window.to_unit(crops_hu.get(name, fallback)) for name in self.phases]
        channels.append(np.where(condition, 1.0, -1.0).astype(np.float32))
        out = translate_array(np.stack(channels), self.translator)
        painted = {name: self.translator.target_map.from_unit(out[i]) for i, name in enumerate(self.phases) if name in crops_hu}
        return painted, {}


def load_cut_painter(run: RunFolder, mode: str = "paper", device: str | torch.device = "cpu") -> CutPainter:
    """The CUT painter of ``RUN/models/cut-painter`` (``mode`` is unused: one model serves every phase)."""
    folder = run.cut_painter_dir
    if not (folder / WEIGHTS_NAME).is_file():
        raise InputError(f"no trained CUT painter; run 'diff4mmlits train-translator --run {run.root} --painter' first", folder)
    translator = load_translator(folder, device=str(device))
    stored = translator.config
    if not stored.get("painter"):
        raise InputError("this model folder holds a translator, not a tumor painter; train it with --painter", folder)
    config = run.load_config()
    return CutPainter(translator=translator, phases=list(stored["phases"]), config=config.synthesize,
                      crop_vox=int(stored["crop_vox"]), close_vox=int(stored["close_kernel_vox"]),
                      dilate_vox=int(stored["dilate_kernel_vox"]))
