"""How results are reported: counting imprecision of the CBC, limit of quantitation, rounding.

A lab sets these under ``reporting:`` in its QC rules file (``cytowhim run --qc FILE``)::

    reporting:
      cbc_cv: {WBC: 0.03, ANC: 0.05, ALC: 0.06, AMC: 0.12}  # analyzer CV per count (fraction)
      bead_cv: 0.0            # CV of the bead lot's beads per tube
      loq_per_uL: 1           # values below print as "<1"
      loq_events: 0           # ... or below the count this many events stand for
      decimals: 0             # cells/µL at or above 10
      decimals_below_10: 1    # cells/µL below 10 (and at or above the LOQ)
      percent_decimals: 2
      ratio_decimals: 2

Full precision is kept in ``results.h5``; ``populations.csv`` and every printed table carry the
reported (rounded, "<LOQ") value, and reference flags are computed on the reported value, so a
printed 359 is never flagged L against a low limit of 359.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from .errors import CytowhimError

__all__ = [
    "DEFAULT_CBC_CV",
    "ReportingRules",
    "ReportingRulesError",
    "UNITS_PER_UL",
]

#: The unit of every absolute count, in ASCII for machine-readable files.
UNITS_PER_UL = "cells/uL"

#: Default analyzer imprecision (coefficient of variation, a fraction) of each CBC count:
#: typical within-run CVs of current 5-part-differential analyzers at normal counts. The
#: relative imprecision grows at low counts; set your analyzer's own (``reporting: cbc_cv:``).
DEFAULT_CBC_CV: Mapping[str, float] = MappingProxyType(
    {"WBC": 0.03, "ANC": 0.05, "ALC": 0.06, "AMC": 0.12}
)


class ReportingRulesError(CytowhimError, ValueError):
    """A lab's reporting rules are invalid or unknown; the message names the key."""


@dataclass(frozen=True)
class ReportingRules:
    """Counting imprecision, limit of quantitation and rounding of reported values."""

    cbc_cv: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_CBC_CV))
    bead_cv: float = 0.0
    loq_per_uL: float = 1.0
    loq_events: int = 0
    decimals: int = 0
    decimals_below_10: int = 1
    percent_decimals: int = 2
    ratio_decimals: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.cbc_cv, Mapping):
            raise ReportingRulesError(
                f"reporting rule cbc_cv must be a mapping WBC/ANC/ALC/AMC -> CV; got {self.cbc_cv!r}"
            )
        cvs = dict(DEFAULT_CBC_CV)
        for name, value in self.cbc_cv.items():
            if str(name) not in DEFAULT_CBC_CV:
                raise ReportingRulesError(
                    f"reporting rule cbc_cv: unknown count {name!r}; known: WBC, ANC, ALC, AMC"
                )
            cvs[str(name)] = _fraction(value, f"cbc_cv {name}")
        object.__setattr__(self, "cbc_cv", MappingProxyType(cvs))
        object.__setattr__(self, "bead_cv", _fraction(self.bead_cv, "bead_cv"))
        loq = _number(self.loq_per_uL, "loq_per_uL")
        object.__setattr__(self, "loq_per_uL", loq)
        for name in ("loq_events", *_DECIMALS):
            value = getattr(self, name)
            if not _is_whole(value) or not 0 <= int(value) <= (
                10**9 if name == "loq_events" else 6
            ):
                limit = "" if name == "loq_events" else " and <= 6"
                raise ReportingRulesError(
                    f"reporting rule {name} must be a whole number >= 0{limit}; got {value!r}"
                )
            object.__setattr__(self, name, int(value))

    @classmethod
    def from_mapping(cls, mapping: Any, source: str | None = None) -> ReportingRules:
        """Rules from a mapping of rule -> value (``reporting:`` of a QC file); unknown keys
        raise :class:`ReportingRulesError` naming them and ``source``."""
        from .qc import rules_from_mapping

        if mapping is None:
            return cls()
        return rules_from_mapping(cls, mapping, source, ReportingRulesError, "reporting")

    # --- values ----------------------------------------------------------------------------

    def limit(self, per_event: float) -> float:
        """The limit of quantitation (cells/µL) of a count where one event stands for
        ``per_event`` cells/µL: the larger of ``loq_per_uL`` and ``loq_events`` events."""
        by_events = self.loq_events * per_event if math.isfinite(per_event) else 0.0
        return max(self.loq_per_uL, by_events)

    def round(self, value: float) -> float:
        """``value`` (cells/µL) rounded as reported: ``decimals`` from 10, else
        ``decimals_below_10``; NaN stays NaN."""
        if not math.isfinite(value):
            return value
        digits = self.decimals if abs(value) >= 10 else self.decimals_below_10
        return _round_half_up(value, digits)

    def reported(self, value: float, per_event: float = math.nan) -> tuple[float, str]:
        """(value as reported, its text): the rounded value and '206', or, below the limit of
        quantitation, the limit and '<1'. ('', NaN) for no value."""
        if value is None or not math.isfinite(value):
            return math.nan, ""
        loq = self.limit(per_event)
        if loq > 0 and value < loq:
            shown = float(f"{loq:.2g}") if loq < 10 else _round_half_up(loq, 0)
            return shown, f"<{shown:g}"
        rounded = self.round(value)
        return rounded, _plain(rounded, self)

    def round_like(self, error: float, value: float) -> float:
        """An error (cells/µL) rounded to the decimals its value is reported with."""
        if not math.isfinite(error):
            return error
        digits = (
            self.decimals if math.isfinite(value) and abs(value) >= 10 else self.decimals_below_10
        )
        return _round_half_up(error, digits)

    def text(self, value: float) -> str:
        """A rounded value (cells/µL) as text, without the limit of quantitation."""
        return "" if not math.isfinite(value) else _plain(self.round(value), self)

    def percent(self, values: pd.Series) -> pd.Series:
        return _round_series(values, self.percent_decimals)

    def ratio(self, value: float) -> str:
        if not math.isfinite(value):
            return ""
        return f"{_round_half_up(value, self.ratio_decimals):.{self.ratio_decimals}f}"


_DECIMALS = ("decimals", "decimals_below_10", "percent_decimals", "ratio_decimals")


def _plain(value: float, rules: ReportingRules) -> str:
    digits = rules.decimals if abs(value) >= 10 else rules.decimals_below_10
    return f"{value:.{digits}f}"


def _round_half_up(value: float, digits: int) -> float:
    """Round half away from zero on the shortest decimal form of ``value``, as people and lab
    systems do (2.5 -> 3 and 0.285 -> 0.29, where Python's round gives 2 and 0.28)."""
    exact = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP)
    return float(exact)


def _round_series(values: pd.Series, digits: int) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    return numbers.map(lambda v: _round_half_up(v, digits) if np.isfinite(v) else v)


def _fraction(value: Any, name: str) -> float:
    number = _number(value, name)
    if number >= 1:
        raise ReportingRulesError(
            f"reporting rule {name} is a fraction (0.05 for 5 %); got {value!r}"
        )
    return number


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ReportingRulesError(f"reporting rule {name} must be a number >= 0; got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ReportingRulesError(
            f"reporting rule {name} must be a number >= 0; got {value!r}"
        ) from None
    if not math.isfinite(number) or number < 0:
        raise ReportingRulesError(f"reporting rule {name} must be a number >= 0; got {value!r}")
    return number


def _is_whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        return False
