"""The commands: train-translator and translate over folders; one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diff4mmlits.cli import main
from diff4mmlits.data.io import read_volume
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.data.volume import grid_mismatch
from diff4mmlits.runfolder import RunFolder
from diff4mmlits.translate.report import section_translators

from .conftest import toy_case


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("datasets")
    for i in range(2):
        write_case_folder(toy_case(i, modality="ct"), root / "ct" / f"toy_{i:02d}")
        write_case_folder(toy_case(10 + i, modality="mri"), root / "mri" / f"toy_{10 + i:02d}")
    return root / "ct", root / "mri"


def test_train_then_translate_a_dataset(tmp_path, datasets, capsys) -> None:
    ct, mri = datasets
    run = tmp_path / "run"
    code = main(["train-translator", "--source", str(ct), "--target", str(mri), "--run", str(run),
                 "--method", "essnet", "--preset", "smoke", "--set", "translate.steps=2", "--device", "cpu"])
    assert code == 0
    model = run / "models" / "translator-essnet"
    assert (model / "weights.safetensors").is_file() and (run / "config.yaml").is_file()
    assert str(model) in capsys.readouterr().out
    section = section_translators(RunFolder(run), run / "report")
    assert "translator-essnet" in section and "curves.png" in section and "preview.png" in section

    out = tmp_path / "translated"
    assert main(["translate", "--model", str(model), str(ct), str(out), "--device", "cpu"]) == 0
    for case in ("toy_00", "toy_01"):
        source_label = read_volume(ct / case / "label.nii.gz", kind="label")
        label = read_volume(out / case / "label.nii.gz", kind="label")
        image = read_volume(out / case / "PVP.nii.gz")
        assert np.array_equal(label.array, source_label.array)
        assert grid_mismatch(image, source_label) is None and grid_mismatch(label, source_label) is None

    single = tmp_path / "one.nii.gz"
    assert main(["translate", "--model", str(model), str(ct / "toy_00" / "PVP.nii.gz"), str(single)]) == 0
    assert np.allclose(read_volume(single).array, read_volume(out / "toy_00" / "PVP.nii.gz").array, atol=1e-3)
    capsys.readouterr()  # a label map given alone was translated (exit 0); in a dataset it is refused
    assert main(["translate", "--model", str(model), str(ct / "toy_00" / "label.nii.gz"), str(tmp_path / "l.nii.gz")]) == 2
    assert "an 8-bit image, not Hounsfield units" in capsys.readouterr().err and not (tmp_path / "l.nii.gz").exists()
    # a dataset into a volume file name created a folder called t.nii.gz; into its own input, mixed with it
    assert main(["translate", "--model", str(model), str(ct), str(tmp_path / "t.nii.gz")]) == 2
    assert main(["translate", "--model", str(model), str(ct), str(ct / "translated")]) == 2
    assert not (tmp_path / "t.nii.gz").exists() and not (ct / "translated").exists()


def test_a_case_folder_with_aliased_phase_names_is_one_case(tmp_path, datasets) -> None:
    # translate used to recognise a single case folder only by the exact names NC/AP/PVP/DP, and
    # read a folder of "portal_venous.nii.gz" as a dataset (no case folders: an error)
    import shutil

    from diff4mmlits.data.dataset import read_case_or_dataset

    ct, _ = datasets
    folder = tmp_path / "patient_7"
    folder.mkdir()
    shutil.copy(ct / "toy_00" / "PVP.nii.gz", folder / "portal_venous.nii.gz")
    shutil.copy(ct / "toy_00" / "label.nii.gz", folder / "label.nii.gz")
    cases = read_case_or_dataset(folder)
    assert [c.case_id for c in cases] == ["patient_7"] and list(cases[0].phase_names) == ["PVP"]
    assert [c.case_id for c in read_case_or_dataset(ct)] == ["toy_00", "toy_01"]
    run = tmp_path / "run"
    assert main(["train-translator", "--source", str(ct), "--target", str(datasets[1]), "--run", str(run),
                 "--method", "cyclegan", "--preset", "smoke", "--set", "translate.steps=1", "--device", "cpu"]) == 0
    out = tmp_path / "translated"
    assert main(["translate", "--model", str(run / "models" / "translator-cyclegan"), str(folder), str(out)]) == 0
    assert (out / "patient_7" / "PVP.nii.gz").is_file()


def test_bad_input_is_one_line_and_exit_2(tmp_path, datasets, capsys) -> None:
    ct, mri = datasets
    assert main(["translate", "--model", str(tmp_path / "none"), str(ct), str(tmp_path / "o")]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert main(["train-translator", "--source", str(ct), "--target", str(mri), "--run", str(tmp_path / "r"),
                 "--method", "pix2pix"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --method") and err.count("\n") == 1
    assert main(["train-translator", "--source", str(tmp_path / "missing"), "--target", str(mri),
                 "--run", str(tmp_path / "r2"), "--preset", "smoke"]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()  # a refused command left RUN/config.yaml
    assert main(["train-translator", "--source", str(mri), "--target", str(mri), "--run", str(tmp_path / "new" / "r3"),
                 "--preset", "smoke"]) == 2
    assert not (tmp_path / "new").exists()  # nor the parents it made
