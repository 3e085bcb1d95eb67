"""The command line: one command a stage, plus ``run`` (every stage) and ``demo`` (the phantom).

A thin typer layer over the Python API: arguments are checked, the API is called with keyword
arguments, and the location of the outputs is printed at the end. Bad input (an
:class:`~diff4mmlits.errors.InputError`) is one line on stderr and exit status 2; any other error
is a bug, shown as one line naming the log file that holds its traceback (exit status 1).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer

from diff4mmlits.errors import InputError

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
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

log = logging.getLogger("diff4mmlits")

# Shared option types -------------------------------------------------------------------------
RunOption = Annotated[Path, typer.Option("--run", help="Run folder (created if needed), e.g. runs/demo.")]
PresetOption = Annotated[str, typer.Option("--preset", help="smoke (seconds, tests), demo (minutes on a CPU) or paper (the paper's settings, GPU).")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="YAML file of settings (sections as in RUN/config.yaml).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override one setting, e.g. --set segment.epochs=3 (repeatable).")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (default: the config's, auto).")]


def _setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("diff4mmlits")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _log_file_for_crash() -> Path:
    folder = Path(tempfile.gettempdir()) / "diff4mmlits-logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def load_run_config(run: Path, device: str | None = None, overrides: list[str] | None = None):
    """The configuration saved in a run folder, with ``--device`` and ``--set`` applied."""
    from diff4mmlits.config import _deep_merge, parse_override, validate_config
    from diff4mmlits.runfolder import RunFolder

    config = RunFolder(run).load_config()
    values = config.model_dump(mode="json")
    for text in overrides or []:
        values = _deep_merge(values, parse_override(text))
    if device is not None:
        values["device"] = device
    return validate_config(values)


# --- data ------------------------------------------------------------------------------------
@app.command()
def phantom(
    out: Annotated[Path, typer.Argument(help="Folder to write the phantom dataset into (native layout + _truth/).")],
    cases: Annotated[int, typer.Option("--cases", min=1, help="Number of cases.")] = 8,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed; the same seed gives the same files.")] = 0,
    site: Annotated[str, typer.Option("--site", help="default, or second: other noise, blur, slice thickness and contrast timing (out-of-distribution tests).")] = "default",
    size: Annotated[int, typer.Option("--size", min=16, help="In-plane size in voxels (the volume is size × size × 0.75·size slices; fewer, thicker slices for --site second).")] = 64,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Cases generated in parallel (processes).")] = 1,
) -> None:
    """Write the built-in four-phase phantom: misaligned phases, PVP labels and per-phase truth."""
    from diff4mmlits.data.phantom import SITES, TRUTH_FOLDER, write_phantom_dataset

    if site not in SITES:
        raise InputError(f"--site {site!r}: choose one of {', '.join(SITES)}")
    start = time.time()
    write_phantom_dataset(out, cases=cases, seed=seed, site=site, size=size, workers=workers)
    typer.echo(f"phantom: {cases} case(s) ({site} site, size {size}) written in {time.time() - start:.1f} s")
    typer.echo(f"  dataset: {out}   (<case>/{{NC,AP,PVP,DP}}.nii.gz, label.nii.gz)")
    typer.echo(f"  truth:   {out / TRUTH_FOLDER}   (per-phase labels, tumor-free images, displacement fields, tumors.json)")


@app.command()
def validate(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (native, nnU-Net v2 raw or LiTS layout).")],
    phase: Annotated[str, typer.Option("--annotated-phase", help="The phase the labels are drawn on.")] = "PVP",
) -> None:
    """Check a dataset: a table of cases and one line per problem. Writes nothing; exit 1 on errors."""
    from diff4mmlits.data.validate import validate_dataset

    report = validate_dataset(dataset, annotated_phase=phase)
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
    typer.echo(f"{len(report.rows)} case(s) read; {n_err} error(s), {n_warn} warning(s)")
    if n_err:
        raise typer.Exit(1)


@app.command("config")
def show_config(
    preset: PresetOption = "demo",
    config_file: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Print the fully resolved configuration (preset + file + --set) as YAML."""
    from diff4mmlits.config import config_to_yaml, resolve_config

    typer.echo(config_to_yaml(resolve_config(preset, config_file, list(overrides or []))), nl=False)


# --- inpaint (Normal CT Generator) -------------------------------------------------------------
def _run_stage_command(run_dir: Path, stage_name: str, config, work) -> None:
    """Run a stage's work from its command and stamp it, so that 'run' knows it is up to date."""
    from diff4mmlits.pipeline import get_stage, stage_fingerprint
    from diff4mmlits.runfolder import RunFolder

    folder = RunFolder(run_dir)
    folder.clear_stamp(stage_name)
    work(folder)
    folder.write_stamp(stage_name, stage_fingerprint(folder, get_stage(stage_name), config))


