"""Absolute counts (cells/µL) from gated event counts.

Two ways, as in ``docs/CLINICAL.md``:

- dual platform (flow + hematology analyzer): ``events / base_events * CBC(base)``, where the base is
  the population the CBC counts (:data:`BASE_TO_CBC`);
- single platform (counting beads in the tube): ``events / bead_events * beads_per_tube /
  volume_uL``.

Every absolute count comes with its Poisson counting error (:func:`counting_error`). The table
functions fill ``percent_of_base``, ``absolute_per_uL`` and ``absolute_error_per_uL`` of the
population table and write a note in its ``qc`` column where a count cannot be made; they never
drop rows.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from .errors import CytowhimError
from .qc import _blank, add_qc_note

__all__ = [
    "BASE_TO_CBC",
    "CBC_COUNTS",
    "CountsError",
    "MissingColumnError",
    "NegativeCountError",
    "absolute_counts",
    "absolute_counts_beads",
    "counting_error",
    "dual_platform",
    "single_platform",
]

#: The CBC counts, cells/µL: white cells, neutrophils, lymphocytes, monocytes.
CBC_COUNTS: tuple[str, ...] = ("WBC", "ANC", "ALC", "AMC")

#: Base population (as the population table names it) -> the CBC count of that population.
BASE_TO_CBC: Mapping[str, str] = MappingProxyType(
    {
        "lymphocytes": "ALC",
        "monocytes (scatter)": "AMC",
        "neutrophils": "ANC",
        "CD45+ leukocytes": "WBC",
    }
)

ArrayLike = Any  # a number, a sequence of numbers, a numpy array or a pandas Series


class CountsError(CytowhimError, ValueError):
    """Inputs to an absolute count are unusable; the message names the input (and the row)."""


class NegativeCountError(CountsError):
    """An event count, CBC count, bead count or volume is negative (or infinite)."""


class MissingColumnError(CountsError):
    """The population table lacks a column a count needs."""


# ---------------------------------------------------------------------------------------------
# formulas


def dual_platform(events: ArrayLike, base_events: ArrayLike, base_count_per_uL: ArrayLike):
    """Dual-platform absolute count, cells/µL: ``events / base_events * base_count_per_uL``.

    ``base_count_per_uL`` is the CBC count of the base population (e.g. ALC for lymphocytes).
    Scalars give a float, arrays a numpy array (a pandas Series keeps its index); NaN where
    ``base_events`` is 0 or an input is NaN. Raises :class:`NegativeCountError` naming the input
    that is negative or infinite.
    """
    e, b, c = (
        _checked(v, n, "dual_platform")
        for v, n in (
            (events, "events"),
            (base_events, "base_events"),
            (base_count_per_uL, "base_count_per_uL"),
        )
    )
    return _like(events, _per_event(b, c) * e)


def single_platform(
    events: ArrayLike, bead_events: ArrayLike, beads_per_tube: ArrayLike, volume_uL: ArrayLike
):
    """Single-platform (counting beads) absolute count, cells/µL:
    ``events / bead_events * beads_per_tube / volume_uL``.

    ``beads_per_tube`` is the bead lot's count of beads in the tube and ``volume_uL`` the sample
    volume pipetted into it (µL, > 0). NaN where ``bead_events`` is 0. Raises
    :class:`NegativeCountError` naming the input that is negative, infinite (or a zero volume).
    """
    e, b, n, v = (
        _checked(x, name, "single_platform")
        for x, name in (
            (events, "events"),
            (bead_events, "bead_events"),
            (beads_per_tube, "beads_per_tube"),
            (volume_uL, "volume_uL"),
        )
    )
    if np.any(v == 0):
        raise NegativeCountError("single_platform: volume_uL must be > 0 µL; got 0")
    return _like(events, _per_event(b, n / v) * e)


def counting_error(
    events: ArrayLike,
    base_events: ArrayLike,
    base_count_per_uL: ArrayLike,
    *,
    nested: ArrayLike = False,
    count_cv: ArrayLike = 0.0,
):
    """Counting error (1 SD, cells/µL) of an absolute count ``events / base_events * count``.

    Relative variance, summed over independent sources:

    - ``nested=True`` (the population is gated inside its base, e.g. CD4+ T cells within the
      lymphocytes the ALC counts): the fraction ``p = events / base_events`` is binomial,
      relative variance ``(1 - p) / events = 1/events - 1/base_events`` (0 for the base row);
    - ``nested=False`` (independent counts, e.g. cells and counting beads): both counts are
      Poisson, relative variance ``1/events + 1/base_events``;
    - ``count_cv``: the coefficient of variation of ``base_count_per_uL`` itself (the analyzer's
      imprecision of the ALC, AMC ... or the bead lot's), adds ``count_cv**2``.

    error = absolute x sqrt(sum). With 0 events the count is below detection: the error reported
    is the one-event resolution ``base_count_per_uL / base_events``. NaN where ``base_events`` is 0.
    For counting beads pass ``bead_events`` as ``base_events`` and ``beads_per_tube / volume_uL``
    as ``base_count_per_uL`` (``nested=False``).
    """
    e, b, c = (
        _checked(v, n, "counting_error")
        for v, n in (
            (events, "events"),
            (base_events, "base_events"),
            (base_count_per_uL, "base_count_per_uL"),
        )
    )
    cv = _checked(count_cv, "count_cv", "counting_error")
    inside = np.asarray(nested, dtype=bool)
    resolution = _per_event(b, c)
    with np.errstate(divide="ignore", invalid="ignore"):
        counting = np.where(inside, np.maximum(1.0 / e - 1.0 / b, 0.0), 1.0 / e + 1.0 / b)
        relative = np.sqrt(counting + cv**2)
        error = np.where(e > 0, resolution * e * relative, resolution)
    return _like(events, np.where(np.isnan(e), np.nan, error))


def _checked(value: ArrayLike, name: str, func: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise CountsError(f"{func}: {name} must be numbers; got {value!r}") from None
    bad = (arr < 0) | np.isinf(arr)
    if np.any(bad):
        first = arr[bad].flat[0] if arr.ndim else float(arr)
        where = "" if arr.ndim == 0 else f" (at position {int(np.flatnonzero(bad.ravel())[0])})"
        raise NegativeCountError(f"{func}: {name} must be a finite number >= 0; got {first}{where}")
    return arr


def _per_event(base_events: np.ndarray, base_count: np.ndarray) -> np.ndarray:
    """Cells/µL that one event stands for; NaN where there are no base events."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base_events > 0, base_count / base_events, np.nan)


def _like(template: ArrayLike, result: np.ndarray):
    if isinstance(template, pd.Series) and result.shape == template.shape:
        return pd.Series(result, index=template.index)
    return float(result) if result.ndim == 0 else result


# ---------------------------------------------------------------------------------------------
# population tables


def absolute_counts(
    table: pd.DataFrame,
    cbc: Mapping[str, float] | pd.DataFrame,
    bases: Mapping[str, str] = BASE_TO_CBC,
    cbc_cv: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The population table with ``percent_of_base``, ``absolute_per_uL`` and
    ``absolute_error_per_uL`` (cells/µL) filled by the dual-platform formula.

    ``table`` needs ``events``, ``base`` and ``base_events``. ``cbc`` maps 'WBC', 'ANC', 'ALC',
    'AMC' to cells/µL for the specimen(s) in the table, or is a DataFrame with a ``specimen``
    column and those columns (one CBC per specimen, e.g. the manifest). ``bases`` maps each base
    population to its CBC count. ``cbc_cv``: the analyzer's CV per CBC count (default
    :data:`~cytowhim.reporting.DEFAULT_CBC_CV`), part of the counting error.

    A count must be nested in its base. With a boolean ``nested`` column (``cytowhim run``
    fills it from the gating tree), nested rows get the binomial error; a row that is not
    gated inside its base is counted from its ``events_in_base`` (its events that lie inside
    the base), with a 'not nested' note in ``qc``. Without a ``nested`` column only the base
    row itself is taken as nested and the others get the (larger) Poisson error.

    A row whose count cannot be made keeps NaN and gets a note in ``qc`` ('no CBC ALC', "no CBC
    count for base 'x'", "no events for base 'x'"); rows with an empty base are left NaN without
    a note. Returns a copy; never drops rows.
    """
    from .reporting import DEFAULT_CBC_CV

    _require(table, ("events", "base", "base_events"), "absolute_counts")
    cvs = {**DEFAULT_CBC_CV, **(cbc_cv or {})}
    out = table.copy()
    events = _table_column(out, "events")
    base_events = _table_column(out, "base_events")
    cbc_of = _cbc_lookup(cbc)
    specimens = out["specimen"] if "specimen" in out.columns else pd.Series([None] * len(out))
    nested = _nested(out)
    counted = events.copy()
    recounted = np.zeros(len(out), dtype=bool)  # not nested: counted from events inside the base
    if "events_in_base" in out.columns:
        inside = _table_column(out, "events_in_base")
        recounted = ~nested & ~np.isnan(inside)
        counted[recounted] = inside[recounted]
    count = np.full(len(out), np.nan)
    cv = np.zeros(len(out))
    notes = _qc_texts(out)
    for i, (base, spec) in enumerate(zip(out["base"], specimens)):
        if _blank(base):
            continue
        name = bases.get(base)
        if name is None:
            notes[i] = add_qc_note(notes[i], f"no CBC count for base '{base}'")
            continue
        value = cbc_of(spec).get(name)
        if value is None or math.isnan(value):
            notes[i] = add_qc_note(notes[i], f"no CBC {name}")
            continue
        count[i] = value
        cv[i] = cvs.get(name, 0.0)
        if math.isnan(base_events[i]):
            notes[i] = add_qc_note(notes[i], f"no events for base '{base}'")
        elif recounted[i]:
            notes[i] = add_qc_note(
                notes[i],
                f"counted from the {counted[i]:.0f} of its {events[i]:.0f} events inside "
                f"its base '{base}'",
            )
    out["percent_of_base"] = _percent(counted, base_events)
    out["absolute_per_uL"] = dual_platform(counted, base_events, count)
    out["absolute_error_per_uL"] = counting_error(
        counted, base_events, count, nested=nested | recounted, count_cv=cv
    )
    out["qc"] = notes
    return out


def _nested(table: pd.DataFrame) -> np.ndarray:
    """Whether each row's population lies inside its base: the ``nested`` column, else only
    the base row itself."""
    if "nested" in table.columns:
        return np.array([v is True or v == 1 or str(v).lower() == "true" for v in table["nested"]])
    if "population" not in table.columns:
        return np.zeros(len(table), dtype=bool)
    return (table["population"].astype(str) == table["base"].astype(str)).to_numpy(dtype=bool)


def absolute_counts_beads(
    table: pd.DataFrame,
    bead_events: float | Mapping,
    beads_per_tube: float | Mapping,
    volume_uL: float | Mapping,
    bead_cv: float = 0.0,
) -> pd.DataFrame:
    """The population table with ``absolute_per_uL`` and ``absolute_error_per_uL`` (cells/µL)
    filled by the single-platform (counting beads) formula; the error is Poisson on cells and
    beads, plus ``bead_cv`` (the lot's beads-per-tube CV, a fraction).

    Each of ``bead_events`` (bead events gated in the tube), ``beads_per_tube`` (the lot's beads
    per tube) and ``volume_uL`` (sample µL in the tube) is one number for every row, or a mapping
    (dict or Series) keyed by ``(specimen, tube)`` or by tube. A row with no value gets NaN and a
    ``qc`` note ('no bead_events for tube T'); so does a tube with 0 bead events ('no bead
    events'). ``percent_of_base`` is filled too when the table has ``base_events``. Returns a copy.
    """
    _require(table, ("events",), "absolute_counts_beads")
    out = table.copy()
    events = _table_column(out, "events")
    notes = _qc_texts(out)
    specimens = out["specimen"] if "specimen" in out.columns else pd.Series([None] * len(out))
    tubes = out["tube"] if "tube" in out.columns else pd.Series([None] * len(out))
    given = {"bead_events": bead_events, "beads_per_tube": beads_per_tube, "volume_uL": volume_uL}
    values = {name: np.full(len(out), np.nan) for name in given}
    for i, (spec, tube) in enumerate(zip(specimens, tubes)):
        for name, source in given.items():
            value = _per_tube(source, spec, tube)
            if value is None or math.isnan(value):
                notes[i] = add_qc_note(notes[i], f"no {name} for tube {tube}")
                continue
            if value < 0 or math.isinf(value) or (name == "volume_uL" and value == 0):
                raise NegativeCountError(
                    f"absolute_counts_beads: {_where(out, i)}: {name} must be a finite number "
                    f"{'> 0' if name == 'volume_uL' else '>= 0'}; got {value}"
                )
            values[name][i] = value
        if values["bead_events"][i] == 0:
            notes[i] = add_qc_note(notes[i], f"no bead events in tube {tube}")
    concentration = values["beads_per_tube"] / values["volume_uL"]
    if "base_events" in out.columns:
        out["percent_of_base"] = _percent(events, _table_column(out, "base_events"))
    out["absolute_per_uL"] = dual_platform(events, values["bead_events"], concentration)
    out["absolute_error_per_uL"] = counting_error(
        events, values["bead_events"], concentration, count_cv=bead_cv
    )
    out["qc"] = notes
    return out


def _require(table: pd.DataFrame, columns: tuple[str, ...], func: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise CountsError(f"{func}: expected a pandas DataFrame; got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise MissingColumnError(
            f"{func}: the population table has no column {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(str, table.columns))})"
        )


def _table_column(table: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column as floats; a negative, infinite or non-numeric value is named by row."""
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = (values < 0) | np.isinf(values) | (np.isnan(values) & table[column].notna().to_numpy())
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise NegativeCountError(
            f"{_where(table, i)}: {column} must be a number >= 0; got {table[column].iloc[i]!r}"
        )
    return values


def _where(table: pd.DataFrame, i: int) -> str:
    row = table.iloc[i]
    parts = [
        f"{key} {row[key]!r}" if key == "population" else f"{key} {row[key]}"
        for key in ("specimen", "tube", "population")
        if key in table.columns
    ]
    return ", ".join(parts) or f"row {i + 1}"


def _cbc_lookup(cbc: Mapping[str, float] | pd.DataFrame):
    """A function specimen -> {CBC name: cells/µL}, values checked."""
    if isinstance(cbc, pd.DataFrame):
        if "specimen" not in cbc.columns:
            raise MissingColumnError(
                "absolute_counts: a CBC table needs a 'specimen' column and WBC/ANC/ALC/AMC columns"
            )
        per_specimen: dict[Hashable, dict[str, float]] = {}
        for rec in cbc.to_dict("records"):
            spec = rec["specimen"]
            known = per_specimen.setdefault(spec, {})
            for name in CBC_COUNTS:
                if name not in rec:
                    continue
                value = _cbc_value(rec[name], name, spec)
                if math.isnan(value):
                    continue
                if name in known and not math.isclose(known[name], value, rel_tol=1e-9):
                    raise CountsError(
                        f"absolute_counts: specimen {spec} has two CBC {name} values, "
                        f"{known[name]:g} and {value:g} cells/µL"
                    )
                known[name] = value
        return lambda spec: per_specimen.get(spec, {})
    if not isinstance(cbc, Mapping):
        raise CountsError(
            "absolute_counts: cbc must be a mapping 'WBC'/'ANC'/'ALC'/'AMC' -> cells/µL or a "
            f"DataFrame with a specimen column; got {type(cbc).__name__}"
        )
    checked = {name: _cbc_value(value, name, None) for name, value in cbc.items()}
    return lambda spec: checked


def _cbc_value(value: Any, name: str, specimen: Hashable | None) -> float:
    whose = f" of specimen {specimen}" if specimen is not None else ""
    if value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CountsError(
            f"absolute_counts: CBC {name}{whose} is not a number: {value!r}"
        ) from None
    if number < 0 or math.isinf(number):
        raise NegativeCountError(
            f"absolute_counts: CBC {name}{whose} must be a finite count >= 0 cells/µL; got {value!r}"
        )
    return number


def _per_tube(source: float | Mapping, specimen: Hashable, tube: Hashable) -> float | None:
    if isinstance(source, (Mapping, pd.Series)):
        value = source.get((specimen, tube))
        if value is None:
            value = source.get(tube)
        if value is None:
            return None
    else:
        value = source
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CountsError(
            f"absolute_counts_beads: tube {tube} of specimen {specimen}: {value!r} is not a number"
        ) from None


def _percent(events: np.ndarray, base_events: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base_events > 0, events / base_events * 100.0, np.nan)


def _qc_texts(table: pd.DataFrame) -> list[str]:
    if "qc" not in table.columns:
        return [""] * len(table)
    return ["" if _blank(v) else str(v) for v in table["qc"]]
