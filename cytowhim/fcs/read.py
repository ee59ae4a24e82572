"""`read_fcs` and `read_fcs_metadata`: FCS 2.0 to 3.2 files into :class:`cytowhim.Sample`."""

from __future__ import annotations

import os
import stat
import warnings
from collections import Counter
from typing import BinaryIO

from ..errors import FCSError, FCSWarning
from ..sample import Sample
from .events import read_events
from .segments import DataSet, format_of, resolve_data, walk_data_sets
from .spillover import spillover_frame


def _kind(mode: int) -> str | None:
    """What a file that is not a regular file is ('a FIFO (named pipe)' ...), None if it is one."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _refuse(name: str, kind: str) -> FCSError:
    if kind == "a directory":
        return FCSError(name, "is a directory, not an FCS file")
    return FCSError(name, f"is {kind}, not a regular file: not read (an FCS file is a file)")


def open_regular(path: str | os.PathLike) -> tuple[str, BinaryIO, int]:
    """(name, unbuffered binary file, size) of a regular file; FCSError naming it when it is a
    directory, a FIFO, a socket or a device, which are never opened as FCS (reading a FIFO
    would wait forever for a writer). OSError (e.g. FileNotFoundError) when it cannot be
    opened."""
    name = os.fspath(path)
    kind = _kind(os.stat(name).st_mode)  # before opening: opening a FIFO or device can block
    if kind is not None:
        raise _refuse(name, kind)
    # non-blocking, in case it became a FIFO since (no effect on a regular file)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(name, flags | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise _refuse(name, "a directory") from None
    try:
        st = os.fstat(fd)
        kind = _kind(st.st_mode)
        if kind is not None:
            raise _refuse(name, kind)
        f = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    return name, f, st.st_size


_open = open_regular


def _check_index(data_set: int) -> None:
    if isinstance(data_set, bool) or not isinstance(data_set, int) or data_set < 0:
        raise ValueError(f"data_set must be a whole number >= 0, got {data_set!r}")


def _pick(sets: list[DataSet], data_set: int, name: str) -> DataSet:
    if data_set >= len(sets):
        raise FCSError(
            name,
            f"data_set={data_set} requested but the file holds {len(sets)} "
            f"data set{'s' if len(sets) != 1 else ''}",
        )
    return sets[data_set]


def read_fcs_metadata(path: str | os.PathLike, data_set: int = 0) -> dict[str, str]:
    """TEXT keywords of one data set; works when DATA is missing or truncated.

    Raises :class:`cytowhim.FCSError` when HEADER or TEXT cannot be read.
    """
    _check_index(data_set)
    name, f, size = _open(path)
    with f:
        return dict(_pick(walk_data_sets(f, name, size, data_set), data_set, name).keywords)


def read_fcs(path: str | os.PathLike, data_set: int = 0) -> Sample:
    """Read one data set of an FCS file (2.0, 3.0, 3.1, 3.2).

    Parameters
    ----------
    path : path of the file.
    data_set : which data set (0 = first) for files with several (``$NEXTDATA``).

    Returns
    -------
    Sample with ``events`` (events x parameters, raw values as stored), channels, markers,
    keywords and spillover.

    Raises :class:`cytowhim.FCSError` (a ValueError) naming the file and the problem; warns with
    :class:`cytowhim.FCSWarning` when it reads around a broken rule (naming the offsets it used).
    """
    _check_index(data_set)
    name, f, size = _open(path)
    with f:
        ds = _pick(walk_data_sets(f, name, size, data_set), data_set, name)
        fmt = format_of(ds)
        span = resolve_data(ds, fmt, size)
        events = read_events(f, span, fmt, name)
    channels, markers = parameter_names(ds.keywords, fmt.n_parameters, name)
    spill = spillover_frame(ds.keywords, channels, markers, name)
    return Sample(
        events=events,
        channels=channels,
        markers=markers,
        keywords=ds.keywords,
        spillover=spill,
        path=name,
        data_set=data_set,
        version=ds.version,
    )


def parameter_names(kw: dict[str, str], n: int, path: str | None) -> tuple[list[str], list[str]]:
    """($PnN names made unique, $PnS markers or '') for parameters 1..n."""
    channels = []
    for i in range(1, n + 1):
        pnn = kw.get(f"$P{i}N", "").strip()
        if not pnn:
            warnings.warn(
                f"{path}: $P{i}N is missing; parameter {i} is named 'P{i}'",
                FCSWarning,
                stacklevel=3,
            )
            pnn = f"P{i}"
        channels.append(pnn)
    markers = [kw.get(f"$P{i}S", "").strip() for i in range(1, n + 1)]
    counts = Counter(channels)
    if len(counts) < n:
        reserved, first, unique = set(channels), set(), []
        for c in channels:
            if c not in first:
                first.add(c)
                unique.append(c)
                continue
            k = 2
            while f"{c}_{k}" in reserved:
                k += 1
            reserved.add(f"{c}_{k}")
            unique.append(f"{c}_{k}")
        dupes = sorted(c for c, k in counts.items() if k > 1)
        warnings.warn(
            f"{path}: $PnN names repeat ({', '.join(dupes)}); later ones get a _2, _3 suffix",
            FCSWarning,
            stacklevel=3,
        )
        channels = unique
    return channels, markers
