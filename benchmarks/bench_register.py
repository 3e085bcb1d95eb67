"""Benchmark of the register stage: accuracy on the phantom, similarity on real CT, speed.

1. Phantom (written to a temporary folder, read back like any dataset; ``demo`` preset; size 64;
   the ``default``, ``second`` and ``third`` sites): per method none / rigid / affine / bspline /
   elastix / convexadam (issue 17: every backend side by side; the ratio of seconds to bspline's), the target
   registration error inside the PVP liver (mean and 95th percentile, mm; TRE at voxel p =
   |T(p) − (p + d_true(p))|), liver and tumor Dice of each phase's own label moved onto the PVP
   grid, before and after; CPU seconds per case.
2. The demo budget: ``register_run`` over the phantom dataset with 2 worker processes (wall time).
3. Real unregistered CT (one HCC patient: non-contrast, arterial, portal venous; no labels, so the
   body-mask fallback): normalised mutual information before and after in a central abdominal
   region, and a qc.png to look at. Skipped when the folder is absent.
4. Speed: CPU seconds per phase at 64³ and at 512×512×96 (``benchmarks/clinical.py``: the phantom
   at size 128 up-sampled in-plane ×4, each phase on its own grid), liver-focused on the working
   grid (``register.working_spacing_mm``, 2 mm) versus the same chain on the scan's own voxels and
   on the whole image (no mask, no crop), in this process; printed as ratios, with each one's TRE.
5. Resolution: the default chain (``bspline``) on each site with the slice spacing it has at size
   64 (3.75 / 6 / 10 mm; ``make_phantom_case(slice_mm=...)``) at in-plane sizes 64, 128 and 256
   (pixels of about 3.75–4.8, 1.9–2.4 and 0.9–1.2 mm): TRE mean / p95 and the per-case spread.
   Size 64 pairs the thick slices with pixels four times a clinical scan's; the issue's targets
   are read at the clinical pixel as well as at 64.
6. Threads: wall seconds of one case's chain with ``register.threads`` 1 (the default, bit-
   reproducible) against all cores, run twice each: the ratio, and whether the two runs agree.

Usage::

    python benchmarks/bench_register.py [--cases 12] [--out runs/bench_register] [--skip-large]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from diff4mmlits.config import resolve_config
from diff4mmlits.data.case import Case
from diff4mmlits.data.io import read_volume, to_sitk
from diff4mmlits.data.native import read_native_dataset
from diff4mmlits.data.phantom import make_phantom_case, read_phantom_truth, write_phantom_dataset
from diff4mmlits.errors import InputError
from diff4mmlits.register import register_case
from diff4mmlits.register.backends import register_phase, require_backend
from diff4mmlits.register.qc import plot_registration_qc, region_nmi, target_registration_error
from diff4mmlits.register.resample import resample_onto
from diff4mmlits.register.roi import body_mask, liver_roi

sys.path.insert(0, str(Path(__file__).parent))
from clinical import clinical_case  # noqa: E402  (benchmarks/clinical.py)

METHODS = ("none", "rigid", "affine", "bspline", "elastix", "convexadam")
"""Every backend side by side (elastix and convexadam skipped where not installed)."""
PARTS = ("accuracy", "demo", "speed", "resolution", "threads", "real")
SITE_SLICE_MM = {"default": 3.75, "second": 6.0, "third": 10.0}
"""Each site's slice spacing at size 64 (``acquisition.SITES``: 0.75 · 64 / slice_factor slices over its z extent)."""
RESOLUTION_SIZES = (64, 128, 256)
REAL_STUDY = Path("data") / "real" / "melihkurtaran__medical_image_processing" / "derived"
REPO = Path(__file__).resolve().parents[1]
REAL_CANDIDATES = (REPO.parent / "shared" / REAL_STUDY, REPO.parent.parent / "shared" / REAL_STUDY)
"""``../shared/data/real/...`` beside the checkout (a worktree one level deeper looks one further up)."""
REAL_FILES = {"NC": "HCC_007_19971227_PRE_LIVER_noncontrast.nii.gz",
              "AP": "HCC_007_19971227_LIVER_3_PHASE_acq2_arterial.nii.gz",
              "PVP": "HCC_007_19971227_LIVER_3_PHASE_acq3_portalvenous.nii.gz"}


def installed_methods(methods: tuple[str, ...], preset: str):
    """``(method, its register settings)`` for each of ``methods`` whose backend is installed; a line
    for each one skipped."""
    for method in methods:
        try:
            require_backend(method)
        except InputError as err:
            print(f"  {method:<10} skipped: {err}", flush=True)
            continue
        yield method, resolve_config(preset, overrides=[f"register.method={method}"]).register


