"""The built-in phantom: HU per tissue and phase, tumors, breathing truth, files, sites, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from diff4mmlits import LABEL_TUMOR, PHASES
from diff4mmlits.cli import main
from diff4mmlits.data.io import displacement_to_sitk, read_volume, to_sitk
from diff4mmlits.data.native import read_case_folder
from diff4mmlits.data.phantom import (
    SITES,
    TISSUES,
    TRUTH_FOLDER,
    make_phantom_case,
    noise_free_phases,
    read_phantom_truth,
    write_phantom_dataset,
)
from diff4mmlits.data.phantom.anatomy import TISSUE_ID
from diff4mmlits.data.phantom.breathing import CRANIOCAUDAL_MM
from diff4mmlits.data.phantom.generate import HEALTHY_PATIENT_OFFSET, draw_phase, make_healthy_case, plan_phantom_case
from diff4mmlits.errors import InputError

DESIGN_HU = {  # DESIGN.md's table, "The built-in phantom"
    "liver": {"NC": (55, 65), "AP": (65, 80), "PVP": (100, 120), "DP": (85, 100)},
    "aorta": {"NC": (40, 40), "AP": (250, 350), "PVP": (150, 180), "DP": (110, 130)},
    "portal_vein": {"NC": (40, 40), "AP": (100, 140), "PVP": (170, 200), "DP": (120, 130)},
    "spleen": {"NC": (45, 50), "AP": (100, 120), "PVP": (120, 120), "DP": (95, 95)},
    "kidney_cortex": {"NC": (30, 40), "AP": (150, 200), "PVP": (150, 180), "DP": (120, 120)},
    "fat": dict.fromkeys(PHASES, (-100, -100)),
    "muscle": dict.fromkeys(PHASES, (40, 65)),
    "bone_cortex": dict.fromkeys(PHASES, (200, 1000)),
    "bone_marrow": dict.fromkeys(PHASES, (200, 1000)),
}
TOLERANCE_HU = {"fat": 12.0, "aorta": 6.0, "portal_vein": 6.0, "spleen": 6.0, "kidney_cortex": 6.0}
"""DESIGN.md gives single values ("about −100", "120") for some cells; these get a tolerance."""


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.sum(a & b) / max(np.sum(a) + np.sum(b), 1))


# --- attenuation ------------------------------------------------------------------------------
@pytest.mark.parametrize("index", [0, 1, 2])
def test_tissue_hu_per_phase_lies_in_design_ranges(index: int) -> None:
    """Noise-free draw of each phase: mean HU inside each tissue (one voxel eroded) within the table."""
    plan = plan_phantom_case(index, seed=0, size=40)
    for phase in PHASES:
        drawing = draw_phase(plan, phase)
        for tissue, ranges in DESIGN_HU.items():
            mask = drawing.tissues == TISSUE_ID[tissue]
            eroded = ndimage.binary_erosion(mask)
            mask = eroded if eroded.sum() >= 3 else mask
            assert mask.sum() > 0, f"case {index} {phase}: no {tissue} voxels drawn"
            low, high = ranges[phase]
            tolerance = TOLERANCE_HU.get(tissue, 2.5)
            mean = float(drawing.hu[mask].mean())
            assert low - tolerance <= mean <= high + tolerance, f"case {index} {phase} {tissue}: {mean:.1f} HU not in [{low}, {high}]"


def test_liver_hu_in_the_noisy_images_matches_the_table(phantom_case) -> None:
    """After blur and noise, the mean of the liver's interior still lies in the table's range."""
    truth = phantom_case.truth
    for phase in PHASES:
        liver = ndimage.binary_erosion(truth.phase_labels[phase].array == 1, iterations=1)
        mean = float(phantom_case.case.phases[phase].array[liver].mean())
        low, high = DESIGN_HU["liver"][phase]
        assert low - 6 <= mean <= high + 6, f"{phase}: liver {mean:.1f} HU"


def test_tumor_kinds_follow_their_enhancement_pattern() -> None:
    """Over a few cases, each kind's HU per phase follows DESIGN.md (HCC: subtle ones wash out less)."""
    seen = set()
    for index in range(10):
        plan = plan_phantom_case(index, seed=0, size=32)
        liver = {phase: plan.contrast.tissue_hu("liver", phase) for phase in PHASES}
        for tumor in plan.tumors:
            core = tumor.core_hu
            seen.add(tumor.kind)
            if tumor.kind == "hcc":
                assert 35 <= core["NC"] <= 45 and 90 <= core["AP"] <= 125 and 70 <= core["DP"] <= 80
                assert core["AP"] - liver["AP"] >= 25  # hypervascular: bright in AP
                if tumor.subtle_on_pvp:
                    assert 0 < liver["PVP"] - core["PVP"] <= 10
                else:
                    assert 80 <= core["PVP"] <= 95
            elif tumor.kind == "metastasis":
                assert 35 <= core["NC"] <= 45 and 50 <= core["AP"] <= 60 and 60 <= core["PVP"] <= 80 and 65 <= core["DP"] <= 80
                assert all(tumor.rim_hu[p] > core[p] for p in ("AP", "PVP", "DP"))  # enhancing rim
            elif tumor.kind == "cyst":
                assert all(0 <= core[p] <= 15 for p in PHASES)
            else:  # hemangioma: nodules like the aorta in AP, filling in, like vessels in DP
                assert abs(core["NC"] - 40) <= 5
                assert tumor.rim_hu["AP"] >= 0.75 * plan.contrast.tissue_hu("aorta", "AP")
                assert 110 <= tumor.mean_hu("DP") <= 135
                filled = [_enhancing_fraction(tumor, phase) for phase in ("AP", "PVP", "DP")]
                assert 0 < filled[0] < filled[1] < filled[2] and filled[2] > 0.9, filled  # fills in, centripetally
    assert seen == {"hcc", "metastasis", "cyst", "hemangioma"}


