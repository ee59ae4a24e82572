"""FlowJo's scale elements: FlowJo 10's per-parameter transforms (``linear``, ``log``, ``biex``,
``logicle``, ``fasinh``, ``hyperlog``) and FlowJo 9's calibration tables, read as the engine's
transforms (:mod:`gating.transforms`). The way back, for the workspace writer, is
:func:`gating.flowjo_export.transform_element`."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from .errors import StrategyError
from .gatingml import NS, _float
from .transforms import (
    Asinh,
    FlowJoBiex,
    FlowJoLog,
    Hyperlog,
    Linear,
    Logicle,
    Transform,
)

_T = f"{{{NS['transforms']}}}"
FJ10_TRANSFORMS = ("linear", "log", "biex", "logicle", "fasinh", "hyperlog")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_transform(el: ET.Element, where: str) -> Transform:
    """A FlowJo 10 transform element (``transforms:linear``, ``log``, ``biex`` ...) as a scale."""
    kind = _local(el.tag)

    def get(name: str, default: float | None = None) -> float:
        value = _float(el, name, where, _T)
        if value is None:
            if default is None:
                raise StrategyError(f"{where}: {kind} lacks {name}")
            return default
        return value

    if kind == "linear":
        lo, hi = get("minRange", 0.0), get("maxRange")
        return Linear(T=hi, A=-lo)  # (x - min) / (max - min): FlowJo's axis min..max
    if kind == "log":
        return FlowJoLog(offset=get("offset"), decades=get("decades"))
    if kind == "biex":
        return FlowJoBiex(
            negative=get("neg", 0.0),
            width=get("width", -10.0),
            positive=get("pos", 4.41854),
            max_value=get("maxRange", 262144.0),
        )
    if kind == "logicle":
        return Logicle(T=get("T"), W=get("W"), M=get("M"), A=get("A", 0.0))
    if kind == "fasinh":
        return Asinh(T=get("T"), M=get("M"), A=get("A", 0.0))
    if kind == "hyperlog":
        return Hyperlog(T=get("T"), W=get("W"), M=get("M"), A=get("A", 0.0))
    raise StrategyError(
        f"{where}: FlowJo transform {kind!r} is not supported (supported: "
        f"{', '.join(FJ10_TRANSFORMS)})"
    )


def _table_pairs(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A FlowJo 9 calibration table 'channel,value,channel,value,...' as (values, channels)."""
    try:
        flat = np.array([float(t) for t in text.replace("\n", "").split(",") if t.strip()])
    except ValueError:
        raise StrategyError(f"{where}: calibration table holds a non-number") from None
    if flat.size < 4 or flat.size % 2:
        raise StrategyError(f"{where}: calibration table needs channel, value pairs")
    return flat[1::2], flat[0::2]
