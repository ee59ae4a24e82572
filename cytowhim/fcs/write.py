"""`write_fcs`: a Sample as an FCS 3.1 file that :func:`read_fcs` reads back identically."""

from __future__ import annotations

import os
import re
from typing import Literal

import numpy as np

from ..sample import Sample
from .data_format import parse_range, range_mask
from .spillover import SPILLOVER_KEYS, format_spillover
from .text import build_text

_STRUCTURAL = {
    "$BEGINANALYSIS",
    "$ENDANALYSIS",
    "$BEGINDATA",
    "$ENDDATA",
    "$BEGINSTEXT",
    "$ENDSTEXT",
    "$NEXTDATA",
    "$TOT",
    "$PAR",
    "$DATATYPE",
    "$BYTEORD",
    "$MODE",
}
_PARAM_KEY = re.compile(r"^\$P(\d+)([A-Z]+)$")
_HEADER_MAX = 99_999_999


def _data_type(events: np.ndarray) -> tuple[str, np.dtype]:
    dt = events.dtype
    if dt == np.float32:
        return "F", np.dtype("f4")
    if dt == np.float64:
        return "D", np.dtype("f8")
    if dt.kind == "b":
        return "I", np.dtype("u1")
    if dt.kind == "u":
        return "I", dt
    if dt.kind == "i":
        if events.size and events.min() < 0:
            raise ValueError("write_fcs: integer events must be >= 0 ($DATATYPE I is unsigned)")
        return "I", np.dtype(f"u{dt.itemsize}")
    raise ValueError(
        f"write_fcs: events of dtype {dt} cannot be stored; use float32, float64 "
        "or unsigned integers"
    )


def fcs_keywords(sample: Sample, datatype: str, dtype: np.dtype, byteorder: str) -> dict[str, str]:
    """TEXT keywords for ``sample``: its own, with the structural ones rebuilt for this layout."""
    events = sample.events
    n_events, n_par = events.shape
    bits = dtype.itemsize * 8
    own = {}
    for key, value in sample.keywords.items():
        key = key.upper() if key.startswith("$") else key
        m = _PARAM_KEY.match(key)
        if key in _STRUCTURAL or value == "":
            continue
        if m and (int(m.group(1)) > n_par or m.group(2) in ("N", "S", "B")):
            continue
        if sample.spillover is not None and key.upper() in SPILLOVER_KEYS:
            continue
        own[key] = value
    kw = {
        "$BEGINANALYSIS": "0",
        "$ENDANALYSIS": "0",
        "$BEGINSTEXT": "0",
        "$ENDSTEXT": "0",
        "$BEGINDATA": "0",
        "$ENDDATA": "0",
        "$BYTEORD": "1,2,3,4" if byteorder == "little" else "4,3,2,1",
        "$DATATYPE": datatype,
        "$MODE": "L",
        "$NEXTDATA": "0",
        "$PAR": str(n_par),
        "$TOT": str(n_events),
    }
    col_max = events.max(axis=0) if n_events else np.zeros(n_par)
    for i in range(n_par):
        p = i + 1
        kw[f"$P{p}N"] = sample.channels[i]
        if sample.markers[i]:
            kw[f"$P{p}S"] = sample.markers[i]
        kw[f"$P{p}B"] = str(bits)
        kw.setdefault(f"$P{p}E", own.pop(f"$P{p}E", "0,0"))
        rng = own.pop(f"$P{p}R", None)
        if datatype == "I":
            # read_fcs masks integers by $PnR: make sure no stored value is cut.
            limit = int(col_max[i]) if n_events else 0
            if rng is None or not _range_holds(rng, limit, bits):
                rng = str(1 << bits) if bits < 64 else str((1 << 64) - 1)
        elif rng is None:
            finite = float(col_max[i]) if n_events and np.isfinite(col_max[i]) else 0.0
            rng = str(max(1, int(np.ceil(finite))))
        kw[f"$P{p}R"] = rng
    if sample.spillover is not None:
        kw["$SPILLOVER"] = format_spillover(sample.spillover, sample.channels)
    kw.update(own)
    return kw


def _range_holds(rng: str, limit: int, bits: int) -> bool:
    """Whether this $PnR is a range and read_fcs, masking by it, keeps values up to ``limit``."""
    value = parse_range(rng)
    if value is None:  # not a positive number: the writer puts its own
        return False
    mask = range_mask(value, bits)
    return mask is None or limit <= mask


def write_fcs(
    path: str | os.PathLike, sample: Sample, *, byteorder: Literal["little", "big"] = "little"
) -> None:
    """Write ``sample`` as FCS 3.1 (atomically: a partial file never has the final name).

    float32 events are stored as ``$DATATYPE F``, float64 as ``D``, unsigned (or non-negative
    signed) integers as ``I`` with their width. Keywords of the sample are kept, except the ones
    that describe the layout (rebuilt) and keywords with empty values (the standard forbids them).
    """
    if byteorder not in ("little", "big"):
        raise ValueError(f"byteorder must be 'little' or 'big', got {byteorder!r}")
    if sample.events.shape[1] == 0:
        raise ValueError("write_fcs: the sample has no parameters; an FCS file needs $PAR >= 1")
    datatype, dtype = _data_type(sample.events)
    kw = fcs_keywords(sample, datatype, dtype, byteorder)
    data = np.ascontiguousarray(
        sample.events, dtype=dtype.newbyteorder("<" if byteorder == "little" else ">")
    )
    nbytes = data.nbytes
    text_start = 58
    begin = end = 0
    for _ in range(10):  # the offsets' digits change TEXT's length: iterate to a fixed point
        kw["$BEGINDATA"], kw["$ENDDATA"] = str(begin), str(end)
        text = build_text(kw)
        text_end = text_start + len(text) - 1
        new_begin = text_end + 1 if nbytes else 0
        new_end = text_end + nbytes if nbytes else 0
        if (new_begin, new_end) == (begin, end):
            break
        begin, end = new_begin, new_end
    hdr_begin, hdr_end = (begin, end) if end <= _HEADER_MAX else (0, 0)
    header = b"FCS3.1    " + b"".join(
        f"{v:>8d}".encode() for v in (text_start, text_end, hdr_begin, hdr_end, 0, 0)
    )
    target = os.fspath(path)
    tmp = f"{target}.part"
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(text)
            if nbytes:  # memoryview cannot cast an array with a 0-length axis
                f.write(memoryview(data).cast("B"))
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
