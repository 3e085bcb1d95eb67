"""The Python API, used as the README shows: SimpleITK images or paths in, SimpleITK images out."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from segment_cases import make_case

from diff4mmlits.api import Segmenter, paint_tumors, register_phases
from diff4mmlits.config import resolve_config
from diff4mmlits.data.io import to_sitk, write_volume
from diff4mmlits.errors import InputError
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.segment.train import train_model
from finished_stages import put_case, write_manifest


@pytest.fixture
def model(tmp_path):
    config = resolve_config("smoke")
    train_model([make_case(f"c{i}", seed=i) for i in range(2)], [], config.segment.model_copy(update={"epochs": 1, "steps_per_epoch": 2}),
                tmp_path / "model", seed=0, echo=lambda _: None, extra_config={"run_config": config.model_dump(mode="json")})
    return tmp_path / "model"


def test_segmenter_predicts_from_images_and_paths_like_the_cli(model, tmp_path) -> None:
    from diff4mmlits.segment.predict import load_segmenter, segment_case

    case = make_case("new", seed=7)
    write_volume(case.phases["AP"], tmp_path / "AP.nii.gz")
    phases = {"PVP": to_sitk(case.phases["PVP"]), "AP": tmp_path / "AP.nii.gz", "NC": to_sitk(case.phases["NC"]),
              "DP": str(tmp_path / "DP.nii.gz")}
    write_volume(case.phases["DP"], tmp_path / "DP.nii.gz")
    segmenter = Segmenter.load(model, device="cpu")
    label = segmenter.predict(phases)
    assert isinstance(label, sitk.Image) and label.GetSize() == to_sitk(case.phases["PVP"]).GetSize()
    expected = segment_case(case, load_segmenter(model, device="cpu")).array
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), expected)
    stats = Segmenter.statistics(label, {"PVP": phases["PVP"]})
    assert stats["liver_volume_ml"] == pytest.approx((expected >= 1).sum() * np.prod(case.annotated.spacing_mm) / 1000, abs=1e-3)


def test_bad_input_is_one_line(model) -> None:
    with pytest.raises(InputError, match="unknown phase name"):
        Segmenter.load(model, device="cpu").predict({"venous": sitk.Image(4, 4, 4, sitk.sitkFloat32)})
    with pytest.raises(InputError, match="expected a SimpleITK.Image or a file path"):
        Segmenter.load(model, device="cpu").predict({"PVP": np.zeros((4, 4, 4))})


def test_register_phases_puts_every_phase_on_the_annotated_grid(phantom_case) -> None:
    case = phantom_case.case
    registered = register_phases({k: to_sitk(v) for k, v in case.phases.items()}, label=to_sitk(case.label), preset="smoke")
    reference = to_sitk(case.annotated)
    assert sorted(registered) == sorted(case.phases)
    for image in registered.values():
        assert image.GetSize() == reference.GetSize() and np.allclose(image.GetOrigin(), reference.GetOrigin())


def test_paint_tumors_with_the_runs_handcrafted_painter(tmp_path) -> None:
    run = RunFolder(tmp_path / "run")
    run.save_config(resolve_config("smoke"))
    cases = [make_case(f"c{i}", seed=i) for i in range(2)]
    write_manifest(run, cases, train=["c0", "c1"], validation=[], test=[])
    for case in cases:
        put_case(run, "registered", case)
    normal = make_case("normal", seed=5, tumor=False)
    phases, label = paint_tumors(run.root, {k: to_sitk(v) for k, v in normal.phases.items()}, to_sitk(normal.label),
                                 seed=1, method="handcrafted")
    painted = sitk.GetArrayFromImage(label)
    assert (painted == 2).any() and set(np.unique(painted)) <= {0, 1, 2}
    changed = sitk.GetArrayFromImage(phases["PVP"]) != normal.phases["PVP"].array
    assert changed.any() and (painted[changed] > 0).mean() > 0.9  # painted inside the liver, not elsewhere


def test_an_image_or_a_path_alone_and_a_broken_image_are_one_line(model, tmp_path) -> None:
    """``predict(image)`` listed every pixel value as an unknown phase name, ``predict(path)`` every
    character; a NaN voxel ran inference and then blamed the model; ``load(None)`` was a TypeError."""
    segmenter = Segmenter.load(model, device="cpu")
    image = to_sitk(make_case("new", seed=7).phases["PVP"])
    for alone in (image, "scan.nii.gz", [image]):
        with pytest.raises(InputError, match=r"phases must map phase names to images, e.g. \{'PVP': image\}"):
            segmenter.predict(alone)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array[0, 0, 0] = np.nan
    broken = sitk.GetImageFromArray(array)
    broken.CopyInformation(image)
    with pytest.raises(InputError, match="PVP: 1 voxel"):
        segmenter.predict({"PVP": broken})
    tiny = sitk.Image(image)
    tiny.SetSpacing((1e-6, 1e-6, 1e-6))
    with pytest.raises(InputError, match="absurd voxel spacing"):
        segmenter.predict({"PVP": tiny})
    with pytest.raises(InputError, match="phases must map"):
        Segmenter.statistics(to_sitk(make_case("new", seed=7).label), ["PVP"])
    with pytest.raises(InputError, match="takes a model folder's path"):
        Segmenter.load(None)


def test_statistics_and_register_phases_refuse_what_they_cannot_measure(model, tmp_path) -> None:
    """statistics dropped a phase on another grid without a word, took a CT as the label (232 'lesions')
    and 0/100/200 values (tumor 0 mL); register_phases took annotated_phase='XX'."""
    case = make_case("new", seed=7)
    label, pvp = to_sitk(case.label), to_sitk(case.phases["PVP"])
    assert Segmenter.statistics(label, {"PVP": pvp})["liver_volume_ml"] > 0
    shifted = sitk.Image(pvp)
    shifted.SetOrigin(tuple(v + 5.0 for v in pvp.GetOrigin()))
    with pytest.raises(InputError, match="PVP is not on the label's grid"):
        Segmenter.statistics(label, {"PVP": shifted})
    with pytest.raises(InputError, match="outside \\{0, 1, 2\\}"):
        Segmenter.statistics(sitk.Cast(label, sitk.sitkUInt8) * 100)
    with pytest.raises(InputError, match="non-integer values|outside"):
        Segmenter.statistics(pvp, {"PVP": label})
    with pytest.raises(InputError, match="unknown phase name"):
        Segmenter.statistics(label, {"XX": pvp})
    with pytest.raises(InputError, match="annotated_phase 'XX'"):
        register_phases({"PVP": pvp, "AP": to_sitk(case.phases["AP"])}, annotated_phase="XX")
