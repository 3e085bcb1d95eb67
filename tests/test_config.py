"""Configuration: presets, YAML files, ``--set`` overrides, strictness, the saved config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from diff4mmlits.config import (
    PRESET_NAMES,
    Config,
    Section,
    config_to_yaml,
    parse_override,
    read_run_config,
    resolve_config,
)
from diff4mmlits.errors import InputError


def _sections() -> list[tuple[str, type[Section]]]:
    return [(name, field.annotation) for name, field in Config.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, Section)]


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_section_gets_its_preset(preset: str) -> None:
    """Whatever sections later stages add, each one's PRESETS[preset] lands in the resolved config."""
    config = resolve_config(preset)
    assert config.preset == preset
    for key, value in Config.PRESETS.get(preset, {}).items():
        assert getattr(config, key) == value
    for name, section in _sections():
        resolved = getattr(config, name)
        for key, value in section.PRESETS.get(preset, {}).items():
            got = getattr(resolved, key)
            assert (got.model_dump() if isinstance(got, Section) else got) == (tuple(value) if isinstance(got, tuple) else value), (name, key)


def test_presets_differ_where_they_should() -> None:
    smoke, paper = resolve_config("smoke"), resolve_config("paper")
    assert smoke.device == "cpu"
    assert smoke.phantom.size < paper.phantom.size and smoke.phantom.cases < paper.phantom.cases


def test_bench_is_the_demo_with_longer_segmenter_training() -> None:
    demo, bench = resolve_config("demo"), resolve_config("bench")
    assert bench.phantom == demo.phantom and bench.register == demo.register and bench.device == demo.device
    assert bench.segment.base_filters == demo.segment.base_filters and bench.segment.synthetic == demo.segment.synthetic
    assert bench.segment.epochs * bench.segment.steps_per_epoch > 5 * demo.segment.epochs * demo.segment.steps_per_epoch


def test_unknown_preset() -> None:
    with pytest.raises(InputError, match="unknown preset 'fast'; choose one of smoke, demo, bench, paper"):
        resolve_config("fast")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed=3", {"seed": 3}),
        ("phantom.cases=5", {"phantom": {"cases": 5}}),
        ("preview.window_hu=[-100, 200]", {"preview": {"window_hu": [-100, 200]}}),
        ("device=cuda:1", {"device": "cuda:1"}),
        ("preview.enabled=false", {"preview": {"enabled": False}}),
        ("data.annotated_phase=PVP", {"data": {"annotated_phase": "PVP"}}),
        ("phantom.site= second ", {"phantom": {"site": "second"}}),
        ("a.b=", {"a": {"b": ""}}),
        ("a.b=x: [", {"a": {"b": "x: ["}}),  # not YAML: kept as text
    ],
)
def test_parse_override(text: str, expected: dict) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize(("text", "match"), [("seed", "expected key=value"), ("=3", "the key is empty"), ("a..b=1", "the key is empty")])
def test_parse_override_errors(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_override(text)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("phantom.nope=1", "unknown setting 'phantom.nope'"),
        ("nope=1", "unknown setting 'nope'"),
        ("phantom.cases=many", "setting 'phantom.cases'"),
        ("phantom.site=fourth", "setting 'phantom.site'"),
    ],
)
def test_bad_settings_are_one_line(override: str, match: str) -> None:
    with pytest.raises(InputError, match=match) as err:
        resolve_config("smoke", overrides=[override])
    assert "\n" not in str(err.value) and "docs/presets.md" in str(err.value)


