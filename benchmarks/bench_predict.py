"""Benchmark of ``diff4mmlits predict`` on a clinical-size, unregistered four-phase case (issue 17).

The case: a phantom case at size 128 (``--site``), each phase up-sampled in-plane ×4 on its own
grid (its own field of view, orientation and motion stay): about 512 × 512 × 96 voxels per phase,
0.7–0.9 mm pixels. The model: ``--model`` (a trained segmenter, e.g. the demo's: its stage one
finds the liver before registration, so registration runs on the liver region), else a segmenter of
the ``--preset`` network trained for two steps on two phantom cases (its stage one finds no
plausible liver, so registration runs on the body), saved with the preset's settings as
``diff4mmlits train`` saves them (so ``predict`` registers with that preset's ``register`` section:
``paper`` runs 100 B-spline iterations where ``demo`` runs 15). The liver TRE of the registration
``predict`` kept is scored against the phantom's true motion.

Each run is the command line in a fresh process, as a user runs it:
``diff4mmlits --threads N predict CASE OUT --model MODEL``; wall seconds, and the peak resident
memory of the whole process tree (the command and its registration workers, sampled every 0.2 s).
``--threads 1`` is the baseline in this process; the default (the CLI's own choice) is reported as a
ratio to it. Registration's share comes from ``--save-registered``'s ``qc.json`` of a separate run.

Targets (issue 17): ≤ 30 s including registration, ≤ 4 GB peak, on 2 cores.

    python benchmarks/bench_predict.py [--repeats 2] [--site default] [--model runs/demo/run/models/segmenter] [--out runs/bench_predict]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("DIFF4MMLITS_NO_PROGRESS", "1")

from clinical import clinical_case, two_step_segmenter  # noqa: E402  (benchmarks/clinical.py)
from diff4mmlits.data.io import write_volume  # noqa: E402
from diff4mmlits.register.qc import target_registration_error  # noqa: E402
from diff4mmlits.register.stage import read_transform  # noqa: E402


def write_clinical_case(folder: Path, seed: int, site: str):
    """Write the four phases of a clinical-size case (:mod:`clinical`; their own grids) to ``folder``;
    (their shapes, the phantom case at size 128 with its truth)."""
    case, phantom = clinical_case(seed, site)
    folder.mkdir(parents=True, exist_ok=True)
    for name, volume in case.phases.items():
        write_volume(volume, folder / f"{name}.nii.gz")
    return {name: volume.shape for name, volume in case.phases.items()}, phantom


def liver_tre(registered: Path, phantom) -> dict[str, float]:
    """Mean and p95 liver TRE (mm) of the transforms ``predict --save-registered`` kept, against the
    phantom's true motion (world coordinates: scored on the phantom's own PVP grid), and before."""
    truth = phantom.case
    liver = truth.label.array > 0
    before, after = [], []
    for name, field in phantom.truth.displacement_mm.items():
        files = sorted(registered.glob(f"{name}.*"))
        files = [f for f in files if not f.name.endswith((".nii.gz", ".nii"))]
        if name == truth.annotated_phase or not files:
            continue
        before.append(target_registration_error(None, truth.annotated, field, liver))
        after.append(target_registration_error(read_transform(files[0]), truth.annotated, field, liver))
    a, b = np.concatenate(after), np.concatenate(before)
    return {"tre_mean_before": float(b.mean()), "tre_mean": float(a.mean()), "tre_p95": float(np.percentile(a, 95))}


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants (MB), from ``/proc``."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * page
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / 2**20


def run_predict(case_dir: Path, out: Path, model: Path, threads: int | None, extra: list[str] = ()) -> dict[str, float]:
    """The command line in a fresh process: wall seconds and peak tree memory (MB)."""
    command = [str(Path(sys.executable).parent / "diff4mmlits")] + (["--threads", str(threads)] if threads else []) + [
        "predict", str(case_dir), str(out), "--model", str(model), *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "DIFF4MMLITS_THREADS")}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, tree_rss_mb(process.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - start
    output = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise RuntimeError(f"predict failed ({process.returncode}):\n{output}")
    return {"wall_s": wall, "peak_mb": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setting (the median is reported)")
    parser.add_argument("--site", default="default", choices=("default", "second", "third"))
    parser.add_argument("--preset", default="demo", help="the network's preset (demo: the demo's segmenter)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained segmenter folder (e.g. runs/demo/run/models/segmenter): its stage one finds "
                             "the liver that registration focuses on; default: a 2-step model (registers on the body)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_predict"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"site": args.site, "preset": args.preset, "cores": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        start = time.perf_counter()
        case_dir = Path(tmp) / "case"
        shapes, phantom = write_clinical_case(case_dir, args.seed, args.site)
        model = args.model or two_step_segmenter(Path(tmp) / "model", args.preset, args.seed)
        results["model"] = str(args.model) if args.model else f"2-step {args.preset} model"
        results["shapes"] = {k: list(v) for k, v in shapes.items()}
        print(f"clinical case ({args.site} site): " + ", ".join(f"{k} {'×'.join(map(str, v[::-1]))}" for k, v in shapes.items())
              + f"; set up in {time.perf_counter() - start:.0f} s", flush=True)
        saved = Path(tmp) / "saved"
        run_predict(case_dir, saved, model, None, ["--save-registered"])
        kept = next(saved.glob("*_registered"))
        qc = json.loads((kept / "qc.json").read_text())
        phase_s = {k: v["seconds"] for k, v in qc["phases"].items() if "seconds" in v}
        tre = liver_tre(kept, phantom)
        results["registration"] = {"case_s": qc["seconds"], "phase_s": phase_s, "region": qc["region"], **tre}
        print(f"  registration (default threads): {qc['seconds']:.1f} s for the case; per phase "
              + ", ".join(f"{k} {v:.1f} s" for k, v in phase_s.items())
              + f"; region {qc['region']['source']} ({qc['region']['volume_ml']} mL); liver TRE "
              f"{tre['tre_mean_before']:.2f} → {tre['tre_mean']:.2f} mm mean, p95 {tre['tre_p95']:.2f}", flush=True)
        rows: dict[str, list[dict[str, float]]] = {"1 thread": [], "default": []}
        for _ in range(args.repeats):  # alternate, so that a noisy moment hits both settings
            for name, threads in (("1 thread", 1), ("default", None)):
                rows[name].append(run_predict(case_dir, Path(tmp) / f"out_{name.replace(' ', '_')}", model, threads))
    summary = {name: {"wall_s": float(np.median([r["wall_s"] for r in runs])),
                      "peak_mb": float(max(r["peak_mb"] for r in runs))} for name, runs in rows.items()}
    results["predict"] = summary
    base = summary["1 thread"]["wall_s"]
    print(f"  {'':<10}{'wall s':>8}{'× 1 thread':>12}{'peak MB':>10}   (median of {args.repeats}; targets ≤ 30 s, ≤ 4096 MB)")
    for name, row in summary.items():
        print(f"  {name:<10}{row['wall_s']:>8.1f}{row['wall_s'] / base:>12.2f}{row['peak_mb']:>10.0f}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
