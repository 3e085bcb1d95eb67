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
from collections.abc import Sequence
from pathlib import Path

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.checkpoint import CONFIG_NAME, WEIGHTS_NAME, read_model_config
from diff4mmlits.config import Config
from diff4mmlits.data.case import Case
from diff4mmlits.errors import InputError
from diff4mmlits.inpaint.case import METHODS, inpaint_case
from diff4mmlits.inpaint.figures import save_inpaint_figure
from diff4mmlits.inpaint.infer import Inpainter
from diff4mmlits.inpaint.network import MODEL_KIND
from diff4mmlits.inpaint.report import section_inpaint
from diff4mmlits.inpaint.train import train_inpainter
from diff4mmlits.progress import progress
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.stage import Stage

log = logging.getLogger(__name__)

TRAINING_ONLY = {"steps", "log_every_steps", "checkpoint_every_steps", "monitor_slices"}
"""Settings that do not change what one training step does (more steps continue a run)."""
INFERENCE_ONLY = {"method", "inference_batch_size", "median_kernel_vox", "mean_fill_noise"}
"""Settings that only matter when inpainting: changing them never retrains."""


# --- run-folder I/O -----------------------------------------------------------------------------
def training_key(config: Config, run: RunFolder, case_ids: Sequence[str]) -> dict:
    """What a trained inpainter depends on: its settings (not the inference ones), seed, cases, registration."""
    settings = {k: v for k, v in config.inpaint.model_dump(mode="json").items() if k not in TRAINING_ONLY | INFERENCE_ONLY}
    register = (run.read_stamp("register") or {}).get("fingerprint")
    return {"settings": settings, "seed": config.seed, "cases": sorted(case_ids), "register": register}


def check_init_from(run: RunFolder, config: Config, init_from: str | Path | None = None, **options: object) -> None:
    """``--init-from`` names an inpainter's model folder (checked before the stage clears its stamp)."""
    if init_from is None:
        return
    if not Path(init_from).is_dir():
        raise InputError("--init-from: not a folder; give a model folder with config.json and weights.safetensors", init_from)
    read_model_config(init_from, kind=MODEL_KIND)


def stage_train_inpainter(run: RunFolder, config: Config, device: str | None = None, resume: bool | None = None,
                          init_from: str | Path | None = None) -> Path:
    """``train-inpainter``: train the FFC inpainter on the registered train + validation cases.

    ``resume=None`` (the pipeline) continues an interrupted training of the same settings and
    skips a finished one; ``True`` continues whatever state the model folder holds; ``False``
    starts over. Returns the model folder.
    """
    folder = run.inpainter_dir
    if config.inpaint.method != "ffc" and init_from is None and resume is None:
        log.info("train-inpainter: inpaint.method is %s, no network to train", config.inpaint.method)
        return folder
    train_ids = run.case_ids(("train", "validation"))
    if not train_ids:
        raise InputError("no train or validation case to train the inpainter on", run.manifest_path)
    monitor_ids = run.case_ids("validation") or train_ids
    key = training_key(config, run, train_ids)
    saved = read_model_config(folder) if (folder / CONFIG_NAME).is_file() else None
    same = saved is not None and saved.get("training_key") == key
    if resume is None:
        if same and saved.get("steps_done", 0) >= config.inpaint.steps and (folder / WEIGHTS_NAME).is_file():
            log.info("train-inpainter: %s is up to date (%d steps)", folder, saved["steps_done"])
            return folder
        resume = same
    cases = run.read_cases("registered", ("train", "validation"))
    monitor = [case for case in cases if case.case_id in monitor_ids]
    train_inpainter(cases, config, folder, monitor_cases=monitor, device=device, resume=resume, init_from=init_from,
                    extra_config={"training_key": key})
    return folder


def _case_with_tumor(run: RunFolder, case_ids: list[str]) -> Case:
    """The first registered case (test cases first) with a tumor to inpaint, else the first case:
    the figure shows something."""
    for case_id in case_ids:
        case = run.read_case("registered", case_id)
        if case.label is not None and (case.label.array == LABEL_TUMOR).any():
            return case
    return run.read_case("registered", case_ids[0])


def stage_inpaint(run: RunFolder, config: Config, device: str | None = None) -> list[Path]:
    """``inpaint``: write ``RUN/normal/<case>/`` for every registered case (method ``inpaint.method``),
    and the report figure."""
    method = config.inpaint.method
    if method not in METHODS:
        raise InputError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    model = load_inpainter(run, config, device) if method == "ffc" else None
    case_ids = run.case_ids()
    written = []
    for case_id in progress(case_ids, desc=f"inpaint ({method})", unit="case"):
        case = run.read_case("registered", case_id)
        written.append(run.write_case("normal", inpaint_case(case, method, model, config)))
    test_ids = run.case_ids("test")
    shown = _case_with_tumor(run, test_ids + [c for c in case_ids if c not in test_ids])
    save_inpaint_figure(shown, run.figures_dir / f"inpaint_{shown.case_id}.png", config,
                        model if model is not None else _optional_inpainter(run, config, device))
    return written


def load_inpainter(run: RunFolder, config: Config, device: str | None = None) -> Inpainter:
    """The run's trained inpainter (``RUN/models/inpainter``)."""
    folder = run.inpainter_dir
    if not (folder / WEIGHTS_NAME).is_file():
        raise InputError("no trained inpainter; run 'diff4mmlits train-inpainter --run RUN' first "
                         "or choose --method median", folder)
    return Inpainter.load(folder, device or config.device, config.inpaint.inference_batch_size)


def _optional_inpainter(run: RunFolder, config: Config, device: str | None) -> Inpainter | None:
    folder = run.inpainter_dir
    return load_inpainter(run, config, device) if (folder / WEIGHTS_NAME).is_file() else None


def _needs_trained_inpainter(config: Config) -> tuple[str, ...]:
    return ("train-inpainter", "register") if config.inpaint.method == "ffc" else ("register",)


STAGES: list[Stage] = [
    Stage("train-inpainter", "the FFC inpainter trained on the registered cases (models/inpainter/)",
          stage_train_inpainter, ("inpaint",), ("register",), check=check_init_from),
    Stage("inpaint", "tumor-free normal CT of every phase (normal/)", stage_inpaint, ("inpaint",),
          ("train-inpainter", "register"), needs=_needs_trained_inpainter, report=section_inpaint, outputs=("normal",)),
]
