"""The shared training loop: model folder, resume, translation keeps geometry and labels."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import load_file

from diff4mmlits.data.case import Case
from diff4mmlits.data.volume import grid_mismatch
from diff4mmlits.errors import InputError
from diff4mmlits.training import read_log
from diff4mmlits.translate.stage import prepare_data, train_translator
from diff4mmlits.translate.train import build_model, learning_rate_factor
from diff4mmlits.translate.translator import (
    complete_missing_phase,
    load_translator,
    translate_case,
    translate_volume,
    translator_from_model,
)

from .helpers import smoke_config


@pytest.fixture(scope="module")
def essnet_folder(tmp_path_factory, toy_ct, toy_mri):
    out = tmp_path_factory.mktemp("essnet")
    return train_translator(toy_ct, toy_mri, smoke_config(method="essnet"), out, device="cpu", seed=3)


def test_training_writes_a_complete_model_folder(essnet_folder) -> None:
    names = {p.name for p in essnet_folder.iterdir()}
    assert {"config.json", "weights.safetensors", "networks.safetensors", "training_state.pt", "log.csv", "curves.png", "preview.png"} <= names
    rows = read_log(essnet_folder / "log.csv")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["segmentation"] > 0 for r in rows)


def test_translation_keeps_the_grid_and_the_label(essnet_folder, toy_ct) -> None:
    translator = load_translator(essnet_folder)
    case = toy_ct[0]
    out = translate_case(case, translator)
    assert out.phase_names == ["PVP"] and out.case_id == case.case_id
    assert grid_mismatch(out.annotated, case.annotated) is None
    assert out.label is case.label  # carried over unchanged
    assert not np.allclose(out.annotated.array, case.annotated.array)
    assert translator.target_map.reference_low <= out.annotated.array.min()
    assert out.annotated.array.max() <= translator.target_map.reference_high + 1e-3


def test_saved_generator_translates_like_the_trained_one(tmp_path, toy_ct, toy_mri) -> None:
    """Checkpoint round trip: ``weights.safetensors`` (what ``translate`` loads) holds the trained
    generator: the one inside every network's state saved for resume, and not a fresh one."""
    config = smoke_config(method="cut", steps=2)
    out = train_translator(toy_ct, toy_mri, config, tmp_path / "cut", device="cpu", seed=1)
    loaded = load_translator(out)
    data = prepare_data(toy_ct, toy_mri, config, need_labels=False)
    model = build_model(config, 1, 1)
    untrained = translate_volume(toy_ct[1].annotated, translator_from_model(model, data, config)).array
    model.nets.load_state_dict(load_file(out / "networks.safetensors"))
    in_memory = translator_from_model(model, data, config)
    assert not np.array_equal(untrained, translate_volume(toy_ct[1].annotated, in_memory).array)
    assert np.array_equal(translate_volume(toy_ct[1].annotated, loaded).array,
                          translate_volume(toy_ct[1].annotated, in_memory).array)


def test_resume_continues_to_the_same_weights(tmp_path, toy_ct, toy_mri) -> None:
    config = smoke_config(method="cyclegan", steps=4, checkpoint_every_steps=2)
    straight = train_translator(toy_ct, toy_mri, config, tmp_path / "straight", device="cpu", seed=5)
    half = train_translator(toy_ct, toy_mri, config.model_copy(update={"steps": 2}), tmp_path / "resumed", device="cpu", seed=5)
    resumed = train_translator(toy_ct, toy_mri, config, half, device="cpu", seed=5, resume=True)
    a, b = load_file(straight / "networks.safetensors"), load_file(resumed / "networks.safetensors")
    assert a.keys() == b.keys() and all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6) for k in a)
    assert [r["step"] for r in read_log(resumed / "log.csv")] == [1, 2, 3, 4]


def test_resume_refuses_a_checkpoint_of_another_method(tmp_path, toy_ct, toy_mri, essnet_folder) -> None:
    with pytest.raises(InputError, match="checkpoint is a essnet model"):
        train_translator(toy_ct, toy_mri, smoke_config(method="cut"), essnet_folder, device="cpu", resume=True)


def test_missing_phase_and_missing_labels_are_one_line_errors(toy_ct, toy_mri, essnet_folder) -> None:
    with pytest.raises(InputError, match="no phase AP"):
        prepare_data(toy_ct, toy_mri, smoke_config(source_phase="AP"), need_labels=False)
    unlabelled = [type(c)(case_id=c.case_id, phases=c.phases) for c in toy_ct]
    with pytest.raises(InputError, match="no label"):
        prepare_data(unlabelled, toy_mri, smoke_config(), need_labels=True)
    with pytest.raises(InputError, match="not a model folder"):
        load_translator(essnet_folder.parent / "nothing-here")


def test_learning_rate_is_constant_then_falls_linearly_to_zero() -> None:
    factors = [learning_rate_factor(s, 10, 0.5) for s in range(11)]
    assert factors[:5] == [1.0] * 5 and factors[10] == 0.0
    assert all(a > b for a, b in zip(factors[5:], factors[6:]))


def test_complete_missing_adds_only_the_missing_phase(tmp_path, toy_ct) -> None:
    """A PVP → AP translator fills AP where it is missing; everything present stays as it was."""
    with_ap = [Case(case_id=c.case_id, phases={"PVP": c.annotated, "AP": c.annotated.with_array(c.annotated.array * 0.8)},
                    label=c.label) for c in toy_ct]
    config = smoke_config(method="cut", steps=2, target_phase="AP", target_intensity="window")
    translator = load_translator(train_translator(toy_ct, with_ap, config, tmp_path / "pvp2ap", device="cpu"))
    completed = complete_missing_phase(toy_ct[0], translator)
    assert completed.phase_names == ["AP", "PVP"]
    assert completed.phases["PVP"] is toy_ct[0].phases["PVP"] and completed.label is toy_ct[0].label
    assert grid_mismatch(completed.phases["AP"], toy_ct[0].annotated) is None
    assert complete_missing_phase(with_ap[0], translator) is with_ap[0]


def test_3d_cubes_train_and_translate_with_sliding_windows(tmp_path, toy_ct, toy_mri) -> None:
    config = smoke_config(method="essnet", steps=1, spatial_dims=3, crop_vox=16, batch_size=1, segmenter_channels=(4, 8))
    translator = load_translator(train_translator(toy_ct, toy_mri, config, tmp_path / "3d", device="cpu"))
    assert translator.spatial_dims == 3
    out = translate_case(toy_ct[0], translator)
    assert grid_mismatch(out.annotated, toy_ct[0].annotated) is None and out.label is toy_ct[0].label
