"""The CUT tumor painter (Table V baseline): training samples, painting through the synthesizer's routine."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from diff4mmlits import LABEL_TUMOR
from diff4mmlits.config import resolve_config
from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import Volume
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.synthesize.cut_painter import CutPainter, painter_settings, painter_training_data
from diff4mmlits.synthesize.painters import load_painter
from diff4mmlits.translate.train import build_model
from diff4mmlits.translate.translator import translator_from_model

from .conftest import toy_tissues

HU = {"PVP": {0: -1000.0, 1: -100.0, 2: 50.0, 7: 110.0, 13: 125.0, 30: 70.0},
      "AP": {0: -1000.0, 1: -100.0, 2: 50.0, 7: 75.0, 13: 110.0, 30: 130.0}}


def toy_registered(seed: int, tumor_free: bool = False) -> Case:
    """Two registered phases (AP, PVP) of a 24 × 32 × 32 toy with a liver tumor (or without, for a normal case)."""
    rng = np.random.default_rng(seed)
    tissues = toy_tissues((24, 32, 32), rng)
    if tumor_free:
        tissues[tissues == 30] = 7
    spacing = (2.0, 1.5, 1.5)
    phases = {}
    for name, table in HU.items():
        lookup = np.zeros(31, np.float32)
        for tissue, hu in table.items():
            lookup[tissue] = hu
        phases[name] = Volume(lookup[tissues] + rng.normal(0, 8, tissues.shape).astype(np.float32), spacing)
    label = np.where(tissues == 30, 2, np.where(tissues == 7, 1, 0)).astype(np.uint8)
    return Case(f"toy_{seed}", phases, Volume(label, spacing, kind="label"))


@pytest.fixture(scope="module")
def config():
    return resolve_config("smoke")


@pytest.fixture(scope="module")
def data(config):
    normal = [toy_registered(i, tumor_free=True) for i in range(2)]
    real = [toy_registered(10 + i) for i in range(2)]
    return painter_training_data(normal, real, config, np.random.default_rng(0), crops_per_case=2)


def test_samples_are_phases_plus_a_mask_centred_on_the_tumor(data, config) -> None:
    crop = config.diffusion.crop_vox
    assert data.condition_channels == 1 and data.source.channels == 3 and data.target.channels == 3
    for sample in data.target.images:
        assert sample.shape == (3, crop, crop, crop)
        mask = sample[2] > 0
        assert mask[crop // 2, crop // 2, crop // 2]  # the real tumor sits in the middle of its crop
        inside = sample[1][mask].astype(np.float32).mean()  # PVP: tumor (70 HU) darker than the liver ring
        ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
        assert inside < sample[1][ring].astype(np.float32).mean() + 0.05
    assert all(set(np.unique(s[2])) <= {-1.0, 1.0} and (s[2] > 0).any() for s in data.source.images)


def test_painter_adds_tumors_inside_the_liver_and_leaves_the_rest(data, config) -> None:
    settings = painter_settings(config)
    model = build_model(settings, data.source.channels, data.out_channels, data.condition_channels)
    translator = translator_from_model(model, data, settings)
    painter = CutPainter(translator, ["AP", "PVP"], config.synthesize, config.diffusion.crop_vox)
    normal = toy_registered(3, tumor_free=True)
    synthetic, provenance = painter.paint_with_provenance(normal, np.random.default_rng(1))
    assert provenance["method"] == "cut" and provenance["tumors"]
    tumor = synthetic.label.array == LABEL_TUMOR
    assert tumor.any() and not (tumor & (normal.label.array == 0)).any()
    far = ndimage.distance_transform_edt(~ndimage.binary_dilation(tumor, iterations=4), sampling=(2.0, 1.5, 1.5)) > config.synthesize.feather_mm
    for name in ("AP", "PVP"):
        assert synthetic.phases[name].same_grid(normal.phases[name])
        assert np.array_equal(synthetic.phases[name].array[far], normal.phases[name].array[far])
        assert not np.array_equal(synthetic.phases[name].array[tumor], normal.phases[name].array[tumor])


def test_train_painter_command_then_synthesize_loads_it(tmp_path) -> None:
    """A run folder with registered and normal cases → train-translator --painter → PAINTERS['cut'] paints."""
    from diff4mmlits.cli import main
    from diff4mmlits.config import config_to_yaml
    from finished_stages import mark_finished, put_case, write_manifest

    run = tmp_path / "run"
    ids = ["toy_10", "toy_11"]
    reals = []
    for i, case_id in zip((10, 11), ids):
        real = toy_registered(i)
        reals.append(Case(case_id, real.phases, real.label))
        put_case(RunFolder(run), "registered", reals[-1])
        normal = toy_registered(i, tumor_free=True)
        put_case(RunFolder(run), "normal", Case(case_id, normal.phases, normal.label))
    write_manifest(RunFolder(run), reals, train=ids, validation=[], test=[], dataset=str(tmp_path))
    config = resolve_config("smoke", overrides=["translate.steps=2"])
    (run / "config.yaml").write_text(config_to_yaml(config))
    mark_finished(RunFolder(run), config, "register", "train-inpainter", "inpaint")
    assert main(["train-translator", "--run", str(run), "--painter"]) == 0
    assert RunFolder(run).read_stamp("train-cut-painter") is not None
    painter = load_painter(RunFolder(run), method="cut")
    synthetic = painter.paint(toy_registered(3, tumor_free=True), np.random.default_rng(0))
    assert (synthetic.label.array == LABEL_TUMOR).any()
