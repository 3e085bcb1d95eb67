"""The command line: one command a stage, plus ``run`` (every stage) and ``demo`` (the phantom).

A thin typer layer over the Python API: arguments are checked, the API is called with keyword
arguments, and the location of the outputs is printed at the end. Bad input (an
:class:`~diff4mmlits.errors.InputError`) is one line on stderr and exit status 2; an environment
error (a full disk, a read-only or forbidden folder) one line and exit status 3; another command
writing the same run folder one line and exit status 2; Ctrl-C one line and 130; any other error
is a bug, shown as one line naming the log file that holds its traceback (exit status 1).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from diff4mmlits import PHASES
from diff4mmlits.distributed import is_main_process
from diff4mmlits.errors import InputError, StorageError
from diff4mmlits.files import PATH_ERRNOS, STORAGE_ERRNOS, describe_os_error, describe_path_error
from diff4mmlits.runlock import run_folder_lock

app = typer.Typer(
    name="diff4mmlits",
    help=(
        "Multi-phase liver-tumor segmentation in CT (Diff4MMLiTS): register the phases, inpaint "
        "the tumors away, synthesize aligned tumors with latent diffusion, train a 4-phase "
        "segmenter on real plus synthetic cases, evaluate.\n\n"
        "Start with 'diff4mmlits demo' (the built-in phantom) or "
        "'diff4mmlits run DATASET --run runs/NAME' on your own data."
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

log = logging.getLogger("diff4mmlits")

# Shared option types -------------------------------------------------------------------------
NewRunOption = Annotated[Path, typer.Option("--run", help="Run folder (created if needed), e.g. runs/demo.")]
RunOption = Annotated[Path, typer.Option("--run", help="Run folder that 'register' or 'run' made, e.g. runs/demo.")]
PresetOption = Annotated[str, typer.Option("--preset", help="smoke (seconds, tests), demo (minutes on a CPU), bench (the demo trained longer, for benchmarks) or paper (the paper's settings, GPU).")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="YAML file of settings (sections as in RUN/config.yaml).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override one setting, e.g. --set segment.epochs=3 (repeatable).")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (default: the config's, auto).")]


def _setup_logging(verbose: bool = False) -> Callable[[], None]:
    """Log diff4mmlits messages to stderr; return a function that puts the previous set-up back
    (so that calling :func:`main` in-process, as tests do, leaves no handler on a closed stream)."""
    level = logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("diff4mmlits")
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False

    def restore() -> None:
        root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]

    return restore


def _log_file_for_crash() -> Path:
    folder = Path(tempfile.gettempdir()) / "diff4mmlits-logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def _run_stage_command(name: str, run_dir: Path, device: str | None = None, overrides: list[str] | None = None,
                       **options: Any) -> tuple[Any, Any, Any]:
    """A stage command: reopen the run folder (``--set``/``--device`` applied, not saved), then run the
    stage through :func:`~diff4mmlits.stage.run_stage`, which clears its stamp first and stamps it
    when it finished, so that ``diff4mmlits run`` knows it is up to date. Returns (run, config, result)."""
    from diff4mmlits.ingest import open_run
    from diff4mmlits.pipeline import get_stage, run_stage

    if not Path(run_dir).is_dir():  # open_run says what is missing; taking the lock would create the folder
        open_run(run_dir, overrides=list(overrides or []), device=device)
    with run_folder_lock(run_dir):
        folder, config = open_run(run_dir, overrides=list(overrides or []), device=device)
        outcome = run_stage(folder, get_stage(name), config, force=True, **options)
    return folder, config, outcome.result


@contextlib.contextmanager
def _named_as_option(option: str, setting: str) -> Iterator[None]:
    """An option that stands for one setting: its error names the option the user typed."""
    try:
        yield
    except InputError as err:
        if f"setting '{setting}'" not in err.message:
            raise
        reason = err.message.split(f"setting '{setting}': ", 1)[-1].split("; see docs/presets.md")[0]
        raise InputError(f"{option}: {reason}") from None


@contextlib.contextmanager
def _removed_when_refused(run_dir: Path) -> Iterator[None]:
    """A run folder this command creates is removed again when the command stops on bad input before
    it wrote more than its configuration (``train-translator`` saves that first, then reads the data)."""
    from diff4mmlits.files import missing_folders, remove_empty_folders
    from diff4mmlits.runfolder import CONFIG_FILE

    made = missing_folders(run_dir)
    try:
        yield
    except InputError:
        leftovers = {p.name for p in Path(run_dir).iterdir()} if Path(run_dir).is_dir() else set()
        stamps = Path(run_dir) / ".stages"
        if made and leftovers <= {CONFIG_FILE, ".stages"} and not (stamps.is_dir() and any(stamps.iterdir())):
            shutil.rmtree(run_dir, ignore_errors=True)
            remove_empty_folders(made)
        raise


def _choices(option: str, value: str | None, setting: str) -> None:
    """Check an option against the choices the config declares for ``setting`` (``section.field``)."""
    from diff4mmlits.config import setting_choices

    allowed = setting_choices(setting)
    if value is not None and value not in allowed:
        raise InputError(f"{option} {value!r}: choose one of {', '.join(allowed)}")


def _print_version(value: bool) -> None:
    if value:
        from diff4mmlits import __version__

        typer.echo(f"diff4mmlits {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors: no progress, no log lines (also DIFF4MMLITS_NO_PROGRESS=1 for progress alone).")] = False,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Cores to compute with: worker processes for independent cases and phases, torch threads for one big computation. Default: DIFF4MMLITS_THREADS or OMP_NUM_THREADS when set, else the cores this process may use less those other processes keep busy.")] = None,
) -> None:
    """Options for every command, written before it: diff4mmlits --quiet --threads 2 run …"""
    from diff4mmlits.threads import apply_threads

    if quiet:
        logging.getLogger("diff4mmlits").setLevel(logging.WARNING)
        os.environ["DIFF4MMLITS_NO_PROGRESS"] = "1"
    apply_threads(threads)


# --- data ------------------------------------------------------------------------------------
@app.command()
def phantom(
    out: Annotated[Path, typer.Argument(help="Folder to write the phantom dataset into (native layout + _truth/).")],
    cases: Annotated[int, typer.Option("--cases", min=1, help="Number of cases.")] = 8,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed; the same seed gives the same files.")] = 0,
    site: Annotated[str, typer.Option("--site", help="default; second: other noise, blur, slice thickness and contrast timing; third: thick slices, wide field of view (out-of-distribution tests).")] = "default",
    size: Annotated[int, typer.Option("--size", min=16, help="In-plane size in voxels (the volume is size × size × 0.75·size slices; fewer, thicker slices for --site second).")] = 64,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Cases generated in parallel (processes; default: the thread budget, see --threads). A case does not depend on it.")] = None,
    patients: Annotated[str | None, typer.Option("--patients", help="Scan another site's patients with --site's scanner: e.g. --site second --patients default gives the default site's cases (same anatomy, tumors of the same kinds and sizes) as the second site images them, so an out-of-distribution test measures the site alone.")] = None,
    modality: Annotated[str, typer.Option("--modality", help="ct (four phases), or mri: the same anatomy as a T1 post-contrast-like MRI study (PVP.nii.gz + label), for train-translator; use another --seed than the CT set so the patients differ.")] = "ct",
    healthy: Annotated[int, typer.Option("--healthy", min=0, help="Also write this many healthy scans (healthy_000…: other patients without tumors, label liver only) to paint synthetic tumors into: run with --set data.healthy_cases=healthy_*.")] = 0,
    slice_mm: Annotated[float | None, typer.Option("--slice-mm", help="Slice spacing in mm whatever --size (e.g. --site third --size 256 --slice-mm 10: thick slices at a clinical pixel). Default: the site's, which scales with the pixel (at size 64: 3.75 mm default, 6 mm second, 10 mm third).")] = None,
) -> None:
    """Write the built-in four-phase phantom: misaligned phases, PVP labels and per-phase truth."""
    from diff4mmlits.data.phantom import SITES, TRUTH_FOLDER, write_phantom_dataset

    if site not in SITES:
        raise InputError(f"--site {site!r}: choose one of {', '.join(SITES)}")
    if modality not in ("ct", "mri"):
        raise InputError(f"--modality {modality!r}: choose ct or mri")
    if patients is not None and patients not in SITES:
        raise InputError(f"--patients {patients!r}: choose one of {', '.join(SITES)}")
    if patients is not None and modality == "mri":
        raise InputError("--patients is for the CT phantom; the MRI phantom draws its own patients (use --seed)")
    if healthy and modality == "mri":
        raise InputError("--healthy is for the CT phantom; the MRI phantom is for train-translator")
    if slice_mm is not None and modality == "mri":
        raise InputError("--slice-mm is for the CT phantom; the MRI phantom keeps its site's slices")
    start = time.time()
    if modality == "mri":
        from diff4mmlits.data.phantom.mri import write_mri_phantom_dataset

        write_mri_phantom_dataset(out, cases=cases, seed=seed, site=site, size=size)
        typer.echo(f"phantom: {cases} MRI-like case(s) ({site} site, size {size}) written in {time.time() - start:.1f} s")
        typer.echo(f"  dataset: {out}   (<case>/PVP.nii.gz: T1 post-contrast-like image, label.nii.gz)")
        return
    from diff4mmlits.threads import worker_processes

    write_phantom_dataset(out, cases=cases, seed=seed, site=site, size=size,
                          workers=workers or worker_processes(jobs=cases + healthy), patients=patients, healthy=healthy,
                          slice_mm=slice_mm)
    whose = f", the {patients} site's patients" if patients else ""
    scans = f" and {healthy} healthy scan(s)" if healthy else ""
    slices = f", {slice_mm:g} mm slices" if slice_mm is not None else ""
    typer.echo(f"phantom: {cases} case(s){scans} ({site} site{whose}, size {size}{slices}) written in {time.time() - start:.1f} s")
    typer.echo(f"  dataset: {out}   (<case>/{{NC,AP,PVP,DP}}.nii.gz, label.nii.gz)")
    if healthy:
        typer.echo("  healthy scans: paint into them with 'diff4mmlits run DATASET --set data.healthy_cases=healthy_*'")
    typer.echo(f"  truth:   {out / TRUTH_FOLDER}   (per-phase labels, tumor-free images, displacement fields, tumors.json)")


@app.command()
def validate(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (native, nnU-Net v2 raw or LiTS / MSD layout).")],
    phase: Annotated[str, typer.Option("--annotated-phase", help="The phase the labels are drawn on: NC, AP, PVP or DP (names such as arterial or portal-venous are understood).")] = "PVP",
    unlabelled: Annotated[bool, typer.Option("--unlabelled", help="Cases without a label are fine (prediction input).")] = False,
) -> None:
    """Check a dataset before using it: prints a table of its cases and one line per problem (the
    file, what is wrong, what to do). Writes nothing. Exit status 0 when clean (warnings allowed),
    2 when any error was found."""
    from diff4mmlits.data.native import canonical_phase_name
    from diff4mmlits.data.validate import validate_dataset

    annotated = canonical_phase_name(phase)
    if annotated is None:
        raise InputError(f"--annotated-phase {phase!r}: not a phase; use NC, AP, PVP or DP (or a name such as arterial)")
    report = validate_dataset(dataset, annotated_phase=annotated, require_label=not unlabelled)
    if report.rows:
        header = f"{'case':<20} {'phases':<16} {'shape (z,y,x)':<16} {'spacing (mm)':<20} {'labels':<8} {'liver mL':>9} {'tumor mL':>9}"
        typer.echo(header)
        for row in report.rows:
            typer.echo(
                f"{row.case_id:<20} {','.join(row.phases):<16} {'x'.join(map(str, row.shape)):<16} "
                f"{'x'.join(f'{s:.3g}' for s in row.spacing_mm):<20} {','.join(map(str, row.label_classes)):<8} "
                f"{row.liver_ml:>9.1f} {row.tumor_ml:>9.2f}"
            )
    for problem in report.problems:
        typer.echo(str(problem), err=True)
    n_err, n_warn = len(report.errors), len(report.warnings)
    typer.echo(f"{dataset}: {len(report.rows)} case(s) read; {n_err} error(s), {n_warn} warning(s)")
    if n_err:
        raise typer.Exit(2)


@app.command("export-nnunet")
def export_nnunet(
    paths: Annotated[list[Path], typer.Argument(metavar="[SOURCE...] OUT", help="Dataset folder(s) in any layout whose cases are exported together, then the nnU-Net raw folder (nnUNet_raw; the dataset goes into OUT/DatasetNNN_NAME). With --run, only OUT.", show_default=False)],
    dataset_id: Annotated[int, typer.Option("--dataset-id", help="nnU-Net dataset id, 1-999 (custom datasets usually ≥ 500).")],
    run_dir: Annotated[Path | None, typer.Option("--run", help="Export a run folder: its registered cases (the test split to imagesTs) and synthetic cases, with splits_final.json keeping each patient's synthetic copies out of that patient's validation fold.")] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Folds of splits_final.json (nnU-Net's default is 5).")] = 5,
    name: Annotated[str, typer.Option("--name", help="Dataset name (letters, digits, '-', '_').")] = "Diff4MMLiTS",
    channel_names: Annotated[str, typer.Option("--channel-names", help="ct: every channel named CT, so nnU-Net uses its CT normalisation (phases kept in channel_phases); phases: channels named NC, AP, PVP, DP (nnU-Net then z-scores them).")] = "ct",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset of the same id and name.")] = False,
) -> None:
    """Export cases as an nnU-Net v2 raw dataset (channels in the order NC, AP, PVP, DP; labels
    background 0, liver 1, tumor 2), so nnU-Net itself can train on them. Each source is validated
    first; every case must have its phases on one grid (export RUN/registered, not raw scans).
    Cases without a label go to imagesTs."""
    from diff4mmlits.data.dataset import load_dataset
    from diff4mmlits.data.nnunet import SPLITS_FILE, export_nnunet_dataset
    from diff4mmlits.data.validate import validate_dataset

    if channel_names not in ("ct", "phases"):
        raise InputError(f"--channel-names {channel_names!r}: choose ct or phases")
    *sources, out = paths
    if out in sources:
        raise InputError("OUT is also a source; give the nnU-Net raw folder as the last argument", out)
    from diff4mmlits.files import refuse_output_in_input

    for source in sources:  # OUT inside a source's case folder was written and then read as a phase
        refuse_output_in_input(source, out, "the nnU-Net dataset", names=("OUT", "SOURCE"))
    if run_dir is None and not sources:
        raise InputError("give the dataset folder(s) to export and then OUT, or --run RUN and OUT")
    cases, options = [], {}
    for source in sources:
        validate_dataset(source, require_label=False).raise_for_errors()
        cases += load_dataset(source, require_label=False)
    if run_dir is not None:
        cases, options = _run_export_cases(run_dir, cases)
    target = export_nnunet_dataset(cases, out, dataset_id=dataset_id, name=name, channel_names=channel_names,  # type: ignore[arg-type]
                                   overwrite=overwrite, folds=folds, **options)
    test = set(options.get("test", ())) | {c.case_id for c in cases if c.label is None}
    typer.echo(f"export-nnunet: {len(cases) - len(test)} training and {len(test)} test case(s) written to {target}")
    if (target / SPLITS_FILE).is_file():
        typer.echo(f"  {SPLITS_FILE}: patient-grouped folds; after nnUNetv2_plan_and_preprocess copy it to "
                   f"$nnUNet_preprocessed/{target.name}/ so that nnU-Net uses it")
    typer.echo(f"  train it with: nnUNetv2_plan_and_preprocess -d {dataset_id} && nnUNetv2_train {dataset_id} 3d_fullres 0")


def _run_export_cases(run_dir: Path, extra: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """A run folder's registered cases (all splits; not its healthy scans, which are only painted into)
    and synthetic cases, with patients and the test split."""
    from diff4mmlits.runfolder import RunFolder

    run = RunFolder(run_dir)
    if not run.exists():
        raise InputError("not a run folder (no config.yaml); give the folder 'diff4mmlits run' wrote", run_dir)
    healthy = set(run.split("healthy")) if run.manifest_path.is_file() else set()
    registered = [c for c in run.read_cases("registered", require_label=False) if c.case_id not in healthy]
    synthetic_ids = run.complete_case_ids("synthetic") if run.area_dir("synthetic").is_dir() else []
    synthetic = [run.read_case("synthetic", case_id) for case_id in synthetic_ids]
    patients = {case_id: run.case_source("synthetic", case_id) or case_id for case_id in synthetic_ids}
    return extra + registered + synthetic, {"patients": patients, "synthetic": synthetic_ids, "test": run.split("test")}


@app.command("export-model")
def export_model_command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="A model folder, e.g. runs/NAME/models/segmenter.")],
    out: Annotated[Path, typer.Argument(metavar="OUT.zip", help="The zip to write.")],
) -> None:
    """Pack a model folder into one zip (version, config, plan, weights and a checksum of every file) to share it."""
    from diff4mmlits.modelzip import export_model

    path = export_model(model, out)
    typer.echo(f"export-model: {model} written to {path} ({path.stat().st_size / 2**20:.1f} MB); "
               f"unpack it with: diff4mmlits import-model {path} DIR")


@app.command("import-model")
def import_model_command(
    zip_path: Annotated[Path, typer.Argument(metavar="MODEL.zip", help="A zip written by export-model.")],
    out: Annotated[Path, typer.Argument(metavar="DIR", help="The new model folder (must not exist, or be empty).")],
) -> None:
    """Unpack a model zip after checking every file's checksum; a changed or damaged zip is refused."""
    from diff4mmlits.modelzip import import_model

    folder = import_model(zip_path, out)
    typer.echo(f"import-model: {zip_path} checked and unpacked into {folder}; use it with --model {folder}")


