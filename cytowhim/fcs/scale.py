"""Linear ("scale") values from stored channel values, as the FCS standard and Gating-ML define them:
``$PnE`` log-amplified parameters decoded, ``$PnG`` gain divided out, time multiplied by
``$TIMESTEP``. Gates, transforms and compensation all work on these values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ParameterScale:
    """How one parameter's stored values become linear values."""

    decades: float = 0.0  # $PnE f1 (0 = stored linearly)
    log0: float = 0.0  # $PnE f2
    range: float = 1.0  # $PnR
    gain: float = 1.0  # $PnG
    timestep: float = 1.0  # $TIMESTEP, for the time parameter only

    @property
    def identity(self) -> bool:
        return self.decades <= 0 and self.gain in (0.0, 1.0) and self.timestep == 1.0

    def apply(self, stored: np.ndarray) -> np.ndarray:
        """float64 linear values of stored values (a new array)."""
        x = np.array(stored, dtype=np.float64)
        if self.timestep != 1.0:
            x *= self.timestep
        if self.decades > 0:
            log0 = self.log0 if self.log0 > 0 else 1.0
            x = np.power(10.0, self.decades * x / self.range) * log0
        elif self.gain not in (0.0, 1.0):
            x /= self.gain
        return x


def _float(text: str | None, default: float) -> float:
    try:
        value = float(text) if text is not None and text.strip() else default
    except ValueError:
        return default
    return value if np.isfinite(value) else default


def parameter_scales(keywords: dict[str, str], channels: list[str]) -> list[ParameterScale]:
    """One :class:`ParameterScale` per parameter; unreadable keywords mean 'stored linearly'."""
    timestep = _float(keywords.get("$TIMESTEP"), 1.0) or 1.0
    out = []
    for i, channel in enumerate(channels, start=1):
        decades, log0 = 0.0, 0.0
        pne = keywords.get(f"$P{i}E", "")
        parts = pne.split(",")
        if len(parts) == 2:
            decades, log0 = _float(parts[0], 0.0), _float(parts[1], 0.0)
        is_time = channel.strip().lower() == "time"
        out.append(
            ParameterScale(
                decades=decades,
                log0=log0,
                range=_float(keywords.get(f"$P{i}R"), 1.0) or 1.0,
                # BD writes $PnG=0.01 for Time next to $TIMESTEP=0.01: time is scaled by
                # $TIMESTEP only (as FlowJo, FlowKit and FlowIO do), never divided by a gain.
                gain=1.0 if is_time else _float(keywords.get(f"$P{i}G"), 1.0),
                timestep=timestep if is_time else 1.0,
            )
        )
    return out
