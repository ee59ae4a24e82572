"""The three tubes a lab runs per specimen, each with its own panel and instrument channel names.

Channel names differ between tubes on purpose (as between instruments): strategies find
parameters by marker name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Panel:
    """One tube: fluorescence channels with their markers, scatter channels, a spillover matrix."""

    tube: str
    fluorescence: tuple[tuple[str, str], ...]  # (channel name, marker)
    scatter: tuple[str, str, str] = ("FSC-A", "FSC-H", "SSC-A")
    time: str = "Time"

    @property
    def channels(self) -> list[str]:
        return [*self.scatter, *(c for c, _ in self.fluorescence), self.time]

    @property
    def markers(self) -> list[str]:
        return ["", "", "", *(m for _, m in self.fluorescence), ""]

    @property
    def fluorescence_channels(self) -> list[str]:
        return [c for c, _ in self.fluorescence]

    def spillover(self) -> np.ndarray:
        """A real-looking spillover matrix (fluorochromes x detectors): each dye spills mostly
        into its spectral neighbours."""
        n = len(self.fluorescence)
        m = np.eye(n)
        pattern = {1: 0.12, 2: 0.03, -1: 0.02, 3: 0.006}
        for i in range(n):
            for offset, value in pattern.items():
                j = i + offset
                if 0 <= j < n:
                    m[i, j] = value * (1.0 + 0.5 * ((i * 7 + j * 3) % 5) / 4)
        return m


# T-cell tube (TBNK + memory): total B and NK come from here, as in a TBNK tube.
T_TUBE = Panel(
    "T",
    (
        ("FITC-A", "CD45RA"),
        ("PE-A", "CCR7"),
        ("PerCP-Cy5-5-A", "CD45"),
        ("PE-Cy7-A", "CD62L"),
        ("APC-A", "CD8"),
        ("APC-H7-A", "CD4"),
        ("BV421-A", "CD3"),
        ("BV510-A", "CD19"),
        ("BV605-A", "CD56"),
    ),
)

# B/NK tube on another instrument's channel names.
B_TUBE = Panel(
    "B",
    (
        ("BL1-A", "IgD"),
        ("BL2-A", "CD27"),
        ("BL3-A", "CD45"),
        ("YL4-A", "CD19"),
        ("RL1-A", "IgM"),
        ("VL1-A", "CD3"),
        ("VL3-A", "CD56"),
        ("RL3-A", "CD16"),
    ),
)

# Monocyte tube.
MONO_TUBE = Panel(
    "mono",
    (
        ("FL1-A", "CD16"),
        ("FL2-A", "CD14"),
        ("FL3-A", "CD45"),
        ("FL4-A", "HLA-DR"),
        ("FL5-A", "CD3"),
        ("FL6-A", "CD19"),
    ),
)

PANELS = {p.tube: p for p in (T_TUBE, B_TUBE, MONO_TUBE)}
