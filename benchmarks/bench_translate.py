"""Translate stage on the phantom: anatomy preservation, translation error, downstream gain, speed.

Unpaired sets from the phantom (``data.phantom.mri.make_unpaired_sets``): labelled CT
patients (the source) and MRI-like studies of *other* patients (the target); the CT patients
rendered as MRI are the paired truth, used only for evaluation.

1. Anatomy preservation. A fixed MRI liver segmenter (2D MONAI UNet) is trained once on real
   phantom MRI with its truth; on each method's translated CT it should find the liver where the
   CT label says it is: liver Dice (segmenter on translated CT vs source label). References: the
   identity (CT fed as it is) and the paired truth (a perfect translator).
2. Translation error vs the paired truth: MAE after per-volume intensity normalisation
   (0.5–99.5 percentiles → [0, 1]) and SSIM; the identity is the baseline.
3. EssNet's downstream experiment: a liver U-Net on few real MRI, then on the same real MRI plus
   translated CT (same steps); liver IoU and Dice on held-out real MRI, for several seeds.
4. Speed: training steps/s of each method and translated slices/s, each as a ratio against a
   baseline measured in the same process (a supervised generator step: forward, L1, backward,
   Adam; a bare generator forward over the same slices).

Usage (a few minutes on 2 CPU cores at the defaults)::

    PYTHONPATH=src python benchmarks/bench_translate.py [--size 48] [--steps 250] [--seeds 2] [--threads 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from skimage.metrics import structural_similarity

from diff4mmlits.config import resolve_config
from diff4mmlits.data.case import Case
from diff4mmlits.data.intensity import IntensityMap
from diff4mmlits.data.phantom.mri import make_unpaired_sets
from diff4mmlits.translate.base import Batch
from diff4mmlits.translate.config import TranslateConfig
from diff4mmlits.translate.stage import prepare_data
from diff4mmlits.translate.train import TranslatorData, build_model, learning_rate_factor
from diff4mmlits.translate.translator import translate_case, translator_from_model

PERCENTILE = IntensityMap("percentile", 0.5, 99.5)
DEVICE = torch.device("cpu")
"""Where networks run (``--device``)."""


# --- a small 2D liver segmenter (the judge, and the downstream U-Net) -----------------------------
def slice_stack(cases: list[Case]) -> tuple[np.ndarray, np.ndarray]:
    """All axial slices: images ``(N, Y, X)`` in [-1, 1] (per-volume percentiles) and liver masks."""
    images = np.concatenate([PERCENTILE.to_unit(c.annotated.array) for c in cases])
    livers = np.concatenate([(c.label.array > 0).astype(np.int64) for c in cases])
    return images, livers


def train_liver_unet(cases: list[Case], steps: int, seed: int, batch: int = 8) -> UNet:
    """A 2D liver U-Net (MONAI), Dice + CE, Adam 1e-3, random slices."""
    torch.manual_seed(seed)
    net = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(16, 32, 64, 128), strides=(2, 2, 2),
               num_res_units=1, norm="INSTANCE").to(DEVICE)
    images, livers = slice_stack(cases)
    keep = livers.reshape(len(livers), -1).any(1) | (np.arange(len(livers)) % 3 == 0)  # liver slices and some others
    images, livers = torch.from_numpy(images[keep]), torch.from_numpy(livers[keep])
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (batch,), generator=generator)
        x, y = images[index, None].to(DEVICE), livers[index, None].to(DEVICE)
        if torch.rand((), generator=generator) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = loss_fn(net(_pad(x)), _pad(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def _pad(x: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    pads = []
    for size in reversed(x.shape[-2:]):
        extra = -size % multiple
        pads += [0, extra]
    return F.pad(x, pads) if any(pads) else x


@torch.no_grad()
def segment_liver(net: UNet, case: Case) -> np.ndarray:
    unit = torch.from_numpy(PERCENTILE.to_unit(case.annotated.array))[:, None].to(DEVICE)
    logits = net(_pad(unit))[..., : unit.shape[-2], : unit.shape[-1]]
    return logits.argmax(1).cpu().numpy().astype(bool)


def dice_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    inter = float(np.logical_and(pred, truth).sum())
    total = float(pred.sum() + truth.sum())
    union = float(np.logical_or(pred, truth).sum())
    return (2 * inter / total if total else 1.0), (inter / union if union else 1.0)


# --- translation quality -------------------------------------------------------------------------
def normalised(volume: np.ndarray) -> np.ndarray:
    return (PERCENTILE.to_unit(volume) + 1.0) / 2.0


def translation_error(translated: Case, truth: Case) -> tuple[float, float]:
    """MAE and SSIM between per-volume normalised images (both in [0, 1])."""
    a, b = normalised(translated.annotated.array), normalised(truth.annotated.array)
    return float(np.abs(a - b).mean()), float(structural_similarity(a, b, data_range=1.0))


# --- training with timing ------------------------------------------------------------------------
def train_in_memory(data: TranslatorData, config: TranslateConfig, seed: int) -> tuple[object, float]:
    """Train a method in this process (no files); returns the model and its steps/s."""
    torch.manual_seed(seed)
    model = build_model(config, data.source.channels, data.out_channels).to(DEVICE)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: learning_rate_factor(s, config.steps, config.decay_fraction))
                  for o in model.optimizers.values()]
    sampler = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(config.steps):
        a, label = data.source.sample(config.batch_size, config.crop_vox, 2, sampler)
        b, _ = data.target.sample(config.batch_size, config.crop_vox, 2, sampler)
        model.train_step(Batch(a, b, label if model.needs_labels else None).to(DEVICE), sampler)
        for scheduler in schedulers:
            scheduler.step()
    return model, config.steps / (time.perf_counter() - start)


class SupervisedStep:
    """The baseline: one supervised generator step (forward, L1 to the input, backward, Adam) at the same size."""

    def __init__(self, data: TranslatorData, config: TranslateConfig) -> None:
        from diff4mmlits.translate.cyclegan import build_generator

        self.data, self.config = data, config
        self.generator = build_generator(config, 1, 1).to(DEVICE)
        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=config.learning_rate)
        self.sampler = torch.Generator().manual_seed(0)

    def __call__(self) -> None:
        a, _ = self.data.source.sample(self.config.batch_size, self.config.crop_vox, 2, self.sampler)
        a = a.to(DEVICE)
        loss = F.l1_loss(self.generator(a), a)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def rate(step, count: int) -> float:
    """Calls per second of ``step`` over ``count`` calls (after one warm-up call)."""
    step()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(count):
        step()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def interleaved_ratio(step, baseline, count: int, rounds: int = 3) -> tuple[float, float, float]:
    """``(rate, baseline rate, median ratio)``: baseline, step, baseline, … so that both see the same machine load."""
    ratios, rates, bases = [], [], []
    for _ in range(rounds):
        before = rate(baseline, count)
        measured = rate(step, count)
        after = rate(baseline, count)
        rates.append(measured)
        bases.append(0.5 * (before + after))
        ratios.append(measured / bases[-1])
    return float(np.median(rates)), float(np.median(bases)), float(np.median(ratios))


def method_step(data: TranslatorData, config: TranslateConfig):
    """One training step of a fresh model of ``config.method`` (for timing)."""
    model = build_model(config, data.source.channels, data.out_channels).to(DEVICE)
    sampler = torch.Generator().manual_seed(1)

    def step() -> None:
        a, label = data.source.sample(config.batch_size, config.crop_vox, 2, sampler)
        b, _ = data.target.sample(config.batch_size, config.crop_vox, 2, sampler)
        model.train_step(Batch(a, b, label if model.needs_labels else None).to(DEVICE), sampler)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=48, help="phantom in-plane size (voxels)")
    parser.add_argument("--steps", type=int, default=250, help="training steps per translator")
    parser.add_argument("--segmenter-steps", type=int, default=300, help="steps of each liver U-Net")
    parser.add_argument("--seeds", type=int, default=2, help="seeds of the downstream experiment")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--ct-cases", type=int, default=6)
    parser.add_argument("--speed-steps", type=int, default=10, help="steps per timing window")
    parser.add_argument("--complete-missing-steps", type=int, default=250,
                        help="steps of the PVP → AP translator of the --complete-missing experiment (0: skip it)")
    parser.add_argument("--methods", default="cyclegan,essnet,cut")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json and a comparison figure")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = torch.device(args.device)
    began = time.perf_counter()

    sets = make_unpaired_sets(n_ct=args.ct_cases, n_mri=10, seed=0, size=args.size)
    target, judge_cases, few_real, test = sets.mri[:4], sets.mri[:7], sets.mri[:2], sets.mri[7:]
    print(f"phantom {args.size}: {len(sets.ct)} CT (source), {len(target)} MRI (target, other patients), "
          f"{len(test)} MRI held out; shapes {sets.ct[0].annotated.shape}")

    base = resolve_config("demo").translate.model_copy(update={
        "steps": args.steps, "crop_vox": _round4(args.size), "batch_size": 4, "learning_rate": 5e-4,
        "decay_fraction": 0.3,
    })
    data = prepare_data(sets.ct, target, base, need_labels=True)

    judge = train_liver_unet(judge_cases, args.segmenter_steps, seed=100)
    judge_real = np.mean([dice_iou(segment_liver(judge, c), c.label.array > 0)[0] for c in test])
    print(f"fixed MRI segmenter: liver Dice {judge_real:.3f} on held-out real MRI", flush=True)

    results: dict[str, dict[str, float]] = {}
    translated: dict[str, list[Case]] = {"identity": sets.ct, "paired truth": sets.ct_as_mri}
    speed: dict[str, dict[str, float]] = {}
    supervised = SupervisedStep(data, base)
    for method in args.methods.split(","):
        config = base.model_copy(update={"method": method})
        model, wall_rate = train_in_memory(data, config, seed=0)
        translator = translator_from_model(model, data, config, DEVICE)
        translated[method] = [translate_case(c, translator) for c in sets.ct]
        steps_per_s, baseline_steps, train_ratio = interleaved_ratio(method_step(data, config), supervised, args.speed_steps)
        slices = sum(c.annotated.shape[0] for c in sets.ct)
        slices_per_s, baseline_slices, slice_ratio = interleaved_ratio(
            lambda translator=translator: [translate_case(c, translator) for c in sets.ct],
            lambda translator=translator: bare_forward(translator, sets.ct), 1)
        speed[method] = {"train_steps_per_s": steps_per_s, "baseline_steps_per_s": baseline_steps, "train_ratio": train_ratio,
                         "slices_per_s": slices_per_s * slices, "baseline_slices_per_s": baseline_slices * slices,
                         "slices_ratio": slice_ratio, "wall_steps_per_s_while_training": wall_rate}
        print(f"  trained {method} ({wall_rate:.2f} steps/s over the whole training)", flush=True)

    print("\nanatomy preservation and translation error (mean over the CT cases)")
    print(f"{'translation':<14} {'liver Dice':>10} {'MAE':>7} {'SSIM':>7}")
    for name, cases in translated.items():
        dices = [dice_iou(segment_liver(judge, t), s.label.array > 0)[0] for t, s in zip(cases, sets.ct)]
        errors = [translation_error(t, truth) for t, truth in zip(cases, sets.ct_as_mri)]
        results[name] = {"liver_dice": float(np.mean(dices)), "mae": float(np.mean([e[0] for e in errors])),
                         "ssim": float(np.mean([e[1] for e in errors]))}
        r = results[name]
        print(f"{name:<14} {r['liver_dice']:>10.3f} {r['mae']:>7.3f} {r['ssim']:>7.3f}")

    print("\ndownstream: liver U-Net on few real MRI vs real MRI + translated CT (held-out real MRI)")
    downstream: dict[str, list[tuple[float, float]]] = {}
    arms = {"real MRI only": few_real}
    for method in ("essnet", "cyclegan", "cut"):
        if method in translated:
            arms[f"real + {method} CT"] = few_real + translated[method]
    for seed in range(args.seeds):
        for arm, cases in arms.items():
            net = train_liver_unet(cases, args.segmenter_steps, seed=seed)
            scores = [dice_iou(segment_liver(net, c), c.label.array > 0) for c in test]
            downstream.setdefault(arm, []).append((float(np.mean([s[1] for s in scores])), float(np.mean([s[0] for s in scores]))))
    print(f"{'training set':<22} {'IoU':>14} {'Dice':>14}   per seed (IoU)")
    for arm, runs in downstream.items():
        iou, dice = np.array([r[0] for r in runs]), np.array([r[1] for r in runs])
        print(f"{arm:<22} {iou.mean():>7.3f}±{iou.std():.3f} {dice.mean():>7.3f}±{dice.std():.3f}   {np.round(iou, 3).tolist()}")

    print(f"\nspeed ({args.threads} thread(s), {DEVICE.type}; each ratio against a baseline timed just before and after it)")
    for method, r in speed.items():
        print(f"{method:<10} train {r['train_steps_per_s']:.2f} steps/s = ×{r['train_ratio']:.2f} of a supervised generator "
              f"step ({r['baseline_steps_per_s']:.2f}/s); translate {r['slices_per_s']:.0f} slices/s = ×{r['slices_ratio']:.2f} "
              f"of the bare generator forward ({r['baseline_slices_per_s']:.0f}/s)")
    complete = {}
    if args.complete_missing_steps > 0:
        complete = complete_missing_experiment(args.size, args.complete_missing_steps)
        print("\n--complete-missing: AP made from PVP vs the duplication rule; mean |HU error| against the true AP")
        for region in ("liver", "tumor"):
            if f"duplicate_{region}" in complete:
                print(f"  {region:<6} duplicate PVP {complete[f'duplicate_{region}']:6.1f} HU   "
                      f"translated {complete[f'translated_{region}']:6.1f} HU")
    print(f"\ntotal {time.perf_counter() - began:.0f} s")

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        summary = {"args": {k: str(v) for k, v in vars(args).items()}, "judge_dice_real_mri": float(judge_real),
                   "translation": results, "downstream": downstream, "speed": speed, "complete_missing": complete}
        (args.out / "results.json").write_text(json.dumps(summary, indent=2))
        save_comparison(translated, sets.ct, args.out / "translations.png")
        print(f"results in {args.out}")


def phase_on_pvp_grid(phantom_case, phase: str) -> np.ndarray:
    """The true ``phase`` image resampled onto the PVP grid through the phantom's displacement field (HU)."""
    from scipy import ndimage

    pvp, moving = phantom_case.case.phases["PVP"], phantom_case.case.phases[phase]
    index = np.stack(np.meshgrid(*[np.arange(n) for n in pvp.shape], indexing="ij"), axis=-1)
    world = pvp.index_to_world(index) + phantom_case.truth.displacement_mm[phase]
    coords = moving.world_to_index(world)
    return ndimage.map_coordinates(moving.array.astype(np.float32), np.moveaxis(coords, -1, 0), order=1, mode="nearest")


