"""Models that travel: a model folder as one zip, with the package version and a checksum of every file.

``export-model MODEL OUT.zip`` packs the folder (config, plan, weights, the cascade's stage one, the
training log and curves; not ``training_state.pt``, which only resuming needs) and a manifest
``diff4mmlits-model.json``. ``import-model OUT.zip DIR`` checks every file against the manifest
before anything lands in ``DIR`` and refuses a zip that does not match (a damaged download, an
edited file) or that would write outside ``DIR``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

from diff4mmlits.checkpoint import CONFIG_NAME, STATE_NAME, model_kind, read_model_config, verify_checksum
from diff4mmlits.errors import InputError
from diff4mmlits.files import atomic_path

MANIFEST_NAME = "diff4mmlits-model.json"
FORMAT = 1
"""The zip layout's version: a zip of another one is refused, not unpacked and misread."""
LEFT_OUT = (STATE_NAME,)
"""Files a travelling model does not need."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_model(model_dir: str | Path, out_zip: str | Path) -> Path:
    """Write ``model_dir`` as the zip ``out_zip`` (atomically); returns its path."""
    from diff4mmlits import __version__

    model_dir, out_zip = Path(model_dir), Path(out_zip)
    config = read_model_config(model_dir)
    if out_zip.suffix.lower() != ".zip":
        raise InputError("the output must be a .zip file name", out_zip)
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name not in LEFT_OUT
                   and not p.name.startswith(".") and p.suffix.lower() != ".zip")  # an earlier export saved inside
    for path in files:  # a damaged model is refused here, not found only at predict on another machine
        if path.suffix in (".safetensors", ".pt"):
            verify_checksum(path)
    manifest: dict[str, Any] = {"format": FORMAT, "diff4mmlits_version": __version__, "kind": model_kind(config),
                                "files": {}}
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            name = path.relative_to(model_dir).as_posix()
            data = path.read_bytes()
            manifest["files"][name] = _sha256(data)
            archive.writestr(name, data)
        archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2))
    return out_zip


def import_model(zip_path: str | Path, model_dir: str | Path) -> Path:
    """Unpack a zip written by :func:`export_model` into ``model_dir`` after checking every file."""
    zip_path, model_dir = Path(zip_path), Path(model_dir)
    if not zip_path.is_file():
        raise InputError("model zip not found" if not zip_path.exists() else "not a file; give the model's .zip",
                         zip_path)
    if model_dir.exists() and any(model_dir.iterdir()):
        raise InputError("already exists and is not empty; give a new folder", model_dir)
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise InputError("not a zip file (damaged or incomplete download?); export the model again", zip_path) from None
    with archive:
        names = set(archive.namelist())
        if MANIFEST_NAME not in names:
            raise InputError(f"no {MANIFEST_NAME}: not a model zip written by 'diff4mmlits export-model'", zip_path)
        try:
            manifest = json.loads(archive.read(MANIFEST_NAME))
        except (json.JSONDecodeError, UnicodeDecodeError):
            manifest = None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
            raise InputError(f"{MANIFEST_NAME} in the zip is damaged; export the model again", zip_path)
        if manifest.get("format") != FORMAT:
            raise InputError(f"model zip format {manifest.get('format')!r}; this diff4mmlits reads format {FORMAT} "
                             f"(the zip was written by diff4mmlits {manifest.get('diff4mmlits_version', '?')}: "
                             "import it with that version)", zip_path)
        listed: dict[str, str] = manifest.get("files", {})
        for name in sorted(names - {MANIFEST_NAME}):
            if name.endswith("/"):
                continue
            target = (model_dir / name).resolve()
            if name.startswith("/") or ".." in Path(name).parts or model_dir.resolve() not in target.parents:
                raise InputError(f"entry {name!r} would be written outside the model folder; refusing the zip", zip_path)
            if name not in listed:
                raise InputError(f"entry {name!r} is not in the zip's manifest; refusing the zip", zip_path)
        missing = sorted(set(listed) - names)
        if missing:
            raise InputError(f"{missing[0]} is listed in the manifest but missing from the zip; export the model again",
                             zip_path)
        if CONFIG_NAME not in listed:
            raise InputError(f"no {CONFIG_NAME} in the zip: not a model folder", zip_path)
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.import-", dir=model_dir.parent))
        try:
            for name, digest in listed.items():
                try:
                    data = archive.read(name)
                except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:  # a damaged member (CRC, deflate…)
                    raise InputError(f"{name} cannot be read from the zip ({err}); export the model again", zip_path) from None
                if _sha256(data) != digest:
                    raise InputError(f"{name} does not match its checksum in the manifest: the zip was changed or "
                                     "damaged; export the model again", zip_path)
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_bytes(data)
            if model_dir.exists():
                model_dir.rmdir()
            staging.rename(model_dir)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return model_dir
