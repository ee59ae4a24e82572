"""`describe`: what an FCS file holds, without decoding its events (for ``cytowhim inspect``)."""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

from ..errors import FCSError
from .read import _open, parameter_names, read_fcs_metadata
from .segments import format_of, resolve_data, walk_data_sets
from .spillover import find_spillover_keyword, parse_spillover

#: File name endings taken as FCS files when a folder is walked (case-insensitive).
FCS_SUFFIXES = (".fcs", ".lmd")


def describe(path: str | os.PathLike, *, partial: bool = False) -> dict[str, Any]:
    """Summary of every data set of an FCS file: version, instrument, events, parameters, spillover.

    Checks that each data set's DATA is where TEXT says and fits the file, so a file that describes
    cleanly also reads. Raises :class:`cytowhim.FCSError` otherwise; reader warnings are collected
    under ``"warnings"`` instead of printed. Numbers (events, bits, ``range``, offsets) are numbers.

    With ``partial=True`` it never raises for a file's content: the result also has ``"readable"``
    (whether the events can be read) and ``"problems"`` (why not). A file whose HEADER and TEXT
    read but whose DATA does not (truncated, wrong offsets) is described from its TEXT keywords
    (:func:`~cytowhim.read_fcs_metadata`, first data set); a file without readable keywords (not
    an FCS file, missing) has no ``data_sets``.
    """
    if not partial:
        return _describe(path)
    name = os.fspath(path)
    try:
        info = _describe(path)
    except (FCSError, OSError, ValueError) as exc:  # ValueError: e.g. undecodable TEXT
        problem = _problem(exc)
    else:
        return {**info, "readable": True, "problems": []}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            keywords = read_fcs_metadata(path)
            described = [_from_keywords(name, keywords)]
    except (FCSError, OSError, ValueError):
        return {
            "file": name,
            "size_bytes": _size(name),
            "readable": False,
            "problems": [problem],
            "data_sets": [],
            "warnings": [],
        }
    notes = [str(w.message).removeprefix(f"{name}: ") for w in caught]
    return {
        "file": name,
        "size_bytes": _size(name),
        "readable": False,
        "problems": [problem],
        "data_sets": described,
        "warnings": list(dict.fromkeys(notes + described[0].pop("notes"))),
    }


def _problem(exc: BaseException) -> str:
    if isinstance(exc, FCSError):
        return exc.problem
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _size(name: str) -> int | None:
    try:
        return os.stat(name).st_size
    except OSError:
        return None


def _number(raw: str | None) -> int | float | None:
    """A keyword's number: int when whole, float otherwise, None when empty or not a number."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _byte_order(raw: str) -> str:
    order = [p.strip() for p in raw.split(",") if p.strip()]
    if order and order == [str(i) for i in range(1, len(order) + 1)]:
        return "little"
    if order and order == [str(i) for i in range(len(order), 0, -1)]:
        return "big"
    return ",".join(order)


def _parameters(kw: dict[str, str], channels: list[str], markers: list[str], bits) -> list:
    return [
        {
            "index": i + 1,
            "channel": c,
            "marker": m,
            "bits": bits(i),
            "range": _number(kw.get(f"$P{i + 1}R")),
        }
        for i, (c, m) in enumerate(zip(channels, markers))
    ]


def _spillover(kw: dict[str, str], channels: list[str], markers: list[str]) -> dict | None:
    key = find_spillover_keyword(kw)
    if key is None:
        return None
    try:
        spill_channels, _ = parse_spillover(kw[key], channels, markers)
    except ValueError as exc:
        return {"keyword": key, "error": str(exc)}
    return {"keyword": key, "channels": spill_channels}


def _from_keywords(name: str, kw: dict[str, str]) -> dict[str, Any]:
    """The first data set as its TEXT describes it (for a file whose DATA cannot be read)."""
    notes = []
    n_par = _number(kw.get("$PAR"))
    if not isinstance(n_par, int) or n_par < 0:
        notes.append(f"$PAR={kw.get('$PAR')!r} is not a number of parameters")
        n_par = 0
    channels, markers = parameter_names(kw, n_par, name)
    begin, end = _number(kw.get("$BEGINDATA")), _number(kw.get("$ENDDATA"))
    events = _number(kw.get("$TOT"))

    def bits(i: int) -> int | None:
        raw = kw.get(f"$P{i + 1}B", "").strip()
        return 0 if raw == "*" else _number(raw)

    return {
        "data_set": 0,
        "version": _version(name),
        "instrument": kw.get("$CYT", "").strip(),
        "date": kw.get("$DATE", "").strip(),
        "events": events if isinstance(events, int) else None,
        "datatype": kw.get("$DATATYPE", "").strip().upper(),
        "byte_order": _byte_order(kw.get("$BYTEORD", "")),
        "data_offsets": [begin, end] if isinstance(begin, int) and isinstance(end, int) else None,
        "parameters": _parameters(kw, channels, markers, bits),
        "spillover": _spillover(kw, channels, markers),
        "notes": notes,
    }


def _version(name: str) -> str:
    _, f, _ = _open(name)
    with f:
        return f.read(6).decode("latin-1")


_FCS_MAGIC = re.compile(rb"FCS\d\.\d")


def looks_like_fcs(path: str | os.PathLike) -> bool:
    """Whether a folder walk takes ``path`` as an FCS file: a name ending in .fcs or .lmd (any
    case); a name without extension starting with 'FCS'; any other name (e.g. an old '.001')
    starting with an FCS version ('FCS2.0', 'FCS3.1', ...)."""
    p = Path(path)
    if p.suffix.lower() in FCS_SUFFIXES:
        return True
    try:
        _, f, _ = _open(p)  # regular files only: a FIFO would block
        with f:
            head = f.read(6)
    except (OSError, FCSError):
        return False
    return head.startswith(b"FCS") if not p.suffix else bool(_FCS_MAGIC.fullmatch(head))


def find_fcs_files(folder: str | os.PathLike) -> list[Path]:
    """The FCS files under ``folder`` and its subfolders (see :func:`looks_like_fcs`), sorted;
    hidden files and folders (a leading '.', e.g. macOS '._' copies) are left out."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and path.is_file() and looks_like_fcs(path):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def _describe(path: str | os.PathLike) -> dict[str, Any]:
    name, f, size = _open(path)
    with f, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sets = walk_data_sets(f, name, size, None)
        described = []
        for ds in sets:
            fmt = format_of(ds)
            span = resolve_data(ds, fmt, size)
            channels, markers = parameter_names(ds.keywords, fmt.n_parameters, name)
            kw = ds.keywords
            spill = _spillover(kw, channels, markers)
            n_events = span.n_events
            described.append(
                {
                    "data_set": ds.index,
                    "version": ds.version,
                    "instrument": kw.get("$CYT", "").strip(),
                    "date": kw.get("$DATE", "").strip(),
                    "events": n_events,
                    "datatype": fmt.datatype,
                    "byte_order": "bit-packed"  # one LSB-first bit stream: no byte order
                    if fmt.packed
                    else "little"
                    if fmt.little_endian
                    else "big"
                    if fmt.big_endian
                    else ",".join(str(b + 1) for b in fmt.byte_order),
                    "data_offsets": [span.start, span.start + span.nbytes - 1]
                    if span.nbytes
                    else [0, 0],
                    "parameters": _parameters(kw, channels, markers, fmt.widths.__getitem__),
                    "spillover": spill,
                }
            )
    return {
        "file": name,
        "size_bytes": size,
        "data_sets": described,
        "warnings": [str(w.message).removeprefix(f"{name}: ") for w in caught],
    }
