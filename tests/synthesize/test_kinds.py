"""Issue 14: painting that knows the kind of tumor, masks like the dataset's, quality control."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from synth_toys import tiny_codec, tiny_diffusion, toy_pair

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.data.volume import Volume
from diff4mmlits.synthesize.config import TumorMaskConfig
from diff4mmlits.synthesize.contrast import (
    TumorContrast,
    edge_fraction,
    ellipsoid_semi_axes_mm,
    measure_tumor_contrasts,
    ring_contrast,
    tumor_layers,
)
from diff4mmlits.synthesize.diffusion import PROFILE_SCALE_HU
from diff4mmlits.synthesize.handcrafted import HandcraftedPainter
from diff4mmlits.synthesize.painters import LatentDiffusionPainter
from diff4mmlits.synthesize.painting import calibrate_contrast
from diff4mmlits.synthesize.quality import TumorQualityControl
from diff4mmlits.synthesize.train_diffusion import build_tumor_crops, make_batch
from diff4mmlits.synthesize.tumor_masks import (
    TumorParams,
    draw_tumor_mask,
    large_vessel_mask,
    sample_tumor_params,
    tumor_centre_candidates,
)

HYPER_AP = {"NC": -10.0, "AP": 60.0, "PVP": -5.0, "DP": -25.0}
HYPO_AP = {"NC": -10.0, "AP": -40.0, "PVP": -30.0, "DP": -25.0}


def _real_tumors(toy_cases) -> list[TumorContrast]:
    return [t for real, _ in toy_cases for t in measure_tumor_contrasts(real)]


def _ldm_painter(config, mode: str, real, **settings) -> LatentDiffusionPainter:
    diffusion = tiny_diffusion(config, mode)
    diffusion.real_tumors = real
    synthesize = config.synthesize.model_copy(update={"ddim_steps": 3, **settings})
    return LatentDiffusionPainter(codec=tiny_codec(config), diffusion=diffusion, config=synthesize)


def _tumor_minus_liver(case, phase: str) -> float:
    tumors = measure_tumor_contrasts(case)
    assert tumors, "no measurable tumor painted"
    return float(np.mean([t.contrast_hu[phase] for t in tumors]))


@pytest.mark.parametrize("profile, sign", [(HYPER_AP, 1.0), (HYPO_AP, -1.0)])
def test_the_profile_sets_the_painted_contrast_in_the_direction_asked(smoke_config, toy_cases, profile, sign):
    painter = _ldm_painter(smoke_config, "profile", _real_tumors(toy_cases), profile_hu=profile, quality_control=False)
    synthetic, provenance = painter.paint_with_provenance(toy_pair(5, size=32)[1], np.random.default_rng(0))
    assert sign * _tumor_minus_liver(synthetic, "AP") > 20.0
    assert _tumor_minus_liver(synthetic, "DP") < -10.0  # every phase follows its own entry
    assert provenance["mode"] == "profile" and provenance["tumors"][0]["calibration_shift_hu"]


def test_the_profile_reaches_the_network(smoke_config, toy_cases):
    """The network sees each phase's entry of the profile as its m·k channel, and its prediction changes with it
    (the untrained toy codec's vector quantizer may snap the small change away, so this looks at the network)."""
    real = _real_tumors(toy_cases)
    normal = toy_pair(5, size=32)[1]
    inputs, outputs = [], []

    def record(module, args, out) -> None:
        inputs.append(args[0][:, -1].clone())
        outputs.append(out.clone())

    for profile in (HYPER_AP, HYPO_AP):
        painter = _ldm_painter(smoke_config, "profile", real, profile_hu=profile, calibrate_contrast=False, quality_control=False)
        hook = painter.diffusion.network.register_forward_hook(record)
        try:
            painter.paint(normal, np.random.default_rng(3))
        finally:
            hook.remove()
    half = len(inputs) // 2
    assert not torch.allclose(outputs[0], outputs[half])  # same seed, same mask, another profile
    # the last channel is m·k: AP (class 1) carries +60/100 in the first run and −40/100 in the second
    first, second = inputs[0], inputs[half]
    assert first[1].max() > 0 and second[1].min() < 0
    assert torch.isclose(first[1].max() / second[1].min(), torch.tensor(HYPER_AP["AP"] / HYPO_AP["AP"]), rtol=1e-3)


def test_profile_batches_carry_each_crops_contrast(smoke_config, toy_cases):
    real_cases = [real for real, _ in toy_cases]
    crops = build_tumor_crops(real_cases, tiny_codec(smoke_config), smoke_config.diffusion, np.random.default_rng(0))
    batch = make_batch(crops, "profile", np.random.default_rng(1), 32)
    mask, profile_channel = batch["condition"][:, -2:-1], batch["condition"][:, -1:]
    contrast = profile_channel.sum(dim=(1, 2, 3, 4)) / mask.sum(dim=(1, 2, 3, 4)) * PROFILE_SCALE_HU
    ap = batch["class_labels"] == 1
    assert ap.any() and (contrast[ap] > 20).all()  # the toy tumors are hyper-enhancing in AP
    assert (contrast[~ap] < 0).all()
    assert len(crops.tumors) == 3 and all(t.semi_axes_mm for t in crops.tumors)


def test_masks_drawn_from_real_tumors_reproduce_their_sizes_and_counts():
    liver = np.zeros((48, 64, 64), bool)
    liver[4:44, 6:58, 6:58] = True
    spacing = (2.0, 1.5, 1.5)
    profile = {"NC": -10.0, "AP": 5.0, "PVP": -20.0, "DP": -15.0}
    real = [TumorContrast("a", 10, 1.0, (0, 0, 0), profile, {}, (4.0, 3.0, 3.0)),
            TumorContrast("b", 10, 1.0, (0, 0, 0), profile, {}, (12.0, 5.0, 4.0)),
            TumorContrast("b", 10, 1.0, (0, 0, 0), profile, {}, (12.0, 5.0, 4.0)),
            TumorContrast("b", 10, 1.0, (0, 0, 0), profile, {}, (12.0, 5.0, 4.0))]
    config = TumorMaskConfig(size_jitter=0.1)
    drawn, counts = [], []
    for seed in range(150):
        tumors = sample_tumor_params(np.random.default_rng(seed), liver, spacing, config, real_tumors=real)
        counts.append(len(tumors))
        drawn += tumors
    assert set(counts) == {1, 3}  # the counts of the real cases
    assert 0.3 < np.mean(np.array(counts) == 3) < 0.7
    largest = np.array([max(t.semi_axes_mm) for t in drawn])
    elongation = np.array([max(t.semi_axes_mm) / min(t.semi_axes_mm) for t in drawn])
    from_b = np.array([t.reference > 0 for t in drawn])
    assert abs(np.median(largest[from_b]) - 12.0) < 1.0 and abs(np.median(largest[~from_b]) - 4.0) < 0.5
    assert np.median(elongation[from_b]) > 2.2 and np.median(elongation[~from_b]) < 1.6
    assert all(t.size_class == "dataset" and t.profile_hu and abs(t.profile_hu["PVP"] + 20.0) < 5.0 for t in drawn)
    # recorded, redrawn: the parameters in provenance.json give the same tumor back
    assert TumorParams.from_dict(drawn[0].to_dict()) == drawn[0]


def test_the_measured_semi_axes_of_a_drawn_ellipsoid_are_its_own():
    grid = Volume(np.zeros((40, 60, 60), np.float32), spacing_mm=(2.0, 1.0, 1.0))
    params = TumorParams("dataset", (20.0, 30.0, 30.0), (14.0, 8.0, 5.0), (0.0, 0.0, 0.0, 1.0), 0.0, 1.0, 0)
    axes = ellipsoid_semi_axes_mm(draw_tumor_mask(params, grid), grid.spacing_mm)
    assert np.allclose(axes, (14.0, 8.0, 5.0), rtol=0.08)


def test_tumor_centres_keep_off_the_large_vessels():
    liver = np.zeros((32, 40, 40), bool)
    liver[4:28, 4:36, 4:36] = True
    rng = np.random.default_rng(0)
    pvp = np.where(liver, 100.0, -1000.0) + rng.normal(0, 8, liver.shape)
    pvp[4:28, 18:22, 18:22] += 80.0  # a portal vein through the liver
    vessels = large_vessel_mask({"PVP": pvp.astype(np.float32)}, liver, (2.0, 2.0, 2.0))
    assert vessels[10:20, 19, 19].all() and vessels.sum() < 2 * 24 * 16
    centres = tumor_centre_candidates(liver, (2.0, 2.0, 2.0), 2.0, vessels, vessel_margin_mm=6.0)
    assert len(centres) and not vessels[tuple(centres.T)].any()
    distance = np.hypot(centres[:, 1] - 19.5, centres[:, 2] - 19.5) * 2.0
    assert distance.min() > 6.0


def test_calibration_brings_a_painted_tumor_to_the_profile(toy_cases):
    real, normal = toy_cases[0]
    tumor = real.tumor_mask
    liver = real.liver_mask
    crops = {p: real.phases[p].array.astype(np.float32) for p in real.phase_names}
    target = {"NC": 15.0, "AP": -30.0, "PVP": 25.0, "DP": 0.0}
    calibrated, shifts = calibrate_contrast(crops, crops, tumor, liver, target)
    measured = measure_tumor_contrasts(real.__class__(real.case_id, {p: real.phases[p].with_array(a) for p, a in calibrated.items()},
                                                      real.label))[0]
    for phase, value in target.items():
        assert abs(measured.contrast_hu[phase] - value) < 2.0, (phase, measured.contrast_hu[phase])
    assert set(shifts) == set(target)


def test_quality_control_rejects_a_tumor_painted_out_of_range(toy_cases, smoke_config):
    real = _real_tumors(toy_cases)
    painter = HandcraftedPainter(real_tumors=real, crop_vox=24, config=smoke_config.synthesize.model_copy(
        update={"profile_hu": {"NC": -20.0, "AP": 250.0, "PVP": -25.0, "DP": -25.0}, "quality_retries": 1}))
    synthetic, provenance = painter.paint_with_provenance(toy_pair(6, size=32)[1], np.random.default_rng(0))
    verdicts = [v for t in provenance["tumors"] for v in t["quality"]]
    assert provenance["quality_rejected"] == len(verdicts) >= 2
    assert all("AP" in v["outside"] and v["outside"] == ["AP"] for v in verdicts)
    # a case always keeps one tumor; it says that quality control failed it
    assert provenance["quality_forced"] == 1 and (synthetic.label.array == LABEL_TUMOR).any()

    ok = HandcraftedPainter(real_tumors=real, crop_vox=24, config=smoke_config.synthesize)
    _, provenance = ok.paint_with_provenance(toy_pair(6, size=32)[1], np.random.default_rng(0))
    assert provenance["quality_rejected"] == 0 and all(t["quality"][-1]["accepted"] for t in provenance["tumors"])


def test_quality_control_sees_a_seam():
    control = TumorQualityControl(ranges_hu={"PVP": (-50.0, 50.0)}, seam_hu=10.0)
    shape = (16, 16, 16)
    liver = np.ones(shape, bool)
    tumor = np.zeros(shape, bool)
    tumor[6:10, 6:10, 6:10] = True
    weight = np.zeros(shape, np.float32)
    weight[3:13, 3:13, 3:13] = 0.5
    weight[5:11, 5:11, 5:11] = 1.0
    normal = {"PVP": np.full(shape, 100.0, np.float32)}
    painted = normal["PVP"].copy()
    painted[tumor] -= 20.0
    clean = control.check({"PVP": weight * painted + (1 - weight) * normal["PVP"]}, normal, tumor, liver, weight)
    assert clean.accepted and clean.seam_hu < 1.0
    shifted = painted + 30.0 * (~tumor)  # the painter moved the liver around the tumor
    seam = control.check({"PVP": weight * shifted + (1 - weight) * normal["PVP"]}, normal, tumor, liver, weight)
    assert not seam.accepted and seam.seam_hu > 10.0


def test_centres_and_vessels_computed_on_the_livers_box_equal_the_whole_volumes():
    """The distance transforms and the vessel search run on the liver's box (a clinical-size case
    spent 1.5 s of its 2 s of painting on the whole volume): the result is the same."""
    rng = np.random.default_rng(3)
    liver = np.zeros((40, 64, 72), bool)
    liver[6:30, 10:50, 20:70] = ndimage.gaussian_filter(rng.random((24, 40, 50)), 3) > 0.5
    pvp = np.where(liver, 100.0, 40.0) + rng.normal(0, 8, liver.shape)
    pvp[6:30, 28:31, 40:43] += 90.0  # a vessel, and a bright organ outside the liver
    pvp[32:38, 5:20, 5:20] += 200.0
    spacing = (2.0, 1.0, 0.8)
    vessels = large_vessel_mask({"PVP": pvp.astype(np.float32)}, liver, spacing)
    bright = liver & (pvp > np.median(pvp[liver]) + max(30.0, 3 * 1.4826 * np.median(np.abs(pvp[liver] - np.median(pvp[liver])))))
    bright = ndimage.binary_opening(bright, np.ones((2, 2, 2), bool))
    components, count = ndimage.label(bright)
    sizes = ndimage.sum_labels(bright, components, np.arange(1, count + 1)) * np.prod(spacing) / 1000
    assert np.array_equal(vessels, np.isin(components, 1 + np.flatnonzero(sizes >= 0.05))) and vessels.any()

    depth = ndimage.distance_transform_edt(liver, sampling=spacing)
    away = ndimage.distance_transform_edt(~vessels, sampling=spacing) > 3.0
    expected = np.argwhere((depth >= 4.0) & away)
    assert np.array_equal(tumor_centre_candidates(liver, spacing, 4.0, vessels, 3.0), expected)
    liver_at_edge = np.zeros_like(liver)
    liver_at_edge[0:20, 0:30, 40:72] = True  # the box reaches the volume's faces
    depth = ndimage.distance_transform_edt(liver_at_edge, sampling=spacing)
    assert np.array_equal(tumor_centre_candidates(liver_at_edge, spacing, 3.0), np.argwhere(depth >= 3.0))


def _sphere(shape=(24, 24, 24), radius=5.0) -> np.ndarray:
    grid = np.indices(shape) - (np.array(shape)[:, None, None, None] - 1) / 2.0
    return np.sqrt((grid**2).sum(axis=0)) <= radius


def test_edge_fraction_says_where_a_lesion_ends_against_its_label():
    """A lesion with a soft ramp inside its label shows part of its contrast in its outermost voxels
    and none outside; a lesion blurred past a tight label shows much of it outside."""
    tumor, liver = _sphere(), np.ones((24, 24, 24), bool)
    layers = tumor_layers(tumor, liver & ~tumor)
    ramp = np.full(tumor.shape, 100.0, np.float32)
    ramp[layers["core"]] -= 30.0
    ramp[layers["edge"]] -= 12.0
    ramp[layers["outside"]] -= 3.0
    measured = edge_fraction({"NC": ramp, "PVP": 100.0 + 2.0 * (ramp - 100.0)}, tumor, liver & ~tumor)
    assert measured == pytest.approx({"edge": 0.4, "outside": 0.1}, abs=1e-3)

    blurred = 100.0 - 40.0 * ndimage.gaussian_filter(_sphere(radius=6.0).astype(np.float32), 1.0)
    tight = edge_fraction({"PVP": blurred}, tumor, liver & ~tumor)
    assert tight["edge"] > 0.6 and tight["outside"] > 0.3
    assert edge_fraction({"PVP": np.full(tumor.shape, 100.0)}, tumor, liver & ~tumor) is None  # no contrast


def test_layer_calibration_ends_a_blurred_lesion_where_its_label_does():
    """A decoder's blur carries the painted lesion past its label; calibrating with the reference
    tumor's edge fraction sets each layer's mean (texture kept) so the case shows that edge."""
    rng = np.random.default_rng(0)
    tumor, liver = _sphere(), np.ones((24, 24, 24), bool)
    normal = {"PVP": (100.0 + rng.normal(0.0, 5.0, tumor.shape)).astype(np.float32)}
    painted = {"PVP": normal["PVP"] - 35.0 * ndimage.gaussian_filter(_sphere(radius=6.0).astype(np.float32), 1.2)}
    target = {"edge": 0.35, "outside": 0.05}
    before = edge_fraction(painted, tumor, liver & ~tumor)
    assert before["outside"] > 0.3

    layered, shifts = calibrate_contrast(painted, normal, tumor, liver, {"PVP": -25.0}, edge_fraction=target)
    after = edge_fraction(layered, tumor, liver & ~tumor)
    assert after == pytest.approx(target, abs=0.02)
    assert ring_contrast(layered, tumor, liver & ~tumor)[0]["PVP"] == pytest.approx(-25.0, abs=0.5)
    layers = tumor_layers(tumor, liver & ~tumor)
    assert abs(layered["PVP"][layers["ring"]].mean() - normal["PVP"][layers["ring"]].mean()) < 0.1
    for region in ("core", "edge", "outside"):  # one constant per layer: the painted texture is kept
        moved = (layered["PVP"] - painted["PVP"])[layers[region]]
        assert np.ptp(moved) < 1e-3
    assert "PVP" in shifts

    plain, _ = calibrate_contrast(painted, normal, tumor, liver, {"PVP": -25.0})
    assert edge_fraction(plain, tumor, liver & ~tumor)["outside"] > 0.25  # what the edge calibration removes


def test_drawn_tumors_take_their_reference_tumors_edge():
    real = [TumorContrast(case_id=f"c{i}", voxels=100, volume_ml=1.0, centre_vox=(0.0, 0.0, 0.0),
                          contrast_hu={p: -20.0 for p in ("NC", "AP", "PVP", "DP")}, std_hu={}, semi_axes_mm=(6.0, 5.0, 4.0),
                          edge_fraction={"edge": 0.1 * i, "outside": 0.01 * i}) for i in range(1, 5)]
    assert TumorContrast.from_dict(real[2].to_dict()) == real[2]
    older = {k: v for k, v in real[2].to_dict().items() if k != "edge_fraction"}
    assert TumorContrast.from_dict(older).edge_fraction is None  # records written before it was measured
    liver = np.zeros((32, 32, 32), bool)
    liver[4:28, 4:28, 4:28] = True
    params = sample_tumor_params(np.random.default_rng(1), liver, (2.0, 2.0, 2.0), TumorMaskConfig(max_tumors_per_case=4),
                                 real_tumors=real)
    assert params and all(p.edge_fraction == real[p.reference].edge_fraction for p in params)
    assert TumorParams.from_dict(params[0].to_dict()) == params[0]
