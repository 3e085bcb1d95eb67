"""The segment section: the synthetic samples' own augmentation settings."""

from __future__ import annotations

import pytest

from diff4mmlits.config import rename_old_settings, resolve_config
from diff4mmlits.errors import InputError
from diff4mmlits.segment.config import SegmentConfig


def test_synthetic_sample_config_applies_the_synthetic_settings_alone() -> None:
    config = resolve_config("smoke", overrides=["segment.synthetic_augmentation.blur_prob=0.7",
                                                "segment.synthetic_augmentation.low_resolution_zoom=[0.4, 0.8]"]).segment
    synthetic = config.synthetic_sample_config()
    assert synthetic.blur_prob == 0.7 and synthetic.low_resolution_zoom == (0.4, 0.8)
    assert config.blur_prob != 0.7  # the real samples keep theirs
    assert synthetic.model_copy(update={"blur_prob": config.blur_prob, "low_resolution_zoom": config.low_resolution_zoom,
                                        "synthetic_augmentation": config.synthetic_augmentation}) == config
    plain = resolve_config("smoke").segment
    assert plain.synthetic_sample_config() is plain


@pytest.mark.parametrize(("override", "match"), [
    ("segment.synthetic_augmentation.flip_prob=1", "not augmentation settings"),  # spatial: shared, not per scanner
    ("segment.synthetic_augmentation.blur_prob=often", "segment.synthetic_augmentation"),
    ("segment.synthetic_augmentation.low_resolution_zoom=0.5", "segment.synthetic_augmentation"),
])
def test_bad_synthetic_augmentation_is_one_line(override: str, match: str) -> None:
    with pytest.raises(InputError, match=match) as err:
        resolve_config("smoke", overrides=[override])
    assert "\n" not in str(err.value)


def test_synthetic_grain_noise_prob_still_loads() -> None:
    """Configs saved before ``synthetic_augmentation`` still load: the old name is a key of it now."""
    by_set = resolve_config("smoke", overrides=["segment.synthetic_grain_noise_prob=0.6"]).segment
    assert by_set.synthetic_augmentation == {"grain_noise_prob": 0.6}
    unset = rename_old_settings({"segment": {"synthetic_grain_noise_prob": None}}, "old config")  # null: as the real ones
    assert SegmentConfig.model_validate(unset["segment"]).synthetic_augmentation == {}
