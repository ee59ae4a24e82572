"""Scale transforms with their exact Gating-ML 2.0 definitions (and FlowJo's variants).

Each transform is a small immutable record with ``apply(x)`` and ``inverse(y)`` over float64
arrays. Logicle and hyperlog use flowutils' C implementations (the reference code of the
Gating-ML specification), imported on first use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

LN10 = math.log(10.0)


def _as_f8(x: np.ndarray) -> np.ndarray:
    return np.array(x, dtype=np.float64, copy=True)


@dataclass(frozen=True)
class Transform:
    """Base class: a monotonic map of raw (compensated) values to the display scale."""

    kind: ClassVar[str] = "transform"
    #: True when apply() is increasing on the whole real line, so a range on the scale can be
    #: turned into a range on raw values (gates then need no transformed events).
    monotonic: ClassVar[bool] = True

    def apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inverse(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Linear(Transform):
    """flin(x) = (x + A) / (T + A)."""

    kind: ClassVar[str] = "linear"
    T: float = 262144.0
    A: float = 0.0

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
class Logicle(Transform):
    """Logicle (Parks et al.): the root y of B(y; T, W, M, A) = x, as Gating-ML 2.0 defines it."""

    kind: ClassVar[str] = "logicle"
    T: float = 262144.0
    W: float = 0.5
    M: float = 4.5
    A: float = 0.0

    def apply(self, x):
        y = _as_f8(x)
        _logicle_c().logicle_scale(self.T, self.W, self.M, self.A, y.reshape(-1))
        return y

    def inverse(self, y):
        x = _as_f8(y)
        _logicle_c().logicle_inverse(self.T, self.W, self.M, self.A, x.reshape(-1))
        return x


@dataclass(frozen=True)
class Hyperlog(Transform):
    """Hyperlog (Bagwell): the root y of EH(y; T, W, M, A) = x, as Gating-ML 2.0 defines it."""

    kind: ClassVar[str] = "hyperlog"
    T: float = 262144.0
    W: float = 0.5
    M: float = 4.5
    A: float = 0.0

    def apply(self, x):
        y = _as_f8(x)
        _logicle_c().hyperlog_scale(self.T, self.W, self.M, self.A, y.reshape(-1))
        return y

    def inverse(self, y):
        x = _as_f8(y)
        _logicle_c().hyperlog_inverse(self.T, self.W, self.M, self.A, x.reshape(-1))
        return x


@dataclass(frozen=True)
class Ratio:
    """fratio(x1, x2) = A (x1 - B) / (x2 - C): a new dimension made of two channels."""

    kind: ClassVar[str] = "ratio"
    numerator: str
    denominator: str
    A: float = 1.0
    B: float = 0.0
    C: float = 0.0

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
