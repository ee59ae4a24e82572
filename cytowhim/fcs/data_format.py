"""How DATA is laid out, from TEXT keywords: datatype, byte order, bits per parameter, masks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import FCSError


def keyword_int(
    kw: dict[str, str], key: str, path: str | None, *, default: int | None = None, minimum: int = 0
) -> int:
    """An integer keyword; FCSError naming the keyword when it is missing or not a number."""
    raw = kw.get(key)
    if raw is None or raw.strip() == "":
        if default is not None:
            return default
        raise FCSError(path, f"required keyword {key} is missing")
    try:
        value = int(raw.strip())
    except ValueError:
        try:
            as_float = float(raw.strip())
        except ValueError:
            raise FCSError(path, f"keyword {key}={raw!r} is not a whole number") from None
        if not as_float.is_integer():
            raise FCSError(path, f"keyword {key}={raw!r} is not a whole number") from None
        value = int(as_float)
    if value < minimum:
        raise FCSError(path, f"keyword {key}={raw!r} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class DataFormat:
    """Layout of one event row in DATA."""

    datatype: str  # 'I', 'F', 'D' or 'A'
    types: tuple[str, ...]  # per parameter: $DATATYPE, or FCS 3.2's $PnDATATYPE where given
    byte_order: tuple[int, ...]  # $BYTEORD as 0-based positions: (0,1,2,3) little-endian
    widths: tuple[int, ...]  # bits per parameter ($PnB); 0 for free-format ASCII ('*')
    ranges: tuple[float | None, ...]  # $PnR if a positive number (see parse_range)

    @property
    def n_parameters(self) -> int:
        return len(self.widths)

    @property
    def packed(self) -> bool:
        """Whether integer values are packed bit after bit (FCS 2.0 allowed widths that are not
        whole bytes, e.g. $PnB = 9): DATA is then a bit stream, not rows of bytes."""
        return self.datatype != "A" and any(w % 8 for w in self.widths)

    @property
    def row_bits(self) -> int:
        return sum(self.widths)

    @property
    def row_bytes(self) -> int | None:
        """Bytes per event (rounded up for packed data), or None for delimited ASCII."""
        if self.datatype == "A":
            return None if 0 in self.widths else sum(self.widths)
        return -(-sum(self.widths) // 8)

    @property
    def little_endian(self) -> bool:
        return self.byte_order == tuple(range(len(self.byte_order)))

    @property
    def big_endian(self) -> bool:
        return self.byte_order == tuple(reversed(range(len(self.byte_order))))

    def uniform_dtype(self) -> np.dtype | None:
        """The numpy dtype if every parameter has one standard width and plain byte order."""
        if self.datatype == "A" or len(set(self.widths)) != 1 or len(set(self.types)) != 1:
            return None
        width = self.widths[0]
        kind = {"I": "u", "F": "f", "D": "f"}[self.types[0]]
        if width not in (8, 16, 32, 64) or (kind == "f" and width not in (32, 64)):
            return None
        if width == 8:
            return np.dtype("u1")
        nbytes = width // 8
        if len(self.byte_order) == nbytes and self.little_endian:
            order = "<"
        elif len(self.byte_order) == nbytes and self.big_endian:
            order = ">"
        elif len(self.byte_order) != nbytes and (self.little_endian or self.big_endian):
            # $BYTEORD written for another width (e.g. '1,2' with 32-bit values): use its direction.
            order = "<" if self.little_endian else ">"
        else:
            return None
        return np.dtype(f"{order}{kind}{nbytes}")

    def int_masks(self) -> list[int | None]:
        """Per-parameter bit mask of integer data: ``$PnR`` rounded up to a power of 2, minus 1."""
        return [
            range_mask(rng, width) if ptype == "I" else None
            for ptype, width, rng in zip(self.types, self.widths, self.ranges)
        ]


def parse_range(raw: str | None) -> float | None:
    """``$PnR`` as a number (exact if whole), or None if it is not a positive finite number."""
    if raw is None:
        return None
    try:
        value: float = int(raw.strip())
    except ValueError:
        try:
            value = float(raw.strip())
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
    return value if value > 0 else None


def range_mask(rng: float | None, width: int) -> int | None:
    """Bit mask for a ``width``-bit integer parameter with ``$PnR`` = ``rng`` (from parse_range):
    the range rounded up to a power of two, minus 1; None when it masks nothing."""
    if rng is None:
        return None
    bits = max(1, (math.ceil(rng) - 1).bit_length())  # ceil(log2(rng)), exact for large ranges
    return (1 << bits) - 1 if bits < width else None


def parse_byteord(raw: str | None, path: str | None) -> tuple[int, ...]:
    if raw is None:
        raise FCSError(path, "required keyword $BYTEORD is missing")
    try:
        order = tuple(int(p) - 1 for p in raw.replace(" ", "").split(","))
    except ValueError:
        raise FCSError(
            path, f"$BYTEORD={raw!r} is not a list of byte positions like '1,2,3,4'"
        ) from None
    if sorted(order) != list(range(len(order))):
        raise FCSError(path, f"$BYTEORD={raw!r} is not a permutation of 1..{len(order)}")
    return order


def data_format(kw: dict[str, str], path: str | None) -> DataFormat:
    """Read $DATATYPE, $BYTEORD, $PAR and $PnB/$PnR into a DataFormat (FCSError when malformed)."""
    mode = kw.get("$MODE", "L").strip().upper() or "L"
    if mode != "L":
        raise FCSError(
            path,
            f"$MODE={mode!r}: only list-mode data (L) is supported; histogram "
            "modes C and U were removed from the standard in FCS 3.1",
        )
    datatype = kw.get("$DATATYPE", "").strip().upper()
    if datatype not in ("I", "F", "D", "A"):
        raise FCSError(path, f"$DATATYPE={kw.get('$DATATYPE')!r}: expected I, F, D or A")
    n_par = keyword_int(kw, "$PAR", path, minimum=1)
    byte_order = parse_byteord(kw.get("$BYTEORD"), path) if datatype != "A" else (0,)
    widths: list[int] = []
    ranges: list[float | None] = []
    types: list[str] = []
    for i in range(1, n_par + 1):
        ptype = datatype
        if datatype != "A" and f"$P{i}DATATYPE" in kw:
            ptype = kw[f"$P{i}DATATYPE"].strip().upper()
            if ptype not in ("I", "F", "D"):
                raise FCSError(path, f"$P{i}DATATYPE={kw[f'$P{i}DATATYPE']!r}: expected I, F or D")
        types.append(ptype)
        raw = kw.get(f"$P{i}B")
        if raw is None:
            raise FCSError(
                path, f"$PAR={n_par} but keyword $P{i}B (bits of parameter {i}) is missing"
            )
        raw = raw.strip()
        if raw == "*" and datatype == "A":
            widths.append(0)
        else:
            try:
                width = int(raw)
            except ValueError:
                raise FCSError(path, f"$P{i}B={raw!r} is not a number of bits") from None
            if ptype in "FD":
                expected = 32 if ptype == "F" else 64
                if width != expected:
                    raise FCSError(
                        path,
                        f"$P{i}B={width} but parameter {i} is of type {ptype}, "
                        f"which stores {expected}-bit values",
                    )
            elif ptype == "I" and not 1 <= width <= 64:
                raise FCSError(path, f"$P{i}B={width}: integer parameters must be 1 to 64 bits")
            elif datatype == "A" and width <= 0:
                raise FCSError(path, f"$P{i}B={width}: ASCII fields need a positive width or '*'")
            widths.append(width)
        ranges.append(parse_range(kw.get(f"$P{i}R")))
    return DataFormat(datatype, tuple(types), byte_order, tuple(widths), tuple(ranges))
