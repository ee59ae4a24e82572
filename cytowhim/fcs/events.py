"""Decode the DATA segment into an events x parameters array, reading the file once."""

from __future__ import annotations

import re
from typing import BinaryIO

import numpy as np

from ..errors import FCSError
from .data_format import DataFormat
from .segments import DataSpan


def _readinto(f: BinaryIO, buffer: np.ndarray, span: DataSpan, path: str | None) -> None:
    """Fill ``buffer`` with ``span.nbytes`` bytes from ``span.start`` (no intermediate copy)."""
    if span.nbytes == 0:
        return
    view = memoryview(buffer).cast("B")
    f.seek(span.start)
    got = 0
    while got < span.nbytes:
        n = f.readinto(view[got:])
        if not n:
            raise FCSError(
                path,
                f"DATA should hold {span.nbytes} bytes from byte {span.start} but "
                f"the file ends after {got}: truncated",
            )
        got += n


def _uint_for(bits: int) -> np.dtype:
    for size in (8, 16, 32, 64):
        if bits <= size:
            return np.dtype(f"u{size // 8}")
    raise ValueError(bits)


def _significance(fmt: DataFormat, nbytes: int) -> list[int]:
    """For each byte position of an nbytes-wide field, its significance (0 = least)."""
    if len(fmt.byte_order) == nbytes:
        return list(fmt.byte_order)
    return list(range(nbytes)) if not fmt.big_endian else list(reversed(range(nbytes)))


def read_events(f: BinaryIO, span: DataSpan, fmt: DataFormat, path: str | None) -> np.ndarray:
    """Events x parameters array for one data set (dtype: see :class:`cytowhim.Sample`)."""
    n, p = span.n_events, fmt.n_parameters
    if fmt.datatype == "A":
        return _read_ascii(f, span, fmt, path)
    dtype = fmt.uniform_dtype()
    if dtype is not None:
        out = np.empty((n, p), dtype=dtype)
        _readinto(f, out, span, path)
        if not dtype.isnative:
            out = out.byteswap(inplace=True).view(dtype.newbyteorder("="))
        return _apply_masks(out, fmt)
    raw = np.empty((n, fmt.row_bytes), dtype=np.uint8)
    _readinto(f, raw, span, path)
    return _apply_masks(_assemble(raw, fmt), fmt)


def _assemble(raw: np.ndarray, fmt: DataFormat) -> np.ndarray:
    """Columns of non-standard widths, byte orders or mixed types, built from each row's bytes.

    The result is unsigned integers when every parameter is an integer, the float type when all
    are one float type, float64 otherwise (FCS 3.2 $PnDATATYPE mixes).
    """
    n = raw.shape[0]
    kinds = set(fmt.types)
    if kinds == {"I"}:
        out_type = _uint_for(max(fmt.widths))
    elif len(kinds) == 1:
        out_type = np.dtype(f"f{fmt.widths[0] // 8}")
    else:
        out_type = np.dtype("f8")
    out = np.empty((n, fmt.n_parameters), dtype=out_type)
    pos = 0
    for col, (ptype, bits) in enumerate(zip(fmt.types, fmt.widths)):
        width = bits // 8
        sig = _significance(fmt, width)
        if ptype == "I":
            acc_type = _uint_for(bits)
            acc = np.zeros(n, dtype=acc_type)
            for j, s in enumerate(sig):
                acc |= raw[:, pos + j].astype(acc_type) << acc_type.type(8 * s)
            out[:, col] = acc
        else:
            order = [pos + sig.index(s) for s in range(width)]  # least significant byte first
            out[:, col] = np.ascontiguousarray(raw[:, order]).view(f"<f{width}")[:, 0]
        pos += width
    return out


def _apply_masks(events: np.ndarray, fmt: DataFormat) -> np.ndarray:
    masks = fmt.int_masks()
    if not any(m is not None for m in masks):
        return events
    for col, mask in enumerate(masks):
        if mask is None:
            continue
        if events.dtype.kind == "u":
            if mask < np.iinfo(events.dtype).max:
                np.bitwise_and(events[:, col], events.dtype.type(mask), out=events[:, col])
        else:  # integers stored in a float64 matrix (FCS 3.2 mixed types): exact below 2**53
            events[:, col] = np.bitwise_and(events[:, col].astype(np.uint64), np.uint64(mask))
    return events


_ASCII_SPLIT = re.compile(rb"[\s,]+")


def _read_ascii(f: BinaryIO, span: DataSpan, fmt: DataFormat, path: str | None) -> np.ndarray:
    f.seek(span.start)
    blob = f.read(span.nbytes)
    p = fmt.n_parameters
    try:
        if 0 in fmt.widths:  # delimited values
            values = np.array([float(t) for t in _ASCII_SPLIT.split(blob.strip()) if t])
            if values.size % p:
                raise FCSError(
                    path, f"ASCII DATA holds {values.size} values, not a multiple of $PAR={p}"
                )
            return values.reshape(-1, p)
        row = sum(fmt.widths)
        n = len(blob) // row
        rows = np.frombuffer(blob[: n * row], dtype=np.uint8).reshape(n, row)
        out = np.empty((n, p), dtype=np.float64)
        pos = 0
        for col, width in enumerate(fmt.widths):
            field = rows[:, pos : pos + width].copy().view(f"S{width}").ravel()
            out[:, col] = [float(v.strip() or 0) for v in field]
            pos += width
        return out
    except ValueError as exc:
        if isinstance(exc, FCSError):
            raise
        raise FCSError(path, f"ASCII DATA has a value that is not a number ({exc})") from None