def _enhancing_fraction(tumor, phase: str) -> float:
    """Share of a lesion's volume brighter than its unfilled core by 20 HU or more."""
    unit = np.random.default_rng(0).uniform(-1, 1, size=(3, 4000))
    points = tumor.centre_mm[:, None] + tumor.rotation @ (tumor.radii_mm[:, None] * unit)
    inside, _, hu = tumor.appearance(points.astype(np.float32), phase)
    return float(np.mean(hu[inside] > tumor.core_hu[phase] + 20))


def test_an_hcc_is_subtle_on_pvp_but_clear_on_ap() -> None:
    """In the drawn images, a subtle HCC differs from the liver around it by < 12 HU on PVP and > 25 HU on AP."""
    for index in range(12):
        plan = plan_phantom_case(index, seed=0, size=40)
        subtle = [t for t in plan.tumors if t.kind == "hcc" and t.subtle_on_pvp and t.rim_mm == 0 and t.diameter_mm > 14]
        if not subtle:
            continue
        tumor = subtle[0]
        contrast = {}
        for phase in ("AP", "PVP"):
            drawing = draw_phase(plan, phase)
            inside, _, _ = tumor.appearance(drawing.points, phase)
            lesion = inside & (drawing.label == LABEL_TUMOR)
            ring = ndimage.binary_dilation(lesion, iterations=2) & ~ndimage.binary_dilation(lesion) & (drawing.tissues == TISSUE_ID["liver"])
            assert lesion.sum() > 0 and ring.sum() > 0
            contrast[phase] = float(drawing.hu[lesion].mean() - drawing.hu[ring].mean())
        assert abs(contrast["PVP"]) < 12, contrast
        assert contrast["AP"] > 25, contrast
        return
    pytest.fail("no subtle HCC in 12 cases")


