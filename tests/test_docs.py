"""The API reference (docs/, Sphinx autodoc of the docstrings) builds with warnings as errors."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


def test_api_reference_builds_without_warnings(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            str(REPO / "docs"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "cytowhim" in index
    counts = (tmp_path / "api" / "clinical.html").read_text(encoding="utf-8")
    assert "counting_error" in counts and "ReportingRules" in counts
