"""Reliability audit (issue 16): what a demanding user does to a run, counted.

On a small phantom with the ``smoke`` preset, through the command line in subprocesses:

* ``kill -9`` inside every stage of ``run``, then ``run`` again: are the outputs identical to a run
  that was never interrupted (weights, images, labels, metrics; timings and logs aside)?
* two ``run`` on one run folder at once: does the second stop at once, and is the first's result right?
* every model's weights with flipped bytes, or NaN with a valid checksum: is the command that loads
  them refused with one line (exit ≠ 0), or does it run on?
* a full disk (a small tmpfs, where this machine lets us mount one): ``predict`` and ``run`` into it
  exit ≠ 0 with one line and leave no short file; once space is freed, ``run`` finishes identical.
* a phase whose header is mirrored (left-right, and RAS/LPS: x and y) in every case: refused by
  ``register``; the same phase stored RAS but right: registered, with the same liver Dice.

    python benchmarks/audit_reliability.py                 # about 20 minutes on 2 cores
    python benchmarks/audit_reliability.py --only kill tamper
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ENV = {**os.environ, "DIFF4MMLITS_NO_PROGRESS": "1"}
CLI = [sys.executable, "-m", "diff4mmlits.cli"]
SKIPPED_FILES = ("log.csv", "training_state.pt", "curves.png")
"""Files that hold wall-clock times (the log rows), compared by their other files' identity."""


# --- comparing run folders ---------------------------------------------------------------------
def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if "second" not in k and "time" not in k}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def digest(run: Path) -> dict[str, str]:
    """SHA-256 of every output of a run folder; JSON without timing entries; logs, stamps and the report aside."""
    result = {}
    for path in sorted(run.rglob("*")):
        relative = path.relative_to(run).as_posix()
        if not path.is_file() or relative.split("/")[0] in (".stages", "report") or path.name in SKIPPED_FILES:
            continue
        if path.name == ".lock":
            result[relative] = "lock left behind"
            continue
        data = path.read_bytes()
        if path.suffix == ".json":
            content = _without_times(json.loads(data))
            if path.name == "checksums.json":
                content = {k: v for k, v in content.items() if k not in SKIPPED_FILES}
            data = json.dumps(content, sort_keys=True).encode()
        result[relative] = hashlib.sha256(data).hexdigest()
    return result


def differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=timeout)


def last_line(process: subprocess.CompletedProcess) -> str:
    lines = [line for line in process.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --- the checks ----------------------------------------------------------------------------------
def kill_inside_every_stage(data: Path, work: Path, clean: dict[str, str]) -> list[dict[str, Any]]:
    from diff4mmlits.pipeline import STAGES

    rows = []
    for stage in [s.name for s in STAGES if not s.always_runs]:
        run = work / f"kill-{stage}"
        process = subprocess.Popen([*CLI, "run", str(data), "--run", str(run), "--preset", "smoke"], env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        killed = False
        for line in process.stderr:
            if line.strip() == f"{stage}: running":
                time.sleep(0.3)  # inside the stage's work
                process.send_signal(signal.SIGKILL)
                killed = True
                break
        process.wait()
        rerun = cli("run", str(data), "--run", str(run), "--preset", "smoke")
        diff = differences(clean, digest(run))
        rows.append({"stage": stage, "killed": killed and process.returncode == -signal.SIGKILL,
                     "rerun_exit": rerun.returncode, "identical": not diff, "differing": diff[:5]})
        print(f"  kill -9 in {stage:<18} killed={rows[-1]['killed']!s:<5} rerun exit {rerun.returncode}, "
              f"{'identical' if not diff else f'{len(diff)} file(s) differ: {diff[:3]}'}", flush=True)
    return rows


def two_runs_at_once(data: Path, work: Path, clean: dict[str, str]) -> dict[str, Any]:
    run = work / "twice"
    command = [*CLI, "run", str(data), "--run", str(run), "--preset", "smoke"]
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)
    second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900)
    first.communicate(timeout=900)
    diff = differences(clean, digest(run))
    row = {"second_exit": second.returncode, "second_line": last_line(second), "first_exit": first.returncode,
           "identical": not diff}
    print(f"  two runs at once: second exit {second.returncode} ({row['second_line'][:110]}); first exit "
          f"{first.returncode}, {'identical' if not diff else f'{len(diff)} file(s) differ'}", flush=True)
    return row


