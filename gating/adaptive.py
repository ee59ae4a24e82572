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
from .gates import Dimension, Gate, PolygonGate, RectangleGate


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, GatingWarning, stacklevel=3)


def smoothed_density(x: np.ndarray, lo: float, hi: float, bins: int = 256, sigma_bins: float = 3.0):
    """(bin centres, histogram density smoothed with a Gaussian kernel) of x on [lo, hi]."""
    counts, edges = np.histogram(x, bins=bins, range=(lo, hi))
    radius = int(4 * sigma_bins)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_bins) ** 2)
    density = np.convolve(counts.astype(np.float64), k / k.sum(), mode="same")
    return (edges[:-1] + edges[1:]) / 2, density


def find_valley(
    x: np.ndarray,
    search: tuple[float, float],
    *,
    min_side_fraction: float = 0.002,
    depth: float = 0.5,
    prefer: str = "deepest",
) -> float | None:
    """The density valley between a negative and a positive population within ``search``.

    Picks the point in ``search`` where the smoothed density is lowest relative to the highest
    density on each side of it. Returns None when there is no valley: less than
    ``min_side_fraction`` of the events on one side, or the dip is not below ``depth`` times the
    lower of the two side peaks. With several valleys, ``prefer`` picks the deepest, the lowest
    (leftmost) or the highest one.
    """
    x = x[np.isfinite(x)]
    if x.size < 50:
        return None
    lo, hi = (float(v) for v in np.quantile(x, [0.0005, 0.9995]))
    if hi <= lo:
        return None
    centres, dens = smoothed_density(x, lo, hi)
    left = np.maximum.accumulate(dens)
    right = np.maximum.accumulate(dens[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = dens / np.minimum(left, right)
    ok = (centres >= search[0]) & (centres <= search[1]) & np.isfinite(score) & (score <= depth)
    inside = np.flatnonzero(ok)
    if inside.size == 0:
        return None
    if prefer in ("lowest", "highest"):
        runs = np.split(inside, np.flatnonzero(np.diff(inside) > 1) + 1)
        inside = runs[0] if prefer == "lowest" else runs[-1]
    elif prefer != "deepest":
        raise GatingError(f"valley preference must be deepest, lowest or highest, got {prefer!r}")
    k = inside[np.argmin(score[inside])]
    threshold = float(centres[k])
    below = np.count_nonzero(x < threshold) / x.size
    if min(below, 1 - below) < min_side_fraction:
        return None
    return threshold


@dataclass(frozen=True)
class ThresholdGate(Gate):
    """Marker + or − split at the density valley of the parent's events, searched within
    ``search`` (on the dimension's scale). ``fallback``: the threshold to use (with a warning)
    when there is no valley; without one, no valley is an error."""

    kind: ClassVar[str] = "threshold"
    dimensions: tuple[Dimension, ...]
    positive: bool = True
    search: tuple[float, float] = (0.2, 0.8)
    fallback: float | None = None
    prefer: str = "deepest"

    def resolve(self, values: np.ndarray) -> RectangleGate:
        dim = self.dimensions[0]
        t = find_valley(values[:, 0], self.search, prefer=self.prefer)
        if t is None:
            if self.fallback is None:
                raise GatingError(
                    f"no density valley for {dim.name} between {self.search[0]} and "
                    f"{self.search[1]} in {values.shape[0]} events: the negative and positive "
                    "populations do not separate here; give the gate a fallback or pin it"
                )
            _warn(
                f"no density valley for {dim.name} in {self.search}: used the fallback "
                f"threshold {self.fallback}"
            )
            t = self.fallback
        bounds = ((t,), (None,)) if self.positive else ((None,), (t,))
        return RectangleGate(self.dimensions, *bounds)

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.resolve(values).contains(values)

    def geometry(self) -> dict[str, Any]:
        return {
            "positive": self.positive,
            "search": list(self.search),
            "fallback": self.fallback,
            "prefer": self.prefer,
        }


@dataclass(frozen=True)
class QuadrantThresholds(Gate):
    """One quadrant of a two-marker split at each marker's density valley (x then y sign)."""

    kind: ClassVar[str] = "auto_quadrant"
    dimensions: tuple[Dimension, ...]
    signs: str = "+-"
    search: tuple[tuple[float, float], tuple[float, float]] = ((0.2, 0.8), (0.2, 0.8))
    fallback: tuple[float | None, float | None] = (None, None)

    def resolve(self, values: np.ndarray) -> RectangleGate:
        mins: list[float | None] = []
        maxs: list[float | None] = []
        for k, sign in enumerate(self.signs):
            half = ThresholdGate(
                (self.dimensions[k],), sign == "+", tuple(self.search[k]), self.fallback[k]
            ).resolve(values[:, k : k + 1])
            mins.append(half.mins[0])
            maxs.append(half.maxs[0])
        return RectangleGate(self.dimensions, tuple(mins), tuple(maxs))

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.resolve(values).contains(values)


@dataclass(frozen=True)
class SingletGate(Gate):
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

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.resolve(values).contains(values)


@dataclass(frozen=True)
class QuantileGate(Gate):
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

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.resolve(values).contains(values)


@dataclass(frozen=True)
class TailGate(Gate):
    """The bright tail: events above median + ``k`` robust SDs of the parent's main (negative)
    population."""

    kind: ClassVar[str] = "tail"
    dimensions: tuple[Dimension, ...]
    k: float = 3.0

    def resolve(self, values: np.ndarray) -> RectangleGate:
        x = values[:, 0][np.isfinite(values[:, 0])]
        if x.size < 20:
            raise GatingError(f"tail gate on {self.dimensions[0].name}: only {x.size} events")
        med = float(np.median(x))
        mad = float(np.median(np.abs(x - med))) * 1.4826
        return RectangleGate(self.dimensions, (med + self.k * mad,), (None,))

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.resolve(values).contains(values)


@dataclass(frozen=True)
class MixtureRegion(Gate):
    """Concrete region of a Gaussian mixture fitted to log-scaled values: events whose most
    probable component is one of ``chosen`` and which lie within ``max_distance2`` (squared
    Mahalanobis) of that component."""

    kind: ClassVar[str] = "mixture"
    dimensions: tuple[Dimension, ...]
    weights: tuple[float, ...]
    means: tuple[tuple[float, ...], ...]  # of log10(values)
    covariances: tuple[tuple[tuple[float, ...], ...], ...]
    chosen: tuple[int, ...]
    max_distance2: float

    def contains(self, values: np.ndarray) -> np.ndarray:
        x = _log_scatter(values)
        if x.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        k = len(self.weights)
        logp = np.empty((x.shape[0], k))
        d2 = np.empty((x.shape[0], k))
        for j, (w, mu, cov) in enumerate(zip(self.weights, self.means, self.covariances)):
            cov = np.asarray(cov)
            d = x - np.asarray(mu)
            d2[:, j] = np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d)
            logp[:, j] = np.log(w) - 0.5 * (d2[:, j] + np.log(np.linalg.det(cov)))
        best = np.argmax(logp, axis=1)
        inside = np.isin(best, self.chosen)
        return inside & (d2[np.arange(x.shape[0]), best] <= self.max_distance2)

    def geometry(self) -> dict[str, Any]:
        return {
            "scale": "log10",
            "weights": list(self.weights),
            "means": [list(m) for m in self.means],
            "covariances": [[list(r) for r in c] for c in self.covariances],
            "chosen": list(self.chosen),
            "max_distance2": self.max_distance2,
        }


def _log_scatter(values: np.ndarray) -> np.ndarray:
    return np.log10(np.clip(np.asarray(values, dtype=np.float64), 1.0, None))


_FITS: dict[tuple, Any] = {}


def _fit_mixture(x: np.ndarray, components: int, seed: int, sample_size: int):
    """A GaussianMixture fitted to (a random subsample of) x; sibling gates on the same parent
    events (lymphocytes, monocytes, granulocytes) share one fit."""
    import hashlib

    from sklearn.mixture import GaussianMixture

    key = (
        hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest(),
        x.shape,
        components,
        seed,
        sample_size,
    )
    if key in _FITS:
        return _FITS[key]
    rng = np.random.default_rng(seed)
    fit_on = (
        x if x.shape[0] <= sample_size else x[rng.choice(x.shape[0], sample_size, replace=False)]
    )
    gm = GaussianMixture(
        components, covariance_type="full", random_state=seed, n_init=1, reg_covar=1e-4
    )
    gm.fit(fit_on)
    if len(_FITS) > 16:
        _FITS.clear()
    _FITS[key] = gm
    return gm


@dataclass(frozen=True)
class ScatterClusterGate(Gate):
    """A scatter population (lymphocytes, monocytes, granulocytes) as the clusters of a Gaussian
    mixture (scikit-learn, on log scatter) fitted to the parent's events.

    ``targets`` are the expected centres of this population and its siblings (in the dimensions'
    units); each fitted cluster belongs to the nearest target (by log-ratio distance, so drift of
    ±30 % is fine) if it is within ``max_offset`` of it; this population is ``targets[index]``.
    """

    kind: ClassVar[str] = "scatter_cluster"
    dimensions: tuple[Dimension, ...]
    targets: tuple[tuple[float, ...], ...]
    index: int = 0
    components: int = 6
    max_distance2: float = 16.0
    max_offset: float = 0.35  # log10 distance: 0.35 = a factor of about 2.2
    required: bool = True  # False: no cluster here means an empty population (with a warning)
    seed: int = 0
    sample_size: int = 20_000

    def resolve(self, values: np.ndarray) -> MixtureRegion:
        x = _log_scatter(values[np.all(np.isfinite(values), axis=1)])
        if x.shape[0] < 10 * self.components:
            raise GatingError(
                f"scatter cluster gate: only {x.shape[0]} events to fit {self.components} clusters"
            )
        gm = _fit_mixture(x, self.components, self.seed, self.sample_size)
        targets = _log_scatter(np.asarray(self.targets, dtype=np.float64))
        dist = np.linalg.norm(gm.means_[:, None, :] - targets[None, :, :], axis=2)
        owner = np.argmin(dist, axis=1)
        mine = (owner == self.index) & (dist[:, self.index] <= self.max_offset)
        if not mine.any():
            names = ", ".join(d.name for d in self.dimensions)
            nearest = int(np.argmin(dist[:, self.index]))
            message = (
                f"scatter cluster gate: no cluster near {list(self.targets[self.index])} on "
                f"({names}); the nearest centre is {np.round(10 ** gm.means_[nearest]).tolist()}"
            )
            if self.required:
                raise GatingError(message)
            _warn(f"{message}: population left empty")
        return MixtureRegion(
            self.dimensions,
            tuple(float(w) for w in gm.weights_),
            tuple(tuple(float(v) for v in m) for m in gm.means_),
            tuple(tuple(tuple(float(v) for v in r) for r in c) for c in gm.covariances_),
            tuple(int(j) for j in np.flatnonzero(mine)),
            self.max_distance2,
        )

    def contains(self, values: np.ndarray) -> np.ndarray:
        return self.resolve(values).contains(values)

    def geometry(self) -> dict[str, Any]:
        return {
            "targets": [list(t) for t in self.targets],
            "index": self.index,
            "components": self.components,
        }