def phantom_accuracy(dataset: Path, preset: str) -> dict[str, dict[str, float]]:
    """TRE, liver and tumor Dice before/after per method over every case and non-PVP phase."""
    cases = read_native_dataset(dataset)
    truths = {case.case_id: read_phantom_truth(dataset, case.case_id) for case in cases}
    rows: dict[str, dict[str, float]] = {}
    for method, config in installed_methods(METHODS, preset):
        before, after, seconds, kept = [], [], [], []
        liver, tumor = [], []
        for case in cases:
            truth = truths[case.case_id]
            start = time.process_time()
            result = register_case(case, config, truth_labels=dict(truth.phase_labels))
            seconds.append(time.process_time() - start)
            mask = case.label.array > 0
            for name, transform in result.transforms.items():
                field = truth.displacement_mm[name]
                before.append(target_registration_error(None, case.annotated, field, mask))
                after.append(target_registration_error(transform, case.annotated, field, mask))
                entry = result.qc["phases"][name]
                liver.append((entry["liver_dice"]["before"], entry["liver_dice"]["after"]))
                tumor.append((entry["tumor_dice"]["before"], entry["tumor_dice"]["after"]))
                kept.append(entry["kept"])
        b, a = np.concatenate(before), np.concatenate(after)
        liver_arr = np.asarray(liver, float)
        tumor_arr = np.asarray([[np.nan if v is None else v for v in pair] for pair in tumor], float)
        rows[method] = {
            "tre_mean_before": float(b.mean()), "tre_mean_after": float(a.mean()),
            "tre_p95_before": float(np.percentile(b, 95)), "tre_p95_after": float(np.percentile(a, 95)),
            "tre_worst_phase_after": float(max(x.mean() for x in after)),
            "liver_dice_before": float(liver_arr[:, 0].mean()), "liver_dice_after": float(liver_arr[:, 1].mean()),
            "liver_dice_min_after": float(liver_arr[:, 1].min()),
            "tumor_dice_before": float(np.nanmean(tumor_arr[:, 0])), "tumor_dice_after": float(np.nanmean(tumor_arr[:, 1])),
            "cpu_seconds_per_case": float(np.mean(seconds)),
            "stages_kept": {k: int(v) for k, v in zip(*np.unique(kept, return_counts=True))},
        }
        if "bspline" in rows:
            rows[method]["seconds_ratio_to_bspline"] = rows[method]["cpu_seconds_per_case"] / max(rows["bspline"]["cpu_seconds_per_case"], 1e-9)
        print_row(method, rows[method])
    return rows


def resolution_accuracy(site: str, size: int, cases: int, preset: str) -> dict[str, object]:
    """TRE of the default method on ``cases`` phantom cases of ``site`` at in-plane ``size`` with the
    site's size-64 slice spacing (in memory; one process, one SimpleITK thread)."""
    config = resolve_config(preset).register
    errors, per_case, seconds = [], [], []
    for index in range(cases):
        phantom = make_phantom_case(index, seed=0, site=site, size=size, slice_mm=SITE_SLICE_MM[site])
        start = time.process_time()
        result = register_case(phantom.case, config)
        seconds.append(time.process_time() - start)
        mask = phantom.case.label.array > 0
        case_errors = [target_registration_error(transform, phantom.case.annotated, phantom.truth.displacement_mm[name], mask)
                       for name, transform in result.transforms.items()]
        errors.extend(case_errors)
        per_case.append(float(np.concatenate(case_errors).mean()))
    after = np.concatenate(errors)
    pixel = phantom.case.annotated.spacing_mm[1]
    return {"site": site, "size": size, "slice_mm": SITE_SLICE_MM[site], "pixel_mm_last_case": round(float(pixel), 3),
            "tre_mean": float(after.mean()), "tre_p95": float(np.percentile(after, 95)),
            "case_mean_min": min(per_case), "case_mean_max": max(per_case), "cpu_seconds_per_case": float(np.mean(seconds))}


def print_row(method: str, row: dict) -> None:
    print(f"  {method:<8} TRE mean {row['tre_mean_before']:5.2f} → {row['tre_mean_after']:5.2f} mm   "
          f"p95 {row['tre_p95_before']:5.2f} → {row['tre_p95_after']:5.2f} mm   "
          f"liver Dice {row['liver_dice_before']:.3f} → {row['liver_dice_after']:.3f} (min {row['liver_dice_min_after']:.3f})   "
          f"tumor Dice {row['tumor_dice_before']:.3f} → {row['tumor_dice_after']:.3f}   "
          f"{row['cpu_seconds_per_case']:.2f} CPU s/case (×{row.get('seconds_ratio_to_bspline', float('nan')):.2f} bspline)   kept {row['stages_kept']}", flush=True)