MODEL_COMMANDS = {
    "models/segmenter": "predict", "models/segmenter/liver": "predict", "models/inpainter": "inpaint",
    "models/autoencoder": "synthesize", "models/diffusion": "synthesize",
}
"""Model folder → the command that loads it for inference."""


def inference_weights(folder: Path) -> Path:
    """The weights inference loads: ``best.safetensors`` where there is one, else ``weights.safetensors``
    (the discriminators and other training-only files are read, and verified, only when resuming)."""
    best = folder / "best.safetensors"
    return best if best.is_file() else folder / "weights.safetensors"


def damaged_models(data: Path, work: Path, clean_run: Path) -> list[dict[str, Any]]:
    import torch
    from safetensors.torch import load_file, save_file

    from diff4mmlits.checkpoint import file_sha256

    rows = []
    for folder, command in MODEL_COMMANDS.items():
        for weights in [inference_weights(clean_run / folder)]:
            for damage in ("flipped bytes", "NaN, valid checksum"):
                run = work / "damaged"
                shutil.rmtree(run, ignore_errors=True)
                shutil.copytree(clean_run, run)
                target = run / folder / weights.name
                if damage == "flipped bytes":
                    raw = bytearray(target.read_bytes())
                    raw[-64:-32] = bytes(255 - b for b in raw[-64:-32])
                    target.write_bytes(bytes(raw))
                else:
                    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                             for k, v in load_file(str(target)).items()}
                    save_file(state, str(target))
                    checksums = json.loads((target.parent / "checksums.json").read_text())
                    checksums[target.name] = file_sha256(target, length=64)
                    (target.parent / "checksums.json").write_text(json.dumps(checksums))
                if command == "predict":
                    result = cli("predict", str(data), str(work / "damaged-labels"), "--model", str(run / "models/segmenter"))
                else:
                    result = cli(command, "--run", str(run))
                refused = result.returncode != 0 and "internal error" not in result.stderr
                rows.append({"file": f"{folder}/{weights.name}", "damage": damage, "exit": result.returncode,
                             "refused": refused, "line": last_line(result)})
                print(f"  {folder}/{weights.name:<20} {damage:<20} exit {result.returncode}: {last_line(result)[:100]}",
                      flush=True)
    return rows


