"""The inpaint stages over a run folder, and :func:`inpaint_case`, the pure step they run per case.

```
RUN/registered/<case>/   (read)  <PHASE>.nii.gz on the annotated grid, label.nii.gz
RUN/models/inpainter/    (train-inpainter) config.json, weights.safetensors, discriminator.safetensors,
                         training_state.pt, log.csv, curves.png
RUN/normal/<case>/       (inpaint) <PHASE>.nii.gz tumor-free, inpaint_mask.nii.gz, label.nii.gz
                         (the registered label with tumor voxels set to liver)
RUN/report/figures/inpaint_<case>.png   original, mask and every method side by side
```

Only the train and validation cases train the inpainter (``manifest.json``'s split); every case
is inpainted. Each case folder is written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import logging
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diff4mmlits.checkpoint import WEIGHTS_NAME, read_model_config
from diff4mmlits.config import Config, InpaintConfig
from diff4mmlits.data.case import Case
from diff4mmlits.data.native import read_case_folder, write_case_folder
from diff4mmlits.errors import InputError
from diff4mmlits.inpaint.baselines import mean_fill, median_fill
from diff4mmlits.inpaint.infer import Inpainter
from diff4mmlits.inpaint.mask import dilate_tumor_mask, normal_label
from diff4mmlits.runfolder import RunFolder

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("ffc", "median", "mean-fill")
MASK_NAME = "inpaint_mask"
INPAINTER_MODEL = "inpainter"
TRAINING_ONLY = {"steps", "log_every_steps", "checkpoint_every_steps", "monitor_slices"}
"""Settings that do not change what one training step does (more steps continue a run)."""
INFERENCE_ONLY = {"method", "inference_batch_size", "median_kernel_vox", "mean_fill_noise"}
"""Settings that only matter when inpainting: changing them never retrains."""


def inpaint_mask_of(case: Case, config: InpaintConfig) -> np.ndarray:
    """The closed and dilated tumor mask of a labelled case, boolean ``(Z, Y, X)``."""
    if case.label is None:
        raise InputError(f"{case.case_id}: has no label; inpainting needs the tumor annotation")
    return dilate_tumor_mask(case.label, config.close_kernel_vox, config.dilate_kernel_vox,
                             config.close_kernel_mm, config.dilate_kernel_mm).array > 0


def fill_volume(image: np.ndarray, hole: np.ndarray, phase: str, method: str, config: Config,
                model: Inpainter | None, liver: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Fill ``hole`` of one ``(Z, Y, X)`` HU volume with ``method``; float32 HU, unchanged outside the hole."""
    if method == "ffc":
        if model is None:
            raise InputError("method ffc needs a trained inpainter; run 'diff4mmlits train-inpainter --run RUN' first")
        return model.fill(image, hole, phase)
    if method == "median":
        return median_fill(image, hole, config.inpaint.median_kernel_vox)
    if method == "mean-fill":
        return mean_fill(image, hole, liver, rng=rng, noise=config.inpaint.mean_fill_noise)
    raise InputError(f"unknown inpainting method {method!r}; choose one of {', '.join(METHODS)}")


def case_rng(seed: int, case_id: str, phase: str) -> np.random.Generator:
    """The random stream of one case's phase (mean-fill noise), from the run's seed."""
    return np.random.default_rng([seed, zlib.crc32(case_id.encode()), zlib.crc32(phase.encode())])


def inpaint_case(case: Case, method: str, model: Inpainter | None, config: Config) -> Case:
    """Paper step "Normal CT Generator": remove the tumors from every phase of a registered case.

    Returns a new :class:`Case` with the same grid: every phase inpainted inside the closed and
    dilated tumor mask (HU, float32; unchanged outside it), the mask as the ``inpaint_mask`` extra
    (uint8), and the "normal" label (tumor voxels set to liver). A case without tumors comes back
    with its phases unchanged and an empty mask.
    """
    case.require_registered()
    hole = inpaint_mask_of(case, config.inpaint)
    label = case.label
    liver = case.liver_mask
    phases = {}
    for name, volume in case.phases.items():
        if hole.any():
            filled = fill_volume(np.asarray(volume.array), hole, name, method, config, model, liver,
                                 case_rng(config.seed, case.case_id, name))
        else:
            filled = np.asarray(volume.array, dtype=np.float32).copy()
        phases[name] = volume.with_array(filled)
    mask_volume = label.with_array(hole.astype(np.uint8), kind="label")
    return Case(case.case_id, phases, normal_label(label), case.annotated_phase, {MASK_NAME: mask_volume})