def demo_budget(dataset: Path, out: Path, workers: int = 2) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process plus each case's worker CPU) of the register stage
    over ``dataset`` (demo preset, ``workers`` processes). CPU / workers ≈ the wall time on idle cores
    (worker start-up not counted)."""
    from diff4mmlits.ingest import ingest_dataset
    from diff4mmlits.register.stage import register_run
    from diff4mmlits.runfolder import RunFolder

    config = resolve_config("demo", overrides=[f"workers={workers}"])
    run = RunFolder(out)
    ingest_dataset(dataset, run, config)
    run.save_config(config)
    cpu_start = time.process_time()
    start = time.perf_counter()
    summaries = register_run(run, config, workers=workers, force_cases=True)
    wall = time.perf_counter() - start
    return wall, time.process_time() - cpu_start + sum(s["cpu_seconds"] for s in summaries)


def real_case(folder: Path | None = None) -> Case | None:
    """The HCC patient's three phases (PVP annotated), without a label; ``None`` when absent."""
    candidates = [folder] if folder is not None else list(REAL_CANDIDATES)
    for candidate in candidates:
        if all((candidate / name).is_file() for name in REAL_FILES.values()):
            return Case("HCC_007", {phase: read_volume(candidate / name) for phase, name in REAL_FILES.items()}, label=None)
    return None


def central_region(case: Case) -> np.ndarray:
    """The body mask within the central half (in-plane) and central 60 % (slices) of the PVP grid."""
    body = body_mask(case.annotated)
    box = np.zeros_like(body)
    z, y, x = body.shape
    box[int(0.2 * z):int(0.8 * z), int(0.25 * y):int(0.75 * y), int(0.25 * x):int(0.75 * x)] = True
    return body & box


def real_similarity(case: Case, preset: str, out: Path) -> dict[str, dict[str, float]]:
    """NMI before/after in the central region per phase; writes ``out/real_qc.png``."""
    config = resolve_config(preset).register
    start = time.perf_counter()
    result = register_case(case, config)
    seconds = time.perf_counter() - start
    region = central_region(case)
    rows = {}
    for name in result.transforms:
        before = resample_onto(case.phases[name], case.annotated).array
        after = result.case.phases[name].array
        rows[name] = {
            "nmi_before": region_nmi(case.annotated.array, before, region, config.intensity_window_hu),
            "nmi_after": region_nmi(case.annotated.array, after, region, config.intensity_window_hu),
            "kept": result.qc["phases"][name]["kept"],
        }
        print(f"  {name}: NMI central region {rows[name]['nmi_before']:.4f} → {rows[name]['nmi_after']:.4f} "
              f"(kept {rows[name]['kept']})", flush=True)
    figure = plot_registration_qc(case, result.case, out / "real_qc.png", roi=result.roi.mask.array > 0)
    print(f"  region: {result.qc['region']['source']} ({result.qc['region']['volume_ml']} mL); {seconds:.1f} s; figure {figure}")
    return {"phases": rows, "seconds": seconds, "region": result.qc["region"]}


def speed(case: Case, preset: str, displacement: dict[str, np.ndarray] | None = None,
          truth_case: Case | None = None) -> dict[str, float]:
    """CPU seconds per phase of the full chain (liver-focused, on the working grid) against the same
    chain on each scan's own voxels (``working_spacing_mm`` 0, what every release before it did) and
    on the whole image (no mask, no crop).

    With the truth ``displacement`` (phase → field on ``truth_case``'s PVP grid, or ``case``'s),
    also the mean liver TRE of each: transforms are in world coordinates, so a case up-sampled for
    speed is scored on its original grid.
    """
    config = resolve_config(preset, overrides=["register.method=bspline"]).register
    fixed = to_sitk(case.annotated)
    focus = to_sitk(liver_roi(case, config.margin_mm).mask)
    whole = to_sitk(case.annotated.with_array(np.ones(case.annotated.shape, np.uint8), kind="label"))
    scored = truth_case or case
    liver = scored.label.array > 0
    phases = [phase for phase in case.phase_names if phase != case.annotated_phase]
    if case.annotated.array.size > 5e6:  # clinical size: the scan's own voxels take minutes a phase
        phases = phases[:1]
    row: dict[str, float] = {"phases": len(phases)}
    variants = (("working_grid", focus, config), ("own_voxels", focus, config.model_copy(update={"working_spacing_mm": 0.0})),
                ("whole_image", whole, config))
    for name, roi, setting in variants:
        start = time.process_time()
        transforms = {phase: register_phase(fixed, to_sitk(case.phases[phase]), roi, setting).transform for phase in phases}
        row[f"{name}_s_per_phase"] = (time.process_time() - start) / len(phases)
        if displacement is not None:
            errors = [target_registration_error(t, scored.annotated, displacement[p], liver) for p, t in transforms.items()]
            row[f"{name}_tre_mm"] = float(np.concatenate(errors).mean())
    row["ratio_own_over_working"] = row["own_voxels_s_per_phase"] / max(row["working_grid_s_per_phase"], 1e-9)
    row["ratio_whole_over_working"] = row["whole_image_s_per_phase"] / max(row["working_grid_s_per_phase"], 1e-9)
    return row