def full_disk(data: Path, work: Path, clean: dict[str, str], clean_run: Path) -> dict[str, Any]:
    mount = work / "small-disk"
    mount.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True).returncode:
        print("  full disk: not measured (this machine does not let us mount a small file system)")
        return {"measured": False}
    try:
        predict = cli("predict", str(data), str(mount / "labels"), "--model", str(clean_run / "models/segmenter"))
        filler = mount / "filler"
        filler.write_bytes(b"\0" * (shutil.disk_usage(mount).free - 4096))  # 4 KB left
        predict_full = cli("predict", str(data), str(mount / "labels-full"), "--model", str(clean_run / "models/segmenter"))
        short = [p.name for p in (mount / "labels-full").glob("*.nii.gz") if p.stat().st_size < 1000] \
            if (mount / "labels-full").exists() else []
        filler.unlink()
        shutil.rmtree(mount / "labels", ignore_errors=True)
        run = mount / "run"
        filler.write_bytes(b"\0" * (shutil.disk_usage(mount).free - 5 * 2**20))  # 5 MB left: the run fills it part-way
        first = cli("run", str(data), "--run", str(run), "--preset", "smoke")
        filler.unlink()
        shutil.rmtree(mount / "labels-full", ignore_errors=True)
        second = cli("run", str(data), "--run", str(run), "--preset", "smoke")
        diff = differences(clean, digest(run)) if second.returncode == 0 else ["(rerun failed)"]
        row = {"measured": True, "predict_with_space_exit": predict.returncode, "predict_full_exit": predict_full.returncode,
               "predict_full_line": last_line(predict_full), "short_files": short, "run_full_exit": first.returncode,
               "run_full_line": last_line(first), "rerun_exit": second.returncode, "rerun_identical": not diff}
        print(f"  predict into a full disk: exit {predict_full.returncode} ({row['predict_full_line'][:100]}); "
              f"short files left: {len(short)}", flush=True)
        print(f"  run into a disk that fills up: exit {first.returncode} ({row['run_full_line'][:100]}); after freeing "
              f"space, rerun exit {second.returncode}, {'identical' if not diff else f'{len(diff)} file(s) differ: {diff[:3]}'}",
              flush=True)
        return row
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def flipped_orientations(data: Path, work: Path) -> dict[str, Any]:
    from diff4mmlits.data.io import read_volume, write_volume
    from diff4mmlits.data.orientation import reorient
    from diff4mmlits.data.volume import Volume

    rows: dict[str, Any] = {}
    for name, change in (("left-right header", (2,)), ("RAS/LPS header (x and y)", (1, 2)), ("stored RAS, right", None)):
        dataset = work / f"orient-{len(rows)}"
        shutil.rmtree(dataset, ignore_errors=True)
        shutil.copytree(data, dataset, ignore=shutil.ignore_patterns("_truth"))
        for case in sorted(p for p in dataset.iterdir() if p.is_dir()):
            ap = read_volume(case / "AP.nii.gz")
            if change is None:
                ap = reorient(ap, "RAS")
            else:
                direction = np.asarray(ap.direction).copy()
                direction[:, list(change)] *= -1
                ap = Volume(ap.array, ap.spacing_mm, ap.origin_mm, direction)
            write_volume(ap, case / "AP.nii.gz")
        result = cli("register", str(dataset), "--run", str(work / f"orient-run-{len(rows)}"), "--preset", "smoke")
        dice = []
        for qc in sorted((work / f"orient-run-{len(rows)}" / "registered").glob("*/qc.json")):
            entry = json.loads(qc.read_text())["phases"].get("AP", {})
            dice.append(entry.get("liver_dice_after"))
        rows[name] = {"exit": result.returncode, "line": last_line(result), "cases_registered": len(dice)}
        print(f"  {name:<26} register exit {result.returncode}: {last_line(result)[:120]}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/audit_reliability"))
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--only", nargs="+", default=["kill", "twice", "tamper", "disk", "orientation"])
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    data = args.work / "data"
    subprocess.run([*CLI, "phantom", str(data), "--cases", str(args.cases), "--size", "32"], env=ENV, check=True,
                   capture_output=True)
    clean_run = args.work / "clean"
    start = time.time()
    done = cli("run", str(data), "--run", str(clean_run), "--preset", "smoke")
    assert done.returncode == 0, done.stderr
    clean = digest(clean_run)
    print(f"clean smoke run: {len(clean)} outputs in {time.time() - start:.0f} s", flush=True)
    report: dict[str, Any] = {}
    if "kill" in args.only:
        report["kill"] = kill_inside_every_stage(data, args.work, clean)
    if "twice" in args.only:
        report["twice"] = two_runs_at_once(data, args.work, clean)
    if "tamper" in args.only:
        report["tamper"] = damaged_models(data, args.work, clean_run)
    if "disk" in args.only:
        report["disk"] = full_disk(data, args.work, clean, clean_run)
    if "orientation" in args.only:
        report["orientation"] = flipped_orientations(data, args.work)
    print("\nsummary")
    if "kill" in report:
        rows = report["kill"]
        print(f"  kill -9 inside a stage of run, then run again: {sum(r['identical'] for r in rows)} of {len(rows)} identical "
              f"({sum(r['killed'] for r in rows)} killed inside the stage)")
    if "twice" in report:
        print(f"  two runs at once: second stopped with exit {report['twice']['second_exit']}; first identical: "
              f"{report['twice']['identical']}")
    if "tamper" in report:
        rows = report["tamper"]
        print(f"  damaged weights refused with one line: {sum(r['refused'] for r in rows)} of {len(rows)}")
    if report.get("disk", {}).get("measured"):
        d = report["disk"]
        print(f"  full disk: predict exit {d['predict_full_exit']}, {len(d['short_files'])} short files; run exit "
              f"{d['run_full_exit']}, rerun after freeing space identical: {d['rerun_identical']}")
    if "orientation" in report:
        print("  orientation: " + "; ".join(f"{k}: exit {v['exit']}" for k, v in report["orientation"].items()))
    (args.work / "audit.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"results in {args.work / 'audit.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