# --- tumors and truth -------------------------------------------------------------------------
def test_every_case_has_tumors_inside_the_liver(phantom_dataset) -> None:
    for case_id in ("case_000", "case_001", "case_002"):
        case = read_case_folder(phantom_dataset / case_id)
        truth = read_phantom_truth(phantom_dataset, case_id)
        assert 1 <= len(truth.tumors) <= 4
        assert case.tumor_mask.sum() > 0
        label = case.label
        inside = 0
        for tumor in truth.tumors:
            assert 8 <= tumor["diameter_mm"] <= 40 * 1.01
            index = np.round(label.world_to_index(np.asarray(tumor["centre_mm"]))).astype(int)
            if np.all(index >= 0) and np.all(index < label.shape) and label.array[tuple(index)] > 0:
                inside += 1
        assert inside >= 1
        tissues = truth.tissues.array
        assert np.all(np.isin(tissues[case.tumor_mask], [i for i in TISSUES if i >= 30]))


def test_tumor_free_truth_equals_the_case_away_from_tumors(phantom_case) -> None:
    case, truth = phantom_case.case, phantom_case.truth
    changed = 0
    for phase in PHASES:
        image, free = case.phases[phase].array, truth.tumor_free[phase].array
        assert truth.tumor_free[phase].same_grid(case.phases[phase])
        tumor = truth.phase_labels[phase].array == LABEL_TUMOR
        near = ndimage.binary_dilation(tumor, iterations=4) if tumor.any() else tumor
        np.testing.assert_array_equal(image[~near], free[~near])
        changed += int(np.sum(image[tumor] != free[tumor]))
    assert changed > 0, "the tumor-free truth should differ from the case inside tumors"


def test_noise_free_phases_are_the_case_without_its_noise(phantom_case) -> None:
    """Stored like the case's phases (case 0 has AP and DP stored flipped): the case minus its
    noise-free twin is the noise alone, zero-mean at the site's level in every phase."""
    case = phantom_case.case
    clean = noise_free_phases(0, seed=0, size=32)
    levels = phantom_case.truth.parameters["acquisition"]["noise_hu"]
    for phase in PHASES:
        assert clean[phase].same_grid(case.phases[phase])
        body = clean[phase].array > -900  # away from air, where the int16 image is clipped at -1024
        residual = case.phases[phase].array[body] - clean[phase].array[body]
        assert abs(float(residual.mean())) < 2.0, phase
        assert float(residual.std()) == pytest.approx(levels[phase], rel=0.15), phase
    with_tumors = noise_free_phases(0, seed=0, size=32, tumors=True)["PVP"].array
    assert np.abs(with_tumors - clean["PVP"].array)[case.label.array == LABEL_TUMOR].mean() > 5.0


def test_phase_labels_differ_only_by_breathing(phantom_case) -> None:
    """Each non-PVP phase lies on its own grid, and its liver has moved 5–15 mm cranio-caudally."""
    pvp = phantom_case.case.label
    for phase in ("NC", "AP", "DP"):
        label = phantom_case.truth.phase_labels[phase]
        assert not label.same_grid(pvp)
        moved = phantom_case.truth.parameters["breathing"][phase]["liver_centre_displacement_mm"]
        assert CRANIOCAUDAL_MM[0] - 1e-6 <= abs(moved[0]) <= CRANIOCAUDAL_MM[1] + 1e-6
        # The label's world centroid moves by the truth displacement at the PVP centroid (within a voxel).
        centroid_pvp = pvp.index_to_world(np.argwhere(pvp.array > 0).mean(axis=0))
        centroid_phase = label.index_to_world(np.argwhere(label.array > 0).mean(axis=0))
        index = np.round(pvp.world_to_index(centroid_pvp)).astype(int)
        expected = phantom_case.truth.displacement_mm[phase][tuple(index)]
        np.testing.assert_allclose(centroid_phase - centroid_pvp, expected, atol=max(pvp.spacing_mm))
    assert not np.any(phantom_case.truth.displacement_mm["PVP"])