def backend_speed(case: Case, preset: str, displacement: dict[str, np.ndarray], truth_case: Case) -> dict[str, dict[str, float]]:
    """Every deformable backend on one phase of ``case`` (liver region, working grid, 1 thread): CPU
    seconds and liver TRE (mm, on ``truth_case``'s grid), and the ratio to the SimpleITK chain."""
    phase = next(p for p in case.phase_names if p != case.annotated_phase)
    liver = truth_case.label.array > 0
    rows: dict[str, dict[str, float]] = {}
    for method, config in installed_methods(("bspline", "elastix", "convexadam"), preset):
        roi = to_sitk(liver_roi(case, config.margin_mm).mask)
        start = time.process_time()
        transform = register_phase(to_sitk(case.annotated), to_sitk(case.phases[phase]), roi, config).transform
        seconds = time.process_time() - start
        tre = target_registration_error(transform, truth_case.annotated, displacement[phase], liver)
        rows[method] = {"cpu_s": seconds, "tre_mean_mm": float(tre.mean()), "tre_p95_mm": float(np.percentile(tre, 95))}
    for row in rows.values():
        row["ratio_to_bspline"] = row["cpu_s"] / rows["bspline"]["cpu_s"]
    return rows


def thread_cost(case: Case, preset: str) -> dict[str, float | bool]:
    """Wall seconds of the chain for the non-annotated phases with 1 thread and with all cores (two
    runs each, alternating), and whether each setting gave the same resampled phases twice."""
    fixed = to_sitk(case.annotated)
    roi = to_sitk(liver_roi(case, resolve_config(preset).register.margin_mm).mask)
    row: dict[str, float | bool] = {}
    cores = os.cpu_count() or 1
    phases = [p for p in case.phase_names if p != case.annotated_phase]
    grids: dict[int, list[list[np.ndarray]]] = {1: [], cores: []}
    seconds: dict[int, list[float]] = {1: [], cores: []}
    for _ in range(2):
        for threads in (1, cores):
            config = resolve_config(preset, overrides=["register.method=bspline", f"register.threads={threads}"]).register
            start = time.perf_counter()
            transforms = [register_phase(fixed, to_sitk(case.phases[p]), roi, config).transform for p in phases]
            seconds[threads].append(time.perf_counter() - start)
            grids[threads].append([sitk.GetArrayFromImage(sitk.Resample(to_sitk(case.phases[p]), fixed, t, sitk.sitkLinear, -1024.0))
                                   for p, t in zip(phases, transforms)])
    for threads, name in ((1, "one_thread"), (cores, "all_cores")):
        row[f"{name}_s"] = float(np.median(seconds[threads]))
        row[f"{name}_reproducible"] = all(np.array_equal(a, b) for a, b in zip(*grids[threads]))
    row["ratio_one_over_all"] = row["one_thread_s"] / max(row["all_cores_s"], 1e-9)
    return row