def test_order_defaults_preset_file_then_set(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("seed: 7\nphantom:\n  cases: 2\n  site: second\n")
    config = resolve_config("smoke", path, ["phantom.cases=4"])
    assert (config.seed, config.phantom.cases, config.phantom.site) == (7, 4, "second")
    assert config.phantom.size == resolve_config("smoke").phantom.size  # untouched: the preset's


def test_config_file_naming_another_preset(tmp_path: Path) -> None:
    """The file comes after --preset: its preset applies, under its own values and the --set ones."""
    path = tmp_path / "paper.yaml"
    path.write_text("preset: paper\nphantom:\n  cases: 5\n")
    config = resolve_config("smoke", path, ["seed=2"])
    paper = resolve_config("paper")
    assert config.preset == "paper" and config.device == paper.device
    assert (config.phantom.size, config.phantom.cases, config.seed) == (paper.phantom.size, 5, 2)
    path.write_text("preset: huge\n")
    with pytest.raises(InputError, match="unknown preset 'huge'"):
        resolve_config("smoke", path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("phantom: [1, 2\n", "not valid YAML at line"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("phantom:\n  colour: red\n", "unknown setting 'phantom.colour'"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as err:
        resolve_config("smoke", path)
    assert str(path) in str(err.value)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """A UTF-16 file (a Windows editor's) was an internal error (UnicodeDecodeError)."""
    path = tmp_path / "windows.yaml"
    path.write_bytes("seed: 3\n".encode("utf-16"))
    with pytest.raises(InputError, match="is not UTF-8 text; save it as UTF-8"):
        resolve_config("smoke", path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="config file not found"):
        resolve_config("smoke", tmp_path / "absent.yaml")


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_saved_config_round_trips(tmp_path: Path, preset: str) -> None:
    config = resolve_config(preset, overrides=["seed=11", "preview.window_hu=[-50, 150]"])
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(config))
    back = read_run_config(path)
    assert back == config
    assert back.preview.window_hu == (-50.0, 150.0)


def test_sections_are_frozen_and_strict() -> None:
    config = resolve_config("smoke")
    with pytest.raises(ValidationError):
        config.phantom.cases = 3  # type: ignore[misc]
    for name, section in _sections():
        assert section.model_config.get("extra") == "forbid", name
        assert section.model_config.get("frozen") is True, name


def test_renamed_settings_still_load_under_their_old_names(tmp_path) -> None:
    from diff4mmlits.config import RENAMED, apply_overrides

    config = resolve_config("smoke", overrides=["segment.amp=false", "diffusion.close_kernel_vox=7",
                                                "translate.checkpoint_every=5"])
    assert config.segment.mixed_precision is False
    assert config.inpaint.close_kernel_vox == 7  # one mask preparation for the inpainter and the synthesizer
    assert config.translate.checkpoint_every_steps == 5
    old_file = tmp_path / "old.yaml"
    old_file.write_text("autoencoder:\n  save_every_steps: 11\ninpaint:\n  disc_channels: 12\n")
    from_file = resolve_config("smoke", config_file=old_file, overrides=["inpaint.discriminator_channels=13"])
    assert from_file.autoencoder.checkpoint_every_steps == 11
    assert from_file.inpaint.discriminator_channels == 13, "--set comes after the file, whatever name either uses"
    assert apply_overrides(config, ["segment.amp=true"]).segment.mixed_precision is True
    dumped = config.model_dump(mode="json")
    for old in RENAMED:
        section, key = old.split(".")
        assert key not in dumped[section], f"{old} is still a setting"


def test_every_section_lives_with_its_stage() -> None:
    from diff4mmlits.config import Config
    from diff4mmlits.settings import Section

    homes = {name: field.annotation.__module__ for name, field in Config.model_fields.items()
             if isinstance(field.annotation, type) and issubclass(field.annotation, Section)}
    assert homes["register"] == "diff4mmlits.register.config"
    assert homes["inpaint"] == "diff4mmlits.inpaint.config"
    assert {homes[s] for s in ("autoencoder", "diffusion", "synthesize")} == {"diff4mmlits.synthesize.config"}
    assert list(Config.model_fields)[-8:] == ["register", "inpaint", "autoencoder", "diffusion", "synthesize", "segment",
                                              "evaluate", "translate"]


@pytest.mark.parametrize("setting", ["segment.epochs=-3", "segment.epochs=0", "segment.steps_per_epoch=0",
                                     "segment.batch_size=0", "segment.flip_prob=1.5", "segment.learning_rate=0",
                                     "diffusion.batch_size=0", "synthesize.strength=2", "translate.steps=-1",
                                     "register.sampling_percentage=0", "autoencoder.num_res_layers=0",
                                     "autoencoder.adversarial_weight=-1", "diffusion.num_res_blocks=0",
                                     "diffusion.jitter_vox=-2", "diffusion.beta_end=1.5",
                                     # accepted before: a NaN model, an internal error, a constant input, a 1-voxel axis
                                     "segment.learning_rate=inf", "register.margin_mm=nan", "seed=-1",
                                     "segment.window_hu=[200,-100]", "segment.patch_size_vox=[0,16,16]"])
def test_settings_out_of_their_range_are_refused(setting: str) -> None:
    """``segment.epochs=-3`` trained 0 epochs and exited 0, rewriting the model's config.json."""
    with pytest.raises(InputError, match=f"setting '{setting.split('=')[0]}'"):
        resolve_config("smoke", overrides=[setting])


def test_a_mapping_given_to_a_setting_is_named_as_the_setting_and_no_pydantic_prefix_shows() -> None:
    with pytest.raises(InputError, match="setting 'segment.learning_rate'"):
        resolve_config("smoke", overrides=["segment.learning_rate={a: 1}"])
    with pytest.raises(InputError) as err:
        resolve_config("smoke", overrides=["segment.phases=foo"])
    assert "Value error" not in str(err.value) and "non-empty subset" in str(err.value)


def test_a_backbone_and_a_patch_it_cannot_divide_are_refused_with_the_config() -> None:
    """``train --backbone swin-unetr`` on the smoke patch failed after clearing the good model's stamp."""
    with pytest.raises(InputError, match=r"section 'segment': backbone swin-unetr needs a patch that is a multiple "
                                         r"of 32 .* not \[16, 16, 16\]; set segment.patch_size_vox") as err:
        resolve_config("smoke", overrides=["segment.backbone=swin-unetr"])
    assert "got {" not in str(err.value)
    resolve_config("smoke", overrides=["segment.backbone=swin-unetr", "segment.patch_size_vox=[64,64,64]"])


@pytest.mark.parametrize("setting", ["segment.synthetic_pool=0", "segment.cascade_min_tumor_vox=0"])
def test_the_documented_zero_settings_are_accepted(setting: str) -> None:
    """docs/presets.md and docs/segment.md use these; the new ranges must not refuse them."""
    resolve_config("smoke", overrides=[setting])
