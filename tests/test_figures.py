"""Figures are drawn in the radiological orientation whatever the storage: a RAS-stored case gives
the same picture as its LPS twin."""

from __future__ import annotations

import numpy as np
from segment_cases import make_case

from diff4mmlits.data.case import Case
from diff4mmlits.data.orientation import reorient
from diff4mmlits.figures import display_case, plot_case_preview


def ras_twin(case: Case) -> Case:
    return Case("twin", {k: reorient(v, "RAS") for k, v in case.phases.items()}, reorient(case.label, "RAS"),
                case.annotated_phase)


def test_display_case_undoes_the_storage_orientation() -> None:
    case = make_case("c", seed=3)
    twin = ras_twin(case)
    assert not np.array_equal(twin.annotated.array, case.annotated.array)  # stored otherwise
    shown, shown_twin = display_case(case), display_case(twin)
    np.testing.assert_array_equal(shown_twin.annotated.array, shown.annotated.array)
    np.testing.assert_array_equal(shown_twin.label.array, shown.label.array)


def test_a_ras_stored_preview_is_the_picture_of_its_lps_twin(tmp_path) -> None:
    import matplotlib.image as mpimg

    case = make_case("c", seed=3)
    first = plot_case_preview(Case("same", case.phases, case.label, case.annotated_phase), tmp_path / "lps.png")
    second = plot_case_preview(Case("same", ras_twin(case).phases, ras_twin(case).label, case.annotated_phase),
                               tmp_path / "ras.png")
    np.testing.assert_array_equal(mpimg.imread(first), mpimg.imread(second))
    other = plot_case_preview(make_case("other", seed=4), tmp_path / "other.png")
    assert not np.array_equal(mpimg.imread(first), mpimg.imread(other))  # the picture shows the case
