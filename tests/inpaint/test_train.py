"""Training: batches never target tumors, a few steps lower the loss, checkpoints round-trip and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diff4mmlits import PHASES
from diff4mmlits.config import resolve_config
from diff4mmlits.data.case import Case
from diff4mmlits.errors import InputError
from diff4mmlits.inpaint.infer import Inpainter
from diff4mmlits.inpaint.slices import build_sources, sample_batch
from diff4mmlits.inpaint.train import InpaintingGAN, _scaled_step, train_inpainter


def smoke(*overrides: str):
    return resolve_config("smoke", None, list(overrides))


def test_batches_hide_tumors_and_never_make_them_targets(small_cases: list[Case]) -> None:
    cfg = smoke().inpaint
    sources = build_sources(small_cases, PHASES, cfg.window_hu)
    assert {s.phase for s in sources} == set(PHASES) and len(sources) == 4 * len(small_cases)
    assert all(s.exclude.any() for s in sources)
    batch = sample_batch(sources, np.random.default_rng(0), 32, 32, 1.0, 0.5, 0.5)
    excluded = 1 - batch.valid
    assert excluded.sum() > 0                                   # tumors were drawn
    assert torch.all(batch.hole >= excluded)                    # always hidden from the input
    assert torch.all(batch.supervised_hole * excluded == 0)     # never an L1 target in the hole…
    assert torch.all(batch.known * excluded == 0)               # …nor in the known region
    assert batch.supervised_hole.sum() > 0


def test_2_5d_batches_carry_the_neighbour_slices_with_their_holes(small_cases: list[Case]) -> None:
    cfg = smoke().inpaint
    sources = build_sources(small_cases, PHASES, cfg.window_hu)
    batch = sample_batch(sources, np.random.default_rng(0), 16, 32, 1.0, 0.5, 0.5, context_slices=2)
    assert batch.context.shape == (16, 4, 32, 32) and batch.context_hole.shape == (16, 4, 32, 32)
    random_hole = batch.supervised_hole + (batch.hole - (1 - batch.valid)).clamp(min=0)
    assert torch.all(batch.context_hole >= random_hole.clamp(max=1))  # the same hole: a lesion spans slices
    assert not torch.equal(batch.context[:, 1], batch.image[:, 0])  # another slice, not a copy
    assert sample_batch(sources, np.random.default_rng(0), 4, 32, 1.0, 0.5, 0.5).context.shape[1] == 0


def test_batches_move_in_channels_last_and_the_networks_train_in_it(small_cases: list[Case]) -> None:
    cfg = smoke().inpaint
    batch = sample_batch(build_sources(small_cases, PHASES, cfg.window_hu), np.random.default_rng(0), 4, 32, 1.0, 0.5, 0.5,
                         context_slices=1)
    moved = batch.to(torch.device("cpu"), torch.channels_last)
    # the 2.5D context (B, 2, S, S): one channel is the same in either layout
    assert moved.context.is_contiguous(memory_format=torch.channels_last)
    assert not batch.context.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(moved.context, batch.context) and torch.equal(moved.phase_index, batch.phase_index)
    gan = InpaintingGAN(cfg)
    conv = next(m for m in gan.generator.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("residual", [True, False])
def test_a_few_smoke_steps_lower_the_hole_loss(small_cases: list[Case], residual: bool) -> None:
    cfg = smoke(f"inpaint.coarse_residual={residual}").inpaint
    gan = InpaintingGAN(cfg)
    batch = sample_batch(build_sources(small_cases, PHASES, cfg.window_hu), np.random.default_rng(0), 8, 32, 1.0, 0.5, 0.5,
                         cfg.context_slices)
    losses = [gan.train_step(batch) for _ in range(12)]
    first, last = losses[0]["l1_hole"], np.mean([step["l1_hole"] for step in losses[-3:]])
    assert last < 0.9 * first
    assert all(np.isfinite(list(step.values())).all() for step in losses)


def test_checkpoint_round_trips_and_loads_safely(small_cases: list[Case], tmp_path: Path) -> None:
    config = smoke("inpaint.steps=3")
    result = train_inpainter(small_cases, config, tmp_path / "m", device="cpu")
    folder = result.model_dir
    for name in ("config.json", "weights.safetensors", "generator_train.safetensors", "discriminator.safetensors",
                 "training_state.pt", "log.csv", "curves.png"):
        assert (folder / name).is_file(), name
    state = torch.load(folder / "training_state.pt", weights_only=True)
    assert state["step"] == 3 and len(state["log"]) >= 1
    weights = load_file(str(folder / "weights.safetensors"))
    model = Inpainter.load(folder, device="cpu")
    for key, value in model.network.state_dict().items():
        assert torch.equal(value, weights[key]), key
    header = (folder / "log.csv").read_text().splitlines()[0].split(",")
    assert {"step", "l1_hole", "l1_known", "adv_g", "adv_d", "feature_matching", "r1", "monitor_mae_hu"} <= set(header)


def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(small_cases: list[Case], tmp_path: Path) -> None:
    straight = train_inpainter(small_cases, smoke("inpaint.steps=4"), tmp_path / "a", device="cpu")
    train_inpainter(small_cases, smoke("inpaint.steps=2"), tmp_path / "b", device="cpu")
    resumed = train_inpainter(small_cases, smoke("inpaint.steps=4"), tmp_path / "b", device="cpu", resume=True)
    assert resumed.steps == straight.steps == 4
    a, b = load_file(str(tmp_path / "a" / "weights.safetensors")), load_file(str(tmp_path / "b" / "weights.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_init_from_needs_the_same_network(small_cases: list[Case], tmp_path: Path) -> None:
    train_inpainter(small_cases, smoke("inpaint.steps=1"), tmp_path / "pre", device="cpu")
    with pytest.raises(InputError, match="differs"):
        train_inpainter(small_cases, smoke("inpaint.steps=1", "inpaint.base_channels=12"), tmp_path / "x",
                        device="cpu", init_from=tmp_path / "pre")
    result = train_inpainter(small_cases, smoke("inpaint.steps=1"), tmp_path / "y", device="cpu", init_from=tmp_path / "pre")
    assert result.steps == 1
    # the same seed from scratch reproduces 'pre' exactly; one more step from 'pre' must differ from it
    train_inpainter(small_cases, smoke("inpaint.steps=1"), tmp_path / "z", device="cpu")
    pre, started, fresh = (load_file(str(tmp_path / name / "weights.safetensors")) for name in ("pre", "y", "z"))
    assert all(torch.equal(pre[key], fresh[key]) for key in pre)
    assert any(not torch.equal(started[key], fresh[key]) for key in pre), "init_from was ignored"


def test_perceptual_loss_is_off_by_default_and_never_downloads(small_cases: list[Case]) -> None:
    assert smoke().inpaint.perceptual_weight == 0.0
    with pytest.raises(InputError, match="perceptual_weights"):
        InpaintingGAN(smoke("inpaint.perceptual_weight=1.0").inpaint)


def test_the_r1_pass_runs_in_float32_under_mixed_precision(small_cases: list[Case], monkeypatch: pytest.MonkeyPatch) -> None:
    """R1 is a double backward through the discriminator: the real slices it is computed on go
    through the discriminator with autocast off; the other passes keep mixed precision. (Under
    float16 on a GPU, R1's gradient of 1 per logit times the scaler's 2**16 overflowed, and the
    discriminator's loss was NaN at every step after 150 steps of the paper preset.)"""
    import diff4mmlits.inpaint.train as train_module

    monkeypatch.setattr(train_module, "autocast", lambda device, enabled=True, dtype=None:
                        torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled))
    cfg = smoke("inpaint.r1_weight=0.01").inpaint
    gan = InpaintingGAN(cfg)
    gan.amp_checked = True
    seen: list[tuple[bool, bool]] = []
    gan.discriminator.register_forward_pre_hook(
        lambda module, args: seen.append((args[0].is_leaf and args[0].requires_grad, torch.is_autocast_enabled("cpu"))))
    batch = sample_batch(build_sources(small_cases, PHASES, cfg.window_hu), np.random.default_rng(0), 4, 32, 1.0, 0.5, 0.5,
                         cfg.context_slices)
    gan.train_step(batch, apply_r1=True)
    r1_passes = [autocast_on for r1_input, autocast_on in seen if r1_input]
    assert r1_passes == [False]
    assert len(seen) == 4 and all(autocast_on for r1_input, autocast_on in seen if not r1_input)
    seen.clear()
    gan.train_step(batch, apply_r1=False)
    assert all(autocast_on for _, autocast_on in seen)


def test_a_step_the_gradient_scaler_skips_is_reported() -> None:
    network = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    before = network.weight.detach().clone()
    scaler.scale(network(torch.tensor([[float("inf"), 1.0]])).sum()).backward()
    assert _scaled_step(scaler, optimizer) is True
    assert torch.equal(network.weight, before)  # not updated
    optimizer.zero_grad()
    scaler.scale(network(torch.ones(1, 2)).sum()).backward()
    assert _scaled_step(scaler, optimizer) is False
    assert _scaled_step(torch.amp.GradScaler("cpu", enabled=False), optimizer) is False
