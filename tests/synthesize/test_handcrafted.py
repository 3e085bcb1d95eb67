import dataclasses

import numpy as np
from synth_toys import toy_pair

from builders import HYPERVASCULAR
from diff4mmlits.synthesize.contrast import measure_tumor_contrasts, summarize_contrasts
from diff4mmlits.synthesize.handcrafted import HandcraftedPainter

LIVER_HU, TUMOR_HU = HYPERVASCULAR.liver, HYPERVASCULAR.tumor


def test_contrast_of_real_tumors_is_measured_per_phase(toy_cases):
    tumors = [t for real, _ in toy_cases for t in measure_tumor_contrasts(real)]
    assert len(tumors) == 3
    summary = summarize_contrasts(tumors)
    for phase in LIVER_HU:
        assert abs(summary[phase]["mean"] - (TUMOR_HU[phase] - LIVER_HU[phase])) < 2.0
    _, normal = toy_cases[0]
    assert measure_tumor_contrasts(normal) == []


def test_handcrafted_tumors_take_the_real_contrast_of_each_phase(toy_cases, smoke_config):
    real_tumors = [t for real, _ in toy_cases for t in measure_tumor_contrasts(real)]
    painter = HandcraftedPainter(real_tumors=real_tumors, config=smoke_config.synthesize, crop_vox=24)
    painted = []
    for seed in range(4):
        normal = toy_pair(10 + seed, size=32)[1]
        synthetic, provenance = painter.paint_with_provenance(normal, np.random.default_rng(seed))
        assert provenance["method"] == "handcrafted" and provenance["tumors"][0]["contrast_hu"]
        painted += measure_tumor_contrasts(synthetic)
    assert len(painted) >= 4
    summary = summarize_contrasts(painted)
    for phase in LIVER_HU:
        expected = TUMOR_HU[phase] - LIVER_HU[phase]
        assert abs(summary[phase]["mean"] - expected) < 0.35 * abs(expected), (phase, summary[phase])


def test_handcrafted_tumors_take_their_reference_tumors_edge(smoke_config):
    """With ``calibrate_edge`` each painted tumor shows its reference real tumor's edge fraction
    (here set to a soft edge with nothing outside); without, the softened mask's ramp reaches past the label."""
    real = [t for pair in (toy_pair(i, size=32) for i in range(3)) for t in measure_tumor_contrasts(pair[0])]
    real = [dataclasses.replace(t, edge_fraction={"edge": 0.3, "outside": 0.0}) for t in real]
    shown = {}
    for edge in (True, False):
        painter = HandcraftedPainter(real_tumors=real, crop_vox=24,
                                     config=smoke_config.synthesize.model_copy(update={"calibrate_edge": edge}))
        synthetic, provenance = painter.paint_with_provenance(toy_pair(6, size=32)[1], np.random.default_rng(0))
        assert provenance["calibrate_edge"] is edge
        shown[edge] = [t.edge_fraction for t in measure_tumor_contrasts(synthetic) if t.edge_fraction]
    assert shown[True] and all(abs(e["edge"] - 0.3) < 0.05 and abs(e["outside"]) < 0.03 for e in shown[True])
    assert shown[False] and all(e["edge"] > 0.5 and e["outside"] > 0.05 for e in shown[False])
