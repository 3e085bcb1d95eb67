import numpy as np
import pytest
import torch
from scipy import ndimage
from synth_toys import tiny_codec, tiny_diffusion, toy_pair

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.data.case import Case
from diff4mmlits.synthesize.crops import dilate_tumor_mask
from diff4mmlits.synthesize.diffusion import build_scheduler
from diff4mmlits.synthesize.painters import LatentDiffusionPainter
from diff4mmlits.synthesize.sampling import reverse_timesteps


def _painter(config, mode: str, **settings) -> LatentDiffusionPainter:
    synthesize = config.synthesize.model_copy(update={"ddim_steps": 3, **settings})
    return LatentDiffusionPainter(codec=tiny_codec(config), diffusion=tiny_diffusion(config, mode), config=synthesize)


def _only(case: Case, phases: tuple[str, ...]) -> Case:
    return Case(case.case_id, {p: case.phases[p] for p in phases}, case.label)


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_paper_mode_uses_the_same_initial_noise_and_mask_for_every_phase(smoke_config, strength):
    painter = _painter(smoke_config, "paper", strength=strength)
    inputs = []
    hook = painter.diffusion.network.register_forward_hook(lambda module, args, kwargs_out: inputs.append(args[0].clone()))
    try:
        painter.paint(toy_pair(0)[1], np.random.default_rng(0))
    finally:
        hook.remove()
    channels = painter.codec.latent_channels
    first = inputs[0]  # the first step of the first tumor: [z_start, c, m]
    assert first.shape[0] == 4
    start, condition = first[:, :channels], first[:, channels:2 * channels]
    if strength < 1:  # z_start = √ᾱ·c + √(1−ᾱ)·ε: recover ε
        scheduler = build_scheduler(painter.diffusion.schedule, "ddim")
        alpha = scheduler.alphas_cumprod[int(reverse_timesteps(scheduler, 3, strength)[0])]
        start = (start - alpha.sqrt() * condition) / (1 - alpha).sqrt()
    assert all(torch.allclose(start[0], start[i], atol=1e-5) for i in range(4))  # the same noise
    assert all(torch.equal(first[0, -1], first[i, -1]) for i in range(4))  # the same mask
    assert not torch.equal(condition[0], condition[1])  # each phase's own CT


@pytest.mark.parametrize("mode", ["paper", "profile", "joint"])
@pytest.mark.parametrize("phases", [("PVP",), ("AP", "PVP"), ("NC", "AP", "PVP", "DP")])
def test_sampling_works_with_any_phases_and_leaves_far_voxels_untouched(smoke_config, mode, phases):
    painter = _painter(smoke_config, mode)
    normal = _only(toy_pair(1)[1], phases)
    synthetic, provenance = painter.paint_with_provenance(normal, np.random.default_rng(2))
    assert synthetic.phase_names == list(phases) and synthetic.case_id == normal.case_id
    tumor = synthetic.label.array == LABEL_TUMOR
    assert tumor.any() and not (tumor & (normal.label.array == 0)).any()
    assert np.array_equal(synthetic.label.array > 0, normal.label.array > 0)
    assert len(provenance["tumors"]) >= 1 and provenance["mode"] == mode
    condition = dilate_tumor_mask(tumor, 5, 3)
    far = ndimage.distance_transform_edt(~condition, sampling=normal.annotated.spacing_mm) >= painter.config.feather_mm
    for name in phases:
        before, after = normal.phases[name].array, synthetic.phases[name].array
        assert after.dtype == before.dtype and synthetic.phases[name].same_grid(normal.phases[name])
        assert np.array_equal(after[far], before[far])
        assert not np.array_equal(after[tumor], before[tumor])


def test_painting_is_deterministic_given_the_generator(smoke_config):
    painter = _painter(smoke_config, "joint")
    normal = toy_pair(2)[1]
    a = painter.paint(normal, np.random.default_rng(7))
    b = painter.paint(normal, np.random.default_rng(7))
    c = painter.paint(normal, np.random.default_rng(8))
    assert all(np.array_equal(a.phases[p].array, b.phases[p].array) for p in a.phase_names)
    assert not np.array_equal(a.label.array, c.label.array)


def test_scan_noise_texture_adds_the_normal_crops_own_pattern_at_the_missing_level() -> None:
    from diff4mmlits.synthesize.blend import noise_sigma_hu

    rng = np.random.default_rng(0)
    grain = ndimage.gaussian_filter(rng.standard_normal((16, 24, 24)), (0.0, 1.0, 1.0))
    normal = (60.0 + 15.0 * grain / grain.std()).astype(np.float32)  # liver with grained noise
    decoded = np.full_like(normal, 60.0)  # the autoencoder's smooth reconstruction
    region = np.ones(normal.shape, bool)
    scan, sigma = LatentDiffusionPainter.match_noise(decoded, normal, region, np.random.default_rng(1), "scan")
    white, _ = LatentDiffusionPainter.match_noise(decoded, normal, region, np.random.default_rng(1), "white")
    residual = normal - ndimage.gaussian_filter(normal, 1.0)
    assert sigma > 0 and abs(noise_sigma_hu(scan, region) - noise_sigma_hu(normal, region)) < 0.15 * sigma
    assert np.corrcoef((scan - decoded).ravel(), residual.ravel())[0, 1] > 0.99  # the scan's own pattern
    assert abs(np.corrcoef((white - decoded).ravel(), residual.ravel())[0, 1]) < 0.1


def test_real_tumor_noise_sets_the_painted_tumors_noise_relative_to_the_crops_liver(smoke_config) -> None:
    from diff4mmlits.synthesize.blend import noise_sigma_hu

    painter = _painter(smoke_config, "profile")
    size = painter.diffusion.crop_vox
    rng = np.random.default_rng(0)
    zyx = np.indices((size,) * 3)
    tumor = sum((a - size // 2) ** 2 for a in zyx) <= (size // 3) ** 2
    liver = np.ones(tumor.shape, bool)
    condition = ndimage.binary_dilation(tumor, iterations=1)
    crops = {name: (80.0 + rng.normal(0, 14, tumor.shape)).astype(np.float32) for name in ("NC", "PVP")}
    painter.tumor_noise_ratio = {"NC": 0.5, "PVP": 1.2}
    painted, record = painter.paint_crop(crops, condition, tumor, liver, np.random.default_rng(1),
                                         {"NC": -10.0, "PVP": -20.0})
    for name, ratio in painter.tumor_noise_ratio.items():
        target = ratio * noise_sigma_hu(crops[name], liver & ~condition)
        assert record["tumor_noise_hu"][name] == pytest.approx(target, abs=0.01)
        assert abs(noise_sigma_hu(painted[name], tumor) - target) < 0.15 * target
