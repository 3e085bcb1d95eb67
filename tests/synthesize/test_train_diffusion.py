import json

import numpy as np
import pytest
import torch
from synth_toys import tiny_codec

from diff4mmlits.errors import InputError
from diff4mmlits.synthesize.diffusion import load_diffusion
from diff4mmlits.synthesize.train_diffusion import build_tumor_crops, make_batch, train_diffusion


@pytest.fixture(scope="module")
def crops(toy_cases, smoke_config):
    codec = tiny_codec(smoke_config)
    return build_tumor_crops([real for real, _ in toy_cases], codec, smoke_config.diffusion, np.random.default_rng(0))


def test_tumor_crops_hold_every_phase_on_the_latent_grid(crops, smoke_config):
    grid = smoke_config.diffusion.crop_vox // 4
    assert crops.latents.shape == (len(crops), 4, smoke_config.autoencoder.embedding_dim, grid, grid, grid)
    assert crops.masked.shape == crops.latents.shape and bool(crops.present.all())
    assert len(crops) == 3 * smoke_config.diffusion.crops_per_tumor  # one tumor per toy case
    assert 0 < float(crops.mask.max()) <= 1 and float(crops.mask.min()) == 0
    assert not torch.allclose(crops.latents, crops.masked)  # the tumor is masked out


@pytest.mark.parametrize("mode", ["paper", "joint"])
def test_a_few_steps_lower_the_diffusion_loss(tmp_path, crops, smoke_config, mode):
    config = smoke_config.diffusion.model_copy(update={"mode": mode, "steps": 16, "checkpoint_every_steps": 8})
    metrics = train_diffusion(crops, config, tmp_path, seed=0, extra_config={"autoencoder_sha256": "x"})
    assert metrics["evaluation_loss_final"] < metrics["evaluation_loss_initial"]
    model = load_diffusion(tmp_path)
    assert model.mode == mode and model.crop_vox == config.crop_vox and model.checksum
    assert json.loads((tmp_path / "config.json").read_text())["autoencoder_sha256"] == "x"
    assert torch.load(tmp_path / "training_state.pt", weights_only=True)["step"] == 16


def test_joint_batches_zero_the_missing_phases(crops):
    partial = type(crops)(latents=crops.latents, masked=crops.masked, mask=crops.mask, present=crops.present.clone(),
                            profiles=crops.profiles)
    partial.present[:, 0] = False  # no NC anywhere
    batch = make_batch(partial, "joint", np.random.default_rng(0), 6)
    channels = crops.latents.shape[2]
    assert torch.all(batch["z0"][:, :channels] == 0)
    assert torch.all(batch["condition"][:, -4] == 0)  # the NC presence channel
    paper = make_batch(partial, "paper", np.random.default_rng(0), 12)
    assert 0 not in paper["class_labels"].tolist()


def test_training_needs_real_tumors(toy_cases, smoke_config):
    _, normal = toy_cases[0]
    with pytest.raises(InputError, match="no .*tumor"):
        build_tumor_crops([normal], tiny_codec(smoke_config), smoke_config.diffusion, np.random.default_rng(0))
