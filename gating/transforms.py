"""Scale transforms with their exact Gating-ML 2.0 definitions (and FlowJo's variants).

Each transform is a small immutable record with ``apply(x)`` and ``inverse(y)`` over float64
arrays. Logicle and hyperlog use flowutils' C implementations (the reference code of the
Gating-ML specification), imported on first use.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from functools import cached_property
from typing import ClassVar

import numpy as np

from .errors import GatingError

LN10 = math.log(10.0)


def _as_f8(x: np.ndarray) -> np.ndarray:
    return np.array(x, dtype=np.float64, copy=True)


def _check(kind: str, ok: bool, rule: str, **params: float) -> None:
    """GatingError naming the transform, its parameters and the ``rule`` they break."""
    if not ok:
        given = ", ".join(f"{k}={v:g}" for k, v in params.items())
        raise GatingError(f"{kind} transform: {given}: parameters must satisfy {rule}")


def _finite_params(t: object, names: tuple[str, ...]) -> dict[str, float]:
    """The named parameters of a transform as floats; GatingError unless they are finite."""
    out = {}
    for name in names:
        raw = getattr(t, name)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise GatingError(
                f"{type(t).__name__} transform: {name} must be a number, got {raw!r:.60}"
            ) from None
        if not math.isfinite(value):
            raise GatingError(
                f"{type(t).__name__} transform: {name}={value}; parameters must be finite numbers"
            )
        object.__setattr__(t, name, value)
        out[name] = value
    return out


@dataclass(frozen=True)
class Transform(ABC):
    """Base class: a monotonic map of raw (compensated) values to the display scale."""

    kind: ClassVar[str] = "transform"
    #: True when apply() is increasing on the whole real line, so a range on the scale can be
    #: turned into a range on raw values (gates then need no transformed events).
    monotonic: ClassVar[bool] = True

    @abstractmethod
    def apply(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def inverse(self, y: np.ndarray) -> np.ndarray: ...

    def params(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Linear(Transform):
    """flin(x) = (x + A) / (T + A)."""

    kind: ClassVar[str] = "linear"
    T: float = 262144.0
    A: float = 0.0

    def __post_init__(self) -> None:
        # Gating-ML says 0 <= A <= T; FlowJo writes a negative A (its linear scale's minimum)
        p = _finite_params(self, ("T", "A"))
        _check("linear", p["T"] > 0 and p["T"] + p["A"] > 0, "T > 0 and T + A > 0", **p)

    def apply(self, x):
        return (np.asarray(x, dtype=np.float64) + self.A) / (self.T + self.A)

    def inverse(self, y):
        return np.asarray(y, dtype=np.float64) * (self.T + self.A) - self.A


@dataclass(frozen=True)
class Log(Transform):
    """flog(x) = log10(x / T) / M + 1; undefined (NaN) for x <= 0."""

    kind: ClassVar[str] = "log"
    monotonic: ClassVar[bool] = False  # not defined on x <= 0
    T: float = 262144.0
    M: float = 4.5

    def __post_init__(self) -> None:
        p = _finite_params(self, ("T", "M"))
        _check("log", p["T"] > 0 and p["M"] > 0, "T > 0 and M > 0", **p)

    def apply(self, x):
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log10(x / self.T) / self.M + 1.0
        y[~(x > 0)] = np.nan
        return y

    def inverse(self, y):
        return self.T * np.power(10.0, (np.asarray(y, dtype=np.float64) - 1.0) * self.M)


@dataclass(frozen=True)
class Asinh(Transform):
    """fasinh(x) = (asinh(x sinh(M ln10) / T) + A ln10) / ((M + A) ln10)."""

    kind: ClassVar[str] = "asinh"
    T: float = 262144.0
    M: float = 4.5
    A: float = 0.0

    def __post_init__(self) -> None:
        p = _finite_params(self, ("T", "M", "A"))
        ok = p["T"] > 0 and p["M"] > 0 and p["M"] + p["A"] > 0
        _check("asinh", ok, "T > 0, M > 0 and M + A > 0", **p)

    def apply(self, x):
        x = np.asarray(x, dtype=np.float64)
        return (np.arcsinh(x * math.sinh(self.M * LN10) / self.T) + self.A * LN10) / (
            (self.M + self.A) * LN10
        )

    def inverse(self, y):
        y = np.asarray(y, dtype=np.float64)
        return (
            self.T
            * np.sinh(y * (self.M + self.A) * LN10 - self.A * LN10)
            / math.sinh(self.M * LN10)
        )


def _logicle_c():
    from flowutils import logicle_c  # C reference implementation, imported on first use

    return logicle_c


@dataclass(frozen=True)
class _FlowutilsScale(Transform):
    """A transform computed by flowutils' C code (named by ``_scale`` / ``_inverse``)."""

    _scale: ClassVar[str] = ""
    _inverse: ClassVar[str] = ""
    #: whether W may be 0 (logicle: yes, the hyperbolic sine; hyperlog: no)
    _zero_width: ClassVar[bool] = True
    T: float = 262144.0
    W: float = 0.5
    M: float = 4.5
    A: float = 0.0

    def __post_init__(self) -> None:
        # Gating-ML 2.0 (Moore & Parks for logicle): T > 0, M > 0, 0 <= W <= M/2 (hyperlog:
        # 0 < W), -W <= A <= M - 2W; outside them the C code returns garbage (T=0: -1 everywhere)
        p = _finite_params(self, ("T", "W", "M", "A"))
        t, w, m, a = p["T"], p["W"], p["M"], p["A"]
        low = "0 <= W" if self._zero_width else "0 < W"
        ok = t > 0 and m > 0 and (w >= 0 if self._zero_width else w > 0)
        ok = ok and 2 * w <= m and -w <= a <= m - 2 * w
        _check(self.kind, ok, f"T > 0, M > 0, {low} <= M/2 and -W <= A <= M - 2W", **p)

    def apply(self, x):
        y = _as_f8(x)
        getattr(_logicle_c(), self._scale)(self.T, self.W, self.M, self.A, y.reshape(-1))
        return y

    def inverse(self, y):
        x = _as_f8(y)
        getattr(_logicle_c(), self._inverse)(self.T, self.W, self.M, self.A, x.reshape(-1))
        return x


