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