def test_resampling_through_the_truth_displacement_reproduces_each_phase(phantom_dataset) -> None:
    """ITK convention: Resample(phase, PVP grid, field) ≈ PVP, and the inverted field maps PVP onto the phase."""
    case = read_case_folder(phantom_dataset / "case_001")
    truth_dir = phantom_dataset / TRUTH_FOLDER / "case_001"
    truth = read_phantom_truth(phantom_dataset, "case_001")
    pvp = case.label
    for phase in ("NC", "AP", "DP"):
        phase_label = sitk.ReadImage(str(truth_dir / f"{phase}_label.nii.gz"))
        field_path = str(truth_dir / f"{phase}_displacement.nii.gz")
        # DisplacementFieldTransform takes the image over (it is emptied), so each use reads its own copy.
        transform = sitk.DisplacementFieldTransform(sitk.ReadImage(field_path))  # loads as written: float64 (x, y, z)
        registered = sitk.GetArrayFromImage(sitk.Resample(phase_label, to_sitk(pvp), transform, sitk.sitkNearestNeighbor, 255))
        valid = registered != 255
        right = dice((registered > 0) & valid, (pvp.array > 0) & valid)
        unmoved = sitk.GetArrayFromImage(sitk.Resample(phase_label, to_sitk(pvp), sitk.Transform(), sitk.sitkNearestNeighbor, 255))
        flipped = sitk.DisplacementFieldTransform(displacement_to_sitk(-truth.displacement_mm[phase], pvp))
        wrong = sitk.GetArrayFromImage(sitk.Resample(phase_label, to_sitk(pvp), flipped, sitk.sitkNearestNeighbor, 255))
        assert right > 0.9, f"{phase}: Dice {right:.3f}"
        assert right > dice((unmoved > 0) & (unmoved != 255), (pvp.array > 0) & (unmoved != 255)) + 0.03
        assert right > dice((wrong > 0) & (wrong != 255), (pvp.array > 0) & (wrong != 255)) + 0.1

        # The other way: the PVP label carried onto the phase grid through the inverted field.
        inverse = sitk.InvertDisplacementField(sitk.ReadImage(field_path), maximumNumberOfIterations=30,
                                               maxErrorToleranceThreshold=0.05, meanErrorToleranceThreshold=0.005,
                                               enforceBoundaryCondition=False)
        onto_phase = sitk.GetArrayFromImage(sitk.Resample(to_sitk(pvp), phase_label, sitk.DisplacementFieldTransform(inverse),
                                                          sitk.sitkNearestNeighbor, 255))
        target = sitk.GetArrayFromImage(phase_label)
        valid = onto_phase != 255
        assert dice((onto_phase > 0) & valid, (target > 0) & valid) > 0.9


# --- files ------------------------------------------------------------------------------------
def test_dataset_layout_and_truth_round_trip(phantom_dataset, phantom_case) -> None:
    names = sorted(p.name for p in (phantom_dataset / "case_000").iterdir())
    assert names == sorted([f"{p}.nii.gz" for p in PHASES] + ["label.nii.gz"])
    case = read_case_folder(phantom_dataset / "case_000")
    for phase in PHASES:
        np.testing.assert_array_equal(case.phases[phase].array, phantom_case.case.phases[phase].array)
        assert case.phases[phase].same_grid(phantom_case.case.phases[phase])
    truth = read_phantom_truth(phantom_dataset, "case_000")
    for phase in PHASES:
        np.testing.assert_array_equal(truth.displacement_mm[phase], phantom_case.truth.displacement_mm[phase])
        assert truth.displacement_mm[phase].shape == (*case.label.shape, 3)
        np.testing.assert_array_equal(truth.phase_labels[phase].array, phantom_case.truth.phase_labels[phase].array)
        np.testing.assert_array_equal(truth.tumor_free[phase].array, phantom_case.truth.tumor_free[phase].array)
    np.testing.assert_array_equal(truth.tissues.array, phantom_case.truth.tissues.array)
    assert truth.tumors == phantom_case.truth.tumors
    assert not any(p.name.startswith(".") for p in phantom_dataset.rglob("*"))  # no temporary files left


def test_same_seed_gives_identical_files_and_another_seed_different_ones(phantom_dataset, tmp_path) -> None:
    again = write_phantom_dataset(tmp_path / "again", cases=1, seed=0, size=32)
    other = write_phantom_dataset(tmp_path / "other", cases=1, seed=1, size=32)
    files = sorted(p.relative_to(again) for p in again.rglob("*.nii.gz"))
    assert len(files) == 5 + 4 * 3 + 1
    for name in files:
        assert (again / name).read_bytes() == (phantom_dataset / name).read_bytes(), name
    assert (again / TRUTH_FOLDER / "case_000" / "tumors.json").read_text() == \
        (phantom_dataset / TRUTH_FOLDER / "case_000" / "tumors.json").read_text()
    assert (other / "case_000" / "PVP.nii.gz").read_bytes() != (again / "case_000" / "PVP.nii.gz").read_bytes()