def complete_missing_experiment(size: int, steps: int, cases: int = 8, method: str = "essnet") -> dict[str, float]:
    """Fill a missing AP phase from PVP: a PVP → AP translator against the paper's duplication rule.

    Error against the true AP resampled onto the PVP grid: mean absolute HU error in the liver and in
    the tumors (the contrast the arterial phase exists for).
    """
    from diff4mmlits.data.phantom import make_phantom_case
    from diff4mmlits.translate.translator import complete_missing_phase

    phantoms = [make_phantom_case(i, seed=5, size=size) for i in range(cases)]
    train, test = phantoms[:-2], phantoms[-2:]
    config = resolve_config("demo").translate.model_copy(update={
        "method": method, "steps": steps, "crop_vox": _round4(size), "batch_size": 4, "learning_rate": 5e-4,
        "decay_fraction": 0.3, "target_phase": "AP", "target_intensity": "window",
    })
    data = prepare_data([p.case for p in train], [p.case for p in train], config, need_labels=method == "essnet")
    model, _ = train_in_memory(data, config, seed=0)
    translator = translator_from_model(model, data, config, DEVICE)
    errors: dict[str, list[float]] = {}
    for phantom_case in test:
        case = phantom_case.case
        truth = phase_on_pvp_grid(phantom_case, "AP")
        without_ap = Case(case.case_id, {"PVP": case.phases["PVP"]}, case.label)
        made = complete_missing_phase(without_ap, translator).phases["AP"].array
        duplicated = case.phases["PVP"].array
        for region, mask in (("liver", case.label.array == 1), ("tumor", case.label.array == 2)):
            if mask.any():
                errors.setdefault(f"duplicate_{region}", []).append(float(np.abs(duplicated - truth)[mask].mean()))
                errors.setdefault(f"translated_{region}", []).append(float(np.abs(made - truth)[mask].mean()))
    return {key: float(np.mean(values)) for key, values in errors.items()}


