"""Decode the DATA segment into an events x parameters array, reading the file once."""

from __future__ import annotations

import math
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
    if fmt.packed:
        return _apply_masks(_read_packed(f, span, fmt, path), fmt)
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


def _read_packed(f: BinaryIO, span: DataSpan, fmt: DataFormat, path: str | None) -> np.ndarray:
    """Integer values packed bit after bit without byte alignment (FCS 2.0, e.g. $PnB = 9).

    The stream runs least significant bit first: each byte from its lowest bit, each value's
    bits from its lowest, whatever $BYTEORD says. That is how the FCS 2.0 files FlowJo 2.0 wrote
    are packed (the LabKey FACScan files say $BYTEORD 4,3,2,1, and only this order gives their
    scatter and CD3/CD4/CD8 channels the peaks FlowJo gates; the three others give
    near-uniform noise). Decoded in groups of rows that end on a byte boundary, each value of a
    group at a fixed bit offset (no bit array, no per-event loop).
    """
    n, p = span.n_events, fmt.n_parameters
    if any(t != "I" for t in fmt.types):
        raise FCSError(path, "packed (non-byte-aligned) DATA must be integers ($DATATYPE I)")
    need = -(-n * fmt.row_bits // 8)
    if n == 0:
        return np.empty((0, p), dtype=_uint_for(max(fmt.widths)))
    if span.nbytes < need:
        raise FCSError(
            path,
            f"DATA holds {span.nbytes} bytes; {n} events x {fmt.row_bits} packed bits need {need}",
        )
    # rows come back to a byte boundary every `per_group` rows: decode group-wise, each value of
    # a group at a fixed bit offset, as a few byte columns shifted together (no per-event loop)
    per_group = 8 // math.gcd(fmt.row_bits, 8)
    group_bytes = fmt.row_bits * per_group // 8
    n_groups = -(-n // per_group)
    raw = np.zeros(n_groups * group_bytes + 9, dtype=np.uint8)
    _readinto(f, raw[:need], DataSpan(span.start, n, need), path)
    out = np.empty((n_groups * per_group, p), dtype=_uint_for(max(fmt.widths)))
    for r in range(per_group):
        offset = r * fmt.row_bits
        for col, bits in enumerate(fmt.widths):
            out[r::per_group, col] = _field(raw, group_bytes, n_groups, offset, bits)
            offset += bits
    return out[:n]


def _field(raw: np.ndarray, stride: int, count: int, offset: int, bits: int) -> np.ndarray:
    """The ``bits``-wide value at bit ``offset`` of each of ``count`` groups of ``stride`` bytes
    (least significant bit first), as uint64."""
    first, shift = offset >> 3, offset & 7
    # the 8 bytes from the value's first byte, read as one little-endian word per group (a
    # strided, unaligned view: no copy until the shift)
    window = np.ndarray((count,), dtype="<u8", buffer=raw, offset=first, strides=(stride,))
    value = window >> np.uint64(shift)
    if shift + bits > 64:  # a 58..64-bit value reaching a ninth byte
        ninth = np.ndarray(
            (count,), dtype=np.uint8, buffer=raw, offset=first + 8, strides=(stride,)
        )
        value |= ninth.astype(np.uint64) << np.uint64(64 - shift)
    if bits < 64:
        value &= np.uint64((1 << bits) - 1)
    return value


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
