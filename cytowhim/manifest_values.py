"""Values written in manifest cells: counts with their units, numbers in either decimal
convention, ages, dates and times (:mod:`cytowhim.manifest` reads the table around them)."""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

MAX_AGE = 130.0
ACCEPTED_UNITS = (
    "cells/uL (/uL, cells/µL, /mm3), x10^3/uL (10^3/uL, 10³/µL, K/uL, thousand/uL), "
    "x10^9/L (10^9/L, G/L), cells/mL (/mL), x10^6/L (10^6/L)"
)


@dataclass(frozen=True)
class Unit:
    """A count unit: its short ASCII label and the factor that turns its values into cells/µL."""

    label: str
    factor: float


CELLS_PER_UL = Unit("cells/uL", 1.0)
_UNIT_FORMS = (  # matched against the text lower-cased, without spaces, µ as u, ³ as ^3
    (re.compile(r"(cells?)?/(ul|mm\^?3)"), CELLS_PER_UL),
    (re.compile(r"(x?10\^3|k|thousands?)(cells?)?/(ul|mm\^?3)"), Unit("x10^3/uL", 1000.0)),
    (re.compile(r"x?10\^9(cells?)?/l"), Unit("x10^9/L", 1000.0)),
    (re.compile(r"(cells?)?/ml"), Unit("cells/mL", 0.001)),
    (re.compile(r"x?10\^6(cells?)?/l"), Unit("x10^6/L", 0.001)),
)
_GIGA_PER_L = ("G/L", "G/l", "Gpt/L", "Gpt/l")  # G/L, not g/L: grams per litre is no count
_UNIT_SPELLINGS = str.maketrans({"µ": "u", "μ": "u", "×": "x", "*": "x", "³": "^3", "⁶": "^6"})


def parse_unit(text: str) -> Unit | None:
    """The count unit ``text`` states (a header's unit part or a ``units`` cell), None if blank.

    ValueError, listing the accepted units, for anything else; never a guess."""
    raw = unbracket(str(text))
    if not raw:
        return None
    key = re.sub(r"\s+", "", raw.translate(_UNIT_SPELLINGS).replace("⁹", "^9"))
    if key in _GIGA_PER_L:
        return Unit("x10^9/L", 1000.0)
    for pattern, unit in _UNIT_FORMS:
        if pattern.fullmatch(key.lower()):
            return unit
    raise ValueError(f"unit {raw!r} is not understood; accepted units: {ACCEPTED_UNITS}")


_SPACES = str.maketrans({"\u00a0": " ", "\u2009": " ", "\u202f": " "})
_NUMBER = re.compile(r"([+-]?)([0-9., ]*[0-9][0-9., ]*)([eE][+-]?[0-9]+)?")


