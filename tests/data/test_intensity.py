"""Intensity maps: CT windows invert exactly, MRI percentiles map to the training range."""

from __future__ import annotations

import numpy as np
import pytest

from diff4mmlits.data.intensity import IntensityMap, intensity_map


def test_window_maps_to_unit_and_back_inside_the_window() -> None:
    window = intensity_map("window", (-250.0, 350.0), (0.5, 99.5))
    hu = np.array([-1000.0, -250.0, 50.0, 350.0, 2000.0])
    unit = window.to_unit(hu)
    assert unit.tolist() == pytest.approx([-1.0, -1.0, 0.0, 1.0, 1.0])
    assert window.from_unit(unit)[1:4] == pytest.approx(hu[1:4])


def test_percentile_map_fits_the_median_range_of_the_training_volumes() -> None:
    rng = np.random.default_rng(0)
    volumes = [rng.uniform(0, scale, size=(4, 8, 8)) for scale in (500.0, 600.0, 700.0)]
    fitted = intensity_map("percentile", (0, 1), (0.5, 99.5)).fitted(volumes)
    assert fitted.reference_high == pytest.approx(np.percentile(volumes[1], 99.5))
    unit = fitted.to_unit(volumes[2])
    assert unit.min() == -1.0 and unit.max() == 1.0
    assert fitted.from_unit(np.array([1.0]))[0] == pytest.approx(fitted.reference_high)
    assert IntensityMap.from_dict(fitted.to_dict()) == fitted


def test_an_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        IntensityMap("window", 10.0, 10.0)
