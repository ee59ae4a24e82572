"""FlowJo workspace import: the gates FlowJo applied to one sample, as a :class:`Strategy`.

Two dialects are read:

* FlowJo 10 (``.wsp``): Gating-ML 2.0 gate elements inside FlowJo's own XML, the sample's
  transforms (FlowJo's ``linear``, ``log``, ``biex``, ``logicle``, ``fasinh``, ``hyperlog``), its
  spillover matrix (compensated parameters carry the matrix prefix, e.g. ``Comp-FITC-A``), and the
  population tree (``Population``, boolean ``AndNode`` / ``OrNode`` / ``NotNode``).
* FlowJo 9 (Mac XML workspace, version 2.0): its own gate elements (``Polygon``, ``PolyRect``,
  ``Range``, ``Ellipse``) with coordinates in raw values, compensation matrices with a prefix and
  suffix (``<FITC-A>``), and calibration tables that give each parameter's display scale.

Each sample's tree holds every gate FlowJo applied to it, group gates and the sample's own
overrides alike, so only the chosen sample's tree is read. Gates keep FlowJo's geometry on
FlowJo's display scale: each dimension carries the sample's transform, so a polygon is straight
where FlowJo drew it straight, and events beyond the ends of a biex, log or table scale sit on the
axis as FlowJo draws them. Polygons are evaluated as FlowJo does, in its 256 x 256 display bins
(:class:`FlowJoPolygonGate`: FlowJo 10 bins linear axes to the nearest bin edge and biex axes, on
its 4096-channel table, by truncation; FlowJo 9 gates on display cells, :class:`FlowJoCellGate`);
rectangles, ranges and ellipses on exact values.

Population names are paths (``'Cells/CD4+'``): FlowJo repeats names under different parents.
FlowJo writes ``/`` in parameter names as ``_``; names are mapped back to the sample's channel
names, given as ``channels`` or read from the sample's FCS file when it is found (at its DataSet
URI or next to the workspace).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import StrategyError
from .flowjo9 import _Workspace9
from .flowjo10 import _Workspace10
from .flowjo_export import write_flowjo
from .flowjo_gates import FlowJoCellGate, FlowJoPolygonGate, OutsideGate
from .flowjo_workspace import _fcs_channels, _Names, _Workspace
from .gatingml import NS, parse_xml
from .strategy import Strategy

_G = f"{{{NS['gating']}}}"

__all__ = [
    "FlowJoCellGate",
    "FlowJoPolygonGate",
    "OutsideGate",
    "list_samples",
    "read_flowjo",
    "write_flowjo",
]


# --- public API ----------------------------------------------------------------------------------


def read_flowjo(
    path: str | os.PathLike, sample: str, channels: Sequence[str] | None = None
) -> Strategy:
    """The gates a FlowJo workspace (FlowJo 10 ``.wsp`` or FlowJo 9 ``.xml``) applied to ``sample``.

    sample: the sample's FCS file name (``'Donor1.fcs'``) or its FlowJo name.
    channels: the sample's channel ($PnN) names, to map FlowJo's renamed parameters back (read
    from the FCS file when it is found and ``channels`` is None).
    """
    workspace = _open_workspace(path)
    info = workspace.pick(sample)
    if channels is None:
        channels = _fcs_channels(Path(path), info)
    return workspace.strategy(info, _Names(channels))


def list_samples(path: str | os.PathLike) -> list[str]:
    """The samples of a workspace, as :func:`read_flowjo` takes them: their FCS file names (their
    FlowJo names where the file name is unknown)."""
    return [s.key for s in _open_workspace(path).samples]


def _open_workspace(path: str | os.PathLike) -> _Workspace:
    root = parse_xml(path)
    if root.tag != "Workspace":
        raise StrategyError(f"{path}: not a FlowJo workspace (root element {root.tag!r})")
    version = root.get("flowJoVersion") or ""
    major = version.split(".")[0]
    if major.isdigit() and int(major) >= 10:
        return _Workspace10(path, root)
    if root.find(".//Population/PolygonGate") is not None or major == "9":
        return _Workspace9(path, root)
    if root.find(f".//Gate/{_G}*") is not None:
        return _Workspace10(path, root)
    raise StrategyError(
        f"{path}: FlowJo workspace version {version or root.get('version') or 'unknown'} is not "
        "supported (FlowJo 10 .wsp and FlowJo 9 XML workspaces are)"
    )