def parse_number(text: str, decimal: str | None = None) -> float:
    """The number written in ``text``, ``decimal`` being the declared decimal separator.

    ``decimal=None``: ``.`` is the decimal point and any comma is refused as ambiguous.
    ``'.'``: a comma may only group thousands. ``','``: the comma is the decimal point and ``.``
    may only group thousands. Spaces (also no-break and thin spaces) may group thousands in any
    mode. Grouping must be correct: 1 to 3 leading digits (not starting with 0), then groups of
    three. ValueError, saying what is wrong, for anything else: a string is read as the number it
    writes in the declared convention or not at all."""
    if decimal not in (None, ".", ","):
        raise ValueError(f"decimal separator {decimal!r} is not '.' or ','")
    match = _NUMBER.fullmatch(str(text).strip().translate(_SPACES))
    if not match:
        raise ValueError("is not a number")
    sign, mantissa, exponent = match.groups()
    if decimal is None and "," in mantissa:
        raise ValueError(
            "has an ambiguous comma (a decimal comma or a thousands separator?); declare the "
            "decimal separator: a 'decimal' column (',' or '.') or --decimal , (read_manifest(..., decimal=','))"
        )
    point = decimal or "."
    grouping = {" ", ","} if point == "." else {" ", "."}
    whole, _, fraction = mantissa.partition(point)
    if point in fraction:
        raise ValueError(f"has more than one decimal separator {point!r}")
    if point in mantissa and not (fraction.isdigit() and fraction.isascii()):
        raise ValueError(f"needs digits (and nothing else) after the decimal separator {point!r}")
    separators = set(whole) - set("0123456789")
    if separators:
        sep = separators.pop()
        groups = whole.split(sep)
        if (
            separators
            or sep not in grouping
            or not re.fullmatch(r"[1-9][0-9]{0,2}", groups[0])
            or not all(re.fullmatch(r"[0-9]{3}", g) for g in groups[1:])
        ):
            shown = "1,176 or 12,500.5" if point == "." else "1.176,5"
            raise ValueError(
                f"is not a number with decimal separator {point!r}: "
                f"{' or '.join(map(repr, sorted(grouping)))} may only group thousands in threes "
                f"(e.g. {shown} or 1 176)"
            )
        whole = "".join(groups)
    if not whole and not fraction:
        raise ValueError("is not a number")
    return float(f"{sign}{whole or '0'}.{fraction or '0'}{exponent or ''}")


def age_in_years(birth: date, draw: date) -> float:
    """Age at ``draw`` in years: completed years plus the elapsed fraction of the current year of
    life (calendar arithmetic; a 29 February birthday falls on 28 February in common years)."""
    if draw < birth:
        raise ValueError(f"draw date {draw} is before the birth date {birth}")
    years = draw.year - birth.year
    if _anniversary(birth, birth.year + years) > draw:
        years -= 1
    last = _anniversary(birth, birth.year + years)
    following = _anniversary(birth, birth.year + years + 1)
    return years + (draw - last).days / (following - last).days


def _anniversary(birth: date, year: int) -> date:
    try:
        return birth.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 2, 28)


_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")


def parse_date(value: Any) -> date:
    """The date an ISO 8601 cell gives (a time after it is ignored); workbook dates as they
    are. ValueError otherwise."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    match = _ISO_DATE.fullmatch(cell_text(value))
    if match:
        try:
            return date(*map(int, match.groups()))
        except ValueError:
            pass
    raise ValueError("is not a date in ISO 8601 form (YYYY-MM-DD)")


def unbracket(text: str) -> str:
    """``text`` without one pair of brackets around it: '(x10^3/uL)' -> 'x10^3/uL'."""
    text = text.strip()
    if len(text) >= 2 and text[0] in "([" and text[-1] in ")]":
        text = text[1:-1].strip()
    return text


def cell_text(value: Any) -> str:
    """A cell as stripped text ('' when empty; workbook dates in ISO 8601)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def cell_number(value: Any, decimal: str | None) -> float:
    """A cell as a number: workbook numbers as they are, text through :func:`parse_number`."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return parse_number(cell_text(value), decimal)


_ISO_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}:?\d{2})?"
)


def parse_time(value: Any) -> datetime:
    """The date and time of an ISO 8601 cell (``2026-06-01T11:00``, ``2026-06-01 11:00:30``, with
    an optional offset ``+02:00`` or ``Z``); workbook date-times as they are. Aware when an
    offset is given, naive (the lab's wall clock) otherwise. ValueError otherwise."""
    if isinstance(value, datetime):
        return value
    text = cell_text(value)
    match = _ISO_TIME.fullmatch(text)
    if match:
        day, clock, offset = match.groups()
        if offset == "Z":
            offset = "+00:00"
        elif offset and ":" not in offset:
            offset = offset[:3] + ":" + offset[3:]
        try:
            return datetime.fromisoformat(f"{day}T{clock}{offset or ''}")
        except ValueError:
            pass
    raise ValueError("is not a date and time in ISO 8601 form (YYYY-MM-DDTHH:MM)")
