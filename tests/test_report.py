"""The run report travels: moved elsewhere, every image and link still resolves; it names no
absolute path; it opens with the version, the date and a table of contents, results first."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from diff4mmlits.config import resolve_config
from diff4mmlits.pipeline import run_pipeline
from diff4mmlits.runfolder import RunFolder


def test_a_moved_report_has_no_broken_link_and_no_absolute_path(tiny_dataset_for_report: Path, tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    config = resolve_config("smoke")
    run_pipeline(tiny_dataset_for_report, run, config, only=["register", "report"])
    moved = tmp_path / "elsewhere" / "report"
    shutil.copytree(run.report_dir, moved)
    shutil.rmtree(run.root)  # nothing of the run folder is left to link to
    page = (moved / "index.html").read_text()
    links = re.findall(r'(?:src|href)="([^"#]+)"', page) + re.findall(r"(?:src|href)='([^'#]+)'", page)
    assert any(link.endswith(".png") for link in links)
    for link in links:
        assert (moved / link).is_file(), link
    assert str(tmp_path) not in page
    assert re.search(r"diff4mmlits \d+\.\d+\.\d+, written \d{4}-\d\d-\d\d", page)
    assert "<nav><ol>" in page and "Settings" in page


def test_a_moved_report_renders_its_images_in_headless_chromium(tiny_dataset_for_report: Path, tmp_path: Path) -> None:
    """The page a reviewer opens: drawn by Chromium (Debian package; skipped without it), the moved report
    shows its pictures (a page whose images broke is white and text only)."""
    import subprocess

    import numpy as np
    import pytest
    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium on this machine (apt install chromium)")
    run = RunFolder(tmp_path / "run")
    run_pipeline(tiny_dataset_for_report, run, resolve_config("smoke"), only=["register", "report"])
    moved = tmp_path / "elsewhere" / "report"
    shutil.copytree(run.report_dir, moved)
    shutil.rmtree(run.root)
    shot = tmp_path / "page.png"
    try:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1280,6000", f"--screenshot={shot}", (moved / "index.html").as_uri()],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as error:
        pytest.skip(f"Chromium did not run here: {error}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    colourful = np.abs(pixels - pixels.mean(axis=-1, keepdims=True)).sum(axis=-1) > 30  # not white, grey or black text
    dark = pixels.mean(axis=-1) < 60
    assert colourful.mean() > 0.002 or dark.mean() > 0.05, "the screenshot shows no picture"
    # and without the figures folder (what a broken link gives) the same page is picture-free
    shutil.rmtree(moved / "figures")
    bare = tmp_path / "bare.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,6000", f"--screenshot={bare}", (moved / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    plain = np.asarray(Image.open(bare).convert("RGB")).astype(int)
    assert (np.abs(plain - plain.mean(axis=-1, keepdims=True)).sum(axis=-1) > 30).mean() < colourful.mean()
