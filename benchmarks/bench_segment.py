"""Benchmark of the multimodal segmenter on the built-in phantom (paper Tables I, II, IV; issue 7).

Quality: phantom train / validation / test cases and a ``--site second`` test set (by default the
test cases' patients scanned at the second site, ``--second-patients test``, so the two sets differ
in the scanner alone; ``own``: the second site's own patients, as before December 2026); the tumor DSC,
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
``diff4mmlits demo`` and ``diff4mmlits train-translator --run RUN --painter``. ``--normal-extra N``
adds the tumor-free CT of ``N`` unlabelled patients to every normal set: healthy scans of other
anatomies to paint into, which need no annotation.

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
    python benchmarks/bench_segment.py --skip-speed --variants multi multi-syn --painter ldm \
        --backbone unet --seeds 0 1 2 --ratio 0.2                                         # Table III
    python benchmarks/bench_segment.py --skip-speed --variants multi multi-syn --painter ldm \
        --real-share 0.3 --seeds 0 1 2 --ratio 0.2                                        # Table IV
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

import clinical  # noqa: E402  (benchmarks/clinical.py)
from diff4mmlits.config import resolve_config  # noqa: E402
from diff4mmlits.data.case import Case  # noqa: E402
from diff4mmlits.data.io import from_sitk, to_sitk  # noqa: E402
from diff4mmlits.data.phantom.generate import HEALTHY_PATIENT_OFFSET  # noqa: E402
from diff4mmlits.data.volume import Volume  # noqa: E402
from diff4mmlits.evaluate.metrics import SIZE_CLASSES, case_metrics  # noqa: E402
from diff4mmlits.evaluate.tables import PAPER_METRICS, pooled_metrics  # noqa: E402
from diff4mmlits.segment.dataset import prepare_case, prepare_resampled, resample_case  # noqa: E402
from diff4mmlits.segment.plan import fingerprint, plan_segmenter  # noqa: E402
from diff4mmlits.segment.predict import load_segmenter, segment_case  # noqa: E402
from diff4mmlits.segment.resample import resample_onto  # noqa: E402
from diff4mmlits.segment.train import train_model, train_segmenter  # noqa: E402

VARIANTS = {
    "pvp": {"phases": ("PVP",), "synthetic": "none", "cascade": False},
    "multi": {"phases": ("NC", "AP", "PVP", "DP"), "synthetic": "none", "cascade": False},
    "multi-cascade": {"phases": ("NC", "AP", "PVP", "DP"), "synthetic": "none", "cascade": True},
    "multi-syn": {"phases": ("NC", "AP", "PVP", "DP"), "synthetic": "on-the-fly", "cascade": False},
    "multi-syn-cascade": {"phases": ("NC", "AP", "PVP", "DP"), "synthetic": "on-the-fly", "cascade": True},
}
REPORTED = PAPER_METRICS + ("tumor_dice_global", "tumor_dice_per_lesion", "liver_dsc")
"""Per case (the paper's four), global and per-lesion tumor Dice, liver Dice."""
LAYOUTS = {"channels-last": torch.channels_last_3d, "ncdhw": torch.contiguous_format}
"""``--layout``: the segmenter's network and batch layout (train_segmenter's ``memory_format``)."""


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


def make_cases(indices: range, seed: int, site: str, size: int, with_normal: bool,
               patients: str | None = None) -> tuple[list[Case], list[Case], str]:
    from diff4mmlits.data.phantom import make_phantom_case

    cases, normals, how = [], [], ""
    for index in indices:
        phantom = make_phantom_case(index, seed=seed, site=site, size=size, patients=patients)
        registered, normal, how = register(phantom.case, phantom.truth.tumor_free if with_normal else None)
        cases.append(registered)
        if normal is not None:
            normals.append(normal)
    return cases, normals, how


def second_site_cases(count: int, seed: int, size: int, patients: str) -> list[Case]:
    """The out-of-distribution test set: the first ``count`` test patients (phantom indices 100…)
    scanned at the second site (``patients="test"``: the same patients, tumors of the same kinds
    and sizes, so the two sets differ in the scanner alone), or the second site's own patients
    (indices 200…; ``"own"``, whose first 18 cases hold far fewer large tumors than the test set)."""
    if patients == "test":
        return make_cases(range(100, 100 + count), seed, "second", size, False, patients="default")[0]
    return make_cases(range(200, 200 + count), seed, "second", size, False)[0]


def train_bench_painter(train: list[Case], normal: list[Case], out: Path, mode: str, overrides: list[str] | None = None) -> Any:
    """The latent diffusion painter trained here, as the pipeline would, on this benchmark's own training
    split: the autoencoder on its normal CT (and real tumor patches), the diffusion model (``mode``) on
    its real tumors, demo-preset settings (``overrides``: ``--painter-set``, e.g. the paper's scheme). The
    painter draws its tumors' shapes and profiles from them."""
    from diff4mmlits.distributed import DistributedContext
    from diff4mmlits.synthesize.autoencoder import load_autoencoder
    from diff4mmlits.synthesize.diffusion import load_diffusion
    from diff4mmlits.synthesize.painters import LatentDiffusionPainter
    from diff4mmlits.synthesize.train_autoencoder import train_autoencoder
    from diff4mmlits.synthesize.train_diffusion import build_tumor_crops, train_diffusion

    config = resolve_config("demo", None, overrides or [])
    diffusion = config.diffusion.model_copy(update={"mode": mode})
    close, dilate = config.inpaint.close_kernel_vox, config.inpaint.dilate_kernel_vox
    if (out / f"diffusion-{mode}" / "weights.safetensors").is_file() and (out / "ae" / "weights.safetensors").is_file():
        print(f"painter ldm ({mode}): the models already in {out}", flush=True)
        codec = load_autoencoder(out / "ae", "cpu")
    else:
        start = time.time()
        context = DistributedContext()
        train_autoencoder(normal, normal[-2:], config.autoencoder, out / "ae", seed=0, context=context, tumor_cases=train)
        codec = load_autoencoder(out / "ae", "cpu")
        crops = build_tumor_crops(train, codec, diffusion, np.random.default_rng([0, 31]), close, dilate)
        train_diffusion(crops, diffusion, out / f"diffusion-{mode}", seed=0, context=context)
        print(f"painter ldm ({mode}) trained on the {len(train)} training cases in {time.time() - start:.0f} s", flush=True)
    return LatentDiffusionPainter(codec=codec, diffusion=load_diffusion(out / f"diffusion-{mode}", "cpu"),
                                  config=config.synthesize, close_vox=close, dilate_vox=dilate)


class NoTumors:
    """The control of a painter: "paints" nothing, so a synthetic case is its tumor-free CT with the
    liver label alone (``--painter none``: what the normal CT adds without painted tumors; offline or on the fly)."""

    def paint(self, normal: Case, rng: np.random.Generator) -> Case:
        return normal


def load_bench_painter(args: argparse.Namespace, train: list[Case], method: str, normal: list[Case] | None = None) -> Any:
    """The synthesize stage's painter ``method``, or None when that stage is not installed.

    ``handcrafted`` measures the tumor contrasts of the registered training cases (what the
    synthesize stage does in a run); ``ldm`` and ``cut`` load the trained latent diffusion painter
    or CUT painter of an existing run folder (``--painter-run``, e.g. after ``diff4mmlits demo``);
    without ``--painter-run``, ``ldm`` is trained here on the training split (``--ldm-mode``).
    """
    if method == "none":
        return NoTumors()
    try:
        from diff4mmlits.synthesize.contrast import measure_tumor_contrasts
        from diff4mmlits.synthesize.handcrafted import HandcraftedPainter
        from diff4mmlits.synthesize.painters import load_painter
    except ImportError:
        return None
    if method == "ldm" and args.painter_run is None and normal:
        return train_bench_painter(train, normal, args.out / "painter", args.ldm_mode, args.painter_set)
    if method in ("ldm", "cut"):
        from diff4mmlits.runfolder import RunFolder

        if args.painter_run is None:
            raise SystemExit(f"--painter {method} needs --painter-run RUN (a run folder with a trained {method} painter)")
        from diff4mmlits.config import apply_overrides

        run = RunFolder(args.painter_run)  # --painter-set changes how it paints (e.g. synthesize.noise_texture=scan)
        return load_painter(run, method, args.ldm_mode, "cpu", config=apply_overrides(run.load_config(), args.painter_set))
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


def paint_pool(painter: Any, normals: list[Case], count: int, figures: Path, real: list[Case]) -> tuple[list[Case], float]:
    """``count`` synthetic cases painted into the normal cases in turn (seeded); the first four are
    drawn beside real tumors of the same size in ``figures``."""
    from diff4mmlits.synthesize.figures import plot_synthesis_examples

    rng = np.random.default_rng(0)
    start = time.time()
    pool = [painter.paint(normals[i % len(normals)], rng) for i in range(count)]
    seconds = time.time() - start
    pool = [Case(f"{c.case_id}_s{i:03d}", c.phases, c.label) for i, c in enumerate(pool)]
    if not isinstance(painter, NoTumors):
        plot_synthesis_examples(pool[:4], real, figures)
    return pool, seconds


def segment_config(args: argparse.Namespace, update: dict[str, Any]) -> Any:
    """The preset's segment section with ``--segment-set`` applied; ``--epochs``/``--steps``/``--patch``
    replace the preset's where given."""
    config = resolve_config(args.preset, overrides=args.segment_set).segment
    given = {"epochs": args.epochs, "steps_per_epoch": args.steps,
             "patch_size_vox": tuple(args.patch) if args.patch else None}
    changes = {k: v for k, v in given.items() if v is not None}
    if args.epochs is not None and config.cascade_liver_epochs is not None:
        changes["cascade_liver_epochs"] = max(1, round(config.cascade_liver_epochs * args.epochs / config.epochs))
    if args.backbone is not None:
        changes["backbone"] = args.backbone
    if args.grain_noise is not None:
        changes["grain_noise_prob"] = args.grain_noise
    if args.normalization is not None:
        changes["normalization"] = args.normalization
    return config.model_copy(update={**changes, "loader_workers": 0, **update})


# --- quality -------------------------------------------------------------------------------------
def scores(model_dir: Path, cases: list[Case]) -> dict[str, float]:
    """Per-case means of the paper's metrics and liver Dice; global and per-lesion tumor Dice of the set."""
    segmenter = load_segmenter(model_dir, device="cpu")
    rows = [case_metrics(segment_case(c, segmenter).array, c.label.array, c.label.spacing_mm) for c in cases]
    pooled = {r["metric"]: r["mean"] for r in pooled_metrics(rows)}
    out = {m: float(pooled[m]) if m in pooled else float(np.mean([r[m] for r in rows])) for m in REPORTED}
    for size in SIZE_CLASSES:  # lesion recall by size (equivalent diameter < 10, 10-20, >= 20 mm), pooled
        true = sum(int(r[f"lesions_true_{size}"]) for r in rows)
        out[f"lesion_recall_{size}"] = sum(int(r[f"lesions_detected_{size}"]) for r in rows) / true if true else float("nan")
        out[f"lesions_true_{size}"] = float(true)
    return out


def quality(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    n_train, n_val = args.train, args.val
    t0 = time.time()
    train, normal, how = make_cases(range(n_train), args.data_seed, "default", args.size, with_normal="truth" in args.normal)
    every_train, every_normal = train, normal  # --painter-cases all: the painter learns every training case's tumors
    if args.real_share < 1.0:  # Table IV: the multimodal segmenter with a share of the real cases
        kept = max(1, round(args.real_share * n_train))
        train, normal = train[:kept], normal[:kept]
        print(f"real share {args.real_share:.0%}: {kept} of {n_train} training cases", flush=True)
    val, _, _ = make_cases(range(n_train, n_train + n_val), args.data_seed, "default", args.size, False)
    test, _, _ = make_cases(range(100, 100 + args.test), args.data_seed, "default", args.size, False)
    second = second_site_cases(args.second, args.data_seed, args.size, args.second_patients)
    print(f"data: {n_train} train, {n_val} val, {args.test} test, {args.second} second-site cases "
          f"({args.second_patients} patients) of size {args.size} "
          f"in {time.time() - t0:.0f} s; {how}", flush=True)
    if args.normal_site != "default" and "truth" in args.normal:
        _, normal, _ = make_cases(range(300, 300 + len(train)), args.data_seed, args.normal_site, args.size, True)
        print(f"normal CT: the tumor-free CT of {len(normal)} unlabelled {args.normal_site}-site cases", flush=True)
    painter_train, painter_normal = (every_train, every_normal) if args.painter_cases == "all" else (train, normal)
    if args.painter_cases == "all":
        print(f"painter: trained on all {len(painter_train)} training cases' tumors", flush=True)
    painters = {method: load_bench_painter(args, painter_train, method, painter_normal) for method in args.painter}
    normal_sets = {source: normal_cases(args, train, normal, source) for source in args.normal}
    # healthy scans of other patients (the phantom's healthy scans: other patients than every split's), no
    # annotation needed: more anatomies to paint into, and with --normal-extra-second a new scanner's beside them
    healthy = [(args.normal_site, args.normal_extra, HEALTHY_PATIENT_OFFSET),
               ("second", args.normal_extra_second, HEALTHY_PATIENT_OFFSET + args.normal_extra)]
    for site, count, first in healthy:
        if count:
            _, extra, _ = make_cases(range(first, first + count), args.data_seed, site, args.size, True)
            normal_sets = {source: cases + extra for source, cases in normal_sets.items()}
            print(f"normal CT: + the tumor-free CT of {len(extra)} unlabelled {site}-site patients", flush=True)
    runs = [(variant, None, None, 0.0) for variant in args.variants if VARIANTS[variant]["synthetic"] == "none"]
    runs += [(variant, source, method, ratio) for variant in args.variants if VARIANTS[variant]["synthetic"] != "none"
             for source in args.normal for method in args.painter for ratio in args.ratio]
    results: dict[str, Any] = {}
    pools: dict[Any, Any] = {}
    shares: dict[str, list[tuple[float, str]]] = {}  # synthetic run → its (share, result name) per --ratio
    for variant, source, method, ratio in runs:
        painter = painters[method] if method is not None else None
        tags = ([source] if len(args.normal) > 1 else []) + ([method] if len(args.painter) > 1 else [])
        group = f"{variant}[{'+'.join(tags)}]" if method is not None and tags else variant
        name = f"{group}@{ratio:g}" if method is not None and len(args.ratio) > 1 else group
        if method is not None and painter is None:
            print(f"{name}: skipped (no diff4mmlits.synthesize.painters installed)", flush=True)
            continue
        if method is not None:
            shares.setdefault(group, []).append((ratio, name))
        per_seed = []
        for seed in args.seeds:
            config = segment_config(args, {**VARIANTS[variant], "synthetic_ratio": ratio})
            if config.normalization == "liver" and not config.cascade:
                raise SystemExit(f"--normalization liver needs a cascade variant (multi-cascade, multi-syn-cascade), not {variant}")
            fp = fingerprint(train, config.window_hu)
            plan = plan_segmenter(fp, config)
            prepared = [prepare_case(c, plan, config.phases) for c in train]
            prepared_val = [prepare_case(c, plan, config.phases) for c in val]
            normals, synthetic, pool_cases = [], [], []
            # a single-stage model paints at its plan's spacing; a cascade, as the pipeline, at the case's own
            spacing = None if config.cascade else plan.target_spacing_mm
            if source is not None and args.synthetic == "offline":
                # as the pipeline trains: a pool painted once (per painter, seed 0), read like real cases
                key = (source, method, spacing)
                if key not in pools:
                    base = [c if spacing is None else resample_case(c, spacing) for c in normal_sets[source]]
                    pools[key] = paint_pool(painter, base, args.pool, out / f"pool_{source}_{method}", train)
                    print(f"{name}: painted {args.pool} synthetic cases in {pools[key][1]:.0f} s", flush=True)
                pool_cases = pools[key][0]
                synthetic = [] if config.cascade else [prepare_resampled(c, plan, config.phases) for c in pool_cases]
                config = config.model_copy(update={"synthetic": "offline"})
            elif source is not None:
                normals = [c if spacing is None else resample_case(c, spacing) for c in normal_sets[source]]
            model_dir = out / f"{name}_seed{seed}"
            start = time.time()
            if config.cascade:  # both stages, as 'diff4mmlits train' does
                train_model(train, val, config, model_dir, seed=seed, synthetic=pool_cases, normal=normals,
                            painter=painter if normals else None, echo=lambda _: None, memory_format=LAYOUTS[args.layout])
            else:
                train_segmenter(prepared, prepared_val, plan, config, model_dir, seed=seed, fingerprint=fp,
                                synthetic=synthetic, normal=normals, painter=painter if normals else None,
                                memory_format=LAYOUTS[args.layout])
            seconds = time.time() - start
            per_seed.append({"seed": seed, "train_s": seconds, "val": scores(model_dir, val), "test": scores(model_dir, test),
                             "second": scores(model_dir, second)})
            s = per_seed[-1]
            print(f"{name} seed {seed}: trained {seconds:.0f} s; validation DSC {s['val']['tumor_dice_per_case']:.3f}, "
                  f"test DSC {s['test']['tumor_dice_per_case']:.3f}, "
                  f"second-site DSC {s['second']['tumor_dice_per_case']:.3f}", flush=True)
        results[name] = per_seed
    for group, candidates in shares.items():
        if len(candidates) > 1:
            results[f"{group}@val"] = choose_share_on_validation(results, candidates)
            print(f"{group}: share chosen on validation per seed: "
                  + ", ".join(f"{s['ratio']:g}" for s in results[f"{group}@val"]), flush=True)
    print_quality_table(results)
    return results


def choose_share_on_validation(results: dict[str, Any], candidates: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """For each seed, the model among ``candidates`` (share, result name) with the best per-case tumor
    Dice on the validation split (the smaller share on a tie), with its share as ``ratio``: the
    paper's tables with the synthetic share chosen on validation, not on the test set."""
    chosen = []
    for i in range(len(results[candidates[0][1]])):
        ratio, name = max(candidates, key=lambda c: (results[c[1]][i]["val"]["tumor_dice_per_case"], -c[0]))
        chosen.append({**results[name][i], "ratio": ratio})
    return chosen


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
    painter = load_bench_painter(args, train, args.painter[0], normal)
    result: dict[str, Any] = {}
    ratio = args.ratio[0]
    # "real only" trains under mixed precision where the device has it (bfloat16 on a CPU that
    # computes it in hardware); "float32" is the same without
    real = {"synthetic_ratio": 0.0, "loader_workers": 0, "synthetic_pool": 0, "mixed_precision": True}
    painted = {**real, "synthetic_ratio": ratio}
    # "NCDHW": the same as "real only" with the network and batches in the plain layout instead
    # of channels-last (train_segmenter's memory_format)
    default, plain = LAYOUTS["channels-last"], LAYOUTS["ncdhw"]
    settings = [("real only", real, default), ("real only, NCDHW", real, plain),
                ("real only, float32", {**real, "mixed_precision": False}, default)] + (
        [("on the fly, pool (default)", {**painted, "synthetic_pool": 16}, default),
         ("on the fly, painted per sample", painted, default),
         ("per sample, 1 loader worker", {**painted, "loader_workers": 1}, default)] if painter is not None else [])
    for name, update, memory_format in settings:
        config = segment_config(args, {"epochs": args.speed_epochs, "steps_per_epoch": args.speed_steps, **update})
        painting = update["synthetic_ratio"] > 0
        plan = plan_segmenter(fingerprint(train), config)
        prepared = [prepare_case(c, plan, config.phases) for c in train]
        normals = [resample_case(c, plan.target_spacing_mm) for c in normal] if painting else []
        start = time.perf_counter()
        run = train_segmenter(prepared, [], plan, config, out / "speed", seed=0, normal=normals, painter=painter if painting else None,
                              memory_format=memory_format)
        wall = time.perf_counter() - start
        steps = config.epochs * config.steps_per_epoch
        result[name] = {"steps_per_s": steps / wall, "loop_steps_per_s": run.steps_per_second, "wall_s": wall,
                        "loader_wait_fraction": run.loader_wait_fraction}
    base = result["real only"]["steps_per_s"]
    print(f"\ntraining speed ({args.preset} network, patch " + "×".join(map(str, plan.patch_size_vox))
          + f", {args.speed_epochs} epochs × {args.speed_steps} steps, whole call timed: the pool's first paintings included)")
    for name, r in result.items():
        print(f"  {name:<32} {r['steps_per_s']:.2f} steps/s, {r['wall_s']:.0f} s (×{base / r['steps_per_s']:.2f} the time of real only), "
              f"{100 * r['loader_wait_fraction']:.0f}% of the loop waiting for data")
    if painter is None:
        print("  on-the-fly synthesis: not measured (no diff4mmlits.synthesize.painters installed)")
    return result


CLINICAL_SHAPE = (96, 512, 512)
"""The clinical-size prediction case (z, y, x): the phantom at size 128 up-sampled in-plane to 512²."""


def clinical_case(data_seed: int) -> Case:
    """A four-phase case of 512 × 512 × 96 voxels (0.47 × 0.47 × 1.9 mm), phases on one grid: the
    clinical-size case of :mod:`clinical` (case 2), its phases resampled onto its PVP."""
    case, _ = clinical.clinical_case(data_seed, index=2)
    phases = {k: resample_onto(v, case.annotated) for k, v in case.phases.items()}
    return Case("clinical", {k: v.with_array(v.array.astype(np.float32)) for k, v in phases.items()}, case.label)


def _predict_in_fresh_process(model_dir: str, case_file: str, repeats: int, threads: int) -> dict[str, float]:
    """Run in a spawned process, so peak memory is this prediction's alone: seconds per
    ``segment_case`` (median), plain ``sliding_window_inference`` seconds on the same network and
    prepared image, peak resident memory and the memory held before predicting (the case, the model)."""
    import resource

    from monai.inferers import sliding_window_inference

    from diff4mmlits.segment.networks import main_output

    torch.set_num_threads(threads)
    with np.load(case_file) as data:
        spacing = tuple(float(v) for v in data["spacing"])
        phases = {k: Volume(data[k], spacing) for k in ("NC", "AP", "PVP", "DP")}
    case = Case("clinical", phases, None)
    segmenter = load_segmenter(model_dir, device="cpu")
    held_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ours = []
    for _ in range(repeats):
        start = time.perf_counter()
        segment_case(case, segmenter)
        ours.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stage = segmenter.liver or segmenter  # the single-stage model, or the cascade's whole-volume stage
    image = torch.from_numpy(prepare_case(case, stage.plan, stage.phases).image)[None]
    plain = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            sliding_window_inference(image, list(stage.plan.patch_size_vox), stage.config.sliding_window_batch,
                                     lambda x: main_output(stage.network(x)), overlap=stage.config.sliding_window_overlap,
                                     mode="gaussian")
            plain.append(time.perf_counter() - start)
    return {"ours_s": float(np.median(ours)), "plain_swi_s": float(np.median(plain)), "peak_mb": peak_mb, "held_mb": held_mb}


def prediction_speed(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Seconds and peak memory of ``segment_case`` on a 512 × 512 × 96 four-phase case, single stage
    and cascade (each in a fresh process), against MONAI's plain ``sliding_window_inference`` of
    the single-stage model's network on its prepared image, timed in the same process."""
    import multiprocessing

    t0 = time.time()
    case = clinical_case(args.data_seed)
    case_file = out / "clinical_case.npz"
    np.savez(case_file, spacing=np.array(case.annotated.spacing_mm), **{k: v.array for k, v in case.phases.items()})
    print(f"\nprediction on a {'×'.join(map(str, CLINICAL_SHAPE[::-1]))} case "
          f"({' × '.join(f'{s:.2f}' for s in case.annotated.spacing_mm[::-1])} mm), models of 2 training steps "
          f"on phantom cases of size 128 (set up in {time.time() - t0:.0f} s)", flush=True)
    result: dict[str, Any] = {}
    context = multiprocessing.get_context("spawn")
    for name, cascade in (("single stage", False), ("cascade", True)):
        model_dir = clinical.two_step_segmenter(out / f"clinical_{'cascade' if cascade else 'single'}", args.preset,
                                                args.data_seed, cascade)
        with context.Pool(1) as pool:
            result[name] = pool.apply(_predict_in_fresh_process, (str(model_dir), str(case_file), args.repeats, args.threads))
    base = result["single stage"]["plain_swi_s"]
    print(f"  {'':<14}{'seconds':>10}{'× plain SWI':>14}{'peak MB':>10}{'above case+model MB':>22}")
    for name, r in result.items():
        print(f"  {name:<14}{r['ours_s']:>10.1f}{r['ours_s'] / base:>14.2f}{r['peak_mb']:>10.0f}{r['peak_mb'] - r['held_mb']:>22.0f}")
    print(f"  plain sliding_window_inference of the single-stage network on its prepared image: {base:.1f} s "
          f"(median of {args.repeats}; threads {args.threads})")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=48, help="phantom in-plane size (voxels)")
    parser.add_argument("--train", type=int, default=8)
    parser.add_argument("--val", type=int, default=2)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--second", type=int, default=4)
    parser.add_argument("--second-patients", default="test", choices=["test", "own"],
                        help="the second-site test set: the test cases' patients scanned at the second site "
                        "(the site alone differs), or the second site's own patients (before December 2026)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--preset", default="bench", help="the segment settings' preset (bench: ~15 min per model)")
    parser.add_argument("--epochs", type=int, default=None, help="instead of the preset's (stage one scaled alike)")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch, instead of the preset's")
    parser.add_argument("--patch", type=int, nargs=3, default=None, help="patch (z y x voxels), instead of the plan's")
    parser.add_argument("--backbone", default=None, choices=["dynunet", "unet", "attention-unet", "segresnet", "vnet"],
                        help="the segmenter's network, instead of the preset's (Table III)")
    parser.add_argument("--grain-noise", type=float, default=None,
                        help="probability of noise with an in-plane grain (segment.grain_noise_prob), instead of the preset's")
    parser.add_argument("--segment-set", action="append", default=[],
                        help="a segmenter setting instead of the preset's, e.g. segment.cascade_min_tumor_vox=0")
    parser.add_argument("--normalization", default=None, choices=["dataset", "case", "none", "liver"],
                        help="the input's z-score (segment.normalization), instead of the preset's; liver needs "
                        "--variants multi-cascade or multi-syn-cascade")
    parser.add_argument("--real-share", type=float, default=1.0,
                        help="share of the training cases used, real and as the painter's tumor-free CT (Table IV)")
    parser.add_argument("--ratio", type=float, nargs="+", default=[0.5],
                        help="synthetic share of training samples; several: multi-syn once per share, and for each "
                        "seed the share with the best validation Dice is reported as VARIANT@val")
    parser.add_argument("--painter", nargs="+", default=["handcrafted"], choices=["handcrafted", "ldm", "cut", "none"],
                        help="how synthetic tumors are painted on the fly; several: multi-syn once per painter (Table V); "
                        "none: the tumor-free CT itself, liver label only (the control of painting)")
    parser.add_argument("--painter-run", type=Path, default=None,
                        help="run folder with trained painters (for --painter cut; for ldm, else it is trained here)")
    parser.add_argument("--ldm-mode", default="profile", choices=["paper", "profile", "joint"], help="the diffusion painter's mode")
    parser.add_argument("--painter-set", action="append", default=[], help="settings of the painter trained here, e.g. "
                        "synthesize.calibrate_contrast=false synthesize.quality_control=false synthesize.tumor.source=classes "
                        "(with --ldm-mode paper: the paper's scheme)")
    parser.add_argument("--painter-cases", default="kept", choices=["kept", "all"],
                        help="with --real-share: the painter trained here learns the kept cases' tumors (Table IV, like "
                             "for like) or all --train cases' (a painter that has seen more tumors than the segmenter's "
                             "real cases, as one trained on another dataset)")
    parser.add_argument("--normal", nargs="+", default=["truth"], choices=["truth", "ffc", "median"],
                        help="tumor-free CT to paint into: the phantom's truth, or the training cases inpainted by "
                             "the run's FFC inpainter or the median filter (Table V's inpainter rows)")
    parser.add_argument("--normal-site", default="default", choices=["default", "second"],
                        help="--normal truth: the tumor-free CT of the training cases (default), or of --train "
                             "unlabelled cases of the second site (other anatomies than its test cases): normal "
                             "CT from a new scanner, which needs no annotation, as a site adapting the model would")
    parser.add_argument("--normal-extra", type=int, default=0,
                        help="add to every --normal set the tumor-free CT of this many unlabelled --normal-site "
                             "patients (phantom indices 400…): healthy scans of other anatomies to paint into")
    parser.add_argument("--normal-extra-second", type=int, default=0,
                        help="add to every --normal set the tumor-free CT of this many unlabelled second-site "
                             "patients (anatomies after --normal-extra's): a new scanner's healthy scans mixed into "
                             "the pool, as a site adapting the model would add them")
    parser.add_argument("--synthetic", default="on-the-fly", choices=["on-the-fly", "offline"],
                        help="multi-syn: paint in the loader, or train on a pool painted once (as the pipeline does)")
    parser.add_argument("--pool", type=int, default=32, help="synthetic cases painted per painter with --synthetic offline")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--speed-steps", type=int, default=12)
    parser.add_argument("--speed-epochs", type=int, default=1, help="epochs of the training-speed runs")
    parser.add_argument("--skip-prediction-speed", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layout", default="channels-last", choices=list(LAYOUTS),
                        help="the quality runs' network and batch layout (train_segmenter's memory_format): "
                             "whether channels-last changes what is learned, not only how fast")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_segment"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_speed:
        report["training_speed"] = training_speed(args, args.out)
        if not args.skip_prediction_speed:
            report["prediction_speed"] = prediction_speed(args, args.out)
    if not args.skip_quality:
        report["quality"] = quality(args, args.out)
    (args.out / "bench_segment.json").write_text(json.dumps(report, indent=2))
    print(f"\nresults in {args.out / 'bench_segment.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
