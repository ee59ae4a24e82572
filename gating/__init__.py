"""gating: the gating engine.

It takes events (a matrix with channel and marker names, and a spillover matrix) and a strategy
(a tree of gates) and returns which events fall in which population. It knows nothing of WHIM,
CBCs or reference ranges.
"""

from .compensation import Compensation
from .errors import AmbiguousMarkerError, GatingError, MissingDimensionError, StrategyError
from .gates import (
    BooleanGate,
    DataDrivenGate,
    Dimension,
    EllipsoidGate,
    Gate,
    PolygonGate,
    RectangleGate,
    register_gate,
)
from .io import read_strategy
from .markers import load_markers
from .result import GatingResult
from .strategy import Population, Strategy
from .transforms import Asinh, Hyperlog, Linear, Log, Logicle, Ratio

__all__ = [
    "AmbiguousMarkerError",
    "Asinh",
    "BooleanGate",
    "Compensation",
    "DataDrivenGate",
    "Dimension",
    "EllipsoidGate",
    "Gate",
    "GatingError",
    "GatingResult",
    "Hyperlog",
    "Linear",
    "Log",
    "Logicle",
    "MissingDimensionError",
    "PolygonGate",
    "Population",
    "Ratio",
    "RectangleGate",
    "Strategy",
    "StrategyError",
    "load_markers",
    "read_strategy",
    "register_gate",
]
