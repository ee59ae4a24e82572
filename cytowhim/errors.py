"""The project's named errors and warnings.

Every error raised at an edge (a file, a manifest, a strategy) names the input and what was
expected.
"""

from __future__ import annotations

import os


class CytowhimError(Exception):
    """Base class of every error cytowhim raises on purpose."""


class FCSError(CytowhimError, ValueError):
    """An FCS file cannot be read as the standard describes; the message names the file."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        where = self.path if self.path is not None else "<FCS data>"
        super().__init__(f"{where}: {problem}")


class ExecutorError(CytowhimError, RuntimeError):
    """The executor that gates the files cannot be used (``--executor dask``: not installed, the
    scheduler unreachable or the cluster failing); one line naming the scheduler and what to do."""


class OutputError(CytowhimError, RuntimeError):
    """The run cannot write its output folder (not writable, disk full, ...); one line naming the
    file and what to do. What was finished is kept: a rerun into the same folder resumes."""


class OutputInUseError(OutputError):
    """Another run is writing into the output folder (``cytowhim run --out DIR`` holds a lock on
    ``DIR/.cytowhim.lock`` while it runs); the message names the process holding it."""


class FCSWarning(UserWarning):
    """An FCS file breaks the standard in a way cytowhim can read around (it says how)."""