@torch.no_grad()
def bare_forward(translator, cases: list[Case]) -> None:
    """The generator alone over the same slices, already normalised (no intensity maps, no volumes)."""
    generator = translator.generator.eval()
    for case in cases:
        stack = _pad(torch.from_numpy(translator.source_map.to_unit(case.annotated.array))[:, None], 4).to(DEVICE)
        for i in range(0, len(stack), translator.batch_slices):
            generator(stack[i:i + translator.batch_slices])


def save_comparison(translated: dict[str, list[Case]], sources: list[Case], path: Path) -> None:
    from diff4mmlits.figures import draw_label_contours, plt, save_figure

    names = list(translated)
    fig, axes = plt.subplots(2, len(names), figsize=(2.4 * len(names), 5), squeeze=False)
    for row, index in enumerate((0, 1)):
        label = sources[index].label.array
        z = int((label > 0).sum((1, 2)).argmax())
        for col, name in enumerate(names):
            image = translated[name][index].annotated.array[z]
            low, high = np.percentile(image, [0.5, 99.5])
            axes[row, col].imshow(image, cmap="gray", vmin=low, vmax=high)
            draw_label_contours(axes[row, col], label[z])
            axes[row, col].set_title(name, fontsize=8)
            axes[row, col].axis("off")
    save_figure(fig, path)


def _round4(size: int) -> int:
    return max(16, size - size % 4)


if __name__ == "__main__":
    main()