@app.command("config")
def show_config(
    preset: PresetOption = "demo",
    config_file: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Print the fully resolved configuration (preset + file + --set) as YAML."""
    from diff4mmlits.config import config_to_yaml, resolve_config

    typer.echo(config_to_yaml(resolve_config(preset, config_file, list(overrides or []))), nl=False)


# --- 1. register ------------------------------------------------------------------------------
@app.command()
def register(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (native, nnU-Net v2 raw or LiTS layout).")],
    run_dir: NewRunOption = Path("runs/default"),
    method: Annotated[str | None, typer.Option("--method", help="none (only resample onto the PVP grid); rigid, affine or bspline (the SimpleITK chain; default: the config's, bspline); elastix (needs itk-elastix); convexadam (needs convexadam).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Cases registered in parallel processes (default: the config's workers; 0 there means the thread budget, see --threads: at most 4, or more where the memory holds 3 GiB per case).")] = None,
    shard: Annotated[str | None, typer.Option("--shard", help="Only shard I of N of the cases, e.g. 2/4 (to split the work across machines).")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="For a new run folder: smoke, demo (default), bench or paper.")] = None,
    config_file: ConfigOption = None,
    overrides: SetOption = None,
    force: Annotated[bool, typer.Option("--force", help="Register cases even when their outputs are up to date.")] = False,
) -> None:
    """Register every phase onto the annotated phase (liver-focused) and resample it onto that grid.

    Writes RUN/registered/<case>/: <PHASE>.nii.gz, label.nii.gz, <PHASE>.tfm (ITK transforms that
    3D Slicer opens; <PHASE>.h5 for convexadam's displacement fields), qc.json and qc.png. Creates the run folder when it does not exist yet.
    """
    from diff4mmlits.distributed import parse_shard
    from diff4mmlits.ingest import open_run, refuse_run_in_dataset
    from diff4mmlits.pipeline import get_stage, run_stage
    from diff4mmlits.runfolder import RunFolder

    _choices("--method", method, "register.method")
    shard_index, shard_count = parse_shard(shard)
    extra = list(overrides or []) + ([f"register.method={method}"] if method else [])
    refuse_run_in_dataset(dataset, RunFolder(run_dir))
    # shards of one run folder run at once on several machines, each on its own cases: no lock
    lock = run_folder_lock(run_dir) if shard_count == 1 else contextlib.nullcontext()
    with lock:
        folder, config = open_run(run_dir, dataset=dataset, preset=preset, config_file=config_file, overrides=extra,
                                  save=True)
        start = time.time()
        summaries = run_stage(folder, get_stage("register"), config, force=True, lock=shard_count == 1,
                              shard=(shard_index, shard_count), workers=workers, force_cases=force).result
    done = [s for s in summaries if not s.get("skipped")]
    skipped = len(summaries) - len(done)
    note = f", {skipped} up to date" if skipped else ""
    part = f" (shard {shard_index}/{shard_count})" if shard_count > 1 else ""
    typer.echo(f"register: {len(done)} case(s) registered{part}{note} in {time.time() - start:.1f} s; "
               f"outputs in {folder.registered_dir}")


# --- 2. inpaint (Normal CT Generator) -------------------------------------------------------------
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue an interrupted training from its last checkpoint.")]


@app.command("train-inpainter")
def train_inpainter(
    run_dir: RunOption,
    device: DeviceOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the training saved in RUN/models/inpainter (after an interruption, or with more steps).")] = False,
    init_from: Annotated[Path | None, typer.Option("--init-from", help="Start from the weights of this local model folder (config.json + weights.safetensors), e.g. a pre-trained inpainter.")] = None,
    overrides: SetOption = None,
) -> None:
    """Train the FFC inpainter (LaMa-style) on the run's registered train and validation cases."""
    _, _, folder = _run_stage_command("train-inpainter", run_dir, device, overrides, resume=resume, init_from=init_from)
    if is_main_process():
        typer.echo(f"train-inpainter: model, log.csv and curves.png in {folder}")


@app.command()
def inpaint(
    run_dir: RunOption,
    method: Annotated[str | None, typer.Option("--method", help="ffc (the trained inpainter, default), median (the paper's median-filter ablation) or mean-fill (liver mean + noise).")] = None,
    device: DeviceOption = None,
    overrides: SetOption = None,
) -> None:
    """Remove the tumors from every phase of every registered case: writes RUN/normal/<case>/."""
    _choices("--method", method, "inpaint.method")
    extra = list(overrides or []) + ([f"inpaint.method={method}"] if method else [])
    folder, config, _ = _run_stage_command("inpaint", run_dir, device, extra)
    typer.echo(f"inpaint ({config.inpaint.method}): normal cases in {folder.normal_dir}; figure in {folder.figures_dir}")


# --- 3. synthesize (Multimodal CT Synthesizer) ----------------------------------------------------
ModeOption = Annotated[str | None, typer.Option("--mode", help="profile: phases synthesized one by one from the same mask and noise, each told the tumor's enhancement in that phase (the default); paper: the same without the enhancement (the paper, for the ablation); joint: all phases denoised together. Default: the config's diffusion.mode.")]


def parse_profile(text: str) -> dict[str, float]:
    """``"NC=-10,AP=40,PVP=-5,DP=-20"`` → ``{"NC": -10.0, …}`` (tumor − liver, HU); one clear line when malformed."""
    profile = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip().upper()
        try:
            number = float(value)
        except ValueError:
            number = None
        if name not in PHASES or number is None:
            raise InputError(f"--profile {text!r}: give PHASE=HU pairs, e.g. NC=-10,AP=40,PVP=-5,DP=-20 (phases {', '.join(PHASES)})")
        profile[name] = number
    if not profile:
        raise InputError("--profile: give at least one PHASE=HU pair, e.g. AP=40")
    return profile


@app.command("train-autoencoder")
def train_autoencoder_command(
    run_dir: RunOption,
    device: DeviceOption = None,
    resume: ResumeOption = False,
    overrides: SetOption = None,
) -> None:
    """Train the synthesizer's autoencoder (VQ-VAE + patch discriminator) on the normal CT of the training cases."""
    folder, _, metrics = _run_stage_command("train-autoencoder", run_dir, device, overrides, resume=resume)
    if metrics:
        typer.echo(f"train-autoencoder: reconstruction MAE {metrics['mae_liver_hu']:.1f} HU in the liver, "
                   f"PSNR {metrics['psnr_db']:.1f} dB; model in {folder.autoencoder_dir}")


@app.command("train-synthesizer")
def train_synthesizer_command(
    run_dir: RunOption,
    mode: ModeOption = None,
    device: DeviceOption = None,
    resume: ResumeOption = False,
    overrides: SetOption = None,
) -> None:
    """Train the latent diffusion tumor synthesizer on crops around the real tumors of the training cases."""
    _choices("--mode", mode, "diffusion.mode")
    extra = list(overrides or []) + ([f"diffusion.mode={mode}"] if mode else [])
    folder, config, metrics = _run_stage_command("train-synthesizer", run_dir, device, extra, resume=resume)
    if metrics:
        typer.echo(f"train-synthesizer: loss {metrics['evaluation_loss_initial']:.4f} → {metrics['evaluation_loss_final']:.4f}; "
                   f"model in {folder.diffusion_dir(config.diffusion.mode)}")


@app.command()
def synthesize(
    run_dir: RunOption,
    per_case: Annotated[int | None, typer.Option("--per-case", min=1, help="Synthetic cases per training case (default: the config's).")] = None,
    method: Annotated[str | None, typer.Option("--method", help="ldm (latent diffusion, the paper), handcrafted (rule-based baseline) or cut (CUT-GAN, the paper's Table V baseline; train it with train-translator --painter). Default: the config's.")] = None,
    mode: ModeOption = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Paint every tumor with this enhancement (tumor − liver, HU per phase), e.g. NC=-10,AP=40,PVP=-5,DP=-20 for a hyper-enhancing lesion with washout. Default: each tumor takes a real training tumor's profile.")] = None,
    device: DeviceOption = None,
    overrides: SetOption = None,
) -> None:
    """Paint random tumors into the normal CT of the training cases: RUN/synthetic/<case>_s<NNN>/."""
    _choices("--method", method, "synthesize.method")
    _choices("--mode", mode, "diffusion.mode")
    extra = list(overrides or [])
    if profile is not None:
        extra.append(f"synthesize.profile_hu={json.dumps(parse_profile(profile))}")
    for key, value in (("synthesize.method", method), ("diffusion.mode", mode), ("synthesize.per_case", per_case)):
        if value is not None:
            extra.append(f"{key}={value}")
    folder, _, summary = _run_stage_command("synthesize", run_dir, device, extra)
    if summary:
        typer.echo(f"synthesize: {summary['cases']} case(s) in {folder.synthetic_dir} "
                   f"({summary['seconds_per_case']:.2f} s per case); figures in {folder.figures_dir}")


# --- 4. segment and 5. evaluate ---------------------------------------------------------------------
@app.command()
def train(
    run_dir: RunOption,
    backbone: Annotated[str | None, typer.Option("--backbone", help="dynunet (nnU-Net style, default), unet, attention-unet, segresnet, swin-unetr or vnet.")] = None,
    synthetic: Annotated[str | None, typer.Option("--synthetic", help="none (real cases only), offline (RUN/synthetic/) or on-the-fly (painted into the normal CT while training).")] = None,
    synthetic_ratio: Annotated[float | None, typer.Option("--synthetic-ratio", min=0.0, max=1.0, help="Share of training samples that are synthetic, 0 to 1 (default: the config's, 0.5).")] = None,
    phases: Annotated[str | None, typer.Option("--phases", help="Phases the model sees, e.g. NC,AP,PVP,DP or PVP (the unimodal baseline); the others are filled by duplication (default: the config's, all four).")] = None,
    cascade: Annotated[str | None, typer.Option("--cascade", help="on: the liver-region cascade (stage one finds the liver coarsely, stage two segments liver and tumor in its box at a fine spacing; the default); off: one model on the whole volume.")] = None,
    device: DeviceOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted training from its last checkpoint.")] = False,
    overrides: SetOption = None,
) -> None:
    """Train the 4-phase tumor segmenter on the run's registered cases plus synthetic ones.

    Writes RUN/models/segmenter/: the plan (plan.json, also printed), weights (best and last),
    the training log (log.csv) and its curves (curves.png); with the cascade (default) stage one's
    liver model in RUN/models/segmenter/liver/, the same files. Several GPUs:
    torchrun --nproc_per_node N -m diff4mmlits.cli -- train --run RUN --device cuda
    """
    _choices("--backbone", backbone, "segment.backbone")
    if cascade is not None and cascade not in ("on", "off"):
        raise InputError(f"--cascade {cascade!r}: choose on or off")
    _choices("--synthetic", synthetic, "segment.synthetic")
    if synthetic == "none" and synthetic_ratio:
        raise InputError(f"--synthetic-ratio {synthetic_ratio:g} with --synthetic none: no synthetic case to mix in; "
                         "drop one of them")
    extra = list(overrides or [])
    if cascade is not None:
        extra.append(f"segment.cascade={cascade == 'on'}")
    given = {key: value for key, value in (("backbone", backbone), ("synthetic", synthetic),
                                           ("synthetic_ratio", synthetic_ratio), ("phases", phases)) if value is not None}
    extra += [f"segment.{key}={value}" for key, value in given.items()]
    with contextlib.ExitStack() as named:
        for key in given:  # their errors name the option typed, not "--set: setting 'segment.…'"
            named.enter_context(_named_as_option(f"--{key.replace('_', '-')}", f"segment.{key}"))
        folder, _, result = _run_stage_command("train", run_dir, device, extra, resume=resume, echo=typer.echo)
    if is_main_process():
        typer.echo(f"train: model in {folder.segmenter_dir} ({result.epochs_done} epochs; log.csv, curves.png, plan.json)")


@app.command()
def predict(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="An image file (read as the annotated phase), a DICOM series folder, a case folder (PVP.nii.gz, AP.nii.gz…; any subset of phases), a folder of single scans (files named by patient, not by phase: one case each) or a dataset of any layout; registered here if needed.")],
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", help="Folder for the labels, one <case>.nii.gz per case; or one file name ending in .nii.gz / .nii for a single case.")],
    model: Annotated[Path, typer.Option("--model", help="Trained segmenter folder, e.g. runs/NAME/models/segmenter.")],
    device: DeviceOption = None,
    tta: Annotated[bool | None, typer.Option("--tta/--no-tta", help="Test-time flips along every axis (8× slower, a little more accurate). Default: the model's setting.")] = None,
    output_type: Annotated[str, typer.Option("--output-type", help="nifti (default), or dicom-seg: a DICOM segmentation object referencing the input DICOM series (3D Slicer, OHIF, PACS; needs highdicom), written to OUTPUT/<case>.dcm or OUTPUT.dcm.")] = "nifti",
    save_registered: Annotated[bool, typer.Option("--save-registered", help="Keep what registration made of each case: <case>_registered/ beside the labels, with the registered phases, ITK transforms (3D Slicer opens them), qc.json and qc.png.")] = False,
    statistics: Annotated[bool, typer.Option("--statistics", help="Also write liver and tumor volumes (mL), the lesion count and each lesion's volume and mean HU per phase: <case>.statistics.json and statistics.csv beside the labels.")] = False,
) -> None:
    """Segment liver and tumors in new CT: one label file per case on its annotated phase's grid.

    The labels (0 background, 1 liver, 2 tumor) open aligned over the CT in ITK-SNAP or 3D Slicer.
    """
    from diff4mmlits.segment.stage import predict_path

    start = time.time()
    written = predict_path(model, input_path, output, device=device or "auto", tta=tta, statistics=statistics,
                           save_registered=save_registered, output_type=output_type)
    from diff4mmlits.segment.predict_io import single_file_output, statistics_path

    single = len(written) == 1 and single_file_output(output, output_type)
    where = written[0] if single else output
    extra = ""
    if statistics:
        extra = (f"; statistics in {statistics_path(Path(where))} and {Path(where).parent / 'statistics.csv'}" if single
                 else f"; statistics in {output} (<case>.statistics.json, statistics.csv)")
    typer.echo(f"predict: {len(written)} case(s) in {time.time() - start:.1f} s; labels in {where}{extra}")


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Argument(metavar="PRED", help="Folder of predicted labels (<case>.nii.gz).")],
    gt: Annotated[Path, typer.Argument(metavar="GT", help="Ground truth: a dataset (any layout) or a folder of label files <case>.nii.gz.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for metrics.csv, summary.csv, figures/ and index.html.")],
) -> None:
    """Score predictions: DSC, Jaccard, sensitivity, precision, HD95 and lesion detection, with an HTML report."""
    from diff4mmlits.evaluate.config import EvaluateConfig
    from diff4mmlits.evaluate.evaluation import evaluate_predictions, missing_note, read_truth
    from diff4mmlits.evaluate.tables import summary_text

    evaluation = evaluate_predictions(pred, read_truth(gt), out, EvaluateConfig())
    typer.echo(summary_text(evaluation.summary))
    if evaluation.missing_predictions:
        typer.echo(f"note: {missing_note(evaluation.missing_predictions).strip()}")
    typer.echo(f"evaluate: {len(evaluation.rows)} case(s); tables in {out / 'metrics.csv'}; report {out / 'index.html'}")