def config_method(preset: str) -> str:
    return resolve_config(preset).register.method


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_register"))
    parser.add_argument("--skip-large", action="store_true", help="skip the 512×512×96 speed case and size 256 of the resolution part")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only these parts (repeatable)")
    args = parser.parse_args(argv)
    parts = set(args.only or PARTS)
    args.out.mkdir(parents=True, exist_ok=True)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # CPU seconds comparable with a worker's
    os.environ.setdefault("DIFF4MMLITS_NO_PROGRESS", "1")
    results: dict = {"cases": args.cases, "size": args.size, "preset": args.preset}
    with tempfile.TemporaryDirectory(prefix="bench_register_") as tmp:
        for site in ("default", "second", "third") if parts & {"accuracy", "demo"} else ():
            dataset = write_phantom_dataset(Path(tmp) / site, cases=args.cases, seed=0, site=site, size=args.size)
            if "accuracy" in parts:
                print(f"phantom, site {site}, {args.cases} cases of size {args.size}, preset {args.preset}:", flush=True)
                results[f"phantom_{site}"] = phantom_accuracy(dataset, args.preset)
            if site == "default" and "demo" in parts:
                wall, cpu = demo_budget(dataset, Path(tmp) / "run")
                results["demo_2_workers"] = {"wall_seconds": wall, "cpu_seconds": cpu, "load_average": os.getloadavg()}
                print(f"  demo budget: register_run over {args.cases} cases, 2 workers: {wall:.1f} s wall, {cpu:.1f} CPU s "
                      f"(≈ {cpu / 2:.1f} s on 2 idle cores; target ≤ 40 s; load average now "
                      f"{os.getloadavg()[0]:.1f})", flush=True)
    if "speed" in parts:
        print("speed (bspline chain, CPU s per phase, 1 thread; TRE mean mm):", flush=True)
        sizes = [("64x64x48", lambda: (make_phantom_case(0, seed=0, size=args.size), None))]
        if not args.skip_large:
            sizes.append(("512x512x96", lambda: clinical_case(0, "default")))
        for label, make in sizes:
            case, phantom = make()
            if phantom is None:
                phantom, case = case, case.case
            row = speed(case, args.preset, dict(phantom.truth.displacement_mm), phantom.case)
            results[f"speed_{label}"] = row
            backends = backend_speed(case, args.preset, dict(phantom.truth.displacement_mm), phantom.case)
            results[f"backends_{label}"] = backends
            print(f"  {label}, one phase, every backend: " + "; ".join(
                f"{m} {r['cpu_s']:.1f} s (×{r['ratio_to_bspline']:.1f}, TRE {r['tre_mean_mm']:.2f} / p95 {r['tre_p95_mm']:.2f})"
                for m, r in backends.items()), flush=True)
            print(f"  {label}: working grid {row['working_grid_s_per_phase']:.1f} s (TRE {row['working_grid_tre_mm']:.2f}); "
                  f"own voxels {row['own_voxels_s_per_phase']:.1f} s (TRE {row['own_voxels_tre_mm']:.2f}, "
                  f"×{row['ratio_own_over_working']:.2f}); whole image {row['whole_image_s_per_phase']:.1f} s "
                  f"(TRE {row['whole_image_tre_mm']:.2f}, ×{row['ratio_whole_over_working']:.2f})", flush=True)
    if "resolution" in parts:
        print(f"resolution ({config_method(args.preset)}, {args.cases} cases per row, each site's size-64 slices):", flush=True)
        for site in SITE_SLICE_MM:
            for size in RESOLUTION_SIZES if not args.skip_large else RESOLUTION_SIZES[:2]:
                row = resolution_accuracy(site, size, args.cases, args.preset)
                results[f"resolution_{site}_{size}"] = row
                print(f"  {site:<7} {row['slice_mm']:5.2f} mm slices, size {size:3d} (pixel ≈ {row['pixel_mm_last_case']:.2f} mm): "
                      f"TRE {row['tre_mean']:.2f} / p95 {row['tre_p95']:.2f} mm (cases {row['case_mean_min']:.2f}–"
                      f"{row['case_mean_max']:.2f}), {row['cpu_seconds_per_case']:.1f} CPU s/case", flush=True)
    if "threads" in parts:
        label, size, site = ("256x256x120", 256, "second") if not args.skip_large else (f"size {args.size}", args.size, "default")
        phantom = make_phantom_case(0, seed=0, site=site, size=size)
        row = thread_cost(phantom.case, args.preset)
        results[f"threads_{label}"] = row
        print(f"threads ({label}, wall s for the 3 phases, {os.cpu_count()} cores): 1 thread {row['one_thread_s']:.1f} s "
              f"(same result twice: {row['one_thread_reproducible']}), all cores {row['all_cores_s']:.1f} s "
              f"(same result twice: {row['all_cores_reproducible']}); ratio ×{row['ratio_one_over_all']:.2f}", flush=True)
    if "real" in parts:
        case = real_case()
        if case is None:
            print(f"real CT: skipped ({REAL_STUDY} not found beside the checkout)")
        else:
            print(f"real CT ({case.case_id}, {', '.join(case.phase_names)}; PVP {case.annotated.shape} voxels):", flush=True)
            results["real"] = real_similarity(case, args.preset, args.out)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results in {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
