"""HEADER, TEXT and the DATA offsets of one data set, reconciled between HEADER and TEXT.

All offsets here are absolute file positions; ``end`` is inclusive, as in the standard.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import FCSError, FCSWarning
from .data_format import DataFormat, data_format, keyword_int
from .text import parse_text

VERSIONS = ("FCS1.0", "FCS2.0", "FCS3.0", "FCS3.1", "FCS3.2")
HEADER_BYTES = 58


@dataclass
class DataSet:
    """Everything about one data set except its events."""

    path: str | None
    index: int
    offset: int  # where this data set's HEADER starts
    version: str
    keywords: dict[str, str]
    text_span: tuple[int, int]
    header_data: tuple[int, int]  # as the HEADER gives them (absolute), (offset, offset) if blank
    next_data: int  # absolute offset of the next data set, 0 if none
    notes: list[str] = field(default_factory=list)


def _read_at(f: BinaryIO, start: int, size: int) -> bytes:
    f.seek(start)
    return f.read(size)


def read_header_and_text(
    f: BinaryIO, path: str | None, file_size: int, offset: int, index: int
) -> DataSet:
    """Parse the HEADER and TEXT (with supplemental TEXT) of the data set starting at ``offset``."""
    where = f"data set {index} (at byte {offset})" if index else "HEADER"
    head = _read_at(f, offset, HEADER_BYTES)
    if not head:
        raise FCSError(path, f"{where}: file is empty at byte {offset}: not an FCS file")
    if not head.startswith(b"FCS"[: len(head)]):
        raise FCSError(
            path,
            f"not an FCS file: {where} starts with {head[:10]!r}, expected "
            "'FCS2.0', 'FCS3.0', 'FCS3.1' or 'FCS3.2'",
        )
    if len(head) < HEADER_BYTES:
        raise FCSError(
            path,
            f"{where}: file ends after {len(head)} bytes, a HEADER needs "
            f"{HEADER_BYTES}: truncated or not an FCS file",
        )
    version = head[:6].decode("latin-1")
    if version not in VERSIONS:
        raise FCSError(
            path,
            f"not an FCS file: {where} starts with {head[:10]!r}, expected "
            "'FCS2.0', 'FCS3.0', 'FCS3.1' or 'FCS3.2'",
        )
    fields = []
    for k, name in enumerate(
        ("TEXT start", "TEXT end", "DATA start", "DATA end", "ANALYSIS start", "ANALYSIS end")
    ):
        raw = head[10 + 8 * k : 18 + 8 * k].decode("latin-1").strip()
        if raw and not (raw.isascii() and raw.isdigit()):  # str.isdigit() also takes '²'
            raise FCSError(
                path,
                f"{where}: {name} offset {raw!r} (bytes {10 + 8 * k}-{17 + 8 * k}) is not a number",
            )
        fields.append(int(raw) if raw else 0)
    t0, t1, d0, d1 = fields[:4]
    if t0 < HEADER_BYTES or t1 <= t0:
        raise FCSError(path, f"{where}: TEXT offsets {t0}-{t1} are not a segment after the HEADER")
    if offset + t1 >= file_size:
        raise FCSError(
            path,
            f"{where}: TEXT ends at byte {offset + t1} but the file has only "
            f"{file_size} bytes: truncated",
        )
    text = _read_at(f, offset + t0, t1 - t0 + 1)
    kw = parse_text(text, path)
    ds = DataSet(
        path, index, offset, version, kw, (offset + t0, offset + t1), (offset + d0, offset + d1), 0
    )
    _merge_supplemental(f, ds, file_size, text[:1])
    nxt = keyword_int(kw, "$NEXTDATA", path, default=0)
    if nxt:
        ds.next_data = offset + nxt
    return ds


def _merge_supplemental(f: BinaryIO, ds: DataSet, file_size: int, delim: bytes) -> None:
    kw, path = ds.keywords, ds.path
    s0 = keyword_int(kw, "$BEGINSTEXT", path, default=0)
    s1 = keyword_int(kw, "$ENDSTEXT", path, default=0)
    if not s0 and not s1:
        return
    a, b = ds.offset + s0, ds.offset + s1
    if s1 < s0 or b >= file_size:
        _note(ds, f"supplemental TEXT offsets {s0}-{s1} are outside the file; ignored")
        return
    if s0 <= ds.text_span[1] - ds.offset and s1 >= ds.text_span[0] - ds.offset:
        return  # points at the primary TEXT (some writers do this); nothing more to read
    extra = parse_text(_read_at(f, a, b - a + 1), path, delim=delim, what="supplemental TEXT")
    for key, value in extra.items():
        kw.setdefault(key, value)


def _note(ds: DataSet, message: str) -> None:
    ds.notes.append(message)
    warnings.warn(f"{ds.path}: {message}", FCSWarning, stacklevel=4)


@dataclass(frozen=True)
class DataSpan:
    start: int  # absolute
    n_events: int
    nbytes: int  # bytes to read


def resolve_data(ds: DataSet, fmt: DataFormat, file_size: int) -> DataSpan:
    """Where DATA is, from HEADER, $BEGINDATA/$ENDDATA and $TOT; warns when they disagree."""
    path, kw, off = ds.path, ds.keywords, ds.offset
    row = fmt.row_bytes
    tot = keyword_int(kw, "$TOT", path) if kw.get("$TOT", "").strip() else None
    if tot == 0:
        return DataSpan(0, 0, 0)
    expected = tot * row if (tot is not None and row is not None) else None
    if expected is not None and fmt.packed:  # a bit stream: whole bytes only at its end
        expected = -(-tot * fmt.row_bits // 8)
    candidates: list[tuple[str, int, int]] = []
    h0, h1 = ds.header_data
    if h0 > off or h1 > off:
        candidates.append(("HEADER", h0, h1))
    try:
        b0 = keyword_int(kw, "$BEGINDATA", path, default=0)
        b1 = keyword_int(kw, "$ENDDATA", path, default=0)
    except FCSError as exc:  # e.g. '768I' (FlowJo 2.0): the HEADER's offsets decide
        if not candidates:
            raise
        _note(ds, f"{exc.problem}; using the HEADER's DATA offsets")
        b0 = b1 = 0
    if b0 or b1:
        candidates.append(("TEXT", off + b0, off + b1))
    if not candidates:
        raise FCSError(path, "neither the HEADER nor TEXT ($BEGINDATA/$ENDDATA) says where DATA is")

    t0, t1 = ds.text_span

    def problems(start: int, end: int) -> str | None:
        if t0 <= start <= t1:
            return "starts inside TEXT"
        if start < off + HEADER_BYTES:
            return "starts inside the HEADER"
        if end < start - 1:
            return "ends before it starts"
        need = expected if expected is not None else end - start + 1
        if start + need > file_size:
            return f"needs bytes up to {start + need - 1} but the file ends at {file_size - 1}"
        return None

    judged = [(src, s, e, problems(s, e)) for src, s, e in candidates]
    usable = [c for c in judged if c[3] is None]
    distinct = {(s, e) for _, s, e, _ in judged}
    if not usable:
        src, s, e, why = judged[-1]
        what = (
            f"$TOT={tot} events x {row} bytes = {expected} bytes"
            if expected is not None
            else "DATA"
        )
        raise FCSError(
            path, f"{what} at {src} offsets {s}-{e} {why}: truncated file or wrong keywords"
        )
    if expected is not None:
        exact = [c for c in usable if c[2] - c[1] + 1 == expected]
        chosen = exact[-1] if exact else _closest(usable, expected)
    else:
        chosen = usable[-1]
    src, start, end, _ = chosen
    length = end - start + 1

    if len(distinct) > 1:
        others = "; ".join(
            f"{s_}: {a}-{b}" + (f" ({w})" if w else "")
            for s_, a, b, w in judged
            if (s_, a, b) != (src, start, end)
        )
        _note(
            ds,
            f"HEADER and TEXT disagree on where DATA is ({others}); using {src} offsets "
            f"{start}-{end}"
            + (
                f" ({expected} bytes = $TOT x {row} bytes per event)"
                if expected is not None
                else ""
            ),
        )
    if expected is None:
        if row is None:
            return DataSpan(start, -1, length)
        if fmt.packed:
            return DataSpan(start, length * 8 // fmt.row_bits, length)
        if length % row:
            raise FCSError(
                path,
                f"no $TOT, and DATA length {length} is not a multiple of the {row}-byte event size",
            )
        return DataSpan(start, length // row, length)
    if length != expected:
        if length < expected - 1:
            raise FCSError(
                path,
                f"$TOT={tot} events need {expected} bytes but DATA ({src} offsets "
                f"{start}-{end}) holds {length}",
            )
        _note(
            ds,
            f"DATA segment {start}-{end} is {length} bytes, $TOT={tot} x {row} bytes per event "
            f"is {expected}; read {expected} bytes from {start}",
        )
    return DataSpan(start, tot, expected)


def _closest(usable: list, expected: int) -> tuple:
    return min(usable, key=lambda c: (abs((c[2] - c[1] + 1) - expected), c[0] != "TEXT"))


def walk_data_sets(
    f: BinaryIO, path: str | None, file_size: int, upto: int | None
) -> list[DataSet]:
    """Data sets from the start of the file along $NEXTDATA, up to index ``upto`` (all if None)."""
    sets = [read_header_and_text(f, path, file_size, 0, 0)]
    seen = {0}
    while sets[-1].next_data and (upto is None or len(sets) <= upto):
        nxt = sets[-1].next_data
        if nxt in seen or nxt >= file_size or nxt < 0:
            _note(
                sets[-1],
                f"$NEXTDATA points to byte {nxt}, which is not a new data set in this "
                f"{file_size}-byte file; ignored",
            )
            break
        seen.add(nxt)
        sets.append(read_header_and_text(f, path, file_size, nxt, len(sets)))
    return sets


def format_of(ds: DataSet) -> DataFormat:
    return data_format(ds.keywords, ds.path)