def test_second_site_has_thicker_slices_and_other_noise(phantom_case) -> None:
    second = make_phantom_case(0, seed=0, site="second", size=32)
    default_pvp, second_pvp = phantom_case.case.annotated, second.case.annotated
    assert second_pvp.spacing_mm[0] > 1.4 * default_pvp.spacing_mm[0]
    assert second_pvp.shape[0] < default_pvp.shape[0]
    for case, site in ((phantom_case, "default"), (second, "second")):
        noise = case.truth.parameters["acquisition"]["noise_hu"]["PVP"]
        assert SITES[site].noise_hu[0] <= noise <= SITES[site].noise_hu[1]
        # the noise is really there: the tumor-free image minus its smoothed self, inside the liver
        image = case.truth.tumor_free["PVP"].array.astype(np.float32)
        liver = ndimage.binary_erosion(case.truth.phase_labels["PVP"].array == 1, iterations=1)
        assert np.std(image[liver]) > 0.5 * noise
    assert second.truth.parameters["contrast_timing"]["AP"] <= SITES["second"].timing["AP"][1]


def test_bad_arguments_are_input_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="site"):
        make_phantom_case(0, site="elsewhere")
    with pytest.raises(InputError, match="size"):
        make_phantom_case(0, size=8)
    with pytest.raises(InputError, match="case_009"):
        read_phantom_truth(tmp_path, "case_009")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        write_phantom_dataset(tmp_path / "file", cases=1, seed=0)


def test_cli_writes_the_phantom_and_says_where(tmp_path, capsys) -> None:
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--cases", "1", "--seed", "3", "--size", "24"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and (out / "case_000" / "PVP.nii.gz").is_file()
    assert (out / TRUTH_FOLDER / "case_000" / "AP_displacement.nii.gz").is_file()
    assert main(["phantom", str(tmp_path / "x"), "--site", "moon"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["phantom", str(tmp_path / "y"), "--site", "second", "--patients", "moon"]) == 2
    assert "--patients 'moon'" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_cli_scans_the_default_sites_patients_at_the_second_site(tmp_path, capsys) -> None:
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--cases", "1", "--size", "24", "--site", "second", "--patients", "default",
                 "--workers", "1"]) == 0
    assert "the default site's patients" in capsys.readouterr().out
    truth = read_phantom_truth(out, "case_000")
    assert truth.parameters["site"] == "second" and truth.parameters["patients"] == "default"
    expected = plan_phantom_case(0, seed=0, site="second", size=24, patients="default")
    assert [t["kind"] for t in truth.tumors] == [t.kind for t in expected.tumors]


def test_displacement_field_is_itk_convention_on_disk(phantom_dataset) -> None:
    """TransformPoint of the written field at a PVP voxel centre gives p + d(p), in ITK's (x, y, z)."""
    truth = read_phantom_truth(phantom_dataset, "case_002")
    pvp = read_case_folder(phantom_dataset / "case_002").label
    field = truth.displacement_mm["AP"]
    transform = sitk.DisplacementFieldTransform(displacement_to_sitk(field, pvp))
    for index in [(3, 5, 7), (10, 16, 20)]:
        point_zyx = pvp.index_to_world(np.array(index))
        moved_xyz = transform.TransformPoint(tuple(point_zyx[::-1]))
        np.testing.assert_allclose(np.array(moved_xyz)[::-1], point_zyx + field[index], atol=1e-6)


