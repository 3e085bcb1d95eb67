"""Models that travel: export-model / import-model round trip, and refusal of a changed zip."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from diff4mmlits.checkpoint import STATE_NAME, WEIGHTS_NAME, save_checkpoint_files
from diff4mmlits.cli import main
from diff4mmlits.errors import InputError
from diff4mmlits.modelzip import MANIFEST_NAME, export_model, import_model


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    save_checkpoint_files(folder, torch.nn.Linear(3, 2), {"kind": "segmenter", "step": 1}, {"step": 1})
    save_checkpoint_files(folder / "liver", torch.nn.Linear(2, 2), {"kind": "segmenter"}, {"step": 1})
    (folder / "plan.json").write_text('{"plan": 1}')
    return folder


def test_export_and_import_give_the_same_files(model_dir, tmp_path, capsys) -> None:
    assert main(["export-model", str(model_dir), str(tmp_path / "m.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        manifest = json.loads(archive.read(MANIFEST_NAME))
    assert manifest["kind"] == "segmenter" and "diff4mmlits_version" in manifest
    assert STATE_NAME not in manifest["files"] and f"liver/{WEIGHTS_NAME}" in manifest["files"]
    assert main(["import-model", str(tmp_path / "m.zip"), str(tmp_path / "copy")]) == 0
    for name in manifest["files"]:
        assert (tmp_path / "copy" / name).read_bytes() == (model_dir / name).read_bytes()


def test_an_earlier_zip_saved_in_the_model_folder_is_not_packed_again(model_dir, tmp_path) -> None:
    """export-model M M/self.zip, then export-model M out.zip packed self.zip too (0.4 → 0.7 MB)."""
    export_model(model_dir, model_dir / "self.zip")
    export_model(model_dir, tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        assert "self.zip" not in archive.namelist()


def test_a_changed_zip_is_refused_and_nothing_lands(model_dir, tmp_path) -> None:
    export_model(model_dir, tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive, zipfile.ZipFile(tmp_path / "bad.zip", "w") as bad:
        for item in archive.infolist():
            data = archive.read(item)
            bad.writestr(item, data[:-1] + bytes([data[-1] ^ 1]) if item.filename == WEIGHTS_NAME else data)
    with pytest.raises(InputError, match=f"{WEIGHTS_NAME} does not match its checksum"):
        import_model(tmp_path / "bad.zip", tmp_path / "copy")
    assert not (tmp_path / "copy").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_zip_that_writes_outside_the_folder_is_refused(tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("../outside.txt", "x")
        archive.writestr(MANIFEST_NAME, json.dumps({"format": 1, "files": {"../outside.txt": "0"}}))
    with pytest.raises(InputError, match="outside the model folder"):
        import_model(tmp_path / "evil.zip", tmp_path / "copy")
    assert not (tmp_path / "outside.txt").exists()


def test_damaged_compressed_data_and_another_format_are_refused(model_dir, tmp_path) -> None:
    """Corrupt deflate data in a member was an internal error (zlib.error: invalid block type…); a
    manifest of another format was unpacked as if it were this one."""
    export_model(model_dir, tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        info = archive.getinfo(WEIGHTS_NAME)
    data = bytearray((tmp_path / "m.zip").read_bytes())
    name_and_extra = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little") + \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_and_extra
    data[start] = 0xFF  # the first deflate block's header: an invalid block type
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"{WEIGHTS_NAME} cannot be read from the zip"):
        import_model(tmp_path / "bad.zip", tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    with zipfile.ZipFile(tmp_path / "m.zip") as archive, zipfile.ZipFile(tmp_path / "future.zip", "w") as future:
        for item in archive.infolist():
            content = archive.read(item)
            if item.filename == MANIFEST_NAME:
                content = json.dumps({**json.loads(content), "format": 99}).encode()
            future.writestr(item, content)
    with pytest.raises(InputError, match="model zip format 99; this diff4mmlits reads format 1"):
        import_model(tmp_path / "future.zip", tmp_path / "copy")


def test_a_damaged_model_is_not_exported(model_dir, tmp_path) -> None:
    """A weights file that fails its checksum was zipped, and import-model called the zip checked."""
    weights = model_dir / "liver" / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-4:] = bytes(255 - b for b in data[-4:])
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match its checksum"):
        export_model(model_dir, tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_a_damaged_checksum_list_is_refused_and_a_missing_one_warns(model_dir, caplog) -> None:
    from diff4mmlits.checkpoint import CHECKSUMS_NAME, verify_checksum

    (model_dir / CHECKSUMS_NAME).write_text("{damaged")
    with pytest.raises(InputError, match=f"{CHECKSUMS_NAME}: is damaged"):
        verify_checksum(model_dir / WEIGHTS_NAME)
    (model_dir / CHECKSUMS_NAME).unlink()
    verify_checksum(model_dir / WEIGHTS_NAME)
    assert "is not verified" in caplog.text


def test_predict_given_the_zip_says_to_unpack_it(model_dir, tmp_path, capsys) -> None:
    """``predict --model m.zip`` said 'model folder not found; train one', to a user who had one."""
    assert main(["export-model", str(model_dir), str(tmp_path / "m.zip")]) == 0
    capsys.readouterr()
    (tmp_path / "scan.nii.gz").write_bytes(b"")  # never read: the model is checked first
    assert main(["predict", str(tmp_path / "scan.nii.gz"), str(tmp_path / "out.nii.gz"), "--model", str(tmp_path / "m.zip")]) == 2
    assert f"m.zip: is a model zip; unpack it first: diff4mmlits import-model {tmp_path / 'm.zip'} DIR" in capsys.readouterr().err
