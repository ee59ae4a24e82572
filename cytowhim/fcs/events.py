"""Decode the DATA segment into an events x parameters array, reading the file once."""

from __future__ import annotations

import functools
import math
from typing import Any, BinaryIO

import numpy as np

from ..errors import FCSError
from .data_format import DataFormat
from .segments import DataSpan


def _readinto(f: BinaryIO, buffer: np.ndarray, span: DataSpan, path: str | None) -> None:
    """Fill ``buffer`` with ``span.nbytes`` bytes from ``span.start`` (no intermediate copy)."""
    if span.nbytes == 0:
        return
    f.seek(span.start)
    _read_more(f, memoryview(buffer).cast("B")[: span.nbytes], 0, span, path)


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
    group at a fixed bit offset (no bit array, no per-event loop); one width of 9, 10 or 12 bits
    for every parameter (the common case) takes a faster path, see :func:`_packed_lanes`.
    """
    n, p = span.n_events, fmt.n_parameters
    if any(t != "I" for t in fmt.types):
        raise FCSError(path, "packed (non-byte-aligned) DATA must be integers ($DATATYPE I)")
    need = -(-n * fmt.row_bits // 8)
    out_type = _uint_for(max(fmt.widths))
    if n == 0:
        return np.empty((0, p), dtype=out_type)
    if span.nbytes < need:
        raise FCSError(
            path,
            f"DATA holds {span.nbytes} bytes; {n} events x {fmt.row_bits} packed bits need {need}",
        )
    lanes = _packed_lanes(fmt.widths)
    if lanes is not None:
        return _read_packed_lanes(f, DataSpan(span.start, n, need), p, fmt.widths[0], lanes, path)
    # one width for all: decode the values as one stream (rows of one value), fewer fields
    rows, widths = (n * p, fmt.widths[:1]) if len(set(fmt.widths)) == 1 else (n, fmt.widths)
    row_bits = sum(widths)
    # rows come back to a byte boundary every `per_group` rows: decode group-wise, each value of
    # a group at a fixed bit offset, as a few byte columns shifted together (no per-event loop)
    per_group = 8 // math.gcd(row_bits, 8)
    group_bytes = row_bits * per_group // 8
    n_groups = -(-rows // per_group)
    raw = np.zeros(n_groups * group_bytes + 9, dtype=np.uint8)
    _readinto(f, raw[:need], DataSpan(span.start, n, need), path)
    out = np.empty((n_groups * per_group, len(widths)), dtype=out_type)
    # a step's groups: its bytes, output and scratch stay in cache for all the fields
    step = min(n_groups, max(1, _CHUNK_VALUES // (per_group * len(widths))))
    scratch = np.empty(step, dtype=np.uint64)
    for g in range(0, n_groups, step):
        m = min(step, n_groups - g)
        block = out[g * per_group : (g + m) * per_group]
        for r in range(per_group):
            offset = 8 * g * group_bytes + r * row_bits
            for col, bits in enumerate(widths):
                _field(raw, group_bytes, m, offset, bits, block[r::per_group, col], scratch)
                offset += bits
    return out[:rows].reshape(n, p)


def _field(
    raw: np.ndarray,
    stride: int,
    count: int,
    offset: int,
    bits: int,
    dest: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """Write into ``dest`` the ``bits``-wide value at bit ``offset`` of ``raw`` and the same in
    each of the next ``count`` - 1 groups of ``stride`` bytes (least significant bit first).
    ``scratch`` holds at least ``count`` uint64."""
    first, shift = offset >> 3, offset & 7
    span = shift + bits  # bits to read from the value's first byte
    # the smallest little-endian word from the value's first byte that holds it, one per group,
    # copied from a strided, unaligned view into contiguous scratch, where the shifts are fast
    size = 1 if span <= 8 else 2 if span <= 16 else 4 if span <= 32 else 8
    word = np.dtype(f"<u{size}")
    window = np.ndarray((count,), dtype=word, buffer=raw, offset=first, strides=(stride,))
    value = scratch.view(word.newbyteorder("="))[:count]
    np.copyto(value, window)
    if shift:
        np.right_shift(value, word.type(shift), out=value)
    if span > 64:  # a 58..64-bit value reaching a ninth byte
        ninth = np.ndarray(
            (count,), dtype=np.uint8, buffer=raw, offset=first + 8, strides=(stride,)
        )
        value |= ninth.astype(np.uint64) << np.uint64(64 - shift)
    if bits < 8 * size:
        np.bitwise_and(value, word.type((1 << bits) - 1), out=dest, casting="unsafe")
    else:
        np.copyto(dest, value, casting="unsafe")


# --- one packed width for all parameters: a contiguous, cache-sized pipeline ---------------------

_CHUNK_VALUES = 1 << 17  # values decoded per step: the step's arrays stay in a core's L2 cache


def _packed_lanes(widths: tuple[int, ...]) -> tuple[int, ...] | None:
    """The bit shift of each value in a run of 8 / gcd(w, 8) values (a run ends on a byte
    boundary) when all parameters share one width w that suits :func:`_read_packed_lanes`:
    value j of a run starts in byte j of it and fits in two bytes from there (w = 9, 10 or 12).
    None for other widths, which take the general path."""
    w = widths[0]
    if not 8 < w < 16 or any(b != w for b in widths) or not np.little_endian:
        return None
    per_run = 8 // math.gcd(w, 8)
    starts = [w * k for k in range(per_run)]
    if any(s >> 3 != k or (s & 7) + w > 16 for k, s in enumerate(starts)):
        return None
    return tuple(s & 7 for s in starts)


@functools.lru_cache(maxsize=4)
def _lane_factors(w: int, shifts: tuple[int, ...], runs: int) -> np.ndarray:
    """Per value of ``runs`` runs: 2**(16 - w - shift), which moves the value to the top of its
    16-bit window (and its higher neighbour's bits out of it). Cached, read-only."""
    one = np.array([1 << (16 - w - s) for s in shifts], dtype=np.uint16)
    factors = np.tile(one, runs)
    factors.flags.writeable = False
    return factors


def _read_packed_lanes(
    f: BinaryIO, span: DataSpan, p: int, w: int, shifts: tuple[int, ...], path: str | None
) -> np.ndarray:
    """Equal ``w``-bit values (see :func:`_packed_lanes`): runs of ``k`` = len(shifts) values in
    ``g`` = w * k / 8 bytes; value j of a run sits at bit shifts[j] of the 16-bit (little-endian)
    window at byte j of the run. DATA is read and decoded in steps of a few 100 kB that stay in
    cache; each step:

    1. widens its bytes b[i] to uint16 times 257: b[i] | b[i] << 8, so that the uint16 read one
       byte further on is the window b[i] | b[i + 1] << 8;
    2. copies the k windows of each run (consecutive there, runs g apart) into the output as one
       item of 2k bytes;
    3. moves each value to the top of its window, dropping its higher neighbour's bits (times
       2**(16 - w - shift), wrapping), then down to the bottom (>> 16 - w), dropping the lower.
    """
    k = len(shifts)
    g = w * k // 8
    n_values = span.n_events * p
    runs = -(-n_values // k)
    out = np.empty(runs * k, dtype=np.uint16)
    full_step = max(1, _CHUNK_VALUES // k)
    step = min(runs, full_step)  # runs per step
    factors = _lane_factors(w, shifts, full_step)
    raw = np.empty(step * g, dtype=np.uint8)
    wide = np.empty(step * g, dtype=np.uint16)
    item = np.dtype(f"V{2 * k}")
    dup, top = np.uint16(257), np.uint16(16 - w)
    f.seek(span.start)
    got = 0
    for first in range(0, runs, step):
        m = min(step, runs - first)  # runs in this step
        # the step's bytes; DATA may end before the last step's last run does (fewer than g
        # bytes short): zeros there, like the padding bits, reach only values that are dropped
        n_read = min(m * g, span.nbytes - got)
        got = _read_more(f, raw[:n_read], got, span, path)
        if n_read < m * g:
            raw[n_read : m * g] = 0
        np.multiply(raw[: m * g], dup, out=wide[: m * g])
        # the windows, read one byte into `wide`; a run's last window ends at byte 2k < 2g of
        # the run's 2g bytes there, so the last run's stays inside `wide`
        windows = np.ndarray((m,), dtype=item, buffer=wide, offset=1, strides=(2 * g,))
        dst = out[first * k : (first + m) * k]
        np.copyto(dst.view(item), windows)
        np.multiply(dst, factors[: m * k], out=dst)
        np.right_shift(dst, top, out=dst)
    return out[:n_values].reshape(span.n_events, p)


def _read_more(f: BinaryIO, buffer: Any, got: int, span: DataSpan, path: str | None) -> int:
    """Fill ``buffer`` with the next bytes of ``span``, of which ``got`` were read before (``f``
    is just after them); the bytes read in all. FCSError naming the file when it ends first."""
    view = memoryview(buffer).cast("B")
    filled = 0
    while filled < len(view):
        n = f.readinto(view[filled:])
        if not n:
            raise FCSError(
                path,
                f"DATA should hold {span.nbytes} bytes from byte {span.start} but "
                f"the file ends after {got + filled}: truncated",
            )
        filled += n
    return got + filled


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


_ASCII_DELIMITERS = b" \t\n\r\x0b\x0c,"  # between delimited ASCII values: whitespace and commas
_IS_DELIMITER = np.zeros(256, dtype=bool)
_IS_DELIMITER[list(_ASCII_DELIMITERS)] = True
_TO_SPACE = bytes.maketrans(_ASCII_DELIMITERS, b" " * len(_ASCII_DELIMITERS))
#: bytes of ASCII DATA decoded at a time (memory beyond the events array stays a few MB)
_ASCII_CHUNK = 1 << 18


def _read_ascii(f: BinaryIO, span: DataSpan, fmt: DataFormat, path: str | None) -> np.ndarray:
    """ASCII DATA ($DATATYPE A) as float64, decoded in chunks of :data:`_ASCII_CHUNK` bytes
    straight into the events array: about 8 bytes per value plus a few MB, whatever the file's
    size (holding every value as a Python float took 24x the file's size)."""
    if 0 in fmt.widths:
        return _read_ascii_delimited(f, span, fmt.n_parameters, path)
    return _read_ascii_fixed(f, span, fmt, path)


def _ascii_chunks(f: BinaryIO, span: DataSpan, path: str | None, size: int = _ASCII_CHUNK):
    """The bytes of ``span`` in pieces of at most ``size`` (FCSError if the file ends first)."""
    f.seek(span.start)
    buffer = bytearray(min(size, span.nbytes))
    got = 0
    while got < span.nbytes:
        n = min(len(buffer), span.nbytes - got)
        view = memoryview(buffer)[:n]
        got = _read_more(f, view, got, span, path)
        yield bytes(view)


def _token_starts(chunk: bytes, after_delimiter: bool) -> tuple[int, bool]:
    """(values that start in ``chunk``, whether it ends on a delimiter); ``after_delimiter``:
    whether the bytes before it ended on one (or it is the first)."""
    delim = _IS_DELIMITER[np.frombuffer(chunk, dtype=np.uint8)]
    if delim.size == 0:
        return 0, after_delimiter
    starts = int(np.count_nonzero(~delim[1:] & delim[:-1]))
    starts += int(after_delimiter and not delim[0])
    return starts, bool(delim[-1])


def _parse_values(piece: bytes, expected: int, path: str | None) -> np.ndarray:
    """The ``expected`` numbers of a piece of delimited ASCII (whole values only), with numpy's
    parser; a piece it refuses or miscounts is parsed value by value (which names a bad one)."""
    text = piece.translate(_TO_SPACE)
    if expected:
        try:
            values = np.fromstring(text.decode("latin-1"), dtype=np.float64, sep=" ")
        except ValueError:
            values = None
        if values is not None and values.size == expected:
            return values
    try:
        return np.array([float(t) for t in text.split()], dtype=np.float64)
    except ValueError as exc:
        raise FCSError(path, f"ASCII DATA has a value that is not a number ({exc})") from None


def _read_ascii_delimited(f: BinaryIO, span: DataSpan, p: int, path: str | None) -> np.ndarray:
    """Values separated by whitespace or commas ($PnB = '*'): counted in a first pass, so that
    the events array is allocated once, then parsed piece by piece into it."""
    count, after = 0, True
    for chunk in _ascii_chunks(f, span, path):
        n, after = _token_starts(chunk, after)
        count += n
    if count % p:
        raise FCSError(path, f"ASCII DATA holds {count} values, not a multiple of $PAR={p}")
    out = np.empty(count, dtype=np.float64)
    filled, carry = 0, b""
    chunks = _ascii_chunks(f, span, path)
    for chunk in chunks:
        data = carry + chunk
        cut = max(data.rfind(bytes([c])) for c in _ASCII_DELIMITERS) + 1  # after the last one
        piece, carry = data[:cut], data[cut:]
        n, _ = _token_starts(piece, True)
        values = _parse_values(piece, n, path)
        out[filled : filled + values.size] = values
        filled += values.size
    if carry:
        values = _parse_values(carry, _token_starts(carry, True)[0], path)
        out[filled : filled + values.size] = values
        filled += values.size
    if filled != count:  # cannot happen: both passes see the same tokens
        raise FCSError(path, f"ASCII DATA: read {filled} values, counted {count}")
    return out.reshape(-1, p)


def _read_ascii_fixed(f: BinaryIO, span: DataSpan, fmt: DataFormat, path: str | None) -> np.ndarray:
    """Fixed-width fields ($PnB = digits per value), event after event: digits and spaces (the
    usual content) are decoded column by column with numpy, other fields (signs, decimal points)
    value by value; an empty field is 0."""
    row = sum(fmt.widths)
    n = span.nbytes // row
    out = np.empty((n, fmt.n_parameters), dtype=np.float64)
    rows_per_chunk = max(1, _ASCII_CHUNK // row)
    first = 0
    sub = DataSpan(span.start, n, n * row)
    for chunk in _ascii_chunks(f, sub, path, rows_per_chunk * row):
        rows = np.frombuffer(chunk, dtype=np.uint8).reshape(-1, row)
        m = rows.shape[0]
        pos = 0
        for col, width in enumerate(fmt.widths):
            field = rows[:, pos : pos + width]
            values = _digit_fields(field)
            if values is None:
                values = _fields_one_by_one(field, path)
            out[first : first + m, col] = values
            pos += width
        first += m
    return out


def _digit_fields(field: np.ndarray) -> np.ndarray | None:
    """Values of fixed-width fields (rows x width bytes) made of one run of digits with spaces
    around it (or only spaces: 0), or None when some field holds anything else."""
    width = field.shape[1]
    digit = (field >= 0x30) & (field <= 0x39)
    if width > 18 or not np.all(digit | (field == 0x20)):
        return None
    seen = np.logical_or.accumulate(digit, axis=1)
    later = np.logical_or.accumulate(digit[:, ::-1], axis=1)[:, ::-1]
    if np.any(~digit & seen & later):  # a space between digits: '1 2' is not a number
        return None
    value = np.zeros(field.shape[0], dtype=np.int64)
    for j in range(width):
        d = digit[:, j]
        value[d] = value[d] * 10 + (field[d, j].astype(np.int64) - 0x30)
    return value


def _fields_one_by_one(field: np.ndarray, path: str | None) -> list[float]:
    width = field.shape[1]
    texts = np.ascontiguousarray(field).view(f"S{width}").ravel()
    try:
        return [float(v.strip() or 0) for v in texts]
    except ValueError as exc:
        raise FCSError(path, f"ASCII DATA has a value that is not a number ({exc})") from None
