"""Benchmark of the multimodal segmenter on the built-in phantom (paper Tables I, II, IV; issue 7).

Quality: phantom train / validation / test cases and a ``--site second`` test set; the tumor DSC,
Jaccard, sensitivity and precision of

* ``pvp``        — PVP only (the unimodal baseline: four copies of PVP),
* ``multi``      — the four phases, real cases only,
* ``multi-syn``  — the four phases, real + synthetic cases painted into tumor-free CT (by default
                   the phantom's own tumor-free phases stand in for the inpainter's output, so
                   this isolates the effect of the synthetic tumors; ``--normal`` chooses) on the
                   fly or, with ``--synthetic offline``, from a pool painted once,

for each of ``--seeds``, reported as mean ± sd over seeds of the per-seed case means.

The paper's Table V: ``--painter`` and ``--normal`` take several values, and ``multi-syn`` trains
once per (normal CT, painter) pair with the same steps, synthetic share and seeds — diffusion- or
CUT-painted tumors (``ldm``, ``cut``), painted into normal CT from the FFC inpainter or the median
filter (``ffc``, ``median``). The models come from ``--painter-run RUN``, e.g. after
``diff4mmlits demo`` and ``diff4mmlits train-translator --run RUN --painter``.

Speed: training steps/s with and without on-the-fly synthesis (and the share of the loop spent
waiting for data), and prediction seconds per case — the whole ``segment_case`` (channels,
resampling, sliding window, softmax, post-processing, back to the original grid) — at the demo size
and at 256×256×100 voxels, each as a ratio against MONAI's plain ``sliding_window_inference``
with the same network, patch and overlap, timed in the same process.

    python benchmarks/bench_segment.py                    # small default (minutes on a CPU)
    python benchmarks/bench_segment.py --epochs 40 --steps 40 --seeds 0 1 2 --size 64
    python benchmarks/bench_segment.py --skip-speed --variants multi multi-syn --painter ldm cut \
        --normal ffc median --painter-run RUN --synthetic offline --size 64 --test 12 \
        --epochs 30 --steps 20 --seeds 0 1 2 3 4 --ratio 0.5                              # Table V
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("DIFF4MMLITS_NO_PROGRESS", "1")

from diff4mmlits.config import resolve_config  # noqa: E402
from diff4mmlits.data.case import Case  # noqa: E402
from diff4mmlits.data.io import from_sitk, to_sitk  # noqa: E402
from diff4mmlits.evaluate.metrics import case_metrics  # noqa: E402
from diff4mmlits.evaluate.tables import PAPER_METRICS, pooled_metrics  # noqa: E402
from diff4mmlits.segment.dataset import prepare_case, resample_case  # noqa: E402
from diff4mmlits.segment.plan import fingerprint, plan_segmenter  # noqa: E402
from diff4mmlits.segment.predict import load_segmenter, segment_case  # noqa: E402
from diff4mmlits.segment.resample import resample_onto  # noqa: E402
from diff4mmlits.segment.train import train_model, train_segmenter  # noqa: E402

VARIANTS = {
    "pvp": {"phases": ("PVP",), "synthetic": "none", "cascade": False},
    "multi": {"phases": ("NC", "AP", "PVP", "DP"), "synthetic": "none", "cascade": False},
    "multi-cascade": {"phases": ("NC", "AP", "PVP", "DP"), "synthetic": "none", "cascade": True},
    "multi-syn": {"phases": ("NC", "AP", "PVP", "DP"), "synthetic": "on-the-fly", "cascade": False},
}
REPORTED = PAPER_METRICS + ("tumor_dice_global", "tumor_dice_per_lesion", "liver_dsc")
"""Per case (the paper's four), global and per-lesion tumor Dice, liver Dice."""


# --- data ----------------------------------------------------------------------------------------
def register(case: Case, tumor_free: dict[str, Any] | None) -> tuple[Case, Case | None, str]:
    """Register a phantom case (the register stage when installed, else resampling without motion
    correction) and move its tumor-free phases with the same transforms (the normal CT)."""
    import SimpleITK as sitk

    try:
        from diff4mmlits.register import register_case
    except ImportError:
        register_case = None
    if register_case is not None:
        result = register_case(case, resolve_config("demo").register)
        registered, transforms, how = result.case, result.transforms, "register stage (demo preset)"
    else:
        registered = Case(case.case_id, {k: resample_onto(v, case.annotated) for k, v in case.phases.items()}, case.label)
        transforms, how = {}, "no register stage installed: phases resampled onto PVP without motion correction"
    normal = None
    if tumor_free is not None:
        phases = {}
        for name, volume in tumor_free.items():
            if name not in case.phases:
                continue
            transform = transforms.get(name)
            if transform is None:
                phases[name] = resample_onto(volume, case.annotated)
            else:
                image = sitk.Resample(sitk.Cast(to_sitk(volume), sitk.sitkFloat32), to_sitk(case.annotated), transform,
                                      sitk.sitkLinear, float(volume.array.min()))
                phases[name] = from_sitk(image)
        liver = case.label.with_array(np.minimum(case.label.array, 1).astype(np.uint8))
        normal = Case(case.case_id, phases, liver)
    return registered, normal, how


def make_cases(indices: range, seed: int, site: str, size: int, with_normal: bool) -> tuple[list[Case], list[Case], str]:
    from diff4mmlits.data.phantom import make_phantom_case

    cases, normals, how = [], [], ""
    for index in indices:
        phantom = make_phantom_case(index, seed=seed, site=site, size=size)
        registered, normal, how = register(phantom.case, phantom.truth.tumor_free if with_normal else None)
        cases.append(registered)
        if normal is not None:
            normals.append(normal)
    return cases, normals, how


def load_bench_painter(args: argparse.Namespace, train: list[Case], method: str) -> Any:
    """The synthesize stage's painter ``method``, or None when that stage is not installed.

    ``handcrafted`` measures the tumor contrasts of the registered training cases (what the
    synthesize stage does in a run); ``ldm`` and ``cut`` load the trained latent diffusion painter
    or CUT painter of an existing run folder (``--painter-run``, e.g. after ``diff4mmlits demo``).
    """
    try:
        from diff4mmlits.synthesize.contrast import measure_tumor_contrasts
        from diff4mmlits.synthesize.handcrafted import HandcraftedPainter
        from diff4mmlits.synthesize.painters import load_painter
    except ImportError:
        return None
    if method in ("ldm", "cut"):
        from diff4mmlits.runfolder import RunFolder

        if args.painter_run is None:
            raise SystemExit(f"--painter {method} needs --painter-run RUN (a run folder with a trained {method} painter)")
        return load_painter(RunFolder(args.painter_run), method, "paper", "cpu")
    config = resolve_config("demo")
    tumors = [t for case in train for t in measure_tumor_contrasts(case)]
    return HandcraftedPainter(real_tumors=tumors, config=config.synthesize, crop_vox=config.diffusion.crop_vox,
                              close_vox=config.inpaint.close_kernel_vox, dilate_vox=config.inpaint.dilate_kernel_vox)


def normal_cases(args: argparse.Namespace, train: list[Case], truth: list[Case], source: str) -> list[Case]:
    """The tumor-free cases the painters paint into: the phantom's truth (``truth``), or the training
    cases inpainted by the run's FFC inpainter (``ffc``) or by the median filter (``median``; Table V's
    "Median ($)" row)."""
    if source == "truth":
        return truth
    from diff4mmlits.inpaint.case import inpaint_case
    from diff4mmlits.inpaint.stage import load_inpainter
    from diff4mmlits.runfolder import RunFolder

    if args.painter_run is None:
        raise SystemExit(f"--normal {source} needs --painter-run RUN (its config, and for ffc its trained inpainter)")
    run = RunFolder(args.painter_run)
    config = run.load_config()
    model = load_inpainter(run, config, "cpu") if source == "ffc" else None
    start = time.time()
    cases = [inpaint_case(case, source, model, config) for case in train]
    print(f"normal CT by {source}: {len(cases)} cases in {time.time() - start:.0f} s", flush=True)
    return [Case(c.case_id, c.phases, c.label) for c in cases]


def paint_pool(painter: Any, normals: list[Case], count: int, plan: Any, phases: Any, figures: Path,
               real: list[Case]) -> tuple[list[Any], float]:
    """``count`` synthetic cases painted into the normal cases in turn (seeded), prepared for training;
    the first four are drawn beside real tumors of the same size in ``figures``."""
    from diff4mmlits.segment.dataset import prepare_resampled
    from diff4mmlits.synthesize.figures import plot_synthesis_examples

    rng = np.random.default_rng(0)
    start = time.time()
    pool = [painter.paint(normals[i % len(normals)], rng) for i in range(count)]
    seconds = time.time() - start
    pool = [Case(f"{c.case_id}_s{i:03d}", c.phases, c.label) for i, c in enumerate(pool)]
    plot_synthesis_examples(pool[:4], real, figures)
    return [prepare_resampled(c, plan, phases) for c in pool], seconds


# --- quality -------------------------------------------------------------------------------------
def scores(model_dir: Path, cases: list[Case]) -> dict[str, float]:
    """Per-case means of the paper's metrics and liver Dice; global and per-lesion tumor Dice of the set."""
    segmenter = load_segmenter(model_dir, device="cpu")
    rows = [case_metrics(segment_case(c, segmenter).array, c.label.array, c.label.spacing_mm) for c in cases]
    pooled = {r["metric"]: r["mean"] for r in pooled_metrics(rows)}
    return {m: float(pooled[m]) if m in pooled else float(np.mean([r[m] for r in rows])) for m in REPORTED}


def quality(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    n_train, n_val = args.train, args.val
    t0 = time.time()
    train, normal, how = make_cases(range(n_train), args.data_seed, "default", args.size, with_normal="truth" in args.normal)
    val, _, _ = make_cases(range(n_train, n_train + n_val), args.data_seed, "default", args.size, False)
    test, _, _ = make_cases(range(100, 100 + args.test), args.data_seed, "default", args.size, False)
    second, _, _ = make_cases(range(200, 200 + args.second), args.data_seed, "second", args.size, False)
    print(f"data: {n_train} train, {n_val} val, {args.test} test, {args.second} second-site cases of size {args.size} "
          f"in {time.time() - t0:.0f} s; {how}", flush=True)
    painters = {method: load_bench_painter(args, train, method) for method in args.painter}
    normal_sets = {source: normal_cases(args, train, normal, source) for source in args.normal}
    runs = [(variant, None, None) for variant in args.variants if VARIANTS[variant]["synthetic"] == "none"]
    runs += [(variant, source, method) for variant in args.variants if VARIANTS[variant]["synthetic"] != "none"
             for source in args.normal for method in args.painter]
    results: dict[str, Any] = {}
    pools: dict[Any, Any] = {}
    for variant, source, method in runs:
        painter = painters[method] if method is not None else None
        tags = ([source] if len(args.normal) > 1 else []) + ([method] if len(args.painter) > 1 else [])
        name = f"{variant}[{'+'.join(tags)}]" if method is not None and tags else variant
        if method is not None and painter is None:
            print(f"{name}: skipped (no diff4mmlits.synthesize.painters installed)", flush=True)
            continue
        per_seed = []
        for seed in args.seeds:
            config = resolve_config("demo").segment.model_copy(update={
                **VARIANTS[variant], "epochs": args.epochs, "steps_per_epoch": args.steps, "loader_workers": 0,
                "patch_size_vox": tuple(args.patch), "synthetic_ratio": args.ratio,
                "cascade_liver_epochs": max(1, args.epochs // 2),
            })
            fp = fingerprint(train, config.window_hu)
            plan = plan_segmenter(fp, config)
            prepared = [prepare_case(c, plan, config.phases) for c in train]
            prepared_val = [prepare_case(c, plan, config.phases) for c in val]
            normals, synthetic = [], []
            if source is not None and args.synthetic == "offline":
                # as the pipeline trains: a pool painted once (per painter, seed 0), read like real cases
                key = (source, method, plan.target_spacing_mm)
                if key not in pools:
                    resampled = [resample_case(c, plan.target_spacing_mm) for c in normal_sets[source]]
                    pools[key] = paint_pool(painter, resampled, args.pool, plan, config.phases, out / f"pool_{source}_{method}", train)
                    print(f"{name}: painted {args.pool} synthetic cases in {pools[key][1]:.0f} s", flush=True)
                synthetic = pools[key][0]
                config = config.model_copy(update={"synthetic": "offline"})
            elif source is not None:
                normals = [resample_case(c, plan.target_spacing_mm) for c in normal_sets[source]]
            model_dir = out / f"{name}_seed{seed}"
            start = time.time()
            if config.cascade:  # both stages, as 'diff4mmlits train' does
                train_model(train, val, config, model_dir, seed=seed, echo=lambda _: None)
            else:
                train_segmenter(prepared, prepared_val, plan, config, model_dir, seed=seed, fingerprint=fp,
                                synthetic=synthetic, normal=normals, painter=painter if normals else None)
            seconds = time.time() - start
            per_seed.append({"seed": seed, "train_s": seconds, "test": scores(model_dir, test), "second": scores(model_dir, second)})
            s = per_seed[-1]
            print(f"{name} seed {seed}: trained {seconds:.0f} s; test DSC {s['test']['tumor_dice_per_case']:.3f}, "
                  f"second-site DSC {s['second']['tumor_dice_per_case']:.3f}", flush=True)
        results[name] = per_seed
    print_quality_table(results)
    return results


def print_quality_table(results: dict[str, Any]) -> None:
    names = {"tumor_dice_per_case": "DSC/case", "tumor_jaccard": "JAC", "tumor_sensitivity": "SE", "tumor_precision": "PRE",
             "tumor_dice_global": "DSC global", "tumor_dice_per_lesion": "DSC/lesion", "liver_dsc": "liver DSC"}
    for split in ("test", "second"):
        print(f"\ntumor metrics (%), {'held-out test' if split == 'test' else 'second site'}: mean ± sd over seeds")
        print(f"{'variant':<22}" + "".join(f"{n:>16}" for n in names.values()))
        for variant, per_seed in results.items():
            cells = []
            for metric in names:
                values = 100 * np.array([s[split][metric] for s in per_seed])
                cells.append(f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0:.1f}")
            print(f"{variant:<22}" + "".join(f"{c:>16}" for c in cells))


# --- speed ---------------------------------------------------------------------------------------
def training_speed(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    train, normal, _ = make_cases(range(4), args.data_seed, "default", args.size, with_normal=True)
    painter = load_bench_painter(args, train, args.painter[0])
    result: dict[str, Any] = {}
    settings = [("real only", 0.0, 0)] + ([("on-the-fly synthesis", args.ratio, 0), ("on-the-fly, 1 loader worker", args.ratio, 1)]
                                           if painter is not None else [])
    for name, ratio, workers in settings:
        config = resolve_config("demo").segment.model_copy(update={
            "epochs": 1, "steps_per_epoch": args.speed_steps, "loader_workers": workers, "synthetic_ratio": ratio,
            "patch_size_vox": tuple(args.patch),
        })
        plan = plan_segmenter(fingerprint(train), config)
        prepared = [prepare_case(c, plan, config.phases) for c in train]
        normals = [resample_case(c, plan.target_spacing_mm) for c in normal] if ratio > 0 else []
        run = train_segmenter(prepared, [], plan, config, out / "speed", seed=0, normal=normals, painter=painter if ratio > 0 else None)
        result[name] = {"steps_per_s": run.steps_per_second, "loader_wait_fraction": run.loader_wait_fraction}
    base = result["real only"]["steps_per_s"]
    print("\ntraining speed (demo network, patch " + "×".join(map(str, args.patch)) + f", {args.speed_steps} steps)")
    for name, r in result.items():
        print(f"  {name:<30} {r['steps_per_s']:.2f} steps/s (×{r['steps_per_s'] / base:.2f} of real only), "
              f"{100 * r['loader_wait_fraction']:.0f}% of the loop waiting for data")
    if painter is None:
        print("  on-the-fly synthesis: not measured (no diff4mmlits.synthesize.painters installed)")
    return result


def prediction_speed(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from monai.inferers import sliding_window_inference
    from scipy import ndimage

    from diff4mmlits.segment.networks import main_output

    cases, _, _ = make_cases(range(3), args.data_seed, "default", args.size, with_normal=False)
    config = resolve_config("demo").segment.model_copy(update={"epochs": 1, "steps_per_epoch": 2, "loader_workers": 0,
                                                               "patch_size_vox": tuple(args.patch)})
    fp = fingerprint(cases[:2])
    plan = plan_segmenter(fp, config)
    train_segmenter([prepare_case(c, plan, config.phases) for c in cases[:2]], [], plan, config, out / "pred_model", seed=0, fingerprint=fp)
    segmenter = load_segmenter(out / "pred_model", device="cpu")
    demo_case = cases[2]
    # a 100×256×256 case at the plan's spacing (the demo case zoomed up), so the network runs at 256×256×100
    zoom = np.array([100, 256, 256]) / np.array(demo_case.annotated.shape)
    big_phases = {k: v.with_array(v.array) for k, v in demo_case.phases.items()}
    big_phases = {k: type(v)(ndimage.zoom(v.array, zoom, order=1).astype(np.float32), plan.target_spacing_mm) for k, v in big_phases.items()}
    big_label = type(demo_case.label)(ndimage.zoom(demo_case.label.array, zoom, order=0), plan.target_spacing_mm, kind="label")
    big = Case("big", big_phases, big_label)
    result = {}
    for name, case in (("demo " + "×".join(map(str, demo_case.annotated.shape)), demo_case), ("100×256×256", big)):
        ours = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            segment_case(case, segmenter)
            ours.append(time.perf_counter() - start)
        image = torch.from_numpy(prepare_case(case, plan, config.phases).image)[None]
        plain = []
        with torch.no_grad():
            for _ in range(args.repeats):
                start = time.perf_counter()
                sliding_window_inference(image, list(plan.patch_size_vox), config.sliding_window_batch,
                                         lambda x: main_output(segmenter.network(x)), overlap=config.sliding_window_overlap, mode="gaussian")
                plain.append(time.perf_counter() - start)
        result[name] = {"ours_s": float(np.median(ours)), "plain_swi_s": float(np.median(plain))}
    print("\nprediction seconds per case (median of", args.repeats, "runs; ours = the whole segment_case)")
    for name, r in result.items():
        print(f"  {name:<22} ours {r['ours_s']:.2f} s, plain sliding_window_inference {r['plain_swi_s']:.2f} s, "
              f"ratio ×{r['ours_s'] / r['plain_swi_s']:.2f}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=48, help="phantom in-plane size (voxels)")
    parser.add_argument("--train", type=int, default=8)
    parser.add_argument("--val", type=int, default=2)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--second", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 32, 32])
    parser.add_argument("--ratio", type=float, default=0.5, help="synthetic share of training samples")
    parser.add_argument("--painter", nargs="+", default=["handcrafted"], choices=["handcrafted", "ldm", "cut"],
                        help="how synthetic tumors are painted on the fly; several: multi-syn once per painter (Table V)")
    parser.add_argument("--painter-run", type=Path, default=None, help="run folder with trained painters (for --painter ldm / cut)")
    parser.add_argument("--normal", nargs="+", default=["truth"], choices=["truth", "ffc", "median"],
                        help="tumor-free CT to paint into: the phantom's truth, or the training cases inpainted by "
                             "the run's FFC inpainter or the median filter (Table V's inpainter rows)")
    parser.add_argument("--synthetic", default="on-the-fly", choices=["on-the-fly", "offline"],
                        help="multi-syn: paint in the loader, or train on a pool painted once (as the pipeline does)")
    parser.add_argument("--pool", type=int, default=32, help="synthetic cases painted per painter with --synthetic offline")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--speed-steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_segment"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_speed:
        report["training_speed"] = training_speed(args, args.out)
        report["prediction_speed"] = prediction_speed(args, args.out)
    if not args.skip_quality:
        report["quality"] = quality(args, args.out)
    (args.out / "bench_segment.json").write_text(json.dumps(report, indent=2))
    print(f"\nresults in {args.out / 'bench_segment.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
