"""The TEXT segment: delimiter-separated keyword/value pairs (FCS 2.0-3.2).

The first byte of TEXT is the delimiter; a delimiter inside a keyword or value is written twice.
Some writers leave values empty (``/$P3S//``), which the standard forbids and which looks like an
escaped delimiter; :func:`parse_text` detects that case and says so.
"""

from __future__ import annotations

import re
import warnings

from ..errors import FCSError, FCSWarning

_TRAILING_PAD = re.compile(rb"[\s\x00]*\Z")


def decode(raw: bytes) -> str:
    """Decode TEXT bytes: UTF-8 (FCS 3.1+), falling back to Latin-1 for older writers."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _split_escaped(body: bytes, delim: bytes) -> list[bytes]:
    """Split on single delimiters; a run of 2k delimiters is k literal ones, 2k+1 is k + a split."""
    if delim * 2 not in body:
        return body.split(delim)
    tokens: list[bytes] = []
    current = bytearray()
    i, n = 0, len(body)
    d = delim[0]
    while i < n:
        j = body.find(delim, i)
        if j < 0:
            current += body[i:]
            break
        current += body[i:j]
        k = j
        while k < n and body[k] == d:
            k += 1
        run = k - j
        current += delim * (run // 2)
        if run % 2:
            tokens.append(bytes(current))
            current = bytearray()
        i = k
    tokens.append(bytes(current))
    return tokens


def _pairs(tokens: list[bytes]) -> dict[str, str] | None:
    if len(tokens) % 2:
        return None
    out: dict[str, str] = {}
    for k, v in zip(tokens[::2], tokens[1::2]):
        key = decode(k).strip()
        if not key:
            return None
        if key.startswith("$"):
            key = key.upper()
        out.setdefault(key, decode(v))
    return out


def parse_text(
    segment: bytes, path: str | None = None, *, delim: bytes | None = None, what: str = "TEXT"
) -> dict[str, str]:
    """Keywords of one TEXT (or supplemental TEXT) segment.

    ``segment`` starts with the delimiter unless ``delim`` is given (supplemental TEXT may omit it).
    Standard ``$`` keywords are upper-cased; values are returned as in the file.
    """
    if delim is None:
        if not segment:
            raise FCSError(path, f"{what} segment is empty")
        delim = segment[:1]
        body = segment[1:]
    else:
        body = segment[1:] if segment[:1] == delim else segment
    if delim in b"0123456789" or delim.isalpha():
        raise FCSError(
            path,
            f"{what} segment starts with {delim!r}, which cannot be a delimiter: "
            "the HEADER's TEXT offsets do not point at TEXT",
        )
    # Drop padding after the final delimiter (spaces or NULs that some writers count into TEXT).
    last = body.rfind(delim)  # -1: only the leading delimiter, so all of body may be padding
    if _TRAILING_PAD.fullmatch(body, last + 1):
        body = body[: max(last, 0)]
    else:
        body = body.rstrip(b"\x00")
    if not body:
        return {}
    # Splitting on every delimiter gives valid pairs only if each doubled delimiter follows a
    # keyword (an escaped one inside a value leaves an empty keyword): those are empty values.
    keywords = _pairs(body.split(delim)) if delim * 2 in body else None
    if keywords is None:
        keywords = _pairs(_split_escaped(body, delim))
    if keywords is None:
        raise FCSError(
            path, f"{what} segment does not split into keyword/value pairs with delimiter {delim!r}"
        )
    empty = [key for key, value in keywords.items() if value == ""]
    if empty:
        warnings.warn(
            f"{path}: {what} has empty values for {', '.join(empty[:5])}"
            f"{' ...' if len(empty) > 5 else ''} (the standard forbids them; doubled "
            "delimiters after a keyword are read as empty values)",
            FCSWarning,
            stacklevel=3,
        )
    return keywords


_DELIMITER_CHOICES = (b"/", b"|", b"\\", b"\x0c", b"\x1e", b"\x1f", b"\x1d", b"^", b"~")


def build_text(keywords: dict[str, str]) -> bytes:
    """Encode keywords as a TEXT segment (UTF-8), starting and ending with the delimiter.

    The delimiter is chosen among several so that, when possible, no keyword or value contains it;
    otherwise one that no keyword contains and no value starts with, doubled inside values as the
    standard says (ValueError if there is none). Empty values are not allowed.
    """
    encoded = []
    for key, value in keywords.items():
        if not key or key != key.strip():
            raise ValueError(f"FCS keyword {key!r} is empty or has surrounding white space")
        if key.startswith("$"):
            key = key.upper()
        if value == "":
            raise ValueError(f"FCS keyword {key!r} has an empty value; the standard forbids it")
        encoded.append((key.encode("utf-8"), value.encode("utf-8")))
    blob = b"".join(k + v for k, v in encoded)
    keys = b"".join(k for k, _ in encoded)
    # Else a delimiter that may be doubled inside values: not in any keyword (parse_text would
    # read a doubled one after a keyword as an empty value) and starting no value (ambiguous).
    delim = next((d for d in _DELIMITER_CHOICES if d not in blob), None) or next(
        (
            d
            for d in _DELIMITER_CHOICES
            if d not in keys and not any(v.startswith(d) for _, v in encoded)
        ),
        None,
    )
    if delim is None:
        choices = b"".join(_DELIMITER_CHOICES)
        raise ValueError(
            f"FCS keywords use every delimiter choice {choices!r} in a keyword or at "
            "the start of a value"
        )
    parts = [delim]
    for k, v in encoded:
        for token in (k, v):
            parts.append(token.replace(delim, delim * 2))
            parts.append(delim)
    return b"".join(parts)