# --- translate: unpaired cross-modality translation --------------------------------------------
@app.command("train-translator")
def train_translator(
    run_dir: NewRunOption,
    source: Annotated[Path | None, typer.Option("--source", help="Dataset to translate from, e.g. labelled CT (labels needed for essnet).")] = None,
    target: Annotated[Path | None, typer.Option("--target", help="Dataset of the other modality, e.g. MRI; other patients are fine (unpaired).")] = None,
    method: Annotated[str | None, typer.Option("--method", help="essnet (CycleGAN + segmentation constraint, keeps anatomy), cyclegan or cut (default: the config's, essnet).")] = None,
    preset: PresetOption = "demo",
    config_file: ConfigOption = None,
    overrides: SetOption = None,
    device: DeviceOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in RUN/models/translator-METHOD.")] = False,
    painter: Annotated[bool, typer.Option("--painter", help="Instead: train the CUT tumor painter (the paper's Table V baseline, for 'synthesize --method cut') on RUN's normal and registered cases; no --source/--target.")] = False,
) -> None:
    """Train an unpaired translator from SOURCE's modality to TARGET's (e.g. CT to MRI) into RUN/models/."""
    from diff4mmlits.ingest import open_run
    from diff4mmlits.pipeline import get_stage, run_stage

    _choices("--method", method, "translate.method")
    if painter:
        if source is not None or target is not None:
            raise InputError("--painter trains on the run folder's own cases; leave out --source and --target")
        _, _, model = _run_stage_command("train-cut-painter", run_dir, device, overrides, resume=resume)
        typer.echo(f"train-translator: CUT tumor painter in {model}; use it with 'diff4mmlits synthesize --run {run_dir} --method cut'")
        return
    if source is None or target is None:
        raise InputError("give both --source DATASET and --target DATASET (or --painter to train the CUT tumor painter)")
    extra = list(overrides or []) + ([f"translate.method={method}"] if method else [])
    with _removed_when_refused(run_dir):
        folder, config = open_run(run_dir, preset=preset, config_file=config_file, overrides=extra, device=device,
                                  create=True)
        model = run_stage(folder, get_stage("train-translator"), config, force=True, source=source, target=target,
                          resume=resume).result
    if is_main_process():
        typer.echo(f"train-translator: {config.translate.method} model in {model} (log.csv, curves.png beside it)")


