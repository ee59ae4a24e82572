"""Shared fixtures. The external corpus (real instrument files, Gating-ML suite, FlowJo workspaces)
is found through CYTOWHIM_CORPUS, default ../shared/corpus from the repository root; the test run
stops with an error if it is missing, so CI cannot pass without it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/postgres.py
CORPUS = Path(os.environ.get("CYTOWHIM_CORPUS", REPO.parent / "shared" / "corpus")).resolve()


def pytest_sessionstart(session: pytest.Session) -> None:
    # `cytowhim run` registers in the results database: the tests' runs go to a throwaway one,
    # never the user's own (~/.local/share/cytowhim)
    import tempfile

    folder = tempfile.mkdtemp(prefix="cytowhim-tests-db-")
    os.environ["CYTOWHIM_DB"] = f"sqlite:///{folder}/results.sqlite"
    if not (CORPUS / "expected_decode.json").is_file():
        pytest.exit(
            f"external test corpus not found at {CORPUS} (no expected_decode.json); set "
            "CYTOWHIM_CORPUS to the folder holding the shared corpus",
            returncode=3,
        )


@pytest.fixture(scope="session")
def corpus() -> Path:
    """Folder of the external corpus (read-only)."""
    return CORPUS


# Specimens of the default-strategy tests (untuned seeds), simulated once per session and shared
# by tests/test_default_strategies.py and tests/test_iccs_definitions.py.
UNTUNED_EVENTS = (40_000, 60_000)


@pytest.fixture(scope="session")
def whim(tmp_path_factory) -> Path:
    from cytowhim.simulate import simulate

    out = tmp_path_factory.mktemp("whim")
    simulate(out, "whim-trial", seed=20261126, events=UNTUNED_EVENTS)
    return out


@pytest.fixture(scope="session")
def healthy(tmp_path_factory) -> Path:
    from cytowhim.simulate import simulate

    out = tmp_path_factory.mktemp("healthy")
    simulate(out, "healthy", seed=4242, n_healthy=3, events=UNTUNED_EVENTS)
    return out


@pytest.fixture(scope="session", autouse=True)
def _fcs_reader_for_flowjo_workspaces():
    """Lend cytowhim's FCS keyword reader to the engine's FlowJo importer, as cytowhim does when
    it reads a strategy (the engine itself never imports cytowhim)."""
    import gating.flowjo_workspace as workspace
    from cytowhim.fcs import read_fcs_metadata

    workspace.FCS_KEYWORDS = read_fcs_metadata
    yield


# --- results database: SQLite and a real PostgreSQL server (tests/postgres.py) ----------------


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for the session; skipped where PostgreSQL is not installed,
    an error in CI (``CI`` set), where .ci/run installs it."""
    import postgres

    if postgres.binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL binaries not found (CI installs them)")
    server = postgres.Server()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A new, empty results database: a SQLite file, then a database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.sqlite'}"
    return request.getfixturevalue("pg_server").new_database()