# --- run-folder I/O -----------------------------------------------------------------------------
def registered_case_ids(run: RunFolder) -> list[str]:
    """Case ids that the register stage has written (``RUN/registered/<case>/``)."""
    if not run.registered_dir.is_dir():
        raise InputError("no registered cases; run 'diff4mmlits register DATASET --run RUN' first", run.registered_dir)
    ids = sorted(p.name for p in run.registered_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not ids:
        raise InputError("no registered cases; run 'diff4mmlits register DATASET --run RUN' first", run.registered_dir)
    return ids


def read_registered_cases(run: RunFolder, case_ids: Sequence[str]) -> list[Case]:
    """Registered cases in the native layout (every phase on the annotated grid)."""
    annotated = run.load_config().data.annotated_phase if run.exists() else "PVP"
    cases = []
    for case_id in case_ids:
        folder = run.registered_dir / case_id
        if not folder.is_dir():
            raise InputError(f"case {case_id} has not been registered; run 'diff4mmlits register' first", folder)
        cases.append(read_case_folder(folder, annotated_phase=annotated))
    return cases


def training_key(config: Config, run: RunFolder, case_ids: Sequence[str]) -> dict:
    """What a trained inpainter depends on: its settings (not the inference ones), seed, cases, registration."""
    settings = {k: v for k, v in config.inpaint.model_dump(mode="json").items() if k not in TRAINING_ONLY | INFERENCE_ONLY}
    register = (run.read_stamp("register") or {}).get("fingerprint")
    return {"settings": settings, "seed": config.seed, "cases": sorted(case_ids), "register": register}


def stage_train_inpainter(run: RunFolder, config: Config, device: str | None = None, resume: bool | None = None,
                          init_from: str | Path | None = None) -> Path:
    """``train-inpainter``: train the FFC inpainter on the registered train + validation cases.

    ``resume=None`` (the pipeline) continues an interrupted training of the same settings and
    skips a finished one; ``True`` continues whatever state the model folder holds; ``False``
    starts over. Returns the model folder.
    """
    from diff4mmlits.inpaint.train import train_inpainter

    folder = run.model_dir(INPAINTER_MODEL)
    if config.inpaint.method != "ffc" and init_from is None and resume is None:
        log.info("train-inpainter: inpaint.method is %s, no network to train", config.inpaint.method)
        return folder
    available = set(registered_case_ids(run))
    train_ids = [c for c in run.split("train") + run.split("validation") if c in available]
    if not train_ids:
        raise InputError("no registered train or validation case to train the inpainter on", run.registered_dir)
    monitor_ids = [c for c in run.split("validation") if c in available] or train_ids
    key = training_key(config, run, train_ids)
    saved = read_model_config(folder) if (folder / "config.json").is_file() else None
    same = saved is not None and saved.get("training_key") == key
    if resume is None:
        if same and saved.get("steps_done", 0) >= config.inpaint.steps and (folder / WEIGHTS_NAME).is_file():
            log.info("train-inpainter: %s is up to date (%d steps)", folder, saved["steps_done"])
            return folder
        resume = same
    cases = read_registered_cases(run, train_ids)
    monitor = [case for case in cases if case.case_id in monitor_ids]
    train_inpainter(cases, config, folder, monitor_cases=monitor, device=device, resume=resume, init_from=init_from,
                    extra_config={"training_key": key})
    return folder


def write_normal_case(case: Case, folder: Path) -> Path:
    """Write a normal case folder atomically: into a hidden temporary folder, then renamed into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    write_case_folder(case, tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def stage_inpaint(run: RunFolder, config: Config, method: str | None = None, device: str | None = None) -> list[Path]:
    """``inpaint``: write ``RUN/normal/<case>/`` for every registered case, and the report figure."""
    from diff4mmlits.progress import progress

    method = method or config.inpaint.method
    if method not in METHODS:
        raise InputError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    model = load_inpainter(run, config, device) if method == "ffc" else None
    written = []
    case_ids = registered_case_ids(run)
    for case_id in progress(case_ids, desc=f"inpaint ({method})", unit="case"):
        (case,) = read_registered_cases(run, [case_id])
        written.append(write_normal_case(inpaint_case(case, method, model, config), run.normal_dir / case_id))
    figure_ids = [c for c in run.split("test") if c in case_ids] or case_ids
    from diff4mmlits.inpaint.figures import save_inpaint_figure

    (case,) = read_registered_cases(run, figure_ids[:1])
    save_inpaint_figure(case, run.figures_dir / f"inpaint_{case.case_id}.png", config,
                        model if model is not None else _optional_inpainter(run, config, device))
    return written


def load_inpainter(run: RunFolder, config: Config, device: str | None = None) -> Inpainter:
    """The run's trained inpainter (``RUN/models/inpainter``)."""
    folder = run.model_dir(INPAINTER_MODEL)
    if not (folder / WEIGHTS_NAME).is_file():
        raise InputError("no trained inpainter; run 'diff4mmlits train-inpainter --run RUN' first "
                         "or choose --method median", folder)
    return Inpainter.load(folder, device or config.device, config.inpaint.inference_batch_size)


def _optional_inpainter(run: RunFolder, config: Config, device: str | None) -> Inpainter | None:
    folder = run.model_dir(INPAINTER_MODEL)
    return load_inpainter(run, config, device) if (folder / WEIGHTS_NAME).is_file() else None