@dataclass(frozen=True)
class Logicle(_FlowutilsScale):
    """Logicle (Parks et al.): the root y of B(y; T, W, M, A) = x, as Gating-ML 2.0 defines it."""

    kind: ClassVar[str] = "logicle"
    _scale: ClassVar[str] = "logicle_scale"
    _inverse: ClassVar[str] = "logicle_inverse"


@dataclass(frozen=True)
class Hyperlog(_FlowutilsScale):
    """Hyperlog (Bagwell): the root y of EH(y; T, W, M, A) = x, as Gating-ML 2.0 defines it."""

    kind: ClassVar[str] = "hyperlog"
    _scale: ClassVar[str] = "hyperlog_scale"
    _inverse: ClassVar[str] = "hyperlog_inverse"
    _zero_width: ClassVar[bool] = False


@dataclass(frozen=True)
class Ratio:
    """fratio(x1, x2) = A (x1 - B) / (x2 - C): a new dimension made of two channels."""

    kind: ClassVar[str] = "ratio"
    numerator: str
    denominator: str
    A: float = 1.0
    B: float = 0.0
    C: float = 0.0

    def __post_init__(self) -> None:
        for name in (self.numerator, self.denominator):
            if not isinstance(name, str) or not name:
                raise GatingError(f"ratio transform: dimension names must be text, got {name!r}")
        _finite_params(self, ("A", "B", "C"))

    def apply2(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (
                self.A
                * (np.asarray(x1, np.float64) - self.B)
                / (np.asarray(x2, np.float64) - self.C)
            )

    def params(self) -> dict[str, float]:
        return {"A": self.A, "B": self.B, "C": self.C}


TRANSFORMS: dict[str, type[Transform]] = {
    cls.kind: cls for cls in (Linear, Log, Asinh, Logicle, Hyperlog)
}


def make_transform(kind: str, **params: float) -> Transform:
    """A transform by kind name ('logicle', 'asinh', ...) and its Gating-ML parameters."""
    try:
        cls = TRANSFORMS[kind]
    except KeyError:
        raise ValueError(f"unknown transform {kind!r}; known: {sorted(TRANSFORMS)}") from None
    return cls(**{k: float(v) for k, v in params.items()})


# --- FlowJo's own scales -----------------------------------------------------------------------


@dataclass(frozen=True)
class TableTransform(Transform):
    """A scale given as a lookup table: ``raw`` values (increasing) and their ``scaled`` values,
    interpolated linearly in between. Values beyond the table sit at its ends, as events beyond a
    FlowJo axis are drawn on the axis (FlowJo 9's calibration tables)."""

    kind: ClassVar[str] = "table"
    monotonic: ClassVar[bool] = False  # flat beyond the ends of the table
    raw: tuple[float, ...] = ()
    scaled: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        raw = np.asarray(self.raw, dtype=np.float64)
        scaled = np.asarray(self.scaled, dtype=np.float64)
        if raw.ndim != 1 or raw.shape != scaled.shape or raw.size < 2:
            raise GatingError(
                f"a lookup table needs two equally long sequences of at least 2 values, got "
                f"{raw.shape} raw and {scaled.shape} scaled"
            )
        if not (np.all(np.isfinite(raw)) and np.all(np.isfinite(scaled))):
            raise GatingError("a lookup table holds NaN or infinity; it needs finite numbers")
        if not (np.all(np.diff(raw) > 0) and np.all(np.diff(scaled) > 0)):
            raise GatingError("a lookup table must increase strictly in both raw and scaled values")
        object.__setattr__(self, "raw", tuple(raw.tolist()))
        object.__setattr__(self, "scaled", tuple(scaled.tolist()))

    def apply(self, x):
        return np.interp(np.asarray(x, dtype=np.float64), self.raw, self.scaled)

    def inverse(self, y):
        return np.interp(np.asarray(y, dtype=np.float64), self.scaled, self.raw)

    def params(self) -> dict[str, float]:
        return {
            "points": float(len(self.raw)),
            "raw_min": self.raw[0],
            "raw_max": self.raw[-1],
            "scaled_min": self.scaled[0],
            "scaled_max": self.scaled[-1],
        }


@dataclass(frozen=True)
class FlowJoLog(Transform):
    """FlowJo 10's log scale: (log10(x) - log10(offset)) / decades, 0 at ``offset`` and 1 at
    offset * 10**decades; values below ``offset`` sit at 0 (FlowJo draws them on the axis)."""

    kind: ClassVar[str] = "flowjo_log"
    monotonic: ClassVar[bool] = False  # flat below offset
    offset: float = 1.0
    decades: float = 4.5

    def __post_init__(self) -> None:
        _finite_params(self, ("offset", "decades"))
        if not (self.offset > 0 and self.decades > 0):
            raise GatingError(
                f"FlowJo log needs offset > 0 and decades > 0, got {self.offset}, {self.decades}"
            )

    def apply(self, x):
        x = np.maximum(np.asarray(x, dtype=np.float64), self.offset)
        return (np.log10(x) - math.log10(self.offset)) / self.decades

    def inverse(self, y):
        return self.offset * np.power(10.0, np.asarray(y, dtype=np.float64) * self.decades)


def _biex_negative_range(b: float, w: float) -> float:
    """Root d in (0, b] of 2 ln(d) + w d = 2 ln(b) - w b (FlowJo's biex 'log root'), by bisection
    to machine precision (FlowJo iterates Newton steps to the same root)."""
    if w == 0:
        return b
    fb = -2.0 * math.log(b) + w * b
    lo, hi = 0.0, b
    while True:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            return mid
        if 2.0 * math.log(mid) + w * mid + fb < 0:
            lo = mid
        else:
            hi = mid


#: How far below a whole channel the biex zero point may come out and still be that channel: the
#: width and pos FlowJo writes (10 and 9 decimals) move it by less than 1e-7 of 4096 channels for
#: |width| >= 1 and pos + neg >= 0.5; a zero point truly that close below a whole channel would
#: take contrived parameters.
_BIEX_ZERO_SLACK = 1e-6


def flowjo_biex_table(
    negative: float, width: float, positive: float, max_value: float, channel_range: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """FlowJo's biexponential lookup table: raw values for channels 0..channel_range.

    FlowJo's own algorithm (TreeStar's Java, as ported in cytolib and FlowKit): ``width`` is the
    (negative) width basis, ``positive`` the decades, ``negative`` the extra negative decades,
    ``max_value`` the raw value of the top channel. Returns (raw, channels), both increasing.

    The zero point (the channel of raw 0) is the whole channel below the exact one. FlowJo
    computes it from its own width but writes the width rounded to 10 decimals: -79.4328234724
    for -10**1.9 puts it at 1023.99999999992, where FlowJo has 1024. So a zero point within
    :data:`_BIEX_ZERO_SLACK` below a whole channel is that channel.
    """
    if not width < 0:
        raise ValueError(f"FlowJo biex width basis must be negative, got {width}")
    w = math.log10(-width)
    decades = positive - w / 2
    extra = max(negative, 0.0) + w / 2
    at = extra * channel_range / (extra + decades)
    zero = min(int(at + _BIEX_ZERO_SLACK), channel_range // 2)
    if zero > 0:
        decades = extra * channel_range / zero
    w /= 2 * decades
    positive_range = LN10 * decades
    minimum = max_value / math.exp(positive_range)
    negative_range = _biex_negative_range(positive_range, w)

    n = channel_range + 1
    channels = np.arange(n, dtype=np.float64)
    pos = np.exp(channels / n * positive_range)
    neg = np.exp(channels / n * -negative_range)
    neg *= math.exp((positive_range + negative_range) * (w + extra / decades))
    raw = pos.copy()
    shift = pos[zero] - neg[zero]
    raw[zero:] = minimum * (pos[zero:] - neg[zero:] - shift)
    below = np.arange(zero)
    raw[below] = -raw[2 * zero - below]
    return raw, channels


@dataclass(frozen=True)
class FlowJoBiex(Transform):
    """FlowJo's biexponential scale ('biex'), which is not Gating-ML's logicle: FlowJo's lookup
    table (:func:`flowjo_biex_table`) from raw values to channels 0..``channel_range``, linear in
    between, values beyond the table at its ends. Parameters as FlowJo writes them: ``negative``
    (extra negative decades), ``width`` (width basis, negative), ``positive`` (decades),
    ``max_value`` (FlowJo's maxRange)."""

    kind: ClassVar[str] = "flowjo_biex"
    monotonic: ClassVar[bool] = False  # flat beyond the table
    negative: float = 0.0
    width: float = -10.0
    positive: float = 4.41854
    max_value: float = 262144.0
    channel_range: float = 4096.0

    def __post_init__(self) -> None:
        _finite_params(self, ("negative", "width", "positive", "max_value", "channel_range"))
        if not (self.width < 0 and self.positive > 0 and self.max_value > 0):
            raise GatingError(
                "FlowJo biex needs width < 0, positive > 0 and max_value > 0, got "
                f"width={self.width}, positive={self.positive}, max_value={self.max_value}"
            )
        if not 2 <= self.channel_range <= 2**20 or self.channel_range != int(self.channel_range):
            raise GatingError("FlowJo biex channel_range must be a whole number from 2 to 2**20")

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        return flowjo_biex_table(
            self.negative, self.width, self.positive, self.max_value, int(self.channel_range)
        )

    def apply(self, x):
        """Channels of raw values, linear between the table's entries; a value below a channel's
        entry stays below that channel (interpolation can round it up onto it by a last bit), so
        that floor(channel) is the table interval the value falls in, as FlowJo bins it."""
        raw, channels = self._table
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(np.interp(x, raw, channels))
        flat_y, flat_x = y.reshape(-1), x.reshape(-1)
        whole = np.flatnonzero((flat_y > 0) & (flat_y == np.floor(flat_y)))
        if whole.size:
            low = whole[flat_x[whole] < raw[flat_y[whole].astype(np.intp)]]
            flat_y[low] = np.nextafter(flat_y[low], -np.inf)
        return y

    def inverse(self, y):
        raw, channels = self._table
        return np.interp(np.asarray(y, dtype=np.float64), channels, raw)


TRANSFORMS.update({cls.kind: cls for cls in (FlowJoLog, FlowJoBiex)})
