"""Spillover matrices in TEXT: ``$SPILLOVER`` (FCS 3.1), ``SPILL`` / ``$SPILL`` (BD), ``$COMP``."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from ..errors import FCSWarning

if TYPE_CHECKING:
    import pandas as pd

SPILLOVER_KEYS = ("$SPILLOVER", "SPILL", "$SPILL", "SPILLOVER", "$COMP", "COMP")


def find_spillover_keyword(keywords: dict[str, str]) -> str | None:
    """The keyword that holds the spillover matrix, if any (case-insensitive)."""
    upper = {k.upper(): k for k in keywords}
    for key in SPILLOVER_KEYS:
        if key in upper and keywords[upper[key]].strip() not in ("", "0"):
            return upper[key]
    return None


def parse_spillover(
    text: str, channels: list[str], markers: list[str]
) -> tuple[list[str], np.ndarray]:
    """``n,name1..namen,v11,v12..vnn`` -> (channel names, n x n matrix); ValueError if malformed.

    Names may be ``$PnN`` names, ``$PnS`` markers or 1-based parameter indices; all are mapped to
    channel names.
    """
    parts = [p.strip() for p in text.split(",")]
    n = int(parts[0])
    if n < 1 or len(parts) != 1 + n + n * n:
        raise ValueError(
            f"says {n} parameters, so {1 + n + n * n} comma-separated fields, but has {len(parts)}"
        )
    names = []
    for name in parts[1 : 1 + n]:
        if name in channels:
            names.append(name)
        elif name.isdigit() and 1 <= int(name) <= len(channels):
            names.append(channels[int(name) - 1])
        elif name and markers.count(name) == 1:
            names.append(channels[markers.index(name)])
        else:
            raise ValueError(
                f"names {name!r}, which is neither a channel, a marker nor a parameter "
                "number of this file"
            )
    if len(set(names)) != n:
        raise ValueError(f"names a channel twice: {names}")
    matrix = np.array([float(v) for v in parts[1 + n :]], dtype=np.float64).reshape(n, n)
    if not np.all(np.isfinite(matrix)):
        raise ValueError("has values that are not finite numbers")
    return names, matrix


def spillover_frame(
    keywords: dict[str, str], channels: list[str], markers: list[str], path: str | None
) -> pd.DataFrame | None:
    """The file's spillover matrix as a DataFrame (channels x channels), or None (with a warning
    if the keyword is there but malformed)."""
    key = find_spillover_keyword(keywords)
    if key is None:
        return None
    try:
        names, matrix = parse_spillover(keywords[key], channels, markers)
    except ValueError as exc:
        warnings.warn(
            f"{path}: spillover keyword {key} {exc}; no spillover matrix read",
            FCSWarning,
            stacklevel=3,
        )
        return None
    import pandas as pd

    return pd.DataFrame(matrix, index=pd.Index(names), columns=pd.Index(names))


def format_spillover(frame: pd.DataFrame, channels: list[str] | None = None) -> str:
    """A spillover DataFrame as the FCS 3.1 ``$SPILLOVER`` value (round-trips exactly).

    A name holding a comma, which would split the value, is written as its 1-based parameter number
    in ``channels`` (:func:`parse_spillover` maps it back); ValueError if that is not possible.
    """
    names = []
    for name in map(str, frame.columns):
        if "," in name:
            number = str(channels.index(name) + 1) if channels and name in channels else None
            if number is None or number in channels:
                raise ValueError(
                    f"spillover channel {name!r} holds a comma and cannot be named in "
                    "$SPILLOVER (not by parameter number either)"
                )
            name = number
        names.append(name)
    values = np.asarray(frame, dtype=np.float64).ravel()
    return ",".join([str(len(names)), *names, *(repr(float(v)) for v in values)])
