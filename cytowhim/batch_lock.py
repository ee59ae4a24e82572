"""The output folder of ``cytowhim run``: one run at a time, and nothing left over from a killed one.

- :func:`output_lock`: an exclusive ``fcntl.flock`` on ``DIR/.cytowhim.lock`` while a run writes
  into ``DIR``. A second run into the same folder is refused at once
  (:class:`~cytowhim.errors.OutputInUseError`, naming the process that holds it) or, with
  ``wait=True`` (``cytowhim run --wait``), waits for it. The lock belongs to the open file, so the
  system releases it when the holder dies, however it dies (``kill -9`` included); the lock file
  itself stays (removing it would let two runs lock two different files).
- :func:`clean_stale_temporaries`: the temporary files (``.NAME.<32 hex>.tmp``, see
  :func:`~cytowhim.store.atomic_path`) a killed run left in ``DIR`` and ``DIR/parts``; removed by
  the next run while it holds the lock, so never a file another run is still writing.

Where ``fcntl`` does not exist (Windows) the lock is not taken.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from .errors import OutputError, OutputInUseError

LOCK_NAME = ".cytowhim.lock"
#: Names of the temporary files written by :func:`cytowhim.store.atomic_path`.
TEMPORARY = re.compile(r"\..+\.[0-9a-f]{32}\.tmp", re.DOTALL)

_held: dict[tuple[str, int], int] = {}  # (folder, thread) -> how many times it is entered
_guard = threading.Lock()


def _holder(fd: int) -> str:
    """What the lock file says about the run holding it ('pid 123 on host since ...')."""
    try:
        text = os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "a process that did not say which"


@contextlib.contextmanager
def output_lock(
    folder: str | os.PathLike, wait: bool = False, waiting: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Hold the lock of the output ``folder`` (created if missing) for the ``with`` block.

    Re-entrant within a thread (``cytowhim run`` holds it across
    :func:`~cytowhim.run.run_manifest` and :func:`~cytowhim.run.write_run`, which each take it
    too). Held by another run: :class:`~cytowhim.errors.OutputInUseError`, or with ``wait`` a
    call to ``waiting(message)`` and a wait for it. :class:`~cytowhim.errors.OutputError` when the
    folder cannot be created or the lock file written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{folder}: cannot create the output folder ({exc.strerror or exc})"
        ) from None
    key = (os.path.realpath(folder), threading.get_ident())
    with _guard:
        again = key in _held
        if again:
            _held[key] += 1
    if again:
        try:
            yield folder
        finally:
            with _guard:
                _held[key] -= 1
        return
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        fcntl = None  # type: ignore[assignment]
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the lock file ({exc.strerror or exc})") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = _holder(fd)
                if not wait:
                    raise OutputInUseError(
                        f"{folder}: another cytowhim run is writing into this folder ({who}); "
                        "wait for it to finish, give another --out, or add --wait to wait for it"
                    ) from None
                if waiting:
                    waiting(f"{folder}: waiting for the run writing into it to finish ({who})")
                fcntl.flock(fd, fcntl.LOCK_EX)
        since = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        note = f"pid {os.getpid()} on {socket.gethostname()} since {since}: {_command()}\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode("utf-8", "replace"), 0)
        except (OSError, AttributeError):  # AttributeError: no pwrite (Windows)
            pass  # the note only helps the message of a second run
        with _guard:
            _held[key] = 1
        try:
            yield folder
        finally:
            with _guard:
                del _held[key]
    finally:
        os.close(fd)  # releases the lock


def _command() -> str:
    text = " ".join(sys.argv) if sys.argv and sys.argv[0] else sys.executable
    return text if len(text) <= 200 else text[:197] + "..."


def clean_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (:data:`TEMPORARY`) of an earlier, interrupted run from
    ``folder`` and ``folder/parts``; returns them. Call it while holding :func:`output_lock`."""
    removed = []
    for where in (Path(folder), Path(folder) / "parts"):
        try:
            entries = list(os.scandir(where))
        except OSError:
            continue
        for entry in entries:
            if TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed
