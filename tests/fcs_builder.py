"""Build FCS bytes by hand (independently of cytowhim.write_fcs) to test unusual layouts."""

from __future__ import annotations

from pathlib import Path


def build_fcs(
    keywords: dict[str, str],
    data: bytes,
    *,
    version: str = "FCS3.0",
    delim: bytes = b"/",
    header_data: tuple[int, int] | None = None,
    text_start: int = 256,
    blank_header_data: bool = False,
    encoding: str = "utf-8",
) -> bytes:
    """An FCS file: HEADER, TEXT at ``text_start`` with $BEGINDATA/$ENDDATA filled in, DATA."""
    kw = dict(keywords)
    begin = end = 0
    for _ in range(5):
        kw.setdefault("$BEGINDATA", "0")
        kw["$BEGINDATA"], kw["$ENDDATA"] = str(begin), str(end)
        text = delim + b"".join(
            k.encode() + delim + v.encode(encoding).replace(delim, delim * 2) + delim
            for k, v in kw.items()
        )
        b = text_start + len(text)
        e = b + len(data) - 1
        if (b, e) == (begin, end):
            break
        begin, end = b, e
    if header_data is None:
        header_data = (begin, end)
    fields = [text_start, text_start + len(text) - 1, *header_data, 0, 0]
    parts = [f"{v:>8d}".encode() for v in fields]
    if blank_header_data:
        parts[2] = parts[3] = b" " * 8
    header = version.encode() + b"    " + b"".join(parts)
    return header.ljust(text_start, b" ") + text + data


def write(path: Path, *args, **kwargs) -> Path:
    path.write_bytes(build_fcs(*args, **kwargs))
    return path


def params(names: list[str], bits: int | list[int], **extra: list[str]) -> dict[str, str]:
    """$PAR, $PnN, $PnB (and any $Pn<X> given as lists) for ``names``."""
    widths = bits if isinstance(bits, list) else [bits] * len(names)
    kw = {"$PAR": str(len(names))}
    for i, (name, b) in enumerate(zip(names, widths), start=1):
        kw[f"$P{i}N"] = name
        kw[f"$P{i}B"] = str(b)
        kw[f"$P{i}E"] = "0,0"
        for key, values in extra.items():
            if values[i - 1]:
                kw[f"$P{i}{key}"] = values[i - 1]
    return kw
