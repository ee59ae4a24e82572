"""Data-driven gates: they place themselves on each sample's parent events.

Each resolves (``gate.resolve(values)``) to concrete geometry that the result records, so a
technician can see where the gate went; when the data do not fit (no valley between negative and
positive, no cluster near the expected place) it uses the strategy's stated fall-back and says so
(a :class:`~gating.errors.GatingWarning` kept in the result), or stops with a GatingError naming
the gate. Never a silent guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .errors import GatingError, GatingWarning
from .gates import DataDrivenGate, Dimension, PolygonGate, RectangleGate


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, GatingWarning, stacklevel=3)


def smoothed_density(
    x: np.ndarray, lo: float, hi: float, bins: int = 256, sigma_bins: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, histogram density smoothed with a Gaussian kernel) of x on [lo, hi]."""
    counts, edges = np.histogram(x, bins=bins, range=(lo, hi))
    radius = max(1, min(int(4 * sigma_bins), bins // 2 - 1))  # the kernel within the histogram
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_bins) ** 2)
    density = np.convolve(counts.astype(np.float64), k / k.sum(), mode="same")
    return (edges[:-1] + edges[1:]) / 2, density


PREFERENCES = ("deepest", "lowest", "highest")
NO_VALLEY = ("fail", "fallback", "mixture")


