"""ruff lint and format are part of the test suite."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO

pytest.importorskip("ruff")


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff(args):
    out = subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
