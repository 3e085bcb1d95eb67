"""A smoke training lowers the loss, writes its model folder, and resumes exactly where it stopped."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from safetensors.torch import load_file

from diff4mmlits.config import resolve_config
from diff4mmlits.errors import InputError
from diff4mmlits.segment.dataset import prepare_case
from diff4mmlits.segment.plan import fingerprint, plan_segmenter
from diff4mmlits.segment.train import TrainResult, train_segmenter


@pytest.fixture
def data(tiny_case):
    cases = [tiny_case(f"c{i}", seed=i) for i in range(3)]
    config = resolve_config("smoke").segment.model_copy(update={"epochs": 3, "steps_per_epoch": 4, "learning_rate": 1e-2})
    fp = fingerprint(cases[:2])
    plan = plan_segmenter(fp, config)
    prepared = [prepare_case(c, plan, config.phases) for c in cases]
    return prepared[:2], prepared[2:], plan, config, fp


def test_smoke_training_lowers_the_loss_and_writes_the_model_folder(data, tmp_path) -> None:
    train, validation, plan, config, fp = data
    result = train_segmenter(train, validation, plan, config, tmp_path / "seg", seed=0, fingerprint=fp)
    losses = [float(r["train_loss"]) for r in result.rows]
    assert losses[-1] < losses[0]
    for name in ("config.json", "plan.json", "weights.safetensors", "best.safetensors", "training_state.pt", "log.csv", "curves.png"):
        assert (tmp_path / "seg" / name).is_file(), name
    with open(tmp_path / "seg" / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(0.0 <= float(r["val_dice_liver"]) <= 1.0 for r in rows)
    assert all(math.isfinite(float(r[key])) and float(r[key]) >= 0 for r in rows for key in ("loader_wait_s", "compute_s"))
    assert [int(r["steps"]) for r in rows] == [config.steps_per_epoch] * 3


def test_a_diverged_training_stops_with_one_line_and_keeps_the_last_good_checkpoint(data, tmp_path,
                                                                                   monkeypatch) -> None:
    """With segment.learning_rate=inf the loss went NaN, train exited 0 and was stamped; the model
    failed only at predict ('weight tensor(s) hold NaN'). The weights are checked before each save."""
    from diff4mmlits.errors import TrainingDiverged
    from diff4mmlits.segment import train as train_module

    train, validation, plan, config, fp = data
    train_segmenter(train, validation, plan, config, tmp_path / "seg", seed=0, fingerprint=fp, max_epochs=1)
    good = (tmp_path / "seg" / "weights.safetensors").read_bytes()
    real_loss = train_module.supervised_loss
    monkeypatch.setattr(train_module, "supervised_loss", lambda *a: real_loss(*a) * float("nan"))
    with pytest.raises(TrainingDiverged, match="the training diverged: .* hold NaN or Inf .*learning_rate"):
        train_segmenter(train, validation, plan, config, tmp_path / "seg", seed=0, fingerprint=fp, resume=True)
    assert (tmp_path / "seg" / "weights.safetensors").read_bytes() == good


def test_the_loop_figures_are_shares_of_the_logged_times(tmp_path) -> None:
    rows = [{"loader_wait_s": 1.0, "compute_s": 3.0, "steps": 4}, {"loader_wait_s": "0.5", "compute_s": "3.5", "steps": "4"}]
    result = TrainResult(tmp_path, epochs_done=2, best_val_dice=None, rows=rows)
    assert result.loader_wait_fraction == pytest.approx(1.5 / 8.0)
    assert result.steps_per_second == pytest.approx(1.0)


def test_resume_continues_to_the_same_weights_as_an_uninterrupted_run(data, tmp_path) -> None:
    train, validation, plan, config, fp = data
    train_segmenter(train, validation, plan, config, tmp_path / "full", seed=0, fingerprint=fp)
    train_segmenter(train, validation, plan, config, tmp_path / "cut", seed=0, fingerprint=fp, max_epochs=1)
    resumed = train_segmenter(train, validation, plan, config, tmp_path / "cut", seed=0, fingerprint=fp, resume=True)
    assert [int(r["epoch"]) for r in resumed.rows] == [1, 2, 3]
    full = load_file(str(tmp_path / "full" / "weights.safetensors"))
    cut = load_file(str(tmp_path / "cut" / "weights.safetensors"))
    assert full.keys() == cut.keys()
    for key in full:
        torch.testing.assert_close(cut[key], full[key], rtol=1e-5, atol=1e-6)


def test_training_computes_in_channels_last_and_matches_the_nchw_layout(data, tmp_path, monkeypatch) -> None:
    """The network and its batches train in channels-last (NDHWC, the faster oneDNN kernels); the
    layout changes how the convolutions are computed, not what is learned."""
    from diff4mmlits.segment import train as segment_train

    train, validation, plan, config, fp = data
    config = config.model_copy(update={"epochs": 1, "steps_per_epoch": 3, "mixed_precision": False})
    layouts: list[bool] = []
    build = segment_train.build_network

    def recording_network(plan, config):
        network = build(plan, config)
        network.register_forward_pre_hook(lambda module, args: layouts.append(
            args[0].is_contiguous(memory_format=torch.channels_last_3d)) if module.training else None)
        return network

    monkeypatch.setattr(segment_train, "build_network", recording_network)
    fast = train_segmenter(train, [], plan, config, tmp_path / "ndhwc", seed=0, fingerprint=fp)
    assert layouts and all(layouts)  # every training batch in channels-last
    convolutions = [m for m in fast.network.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convolutions and all(m.weight.is_contiguous(memory_format=torch.channels_last_3d) for m in convolutions)
    assert not all(m.weight.is_contiguous() for m in convolutions)
    plain = train_segmenter(train, [], plan, config, tmp_path / "ncdhw", seed=0, fingerprint=fp,
                            memory_format=torch.contiguous_format)
    assert all(m.weight.is_contiguous() for m in plain.network.modules() if isinstance(m, torch.nn.Conv3d))
    losses = [[float(r["train_loss"]) for r in run.rows] for run in (fast, plain)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
    saved = [load_file(str(tmp_path / name / "weights.safetensors")) for name in ("ndhwc", "ncdhw")]
    for key in saved[0]:
        torch.testing.assert_close(saved[0][key], saved[1][key], rtol=1e-3, atol=1e-4)


def test_train_model_trains_both_cascade_stages_in_the_layout_it_is_given(tiny_case, tmp_path, monkeypatch) -> None:
    from diff4mmlits.segment import train as segment_train

    cases = [tiny_case(f"c{i}", seed=i) for i in range(3)]
    config = resolve_config("smoke").segment.model_copy(update={"cascade": True, "epochs": 1, "steps_per_epoch": 1})
    layouts: list[torch.memory_format] = []
    train_segmenter_itself = segment_train.train_segmenter

    def recording(*args, memory_format, **kwargs):
        layouts.append(memory_format)
        return train_segmenter_itself(*args, memory_format=memory_format, **kwargs)

    monkeypatch.setattr(segment_train, "train_segmenter", recording)
    segment_train.train_model(cases[:2], cases[2:], config, tmp_path / "default", seed=0, echo=lambda _: None)
    segment_train.train_model(cases[:2], cases[2:], config, tmp_path / "plain", seed=0, echo=lambda _: None,
                              memory_format=torch.contiguous_format)
    assert layouts == [torch.channels_last_3d] * 2 + [torch.contiguous_format] * 2


def test_resume_refuses_another_network(data, tmp_path) -> None:
    train, validation, plan, config, fp = data
    with pytest.raises(InputError, match="nothing to resume"):
        train_segmenter(train, validation, plan, config, tmp_path / "none", seed=0, resume=True)
    train_segmenter(train, validation, plan, config, tmp_path / "seg", seed=0, fingerprint=fp, max_epochs=1)
    other = config.model_copy(update={"backbone": "unet"})
    with pytest.raises(InputError, match="backbone changed"):
        train_segmenter(train, validation, plan, other, tmp_path / "seg", seed=0, resume=True)


def test_mixed_precision_on_a_cpu_trains_in_bfloat16_when_the_kernels_agree(data, tmp_path, monkeypatch) -> None:
    from diff4mmlits import training
    from diff4mmlits.segment import train as segment_train

    train, validation, plan, config, fp = data
    config = config.model_copy(update={"epochs": 1, "steps_per_epoch": 2})
    dtypes: list[torch.dtype] = []
    build = segment_train.build_network

    def recording_network(plan, config):
        network = build(plan, config)
        network.register_forward_hook(lambda module, _, out: dtypes.append(out.dtype) if module.training else None)
        return network

    monkeypatch.setattr(segment_train, "build_network", recording_network)
    monkeypatch.setattr(training, "cpu_computes_bfloat16", lambda: True)
    for agree, precision in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(training, "bfloat16_disagreement", lambda network, forward, agree=agree: None if agree else "conv")
        dtypes.clear()
        train_segmenter(train, validation, plan, config, tmp_path / str(agree), seed=0, fingerprint=fp)
        assert dtypes and set(dtypes) == {precision}
    dtypes.clear()
    train_segmenter(train, validation, plan, config.model_copy(update={"mixed_precision": False}), tmp_path / "off",
                    seed=0, fingerprint=fp)
    assert dtypes and set(dtypes) == {torch.float32}


def test_per_sample_dice_weighs_a_missed_small_tumor_as_much_as_a_found_large_one() -> None:
    """batch_dice=False: the tumor Dice of each sample, then the mean; a sample whose few tumor
    voxels are missed costs as much as a large tumor found, where batch Dice hardly sees it."""
    from diff4mmlits.segment.train import make_loss

    label = torch.zeros(2, 1, 8, 8, 8, dtype=torch.long)
    label[:, :, 1:7, 1:7, 1:7] = 1  # liver in both samples
    label[0, :, 2:6, 2:6, 2:6] = 2  # sample 0: a large tumor (64 voxels), predicted
    label[1, :, 3, 3, 3] = 2  # sample 1: one tumor voxel, missed
    logits = torch.full((2, 3, 8, 8, 8), -20.0)
    logits[:, 0][label[:, 0] == 0] = 20.0
    logits[:, 1][label[:, 0] == 1] = 20.0
    logits[:, 2][label[:, 0] == 2] = 20.0
    logits[1, 1, 3, 3, 3], logits[1, 2, 3, 3, 3] = 20.0, -20.0  # the small tumor read as liver
    config = resolve_config("smoke").segment.model_copy(update={"lambda_ce": 0.0})
    batch = float(make_loss(config)(logits, label))
    per_sample = float(make_loss(config.model_copy(update={"batch_dice": False}))(logits, label))
    assert batch < 0.02  # one voxel of 65 tumor voxels missed: tumor Dice ≈ 0.99, liver ≈ 1
    assert per_sample > 0.2  # sample 1's tumor Dice is 0: the mean over samples and classes loses 1/4
