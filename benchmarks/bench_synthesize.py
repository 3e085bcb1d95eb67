"""Synthesis on the phantom: realism, cross-phase coherence, autoencoder quality and speed.

The phantom knows its truth, so this benchmark isolates the synthesizer from registration and
inpainting: every phase is resampled onto the PVP grid with the TRUE breathing field (perfect
registration), and the "normal" CT is the phantom's true tumor-free image. Training cases get
synthetic tumors; held-out cases measure the autoencoder.

Measured, each in this one process:
* per phase, the tumor-to-liver contrast (HU) of the synthetic tumors (mean ± spread over
  tumors) against the real phantom tumors', the largest |mean difference| and the spread ratio,
  for: ``ldm-paper`` (the paper's scheme: per-phase, no profile, size-class masks, no quality
  control), ``ldm-profile`` (the profile condition alone: no calibration), ``ldm-profile+cal``
  (the default: profile condition, contrast calibration, dataset masks, quality control),
  ``ldm-joint`` (joint denoising with the profile, no calibration) and the handcrafted baseline;
  and the share of paintings quality control rejected;
* a real-versus-synthetic classifier (small 3D CNN on 4-phase tumor patches, held-out AUC; lower
  is better, 0.5 = indistinguishable);
* cross-phase coherence (``synthesize/realism.py``): the share of synthetic tumors whose 4-phase
  contrast vector lies among the real tumors' as closely as real tumors lie among each other;
* autoencoder reconstruction MAE (HU) and PSNR on held-out cases (liver patches, and tumor patches);
* speed: seconds per synthetic 4-phase case, and DDIM with k steps against DDPM with all T steps
  (time ratio and the contrast error of each: the quality cost of fewer steps).

    python benchmarks/bench_synthesize.py [--preset demo] [--cases 12] [--threads 2] [--device cpu]
                                          [--set diffusion.steps=2000 ...] [--json results.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DIFF4MMLITS_NO_PROGRESS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from diff4mmlits import PHASES  # noqa: E402
from diff4mmlits.config import resolve_config  # noqa: E402
from diff4mmlits.data.case import Case  # noqa: E402
from diff4mmlits.data.phantom import PhantomCase, make_phantom_case  # noqa: E402
from diff4mmlits.distributed import DistributedContext, resolve_device  # noqa: E402
from diff4mmlits.files import write_json_atomic  # noqa: E402
from diff4mmlits.synthesize.autoencoder import load_autoencoder  # noqa: E402
from diff4mmlits.synthesize.contrast import TumorContrast, measure_tumor_contrasts, summarize_contrasts  # noqa: E402
from diff4mmlits.synthesize.diffusion import load_diffusion  # noqa: E402
from diff4mmlits.synthesize.handcrafted import HandcraftedPainter  # noqa: E402
from diff4mmlits.synthesize.painters import LatentDiffusionPainter  # noqa: E402
from diff4mmlits.synthesize.realism import classifier_auc, contrast_matrix, cross_phase_coherence, tumor_patches  # noqa: E402
from diff4mmlits.synthesize.train_autoencoder import PatchSource, evaluate_reconstruction, train_autoencoder  # noqa: E402
from diff4mmlits.synthesize.train_diffusion import build_tumor_crops, train_diffusion  # noqa: E402


def truth_registered(phantom: PhantomCase) -> tuple[Case, Case, list[str]]:
    """``(real, normal, kinds)`` on the PVP grid: phases and tumor-free phases moved by the TRUE field.

    ``kinds`` lists, for each tumor :func:`measure_tumor_contrasts` finds in ``real``, the kind of the
    truth tumor nearest to it.
    """
    case, truth = phantom.case, phantom.truth
    pvp = case.annotated
    world = pvp.index_to_world(np.indices(pvp.shape).reshape(3, -1).T)
    real, normal = {}, {}
    for name, volume in case.phases.items():
        points = world + truth.displacement_mm[name].reshape(-1, 3)
        coords = volume.world_to_index(points).T.reshape(3, *pvp.shape)
        for target, source in ((real, volume), (normal, truth.tumor_free[name])):
            moved = ndimage.map_coordinates(source.array.astype(np.float32), coords, order=1, mode="nearest")
            target[name] = pvp.with_array(moved.astype(np.float32))
    real_case = Case(case.case_id, real, case.label)
    liver = case.label.with_array((case.label.array > 0).astype(np.uint8))
    normal_case = Case(case.case_id, normal, liver)
    centres = np.array([t["centre_mm"] for t in truth.tumors]) if truth.tumors else np.zeros((0, 3))
    kinds = []
    for tumor in measure_tumor_contrasts(real_case):
        where = pvp.index_to_world(np.array(tumor.centre_vox))
        kinds.append(truth.tumors[int(np.linalg.norm(centres - where, axis=1).argmin())]["kind"] if len(centres) else "?")
    return real_case, normal_case, kinds


def paint_all(painter, normals: list[Case], per_case: int, seed: int) -> tuple[list[Case], float, float, float]:
    """Synthetic cases from every normal case, the wall and CPU seconds per synthetic case, and the
    share of paintings quality control rejected."""
    cases, start, cpu = [], time.perf_counter(), time.process_time()
    rejected = paintings = 0
    for index, normal in enumerate(normals):
        for k in range(per_case):
            case, provenance = painter.paint_with_provenance(normal, np.random.default_rng([seed, index, k]))
            cases.append(case)
            rejected += provenance.get("quality_rejected", 0)
            paintings += sum(len(t.get("quality", [None])) for t in provenance["tumors"])
    count = max(len(cases), 1)
    return cases, (time.perf_counter() - start) / count, (time.process_time() - cpu) / count, rejected / max(paintings, 1)


def realism_gaps(summary: dict, real_summary: dict) -> tuple[float, float]:
    """The largest |synthetic − real| mean contrast over phases (HU) and the spread ratio farthest from 1."""
    gaps = [abs(summary[p]["mean"] - real_summary[p]["mean"]) for p in PHASES if p in summary and p in real_summary]
    ratios = [summary[p]["std"] / real_summary[p]["std"] for p in PHASES if p in summary and p in real_summary and real_summary[p]["std"] > 0]
    worst_ratio = max(ratios, key=lambda r: abs(r - 1.0)) if ratios else float("nan")
    return (max(gaps) if gaps else float("nan")), worst_ratio


def contrast_error(tumors: list[TumorContrast], real_summary: dict) -> float:
    """Mean over phases of |mean synthetic contrast − mean real contrast|, HU."""
    summary = summarize_contrasts(tumors)
    errors = [abs(summary[p]["mean"] - real_summary[p]["mean"]) for p in PHASES if p in summary and p in real_summary]
    return float(np.mean(errors)) if errors else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--per-case", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--ddim-steps", default="5,10,25,50", help="DDIM step counts compared with DDPM (all T steps)")
    parser.add_argument("--ddpm-tumors", type=int, default=4, help="synthetic cases sampled with full DDPM (slow)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = resolve_config(args.preset, None, args.overrides)
    device = resolve_device(args.device)
    context = DistributedContext(device=device)
    results: dict = {"preset": args.preset, "overrides": args.overrides, "device": str(device), "threads": args.threads}

    # --- data: truth-registered phantom cases --------------------------------------------------
    start = time.perf_counter()
    triples = [truth_registered(make_phantom_case(i, seed=args.seed, size=args.size)) for i in range(args.cases)]
    n_held = max(2, args.cases // 4)
    train, held = triples[:-n_held], triples[-n_held:]
    measured = [measure_tumor_contrasts(real) for real, _, _ in triples]  # once per case: it segments every lesion
    real_tumors = [t for tumors in measured for t in tumors]
    real_kinds = [k for _, _, kinds in triples for k in kinds]
    real_summary = summarize_contrasts(real_tumors)
    print(f"phantom: {args.cases} cases of size {args.size} ({len(train)} train, {n_held} held out), "
          f"{len(real_tumors)} real tumors, {time.perf_counter() - start:.0f} s")

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        # --- autoencoder ----------------------------------------------------------------------
        start, cpu = time.perf_counter(), time.process_time()
        train_autoencoder([n for _, n, _ in train], [n for _, n, _ in held], config.autoencoder, folder / "ae",
                          seed=args.seed, context=context, tumor_cases=[r for r, _, _ in train])
        results["autoencoder_train_s"] = time.perf_counter() - start
        results["autoencoder_train_cpu_s"] = time.process_time() - cpu
        codec = load_autoencoder(folder / "ae", device)
        count = 16
        liver_hu, liver = PatchSource([n for _, n, _ in held]).sample(np.random.default_rng(1), count, config.autoencoder.patch_vox, 1.0)
        tumor_hu, tumor_liver = PatchSource([r for r, _, _ in held], region="tumor").sample(
            np.random.default_rng(2), count, config.autoencoder.patch_vox, 1.0)
        results["autoencoder_liver"] = evaluate_reconstruction(codec, liver_hu, liver)
        results["autoencoder_tumor_patches"] = evaluate_reconstruction(codec, tumor_hu, tumor_liver)
        print(f"autoencoder: {results['autoencoder_train_s']:.0f} s ({results['autoencoder_train_cpu_s']:.0f} s CPU); held-out liver patches MAE "
              f"{results['autoencoder_liver']['mae_liver_hu']:.1f} HU (liver), PSNR {results['autoencoder_liver']['psnr_db']:.1f} dB; "
              f"tumor patches MAE {results['autoencoder_tumor_patches']['mae_liver_hu']:.1f} HU")

        # --- diffusion, both modes ------------------------------------------------------------
        crops = build_tumor_crops([r for r, _, _ in train], codec, config.diffusion, np.random.default_rng([args.seed, 31]))
        painters = {}
        for mode in ("paper", "profile", "joint"):
            start, cpu = time.perf_counter(), time.process_time()
            metrics = train_diffusion(crops, config.diffusion.model_copy(update={"mode": mode}), folder / mode,
                                      seed=args.seed, context=context)
            results[f"diffusion_{mode}"] = {**metrics, "train_s": time.perf_counter() - start, "train_cpu_s": time.process_time() - cpu}
            diffusion = load_diffusion(folder / mode, device)
            plain = config.synthesize.model_copy(update={"calibrate_contrast": False})
            if mode == "paper":  # the paper's scheme: no profile, size classes, no quality control
                plain = plain.model_copy(update={"quality_control": False,
                                                 "tumor": plain.tumor.model_copy(update={"source": "classes"})})
            painters[f"ldm-{mode}"] = LatentDiffusionPainter(codec=codec, diffusion=diffusion, config=plain)
            if mode == "profile":
                painters["ldm-profile+cal"] = LatentDiffusionPainter(codec=codec, diffusion=diffusion, config=config.synthesize)
            print(f"diffusion ({mode}): {results[f'diffusion_{mode}']['train_s']:.0f} s ({results[f'diffusion_{mode}']['train_cpu_s']:.0f} s CPU), loss "
                  f"{metrics['evaluation_loss_initial']:.3f} → {metrics['evaluation_loss_final']:.3f} on {len(crops)} crops")
        train_tumors = [t for tumors in measured[:len(train)] for t in tumors]
        painters["handcrafted"] = HandcraftedPainter(real_tumors=train_tumors, config=config.synthesize,
                                                     crop_vox=config.diffusion.crop_vox)

        # --- synthesis, realism, coherence -----------------------------------------------------
        normals = [n for _, n, _ in train]
        real_patches = np.concatenate([tumor_patches(real, tumors) for (real, _, _), tumors in zip(triples, measured)])
        real_matrix = contrast_matrix(real_tumors)
        print(f"\n{'method':<16} {'s/case':>7} {'tumors':>6}  " + "  ".join(f"{p:>15}" for p in PHASES)
              + f"  {'AUC':>11}  {'coherent':>8}  {'max|Δmean|':>10}  {'sd ratio':>8}  {'QC rejected':>11}")
        print(f"{'real':<16} {'':>7} {len(real_tumors):>6}  "
              + "  ".join(f"{real_summary[p]['mean']:+7.1f} ± {real_summary[p]['std']:5.1f}" for p in PHASES))
        for name, painter in painters.items():
            synthetic, seconds, cpu_seconds, rejected = paint_all(painter, normals, args.per_case, args.seed)
            per_case = [measure_tumor_contrasts(case) for case in synthetic]
            tumors = [t for found in per_case for t in found]
            summary = summarize_contrasts(tumors)
            gap, ratio = realism_gaps(summary, real_summary)
            patches = np.concatenate([tumor_patches(case, found) for case, found in zip(synthetic, per_case)])
            auc = classifier_auc(real_patches, patches, seed=args.seed)
            coherence = cross_phase_coherence(real_matrix, real_kinds, contrast_matrix(tumors))
            results[name] = {"seconds_per_case": seconds, "cpu_seconds_per_case": cpu_seconds, "contrast_hu": summary, "classifier": auc, "coherence": coherence,
                             "contrast_error_hu": contrast_error(tumors, real_summary), "largest_mean_gap_hu": gap,
                             "spread_ratio": ratio, "quality_rejected_share": rejected}
            print(f"{name:<16} {seconds:>7.2f} {len(tumors):>6}  "
                  + "  ".join(f"{summary[p]['mean']:+7.1f} ± {summary[p]['std']:5.1f}" if p in summary else f"{'–':>15}" for p in PHASES)
                  + f"  {auc['auc']:.2f} ± {auc['auc_std']:.2f}  {coherence['coherent_share']:>8.2f}  {gap:>10.1f}  {ratio:>8.2f}"
                  f"  {100 * rejected:>10.0f}%", flush=True)
        print(f"(contrast = tumor − liver ring, HU; AUC of a real-vs-synthetic CNN, lower is better; coherent = share of "
              f"synthetic tumors within τ = {results['ldm-paper']['coherence']['tau']:.2f} real spreads of a real tumor's 4-phase pattern)")

        # --- DDIM k steps against DDPM T steps ---------------------------------------------------
        base = painters["ldm-paper"]
        subset = normals[: args.ddpm_tumors]
        rows = []
        for sampler, steps in [("ddpm", None)] + [("ddim", int(k)) for k in args.ddim_steps.split(",")]:
            update = {"sampler": sampler} | ({"ddim_steps": steps} if steps else {})
            painter = LatentDiffusionPainter(codec=codec, diffusion=base.diffusion, config=config.synthesize.model_copy(update=update))
            synthetic, seconds, _, _ = paint_all(painter, subset, 1, args.seed + 1)
            tumors = [t for case in synthetic for t in measure_tumor_contrasts(case)]
            coherence = cross_phase_coherence(real_matrix, real_kinds, contrast_matrix(tumors))
            rows.append({"sampler": sampler, "steps": steps or config.diffusion.num_train_timesteps, "seconds_per_case": seconds,
                         "contrast_error_hu": contrast_error(tumors, real_summary), "coherent_share": coherence["coherent_share"]})
        ddpm = rows[0]
        print(f"\nsampling (paper mode, {len(subset)} cases): steps, s/case, speed-up vs DDPM, contrast error (HU), coherent share")
        for row in rows:
            row["speedup_vs_ddpm"] = ddpm["seconds_per_case"] / row["seconds_per_case"]
            print(f"  {row['sampler']:<5} {row['steps']:>5}  {row['seconds_per_case']:7.2f}  ×{row['speedup_vs_ddpm']:6.1f}  "
                  f"{row['contrast_error_hu']:6.1f}  {row['coherent_share']:.2f}")
        results["sampling"] = rows
    if args.json:
        write_json_atomic(args.json, results)
        print(f"results in {args.json}")


if __name__ == "__main__":
    main()