@app.command("train-inpainter")
def train_inpainter(
    run_dir: RunOption,
    device: DeviceOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the training saved in RUN/models/inpainter (after an interruption, or with more steps).")] = False,
    init_from: Annotated[Path | None, typer.Option("--init-from", help="Start from the weights of this local model folder (config.json + weights.safetensors), e.g. a pre-trained inpainter.")] = None,
    overrides: SetOption = None,
) -> None:
    """Train the FFC inpainter (LaMa-style) on the run's registered train and validation cases."""
    from diff4mmlits.inpaint.stage import stage_train_inpainter

    if init_from is not None and not init_from.is_dir():
        raise InputError("--init-from: not a folder; give a model folder with config.json and weights.safetensors", init_from)
    config = load_run_config(run_dir, device, overrides)
    folder: list[Path] = []
    _run_stage_command(run_dir, "train-inpainter", config, lambda run: folder.append(
        stage_train_inpainter(run, config, device=device, resume=resume, init_from=init_from)))
    typer.echo(f"train-inpainter: model, log.csv and curves.png in {folder[0]}")


@app.command()
def inpaint(
    run_dir: RunOption,
    method: Annotated[str | None, typer.Option("--method", help="ffc (the trained inpainter, default), median (the paper's median-filter ablation) or mean-fill (liver mean + noise).")] = None,
    device: DeviceOption = None,
    overrides: SetOption = None,
) -> None:
    """Remove the tumors from every phase of every registered case: writes RUN/normal/<case>/."""
    from diff4mmlits.inpaint.stage import METHODS, stage_inpaint
    from diff4mmlits.runfolder import RunFolder

    if method is not None and method not in METHODS:
        raise InputError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    extra = list(overrides or []) + ([f"inpaint.method={method}"] if method else [])
    config = load_run_config(run_dir, device, extra)
    _run_stage_command(run_dir, "inpaint", config, lambda run: stage_inpaint(run, config, device=device))
    folder = RunFolder(run_dir)
    typer.echo(f"inpaint ({config.inpaint.method}): normal cases in {folder.normal_dir}; figure in {folder.figures_dir}")


# --- the whole pipeline ----------------------------------------------------------------------
@app.command()
def run(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (native, nnU-Net v2 raw or LiTS layout).")],
    run_dir: RunOption = Path("runs/default"),
    preset: PresetOption = "demo",
    config_file: ConfigOption = None,
    overrides: SetOption = None,
    device: DeviceOption = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this stage (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run stages even when they are up to date.")] = False,
) -> None:
    """Run every stage over DATASET into the run folder, skipping stages that are up to date."""
    from diff4mmlits.config import resolve_config
    from diff4mmlits.pipeline import run_pipeline
    from diff4mmlits.runfolder import RunFolder

    extra = list(overrides or []) + ([f"device={device}"] if device else [])
    config = resolve_config(preset, config_file, extra)
    folder = run_pipeline(dataset, RunFolder(run_dir), config, only=only, force=force)
    typer.echo(f"run: outputs in {folder.root}; report: {folder.report_dir / 'index.html'}")


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
    from diff4mmlits.pipeline import run_pipeline
    from diff4mmlits.runfolder import RunFolder

    extra = list(overrides or []) + ([f"device={device}"] if device else [])
    config = resolve_config(preset, None, extra)
    dataset = out / "phantom"
    start = time.time()
    if not (dataset / "_truth").is_dir():
        log.info("phantom: writing %d cases of %d³ to %s", config.phantom.cases, config.phantom.size, dataset)
        write_phantom_dataset(dataset, cases=config.phantom.cases, seed=config.seed, site=config.phantom.site, size=config.phantom.size)
    folder = run_pipeline(dataset, RunFolder(out / "run"), config)
    typer.echo(f"demo finished in {time.time() - start:.0f} s")
    typer.echo(f"  phantom dataset: {dataset}")
    typer.echo(f"  run folder:      {folder.root}")
    typer.echo(f"  report:          {folder.report_dir / 'index.html'}")


# --- entry point ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Console entry point: one line for bad input (exit 2), one line + log file for a bug (exit 1)."""
    _setup_logging(verbose=bool(os.environ.get("DIFF4MMLITS_VERBOSE")))
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="diff4mmlits")  # usage errors: typer prints them and exits 2
    except SystemExit as err:
        return err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except InputError as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted; outputs written so far are complete, re-run to resume", err=True)
        return 130
    except Exception as err:  # a bug: keep the traceback in a file, show one line
        path = _log_file_for_crash()
        path.write_text(f"diff4mmlits {' '.join(args)}\n\n{traceback.format_exc()}")
        summary = str(err).splitlines()[0] if str(err) else ""
        typer.echo(f"internal error ({type(err).__name__}: {summary}); traceback in {path}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