@app.command()
def translate(
    model: Annotated[Path, typer.Option("--model", help="Model folder written by train-translator (RUN/models/translator-METHOD).")],
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="A volume file, a case folder or a dataset folder of the source modality.")],
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", help="Volume file (for a file INPUT) or folder for the translated cases.")],
    device: DeviceOption = None,
    complete_missing: Annotated[bool, typer.Option("--complete-missing", help="Keep every phase and add the model's target phase where a case lacks it (for a phase-to-phase translator, e.g. PVP to AP).")] = False,
) -> None:
    """Translate volumes with a trained translator; labels and geometry are carried over unchanged."""
    from diff4mmlits.translate.stage import translate_path

    written = translate_path(model, input_path, output, device=device or "auto", complete_missing=complete_missing)
    typer.echo(f"translate: {len(written)} output(s) written to {output}")


# --- the whole pipeline ----------------------------------------------------------------------
@app.command()
def run(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (native, nnU-Net v2 raw or LiTS layout).")],
    run_dir: NewRunOption = Path("runs/default"),
    preset: PresetOption = "demo",
    config_file: ConfigOption = None,
    overrides: SetOption = None,
    device: DeviceOption = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this stage (repeatable): previews, register, train-inpainter, inpaint, train-autoencoder, train-synthesizer, synthesize, train, predict, evaluate or report.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run stages even when they are up to date.")] = False,
) -> None:
    """Run every stage over DATASET into the run folder, skipping stages that are up to date."""
    from diff4mmlits.config import resolve_config
    from diff4mmlits.pipeline import run_pipeline
    from diff4mmlits.runfolder import RunFolder

    extra = list(overrides or []) + ([f"device={device}"] if device else [])
    config = resolve_config(preset, config_file, extra)
    folder = run_pipeline(dataset, RunFolder(run_dir), config, only=only, force=force)
    report = folder.report_dir / "index.html"
    typer.echo(f"run: outputs in {folder.root}" + (f"; report: {report}" if report.is_file() else ""))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Where the phantom and the run folder go.")] = Path("runs/demo"),
    preset: PresetOption = "demo",
    overrides: SetOption = None,
    device: DeviceOption = None,
) -> None:
    """The built-in phantom, then every stage on it with the demo preset (minutes on a CPU)."""
    from diff4mmlits.config import resolve_config
    from diff4mmlits.data.phantom import write_phantom_dataset
    from diff4mmlits.distributed import resolve_device
    from diff4mmlits.pipeline import run_pipeline
    from diff4mmlits.runfolder import RunFolder

    extra = list(overrides or []) + ([f"device={device}"] if device else [])
    config = resolve_config(preset, None, extra)
    resolve_device(config.device)  # before the phantom is written
    dataset = out / "phantom"
    start = time.time()
    if not (dataset / "_truth").is_dir():
        log.info("phantom: writing %d cases of %d³ to %s", config.phantom.cases, config.phantom.size, dataset)
        from diff4mmlits.threads import worker_processes

        write_phantom_dataset(dataset, cases=config.phantom.cases, seed=config.seed, site=config.phantom.site,
                              size=config.phantom.size, workers=worker_processes(jobs=config.phantom.cases))
    folder = run_pipeline(dataset, RunFolder(out / "run"), config)
    typer.echo(f"demo finished in {time.time() - start:.0f} s")
    typer.echo(f"  phantom dataset: {dataset}")
    typer.echo(f"  run folder:      {folder.root}")
    typer.echo(f"  report:          {folder.report_dir / 'index.html'}")


