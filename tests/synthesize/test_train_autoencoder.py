import json

import numpy as np
import torch
from safetensors.torch import load_file

from diff4mmlits.data.intensity import window_map
from diff4mmlits.synthesize.autoencoder import autoencoder_arguments, build_autoencoder, load_autoencoder
from diff4mmlits.synthesize.train_autoencoder import PatchSource, train_autoencoder


def _l1(network, x):
    network.eval()
    with torch.no_grad():
        return float((network(x)[0] - x).abs().mean())


def test_a_few_steps_lower_the_loss_and_the_folder_loads_safely(tmp_path, toy_cases, smoke_config):
    config = smoke_config.autoencoder.model_copy(update={"steps": 40, "adversarial_start_step": 20, "checkpoint_every_steps": 20,
                                                         "restart_dead_codes_every": 5})
    normals = [normal for _, normal in toy_cases]
    hu, _ = PatchSource(normals).sample(np.random.default_rng(5), 4, config.patch_vox, 1.0)
    x = torch.from_numpy(window_map(config.window_hu).to_unit(hu, clip_input=True))
    torch.manual_seed(0)
    before = _l1(build_autoencoder(autoencoder_arguments(config)), x)

    metrics = train_autoencoder(normals[:2], normals[2:], config, tmp_path, seed=0,
                                tumor_cases=[real for real, _ in toy_cases])
    codec = load_autoencoder(tmp_path)
    assert _l1(codec.network, x) < 0.9 * before
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["latent_scale"] > 0 and stored["metrics"]["held_out"] is True
    assert 0 < metrics["mae_liver_hu"] < 200 and metrics["psnr_db"] > 0
    header, *rows = (tmp_path / "log.csv").read_text().splitlines()
    assert "discriminator" in header and "codes_restarted" in header and rows[-1].startswith("40,")
    assert (tmp_path / "curves.png").stat().st_size > 0
    state = torch.load(tmp_path / "training_state.pt", weights_only=True)
    assert state["step"] == 40
    assert set(load_file(str(tmp_path / "weights.safetensors"))) == set(codec.network.state_dict())


def test_resume_continues_to_the_same_weights(tmp_path, toy_cases, smoke_config):
    config = smoke_config.autoencoder.model_copy(update={"steps": 6, "checkpoint_every_steps": 3, "adversarial_start_step": 2})
    normals = [normal for _, normal in toy_cases]
    train_autoencoder(normals, [], config, tmp_path / "straight", seed=1)
    train_autoencoder(normals, [], config.model_copy(update={"steps": 3}), tmp_path / "resumed", seed=1)
    train_autoencoder(normals, [], config, tmp_path / "resumed", seed=1, resume=True)
    straight = load_file(str(tmp_path / "straight" / "weights.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "weights.safetensors"))
    assert all(torch.allclose(straight[k], resumed[k], atol=1e-5) for k in straight)
    assert torch.load(tmp_path / "resumed" / "training_state.pt", weights_only=True)["step"] == 6
