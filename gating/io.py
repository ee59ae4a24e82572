"""Read a strategy from any of the formats the engine knows, by file type."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StrategyError
from .strategy import Strategy

GATINGML_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/gating"


def read_strategy(path: str | os.PathLike, sample: str | None = None) -> Strategy:
    """A strategy from YAML (.yaml/.yml), Gating-ML 2.0 (.xml) or a FlowJo workspace (.wsp, or a
    FlowJo .xml); ``sample`` picks the sample of a workspace (its FCS file name)."""
    path = Path(path)
    if not path.is_file():
        raise StrategyError(f"{path}: strategy file not found")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return Strategy.load(path)
    if suffix in (".xml", ".wsp"):
        if not is_workspace(path):
            return Strategy.from_gatingml(path)
        if sample is None:
            raise StrategyError(f"{path}: a FlowJo workspace needs the sample to take gates from")
        return Strategy.from_flowjo(path, sample)
    raise StrategyError(
        f"{path}: unknown strategy format {suffix!r}; expected .yaml/.yml (cytowhim), .xml "
        "(Gating-ML 2.0 or FlowJo) or .wsp (FlowJo)"
    )


def is_workspace(path: str | os.PathLike) -> bool:
    """True for a FlowJo workspace (.wsp, or .xml that is not Gating-ML): gates differ per sample."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".wsp":
        return True
    if suffix != ".xml":
        return False
    from .gatingml import parse_xml

    return not parse_xml(path).tag.startswith(f"{{{GATINGML_NS}}}")