# --- entry point ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Console entry point: one line for bad input (exit 2), one line + log file for a bug (exit 1)."""
    restore_logging = _setup_logging(verbose=bool(os.environ.get("DIFF4MMLITS_VERBOSE")))
    in_main_thread = threading.current_thread() is threading.main_thread()
    # Ctrl-C, and SIGTERM (a batch scheduler's time limit, ``kill``): the same clean stop
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in STOP_SIGNALS} if in_main_thread else {}
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    finally:
        for signum, handler in previous.items():
            with contextlib.suppress(Interrupted):  # a signal as the command ends: its outputs are complete
                signal.signal(signum, signal.SIG_IGN)
            signal.signal(signum, handler)
        restore_logging()


INTERRUPTED = "interrupted; outputs written so far are complete; rerun to continue"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Signals that stop a command cleanly: one line, the run folder's lock released, exit 128 + the signal."""


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM. Not a ``KeyboardInterrupt``: click would catch that, print "Aborted!"
    and exit 1."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = int(signum)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _run(args: list[str]) -> int:
    try:
        app(args=args, prog_name="diff4mmlits")  # usage errors: typer prints them and exits 2
    except SystemExit as err:
        return err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except StorageError as err:
        typer.echo(f"error: {err}", err=True)
        return 3
    except InputError as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    except OSError as err:
        if err.errno in PATH_ERRNOS:
            typer.echo(f"error: {describe_path_error(err)}", err=True)
            return 2
        if err.errno not in STORAGE_ERRNOS:
            return _internal_error(args, err)
        typer.echo(f"error: {describe_os_error(err)}", err=True)
        return 3
    except (KeyboardInterrupt, Interrupted) as err:
        signum = err.signum if isinstance(err, Interrupted) else int(signal.SIGINT)
        name = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
        typer.echo(INTERRUPTED.replace("interrupted", f"interrupted{name}", 1), err=True)
        return 128 + signum
    except Exception as err:  # a bug: keep the traceback in a file, show one line
        return _internal_error(args, err)
    return 0


def _internal_error(args: list[str], err: Exception) -> int:
    """A bug: the traceback goes to a log file, the user reads one line naming it (exit status 1)."""
    summary = str(err).splitlines()[0] if str(err) else ""
    try:
        path = _log_file_for_crash()
        path.write_text(f"diff4mmlits {' '.join(args)}\n\n{traceback.format_exc()}", encoding="utf-8")
    except OSError:  # even the log cannot be written (full or read-only temp folder): the line alone
        typer.echo(f"internal error ({type(err).__name__}: {summary}); the traceback could not be saved", err=True)
        return 1
    typer.echo(f"internal error ({type(err).__name__}: {summary}); traceback in {path}", err=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