def test_the_default_sites_patients_can_be_scanned_at_the_second_site() -> None:
    """``patients="default"``: the same patient (anatomy, tumor count and kinds, timing quantile) with
    the second site's scanner; without it the second site draws patients of its own."""
    def plan(site: str, patients: str | None = None):
        return plan_phantom_case(3, seed=0, site=site, size=32, patients=patients)

    default, rescanned, own = plan("default"), plan("second", "default"), plan("second")

    def liver(anatomy) -> np.ndarray:
        return np.concatenate([np.r_[lobe.centre, lobe.radii] for lobe in anatomy.liver_lobes])

    assert np.array_equal(liver(rescanned.anatomy), liver(default.anatomy))
    assert rescanned.anatomy.body_radii_yx == default.anatomy.body_radii_yx != own.anatomy.body_radii_yx
    assert [t.kind for t in rescanned.tumors] == [t.kind for t in default.tumors]
    assert rescanned.acquisition.grids["PVP"].spacing_mm[0] > 1.4 * default.acquisition.grids["PVP"].spacing_mm[0]
    ap = SITES["default"].timing["AP"], SITES["second"].timing["AP"]
    quantile = [(plan_.contrast.timing["AP"] - low) / (high - low) for plan_, (low, high) in zip((default, rescanned), ap)]
    assert quantile[0] == pytest.approx(quantile[1])  # the same draw, in the second site's range
    case = make_phantom_case(3, seed=0, site="second", size=32, patients="default")
    assert case.truth.parameters["site"] == "second" and case.truth.parameters["patients"] == "default"
    with pytest.raises(InputError, match="patients"):
        plan("second", "elsewhere")


def test_a_healthy_scan_is_another_patients_tumor_free_twin_labelled_liver_only() -> None:
    healthy = make_healthy_case(1, seed=0, size=24)
    twin = make_phantom_case(HEALTHY_PATIENT_OFFSET + 1, seed=0, size=24)
    assert healthy.case.case_id == "healthy_001" and twin.truth.tumors  # the patient had tumors
    for phase in PHASES:
        np.testing.assert_array_equal(healthy.case.phases[phase].array, twin.truth.tumor_free[phase].array)
        assert set(np.unique(healthy.truth.phase_labels[phase].array)) == {0, 1}
    np.testing.assert_array_equal(healthy.case.label.array > 0, twin.case.label.array > 0)  # the whole liver
    assert healthy.truth.tumors == [] and not np.isin(healthy.truth.tissues.array, [i for i in TISSUES if i >= 30]).any()
    assert healthy.case.label.array.max() == 1


def test_cli_writes_healthy_scans_beside_the_cases(tmp_path, capsys) -> None:
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--cases", "1", "--healthy", "1", "--size", "24", "--workers", "1"]) == 0
    assert "data.healthy_cases=healthy_*" in capsys.readouterr().out
    scan = read_case_folder(out / "healthy_000")
    np.testing.assert_array_equal(scan.phases["PVP"].array, make_healthy_case(0, seed=0, size=24).case.phases["PVP"].array)
    assert scan.label.array.max() == 1 and (out / "case_000" / "PVP.nii.gz").is_file()
    assert (out / TRUTH_FOLDER / "healthy_000" / "AP_displacement.nii.gz").is_file()
    with pytest.raises(InputError, match="at most 400 cases"):
        write_phantom_dataset(tmp_path / "many", cases=401, seed=0, healthy=1)
    assert not (tmp_path / "many").exists()
    assert main(["phantom", str(tmp_path / "m"), "--modality", "mri", "--healthy", "1"]) == 2
    assert "--healthy is for the CT phantom" in capsys.readouterr().err


def test_a_failed_write_leaves_no_dataset_and_a_full_folder_is_refused(tmp_path, monkeypatch) -> None:
    """A full disk left case folders without some phases, which validate passed; a second phantom
    into a written one mixed two seeds' cases."""
    import errno

    from diff4mmlits.data.phantom import writer

    written, write = [], writer.write_phantom_case

    def write_then_fail(phantom, out):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "case_001" / "DP.nii.gz"))
        written.append(write(phantom, out))

    monkeypatch.setattr(writer, "write_phantom_case", write_then_fail)
    with pytest.raises(OSError):
        write_phantom_dataset(tmp_path / "ph", cases=2, seed=0, size=16)
    assert written and sorted(p.name for p in tmp_path.iterdir()) == []  # neither the dataset nor its temporary
    monkeypatch.undo()
    write_phantom_dataset(tmp_path / "ph", cases=1, seed=0, size=16)
    with pytest.raises(InputError, match="is not empty"):
        write_phantom_dataset(tmp_path / "ph", cases=1, seed=5, size=16)