def find_valley(
    x: np.ndarray,
    search: tuple[float, float],
    *,
    min_side_fraction: float = 0.002,
    depth: float = 0.5,
    prefer: str = "deepest",
    bandwidth: float | None = None,
    peaks: int | None = None,
) -> float | None:
    """The density valley between a negative and a positive population within ``search``.

    x: the parent's values on the gate's scale (events,). The density is a 256-bin histogram over
    the central 99.9 % of x smoothed with a Gaussian of ``bandwidth`` (scale units; None: 3 bins).
    A point is a valley when its density is at most ``depth`` times the lower of the highest
    densities on its two sides (0.5: half as high; 0.8 accepts shallow dips). ``peaks``: how many
    populations the parent holds (e.g. 3 for CD4 negative / dim / bright); the valleys are then
    the minima between the ``peaks`` highest density maxima, and the depth rule applies to them.
    With several valleys, ``prefer`` picks the deepest, the lowest (leftmost) or the highest one.
    Returns None when there is no valley, or when less than ``min_side_fraction`` of the events
    lie on one side of it.
    """
    if prefer not in PREFERENCES:
        raise GatingError(f"valley preference must be deepest, lowest or highest, got {prefer!r}")
    if not 0 < depth <= 1:
        raise GatingError(f"valley depth must be in (0, 1], got {depth}")
    if bandwidth is not None and not bandwidth > 0:
        raise GatingError(f"valley bandwidth must be > 0 (scale units), got {bandwidth}")
    if peaks is not None and peaks < 2:
        raise GatingError(f"a valley needs at least 2 peaks, got {peaks}")
    x = x[np.isfinite(x)]
    if x.size < 50:
        return None
    lo, hi = (float(v) for v in np.quantile(x, [0.0005, 0.9995]))
    if hi <= lo:
        return None
    bins = 256
    sigma = 3.0 if bandwidth is None else bandwidth / ((hi - lo) / bins)
    centres, dens = smoothed_density(x, lo, hi, bins, sigma)
    left = np.maximum.accumulate(dens)
    right = np.maximum.accumulate(dens[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = dens / np.minimum(left, right)
    ok = (centres >= search[0]) & (centres <= search[1]) & np.isfinite(score) & (score <= depth)
    if peaks is not None:
        ok &= _between_peaks(dens, peaks)
    inside = np.flatnonzero(ok)
    if inside.size == 0:
        return None
    if prefer in ("lowest", "highest"):
        runs = np.split(inside, np.flatnonzero(np.diff(inside) > 1) + 1)
        inside = runs[0] if prefer == "lowest" else runs[-1]
    k = inside[np.argmin(score[inside])]
    # an empty gap between the populations is a run of equally low bins: cut in its middle
    flat = inside[score[inside] <= score[k] + 1e-12]
    runs = np.split(flat, np.flatnonzero(np.diff(flat) > 1) + 1)
    run = next(r for r in runs if k in r)
    threshold = float(centres[run[len(run) // 2]]) if run.size > 1 else float(centres[k])
    below = np.count_nonzero(x < threshold) / x.size
    if min(below, 1 - below) < min_side_fraction:
        return None
    return threshold


def _between_peaks(dens: np.ndarray, peaks: int) -> np.ndarray:
    """Bins at the density minimum between consecutive ones of the ``peaks`` highest local
    maxima (all False when the density has fewer maxima)."""
    interior = (dens[1:-1] > dens[:-2]) & (dens[1:-1] >= dens[2:])
    maxima = np.flatnonzero(interior) + 1
    out = np.zeros(dens.size, dtype=bool)
    if maxima.size < peaks:
        return out
    top = np.sort(maxima[np.argsort(dens[maxima])[::-1][:peaks]])
    for a, b in zip(top[:-1], top[1:]):
        out[a + int(np.argmin(dens[a : b + 1]))] = True
    return out


@dataclass(frozen=True)
class ThresholdGate(DataDrivenGate):
    """Marker + or − split at the density valley of the parent's events, searched within
    ``search`` (on the dimension's scale); ``depth``, ``bandwidth``, ``peaks`` and ``prefer`` as
    in :func:`find_valley`. When there is no valley, ``no_valley`` says what to do: ``'fail'``
    (the population is not gated on this sample), ``'fallback'`` (cut at ``fallback``) or
    ``'mixture'`` (cut where the posteriors of a two-component Gaussian mixture fitted to the
    values in ``search`` cross); the choice is recorded in the result's notes. Without
    ``no_valley``: 'fallback' when a fallback is given, else 'fail'."""

    kind: ClassVar[str] = "threshold"
    dimensions: tuple[Dimension, ...]
    positive: bool = True
    search: tuple[float, float] = (0.2, 0.8)
    fallback: float | None = None
    prefer: str = "deepest"
    depth: float = 0.5
    bandwidth: float | None = None
    peaks: int | None = None
    no_valley: str | None = None

    def __post_init__(self) -> None:
        if self.prefer not in PREFERENCES:
            raise GatingError(
                f"valley preference must be one of {', '.join(PREFERENCES)}, got {self.prefer!r}"
            )
        if self.no_valley is not None and self.no_valley not in NO_VALLEY:
            raise GatingError(
                f"no_valley must be one of {', '.join(NO_VALLEY)}, got {self.no_valley!r}"
            )
        if self.no_valley == "fallback" and self.fallback is None:
            raise GatingError("no_valley: fallback needs a fallback threshold")
        if not (self.search[0] < self.search[1]) or not np.all(np.isfinite(self.search)):
            raise GatingError(
                f"threshold search must be [low, high] with low < high: {self.search}"
            )

    def threshold(self, x: np.ndarray) -> float:
        """The cut on ``x`` (the parent's values on the gate's scale)."""
        dim = self.dimensions[0]
        t = find_valley(
            x,
            self.search,
            prefer=self.prefer,
            depth=self.depth,
            bandwidth=self.bandwidth,
            peaks=self.peaks,
        )
        if t is not None:
            return t
        how = self.no_valley or ("fallback" if self.fallback is not None else "fail")
        where = f"no density valley for {dim.name} between {self.search[0]} and {self.search[1]}"
        if how == "mixture":
            from .clusters import mixture_cut

            cut = mixture_cut(x, self.search)
            if cut is None:
                raise GatingError(
                    f"{where} in {x.shape[0]} events, and no two-component mixture separates "
                    "them there either"
                )
            _warn(f"{where}: cut where a two-component mixture's posteriors cross, at {cut:.4g}")
            return cut
        if how == "fallback":
            _warn(f"{where}: used the fallback threshold {self.fallback}")
            return float(self.fallback)  # type: ignore[arg-type]
        raise GatingError(
            f"{where} in {x.shape[0]} events: the negative and positive populations do not "
            "separate here; give the gate a fallback or pin it"
        )

    def resolve(self, values: np.ndarray) -> RectangleGate:
        return RectangleGate.beyond(self.dimensions, self.threshold(values[:, 0]), self.positive)

    def geometry(self) -> dict[str, Any]:
        return {
            "positive": self.positive,
            "search": list(self.search),
            "fallback": self.fallback,
            "prefer": self.prefer,
            "depth": self.depth,
            "bandwidth": self.bandwidth,
            "peaks": self.peaks,
            "no_valley": self.no_valley,
        }

    def options(self) -> dict[str, Any]:
        """The valley options that differ from the defaults (for YAML)."""
        out: dict[str, Any] = {}
        if self.depth != 0.5:
            out["depth"] = self.depth
        for key in ("bandwidth", "peaks", "no_valley"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class QuadrantThresholds(DataDrivenGate):
    """One quadrant of a two-marker split at each marker's density valley (x then y sign).
    ``per_half``: the y cut is found among the events on this quadrant's side of the x cut
    (e.g. CD38hi among CD24hi B cells: a corner gate), not among all the parent's events.
    ``valley``: threshold options for both markers (depth, bandwidth, peaks, prefer,
    no_valley; see :class:`ThresholdGate`)."""

    kind: ClassVar[str] = "auto_quadrant"
    dimensions: tuple[Dimension, ...]
    signs: str = "+-"
    search: tuple[tuple[float, float], tuple[float, float]] = ((0.2, 0.8), (0.2, 0.8))
    fallback: tuple[float | None, float | None] = (None, None)
    per_half: bool = False
    valley: tuple[tuple[str, Any], ...] = ()

    def _axis(self, k: int) -> ThresholdGate:
        return ThresholdGate(
            (self.dimensions[k],),
            self.signs[k] == "+",
            tuple(self.search[k]),
            self.fallback[k],
            **dict(self.valley),
        )

    def resolve(self, values: np.ndarray) -> RectangleGate:
        x_gate = self._axis(0).resolve(values[:, 0:1])
        y_values = values[:, 1]
        if self.per_half:
            y_values = y_values[x_gate.contains(values[:, 0:1])]
        y_gate = self._axis(1).resolve(y_values[:, None])
        return RectangleGate(
            self.dimensions,
            (x_gate.mins[0], y_gate.mins[0]),
            (x_gate.maxs[0], y_gate.maxs[0]),
        )

    def geometry(self) -> dict[str, Any]:
        return {
            "signs": self.signs,
            "search": [list(v) for v in self.search],
            "fallback": list(self.fallback),
            "per_half": self.per_half,
            **dict(self.valley),
        }


@dataclass(frozen=True)
class SingletGate(DataDrivenGate):
    """Singlets on area vs height (e.g. FSC-A, FSC-H): events whose height/area ratio lies within
    ``width`` robust SDs of the parent's median ratio (doublets have a lower ratio). Resolves to a
    polygon (a wedge through the origin)."""

    kind: ClassVar[str] = "singlets"
    dimensions: tuple[Dimension, ...]
    width: float = 4.0

    def resolve(self, values: np.ndarray) -> PolygonGate:
        area, height = values[:, 0], values[:, 1]
        ok = (area > 0) & np.isfinite(area) & np.isfinite(height)
        if np.count_nonzero(ok) < 50:
            raise GatingError(
                f"singlet gate: only {np.count_nonzero(ok)} events with a positive "
                f"{self.dimensions[0].name}"
            )
        top = np.quantile(area[ok], 0.99)
        main = ok & (area > 0.1 * top)
        ratio = height[main] / area[main]
        med = float(np.median(ratio))
        mad = float(np.median(np.abs(ratio - med))) * 1.4826 or 0.01 * med
        low, high = med - self.width * mad, med + 2 * self.width * mad
        a0, a1 = 0.0, float(area[ok].max()) * 1.01
        return PolygonGate(self.dimensions, ((a0, 0.0), (a1, a1 * low), (a1, a1 * high), (a0, 0.0)))


@dataclass(frozen=True)
class QuantileGate(DataDrivenGate):
    """Events between two quantiles of the parent's values (``upper`` None = no upper bound)."""

    kind: ClassVar[str] = "quantile"
    dimensions: tuple[Dimension, ...]
    lower: float = 0.0
    upper: float | None = None

    def resolve(self, values: np.ndarray) -> RectangleGate:
        x = values[:, 0][np.isfinite(values[:, 0])]
        if x.size == 0:
            raise GatingError(f"quantile gate on {self.dimensions[0].name}: no events")
        lo = float(np.quantile(x, self.lower)) if self.lower > 0 else None
        hi = float(np.quantile(x, self.upper)) if self.upper is not None else None
        if lo is None and hi is None:
            raise GatingError("quantile gate needs lower > 0 or an upper quantile")
        return RectangleGate(self.dimensions, (lo,), (hi,))


TAIL_SIDES = ("upper", "lower")


@dataclass(frozen=True)
class TailGate(DataDrivenGate):
    """A tail beyond the parent's main population, or the main population without it.

    The main population is the density peak of the parent's values (its mode) with a spread
    measured on the side away from the tail (robust SD of the half that the tail does not
    touch, so a large tail does not widen it). The cut lies ``k`` SDs beyond the mode on
    ``side`` ('upper': bright tail, 'lower': dim tail), or, with ``quantile``, at that quantile
    of a normal population with the main population's mode and spread (0.99: 1 % of the main
    population falls past the cut). ``keep='tail'`` keeps the events past the cut; ``'rest'``
    keeps the others: e.g. live cells as the viability dye's main (negative) population without
    its bright tail, ``{tail: {dimension: LiveDead, side: upper, k: 3, keep: rest}}``."""

    kind: ClassVar[str] = "tail"
    dimensions: tuple[Dimension, ...]
    k: float = 3.0
    side: str = "upper"
    quantile: float | None = None
    keep: str = "tail"

    def __post_init__(self) -> None:
        if self.side not in TAIL_SIDES:
            raise GatingError(f"tail side must be 'upper' or 'lower', got {self.side!r}")
        if self.keep not in ("tail", "rest"):
            raise GatingError(f"tail keep must be 'tail' or 'rest', got {self.keep!r}")
        if self.quantile is not None and not 0.5 < self.quantile < 1:
            raise GatingError(f"tail quantile must be between 0.5 and 1, got {self.quantile}")
        if not (np.isfinite(self.k) and self.k > 0):
            raise GatingError(f"tail k must be a positive number of SDs, got {self.k}")

    def cut(self, x: np.ndarray) -> float:
        """Where the tail starts on ``x`` (the parent's values on the gate's scale)."""
        x = x[np.isfinite(x)]
        if x.size < 20:
            raise GatingError(f"tail gate on {self.dimensions[0].name}: only {x.size} events")
        lo, hi = (float(v) for v in np.quantile(x, [0.0005, 0.9995]))
        if hi > lo:
            centres, dens = smoothed_density(x, lo, hi)
            mode = float(centres[int(np.argmax(dens))])
        else:
            mode = float(np.median(x))
        away = x[x <= mode] if self.side == "upper" else x[x >= mode]
        spread = float(np.median(np.abs(away - mode))) * 1.4826 if away.size else 0.0
        if spread == 0:
            spread = float(np.median(np.abs(x - np.median(x)))) * 1.4826
        if spread == 0:
            raise GatingError(
                f"tail gate on {self.dimensions[0].name}: the parent's values have no spread "
                f"(all {x.size} events at {mode:g}): no main population to find a tail beyond"
            )
        if self.quantile is not None:
            from statistics import NormalDist

            z = NormalDist().inv_cdf(self.quantile)
        else:
            z = self.k
        return mode + z * spread if self.side == "upper" else mode - z * spread

    def resolve(self, values: np.ndarray) -> RectangleGate:
        above = (self.side == "upper") == (self.keep == "tail")
        return RectangleGate.beyond(self.dimensions, self.cut(values[:, 0]), above)

    def geometry(self) -> dict[str, Any]:
        return {"side": self.side, "k": self.k, "quantile": self.quantile, "keep": self.keep}


# Gates that resolve from mixtures live in gating.clusters; they are importable from here too.
from .clusters import (  # noqa: E402, F401  (re-exported, documented in gating.clusters)
    ClusterGate,
    MixtureCutGate,
    MixtureRegion,
    ScatterClusterGate,
    _fit_mixture,
    _log_scatter,
)

__all__ = [  # the gates of gating.clusters are importable from here too, documented there
    "QuadrantThresholds",
    "QuantileGate",
    "SingletGate",
    "TailGate",
    "ThresholdGate",
    "find_valley",
    "smoothed_density",
]
