"""The register stage and command: the documented files, round-tripping transforms, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from diff4mmlits.cli import main
from diff4mmlits.config import resolve_config
from diff4mmlits.data.io import read_volume, to_sitk
from diff4mmlits.data.native import read_case_folder, write_case_folder
from diff4mmlits.data.volume import Volume
from diff4mmlits.register import register_case
from diff4mmlits.register.stage import read_transform, write_registered_case

from .conftest import make_shifted_case


def write_dataset(folder: Path, count: int, phases=("NC", "AP", "PVP", "DP")) -> Path:
    for i in range(count):
        case, _, _ = make_shifted_case(shift_mm=(8.0 + i, 2.0, -1.0), phases=phases, seed=i)
        write_case_folder(replace(case, case_id=f"case_{i}"), folder / f"case_{i}")
    return folder


def test_written_transforms_reproduce_the_written_phases(shifted_case, smoke_config, tmp_path: Path) -> None:
    case, _, _ = shifted_case
    result = register_case(case, smoke_config)
    assert any(t.GetName() == "CompositeTransform" for t in result.transforms.values())  # the B-spline kept
    folder = write_registered_case(result, case, tmp_path / "case", figure=False)
    for name in ("NC", "AP", "DP"):
        transform = sitk.ReadTransform(str(folder / f"{name}.tfm"))
        again = sitk.Resample(to_sitk(case.phases[name]), to_sitk(case.annotated), transform, sitk.sitkLinear,
                              -1024.0, sitk.sitkFloat32)
        written = read_volume(folder / f"{name}.nii.gz")
        np.testing.assert_allclose(sitk.GetArrayFromImage(again), written.array, atol=1e-2)
    back = read_case_folder(folder, require_label=False)
    assert back.phase_names == ["NC", "AP", "PVP", "DP"] and back.is_registered()
    assert json.loads((folder / "qc.json").read_text())["case"] == "shifted"


def test_register_command_writes_the_documented_files_and_skips_up_to_date_cases(tmp_path: Path, capsys) -> None:
    dataset = write_dataset(tmp_path / "data", 2, phases=("AP", "PVP", "DP"))
    run = tmp_path / "run"
    assert main(["register", str(dataset), "--run", str(run), "--preset", "smoke", "--method", "rigid"]) == 0
    assert "outputs in" in capsys.readouterr().out
    assert (run / "config.yaml").is_file() and (run / "manifest.json").is_file()
    assert "method: rigid" in (run / "config.yaml").read_text()
    for case_id in ("case_0", "case_1"):
        folder = run / "registered" / case_id
        names = {p.name for p in folder.iterdir()}
        assert {"AP.nii.gz", "DP.nii.gz", "PVP.nii.gz", "label.nii.gz", "AP.tfm", "DP.tfm", "qc.json", "qc.png"} <= names
        assert "PVP.tfm" not in names and "NC.nii.gz" not in names
        qc = json.loads((folder / "qc.json").read_text())
        assert qc["phases"]["NC"]["status"] == "missing" and qc["phases"]["AP"]["kept"] == "rigid"
        read_transform(folder / "AP.tfm")
    assert (run / ".stages" / "register.json").is_file()
    assert main(["register", str(dataset), "--run", str(run)]) == 0
    assert "0 case(s) registered, 2 up to date" in capsys.readouterr().out
    assert main(["register", str(dataset), "--run", str(run), "--method", "none", "--shard", "2/2"]) == 0
    assert "1 case(s) registered (shard 2/2)" in capsys.readouterr().out
    assert json.loads((run / "registered" / "case_1" / "qc.json").read_text())["method"] == "none"
    assert json.loads((run / "registered" / "case_0" / "qc.json").read_text())["method"] == "rigid"


def test_register_command_runs_cases_in_parallel_processes(tmp_path: Path, capsys) -> None:
    dataset = write_dataset(tmp_path / "data", 2, phases=("AP", "PVP"))
    run = tmp_path / "run"
    assert main(["register", str(dataset), "--run", str(run), "--preset", "smoke", "--method", "rigid",
                 "--workers", "2", "--set", "preview.enabled=false"]) == 0
    assert "2 case(s) registered" in capsys.readouterr().out
    for case_id in ("case_0", "case_1"):
        assert (run / "registered" / case_id / "AP.tfm").is_file()
        assert not (run / "registered" / case_id / "qc.png").exists()
    # one by one gives the same files (issue 17: the process choice does not change results)
    serial = tmp_path / "serial"
    assert main(["register", str(dataset), "--run", str(serial), "--preset", "smoke", "--method", "rigid",
                 "--workers", "1", "--set", "preview.enabled=false"]) == 0
    for case_id in ("case_0", "case_1"):
        for name in ("AP.tfm", "AP.nii.gz"):
            assert (serial / "registered" / case_id / name).read_bytes() == (run / "registered" / case_id / name).read_bytes()


def test_register_command_on_the_phantom_reports_dice(tmp_path: Path, capsys) -> None:
    phantom = pytest.importorskip("diff4mmlits.data.phantom")
    dataset = phantom.write_phantom_dataset(tmp_path / "phantom", cases=1, seed=0, size=32)
    run = tmp_path / "run"
    assert main(["register", str(dataset), "--run", str(run), "--preset", "smoke", "--method", "affine"]) == 0
    qc = json.loads((run / "registered" / "case_000" / "qc.json").read_text())
    for name in ("NC", "AP", "DP"):
        assert qc["phases"][name]["liver_dice"]["after"] > qc["phases"][name]["liver_dice"]["before"]


@pytest.mark.parametrize("problem", ["label_grid", "no_overlap"])
def test_bad_input_gives_one_line_and_exit_2(tmp_path: Path, capsys, problem: str) -> None:
    dataset = write_dataset(tmp_path / "data", 1, phases=("AP", "PVP"))
    folder = dataset / "case_0"
    if problem == "label_grid":
        label = read_volume(folder / "label.nii.gz", kind="label")
        moved = Volume(label.array, label.spacing_mm, (label.origin_mm[0] + 7.0, *label.origin_mm[1:]), kind="label")
        expected = "origin"
    else:
        ap = read_volume(folder / "AP.nii.gz")
        moved = Volume(ap.array, ap.spacing_mm, tuple(o + 5000.0 for o in ap.origin_mm))
        expected = "does not overlap PVP"
    from diff4mmlits.data.io import write_volume

    write_volume(moved, folder / ("label.nii.gz" if problem == "label_grid" else "AP.nii.gz"))
    run = tmp_path / "run"
    assert main(["register", str(dataset), "--run", str(run), "--preset", "smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    error_lines = [line for line in err if line.startswith("error:")]
    assert len(error_lines) == 1 and expected in error_lines[0]
    assert ("label" if problem == "label_grid" else "AP") in error_lines[0]
    assert "Traceback" not in "\n".join(err)
    assert not (run / "config.yaml").exists() and not (run / "registered").exists()


def test_the_report_shows_the_registration(tmp_path: Path) -> None:
    from diff4mmlits.config import resolve_config
    from diff4mmlits.pipeline import write_run_report
    from diff4mmlits.runfolder import RunFolder

    dataset = write_dataset(tmp_path / "data", 1, phases=("AP", "PVP"))
    run = tmp_path / "run"
    assert main(["register", str(dataset), "--run", str(run), "--preset", "smoke", "--method", "rigid"]) == 0
    page = write_run_report(RunFolder(run), resolve_config("smoke")).read_text()
    assert "Registration</h2>" in page and "figures/registered_case_0_qc.png" in page and "→" in page
    assert (run / "report" / "figures" / "registered_case_0_qc.png").is_file()  # inside report/: it travels


def test_workers_zero_means_the_thread_budget_at_most_four_or_what_memory_holds(monkeypatch) -> None:
    from diff4mmlits import threads
    from diff4mmlits.register import stage
    from diff4mmlits.register.stage import default_workers

    monkeypatch.setattr(stage, "available_memory_bytes", lambda: 8 * 2**30)  # room for 2 cases: the floor of 4 holds
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_budget", None)
    monkeypatch.setattr(threads, "busy_cores", lambda interval_s=0.1: 0.0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert default_workers() == 2
    monkeypatch.setattr(threads, "usable_cores", lambda: 64)
    assert default_workers() == 4
    monkeypatch.setattr(threads, "busy_cores", lambda interval_s=0.1: 63.0)  # a busy machine: one
    assert default_workers() == 1
    monkeypatch.setenv(threads.ENV_THREADS, "3")  # --threads 3
    assert default_workers() == 3
    monkeypatch.delenv(threads.ENV_THREADS)
    monkeypatch.setattr(threads, "busy_cores", lambda interval_s=0.1: 0.0)
    monkeypatch.setattr(stage, "available_memory_bytes", lambda: 128 * 2**30)  # a 16-core GPU machine
    monkeypatch.setattr(threads, "usable_cores", lambda: 16)
    assert default_workers() == 16
    monkeypatch.setattr(stage, "available_memory_bytes", lambda: 30 * 2**30)  # 10 cases' worth
    assert default_workers() == 10
    monkeypatch.setattr(stage, "available_memory_bytes", lambda: None)  # no /proc/meminfo
    assert default_workers() == 4
    assert resolve_config("paper").workers == 0 and resolve_config("smoke").workers == 1


def test_an_nnunet_dataset_is_registered_onto_the_configured_annotated_phase(tmp_path: Path, shifted_case, smoke_config) -> None:
    # flat layouts were loaded whole in the main process with the default annotated phase (PVP),
    # whatever data.annotated_phase said
    from diff4mmlits.data.case import Case
    from diff4mmlits.data.nnunet import export_nnunet_dataset

    case, _, _ = shifted_case
    registered = register_case(case, smoke_config).case
    cases = [Case(f"case_{i}", registered.phases, registered.label) for i in range(2)]
    dataset = export_nnunet_dataset(cases, tmp_path / "raw", 7, "Toy")
    run = tmp_path / "run"
    assert main(["register", str(dataset), "--run", str(run), "--preset", "smoke", "--method", "rigid",
                 "--set", "preview.enabled=false", "--set", "data.annotated_phase=AP"]) == 0
    for case_id in ("case_0", "case_1"):
        folder = run / "registered" / case_id
        assert (folder / "qc.json").is_file()
        assert (folder / "PVP.tfm").is_file() and not (folder / "AP.tfm").exists()


def test_register_accepts_a_dataset_without_labels_and_uses_the_body(tmp_path: Path) -> None:
    import json

    dataset = write_dataset(tmp_path / "data", 1, phases=("AP", "PVP"))
    (dataset / "case_0" / "label.nii.gz").unlink()
    run = tmp_path / "run"
    assert main(["register", str(dataset), "--run", str(run), "--preset", "smoke", "--method", "rigid"]) == 0
    qc = json.loads((run / "registered" / "case_0" / "qc.json").read_text())
    assert qc["region"]["source"] == "body" and qc["phases"]["AP"]["status"] == "registered"
    assert not (run / "registered" / "case_0" / "label.nii.gz").exists()


def test_qc_png_resolution_follows_the_case_so_real_ct_stays_readable(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    from diff4mmlits.data.volume import Volume
    from diff4mmlits.register.qc import plot_registration_qc

    def upsampled(volume: Volume) -> Volume:  # the same anatomy on a 16× finer in-plane grid
        array = np.repeat(np.repeat(volume.array, 16, axis=1), 16, axis=2)
        return Volume(array, (volume.spacing_mm[0], volume.spacing_mm[1] / 16, volume.spacing_mm[2] / 16),
                      volume.origin_mm, volume.direction, kind=volume.kind)

    small, _, _ = make_shifted_case(shift_mm=(4.0, 1.0, 0.0), phases=("AP", "PVP"), seed=1)
    large = replace(small, phases={k: upsampled(v) for k, v in small.phases.items()}, label=upsampled(small.label))
    first = mpimg.imread(plot_registration_qc(small, small, tmp_path / "small.png"))
    second = mpimg.imread(plot_registration_qc(large, large, tmp_path / "large.png"))
    assert second.shape[1] > 1.5 * first.shape[1]