def test_slice_mm_gives_thick_slices_at_any_pixel_with_the_same_patient() -> None:
    """The site's slices scale with the pixel (10 mm on the third site at size 64, 2.5 mm at 256);
    ``slice_mm`` keeps them thick at a fine pixel, drawing the same anatomy, motion and field of view."""
    own = plan_phantom_case(1, seed=0, site="third", size=32)
    thick = plan_phantom_case(1, seed=0, site="third", size=32, slice_mm=8.0)
    own_grid, thick_grid = own.acquisition.grids["PVP"], thick.acquisition.grids["PVP"]
    assert own_grid.spacing_mm[0] == pytest.approx(200.0 / 10)  # 0.75 · 32 / 2.4 slices
    assert thick_grid.spacing_mm[0] == pytest.approx(8.0) and thick_grid.shape[0] == 25
    assert thick_grid.spacing_mm[1:] == own_grid.spacing_mm[1:]
    assert thick.contrast.timing == own.contrast.timing
    assert len(thick.tumors) == len(own.tumors)
    np.testing.assert_array_equal(thick.breathing["AP"].shift_mm, own.breathing["AP"].shift_mm)
    fine = make_phantom_case(1, seed=0, site="third", size=48, slice_mm=7.0)
    pvp = fine.case.annotated
    assert pvp.spacing_mm[0] == pytest.approx(200.0 / round(200.0 / 7.0)) and pvp.shape[1:] == (48, 48)
    assert fine.truth.parameters["slice_mm"] == 7.0
    assert fine.truth.displacement_mm["AP"].shape[:3] == pvp.shape
    for bad in (0.0, -5.0, float("nan")):
        with pytest.raises(InputError, match="slice spacing"):
            make_phantom_case(0, slice_mm=bad)


def test_cli_writes_a_thick_slice_phantom_and_refuses_a_bad_spacing(tmp_path, capsys) -> None:
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--cases", "1", "--size", "24", "--site", "third", "--slice-mm", "15",
                 "--workers", "1"]) == 0
    assert "15 mm slices" in capsys.readouterr().out
    assert read_volume(out / "case_000" / "PVP.nii.gz").spacing_mm[0] == pytest.approx(200.0 / 13)
    assert main(["phantom", str(tmp_path / "bad"), "--slice-mm", "0"]) == 2
    err = capsys.readouterr().err
    assert "slice spacing 0.0 mm" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    assert main(["phantom", str(tmp_path / "mri"), "--modality", "mri", "--slice-mm", "5"]) == 2
    assert "--slice-mm is for the CT phantom" in capsys.readouterr().err


@pytest.mark.parametrize(("arguments", "words"), [
    (["--slice-mm", "50"], "slice spacing of 22.5 mm (site default, size 64, --slice-mm 50)"),
    (["--site", "third", "--size", "16"], "slice spacing of 25 mm (site third, size 16)"),
    (["--slice-mm", "0.001"], "slice spacing of 0.001 mm"),
    (["--slice-mm", "0.05"], "phantom of 3600 slices"),
    (["--site", "third", "--size", "17", "--slice-mm", "5"], "pixel of 21 mm"),  # another phase's pixel is 8 % larger
    (["--size", "3000"], "phantom of 2250 slices"),  # was a TypeError formatting the absent --slice-mm
])
def test_a_phantom_that_validate_would_refuse_is_not_written(arguments, words, tmp_path, capsys) -> None:
    """--slice-mm 50 and --site third --size 16 wrote datasets validate refused (slices over 20 mm);
    --slice-mm 0.001 failed in ITK with advice about disk space, naming a hidden temporary file."""
    assert main(["phantom", str(tmp_path / "p"), "--cases", "1", *arguments]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()
