"""Data-driven gates fitted as mixtures: a 1-D two-component cut for markers whose positive
cells form a shoulder rather than a second peak (:class:`MixtureCutGate`), a 2-D cluster on any
scale that resolves to an ellipse (:class:`ClusterGate`), and the scatter populations of a
Gaussian mixture on log scatter (:class:`ScatterClusterGate`, resolving to
:class:`MixtureRegion`).

Mixtures are fitted with scikit-learn's GaussianMixture on at most ``sample_size`` events
(default 20,000: the fitted means and covariances then vary by well under 1 % of the spread
between subsamples, far less than the gates' own uncertainty), with a fixed seed, so a file
always gets the same gate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .errors import GatingError
from .gates import DataDrivenGate, Dimension, EllipsoidGate, Gate, PolygonGate, RectangleGate


def _warn(message: str) -> None:
    import warnings

    from .errors import GatingWarning

    warnings.warn(message, GatingWarning, stacklevel=3)


# --- 1-D: a two-component mixture cut -------------------------------------------------------------


def _fit_1d(x: np.ndarray, seed: int, sample_size: int):
    """Two-component GaussianMixture fitted to x (events,): (weights, means, sds), means ordered."""
    return _components(_fit_mixture(x[:, None], 2, seed, sample_size))


def _components(gm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(gm.means_[:, 0])
    w = gm.weights_[order]
    m = gm.means_[order, 0]
    s = np.sqrt(gm.covariances_[order, 0, 0])
    return w, m, s


def _crossing(w, m, s) -> float | None:
    """Where the posteriors of the two components cross between their means (None if they
    do not: one component dominates everywhere between them)."""
    grid = np.linspace(m[0], m[1], 2049)
    logp = [np.log(w[k]) - np.log(s[k]) - 0.5 * ((grid - m[k]) / s[k]) ** 2 for k in range(2)]
    diff = logp[0] - logp[1]
    change = np.flatnonzero(np.diff(np.sign(diff)) != 0)
    if change.size == 0:
        return None
    i = int(change[0])
    a, b = diff[i], diff[i + 1]
    return float(grid[i] + (grid[i + 1] - grid[i]) * a / (a - b))


def mixture_cut(
    x: np.ndarray,
    search: tuple[float, float] | None = None,
    *,
    quantile: float | None = None,
    seed: int = 0,
    sample_size: int = 20_000,
) -> float | None:
    """The cut between the two components of a Gaussian mixture fitted to x (events,): where
    their posteriors cross, or (``quantile``) at that lower quantile of the upper (positive)
    component (0.01: 1 % of the positives fall below the cut). None when the cut is not within
    ``search`` or there are too few events."""
    x = x[np.isfinite(x)]
    if x.size < 50:
        return None
    w, m, s = _fit_1d(x, seed, sample_size)
    if quantile is not None:
        from statistics import NormalDist

        cut = float(m[1] + NormalDist().inv_cdf(quantile) * s[1])
    else:
        crossing = _crossing(w, m, s)
        if crossing is None:
            return None
        cut = crossing
    if search is not None and not search[0] <= cut <= search[1]:
        return None
    return cut


@dataclass(frozen=True)
class MixtureCutGate(DataDrivenGate):
    """Marker + or − split by a two-component Gaussian mixture fitted to the parent's values on
    the gate's scale: for a positive population that is a shoulder on the negative one (IgD or
    CD27 on B cells, CD16 on monocytes), where a density valley does not exist. The cut is where
    the two components' posteriors cross, or with ``quantile`` at that quantile of the positive
    component; it must fall within ``search`` (else ``fallback`` with a note, or the population
    is not gated). Resolves to a range."""

    kind: ClassVar[str] = "mixture_cut"
    dimensions: tuple[Dimension, ...]
    positive: bool = True
    search: tuple[float, float] = (0.2, 0.8)
    quantile: float | None = None
    fallback: float | None = None
    seed: int = 0
    sample_size: int = 20_000

    def __post_init__(self) -> None:
        if self.quantile is not None and not 0 < self.quantile < 1:
            raise GatingError(f"mixture cut quantile must be between 0 and 1, got {self.quantile}")
        if not self.search[0] < self.search[1]:
            raise GatingError(f"mixture cut search must be [low, high], got {self.search}")

    def resolve(self, values: np.ndarray) -> RectangleGate:
        x = values[:, 0]
        cut = mixture_cut(
            x, self.search, quantile=self.quantile, seed=self.seed, sample_size=self.sample_size
        )
        if cut is None:
            where = (
                f"mixture cut on {self.dimensions[0].name}: the two components' cut does not "
                f"fall between {self.search[0]} and {self.search[1]}"
            )
            if self.fallback is None:
                raise GatingError(f"{where} ({np.isfinite(x).sum()} events); give a fallback")
            _warn(f"{where}: used the fallback threshold {self.fallback}")
            cut = float(self.fallback)
        return RectangleGate.beyond(self.dimensions, cut, self.positive)

    def geometry(self) -> dict[str, Any]:
        return {
            "positive": self.positive,
            "search": list(self.search),
            "quantile": self.quantile,
            "fallback": self.fallback,
        }


# --- 2-D: a cluster resolving to an ellipse -------------------------------------------------------


@dataclass(frozen=True)
class ClusterGate(DataDrivenGate):
    """A cluster on two dimensions (on their own scales: linear scatter, or transformed
    fluorescence) as an ellipse: a Gaussian mixture of ``components`` is fitted to the parent's
    events, the component whose mean lies nearest ``at`` (within ``max_offset``, in the
    dimensions' units; each axis scaled by ``scale`` when given) is this population, and the gate
    is that component's ellipse holding ``quantile`` of it (0.95: the chi-square quantile, as
    flowClust's lymphocyte gate does). Resolves to an :class:`~gating.gates.EllipsoidGate` that any
    Gating-ML reader can apply."""

    kind: ClassVar[str] = "cluster"
    dimensions: tuple[Dimension, ...]
    at: tuple[float, float]
    quantile: float = 0.95
    components: int = 4
    max_offset: float | None = None
    seed: int = 0
    sample_size: int = 20_000

    def __post_init__(self) -> None:
        if len(self.dimensions) != 2 or len(self.at) != 2:
            raise GatingError("a cluster gate has two dimensions and an expected location [x, y]")
        if not 0 < self.quantile < 1:
            raise GatingError(f"cluster quantile must be between 0 and 1, got {self.quantile}")
        if self.components < 1:
            raise GatingError(f"a cluster gate needs at least 1 component, got {self.components}")

    def resolve(self, values: np.ndarray) -> EllipsoidGate:
        x = values[np.all(np.isfinite(values), axis=1)]
        if x.shape[0] < 20 * self.components:
            raise GatingError(
                f"cluster gate: only {x.shape[0]} events to fit {self.components} components"
            )
        gm = _fit_mixture(x, self.components, self.seed, self.sample_size)
        spread = np.std(x, axis=0)
        spread[spread == 0] = 1.0
        target = np.asarray(self.at, dtype=np.float64)
        dist = np.linalg.norm((gm.means_ - target) / spread, axis=1)
        j = int(np.argmin(dist))
        offset = float(np.linalg.norm(gm.means_[j] - target))
        if self.max_offset is not None and offset > self.max_offset:
            names = ", ".join(d.name for d in self.dimensions)
            raise GatingError(
                f"cluster gate: no cluster within {self.max_offset} of {list(self.at)} on "
                f"({names}); the nearest is at {np.round(gm.means_[j], 4).tolist()}"
            )
        d2 = -2.0 * math.log(1.0 - self.quantile)  # chi-square quantile, 2 degrees of freedom
        return EllipsoidGate(
            self.dimensions,
            tuple(float(v) for v in gm.means_[j]),
            tuple(tuple(float(v) for v in r) for r in gm.covariances_[j]),
            d2,
        )

    def geometry(self) -> dict[str, Any]:
        return {
            "at": list(self.at),
            "quantile": self.quantile,
            "components": self.components,
            "max_offset": self.max_offset,
        }


# --- scatter populations of one mixture on log scatter --------------------------------------------


@dataclass(frozen=True)
class MixtureRegion(Gate):
    """Concrete region of a Gaussian mixture fitted to log-scaled values: events whose most
    probable component is one of ``chosen`` and which lie within ``max_distance2`` (squared
    Mahalanobis) of that component."""

    kind: ClassVar[str] = "mixture"
    pointwise: ClassVar[bool] = True
    dimensions: tuple[Dimension, ...]
    weights: tuple[float, ...]
    means: tuple[tuple[float, ...], ...]  # of log10(values)
    covariances: tuple[tuple[tuple[float, ...], ...], ...]
    chosen: tuple[int, ...]
    max_distance2: float

    @property
    def mixture(self) -> tuple:
        """What identifies the fitted mixture (sibling populations share it; ``chosen`` differs)."""
        return (self.dimensions, self.weights, self.means, self.covariances, self.max_distance2)

    def classify(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(most probable component, its squared Mahalanobis distance) per event; ties go to
        the first component."""
        x = _log_scatter(values)
        n, k = x.shape[0], len(self.weights)
        d2 = np.empty((k, n))  # one contiguous row per component
        logp = np.empty((k, n))
        if x.shape[1] == 2:  # the scatter case, in place, without a general matrix product
            x0, x1 = np.ascontiguousarray(x[:, 0]), np.ascontiguousarray(x[:, 1])
            dx, dy, tmp = np.empty(n), np.empty(n), np.empty(n)
        for j, (w, mu, cov) in enumerate(zip(self.weights, self.means, self.covariances)):
            cov = np.asarray(cov, dtype=np.float64)
            q = np.linalg.inv(cov)
            row = d2[j]
            if x.shape[1] == 2:
                np.subtract(x0, mu[0], out=dx)
                np.subtract(x1, mu[1], out=dy)
                np.multiply(dx, dx, out=row)
                row *= q[0, 0]
                np.multiply(dx, dy, out=tmp)
                tmp *= q[0, 1] + q[1, 0]
                row += tmp
                np.multiply(dy, dy, out=tmp)
                tmp *= q[1, 1]
                row += tmp
            else:
                d = x - np.asarray(mu, dtype=np.float64)
                row[:] = np.einsum("ij,ij->i", d @ q, d)
            np.multiply(row, -0.5, out=logp[j])
            logp[j] += np.log(w) - 0.5 * np.log(np.linalg.det(cov))
        best = np.argmax(logp, axis=0)
        return best, d2[best, np.arange(n)]

    def contains_classified(self, best: np.ndarray, d2: np.ndarray) -> np.ndarray:
        """Membership from :meth:`classify`'s result."""
        mine = np.zeros(len(self.weights), dtype=bool)
        mine[list(self.chosen)] = True
        return mine[best] & (d2 <= self.max_distance2)

    def contains(self, values: np.ndarray) -> np.ndarray:
        if values.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        return self.contains_classified(*self.classify(values))

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


@functools.cache
def _threads() -> Any:
    """threadpoolctl's controller of the loaded BLAS/OpenMP libraries (scikit-learn's own
    dependency), made once: making it inspects every loaded library."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


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
    # one BLAS/OpenMP thread: on small fits the threads cost more than they give (0.12 s
    # against 0.21 s for 6 components on 20,000 events here, 5-8x on a loaded 2-core machine)
    with _threads().limit(limits=1):
        gm.fit(fit_on)
    if len(_FITS) > 16:
        _FITS.clear()
    _FITS[key] = gm
    return gm


@dataclass(frozen=True)
class ScatterClusterGate(DataDrivenGate):
    """A scatter population (lymphocytes, monocytes, granulocytes) as the clusters of a Gaussian
    mixture (scikit-learn, on log scatter) fitted to the parent's events.

    ``targets`` are the expected centres of this population and its siblings (in the dimensions'
    units); each fitted cluster belongs to the nearest target (by log-ratio distance, so drift of
    ±30 % is fine) if it is within ``max_offset`` of it; this population is ``targets[index]``.
    ``shape='polygon'`` resolves it to a polygon tracing that region's boundary (on a 256-cell
    grid, fitted to the parent's events; about 0.1 s per population) instead of the mixture
    region, so that the gate as applied is a standard geometry any Gating-ML or FlowJo reader
    applies with the same counts.
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
    shape: str = "mixture"  # or "polygon"

    def __post_init__(self) -> None:
        if self.shape not in ("mixture", "polygon"):
            raise GatingError(f"scatter shape must be 'mixture' or 'polygon', got {self.shape!r}")

    def resolve(self, values: np.ndarray) -> Gate:
        region = self._region(values)
        if self.shape == "mixture":
            return region
        from .freeze import mixture_polygon

        vertices, _, _ = mixture_polygon(region, values, ((256, 2e-3),))
        return PolygonGate(self.dimensions, vertices)

    def _region(self, values: np.ndarray) -> MixtureRegion:
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

    def geometry(self) -> dict[str, Any]:
        return {
            "targets": [list(t) for t in self.targets],
            "index": self.index,
            "components": self.components,
            "shape": self.shape,
        }
