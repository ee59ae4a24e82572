"""Strategies written in the project's YAML format (:mod:`gating.yaml_format` reads them): fixed
gates as their geometry, data-driven gates with their options (defaults left as they are), scatter
siblings of one mixture fit as one ``scatter:`` block, automatic quadrants as ``quadrant:`` blocks,
compensation matrices beside the file as CSV."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .compensation import FROM_FILE
from .errors import StrategyError
from .gates import (
    BooleanGate,
    Dimension,
    EllipsoidGate,
    FunctionGate,
    PolygonGate,
    RectangleGate,
)
from .strategy import Population, Strategy
from .transforms import Ratio


def _dim_doc(d: Dimension, default_comp: str) -> Any:
    if d.transform is None and d.compensation == default_comp and not d.ratio:
        return d.name
    out: dict[str, Any] = {"name": d.name}
    if d.transform is not None:
        out["transform"] = d.transform
    if d.compensation != default_comp:
        out["compensation"] = d.compensation
    return out


def strategy_to_dict(strategy: Strategy) -> dict[str, Any]:
    """A strategy as the plain data of its YAML form (fixed quadrants become rectangles)."""
    from . import adaptive as ad

    comps = set(strategy.compensations)
    if len(comps) > 1:
        raise StrategyError("the YAML format holds one compensation matrix per strategy")
    default_comp = next(iter(comps)) if comps else FROM_FILE
    doc: dict[str, Any] = {"name": strategy.name or "strategy"}
    doc["compensation"] = "FCS" if default_comp == FROM_FILE else f"{default_comp}.csv"
    transforms = {}
    for tid, tr in strategy.transforms.items():
        if isinstance(tr, Ratio):
            transforms[tid] = {
                "ratio": {"numerator": tr.numerator, "denominator": tr.denominator, **tr.params()}
            }
        else:
            transforms[tid] = {tr.kind: tr.params()}
    if transforms:
        doc["transforms"] = transforms
    pops = []
    for p in strategy.populations:
        g = p.gate
        entry: dict[str, Any] = {"name": p.name}
        if p.parent is not None:
            entry["parent"] = p.parent
        if p.label is not None:
            entry["label"] = p.label
        dims = [_dim_doc(d, default_comp) for d in g.dimensions]
        if isinstance(g, RectangleGate):
            entry["gate"] = (
                {"range": {"dimension": dims[0], "min": g.mins[0], "max": g.maxs[0]}}
                if len(dims) == 1
                else {"rectangle": {"dimensions": dims, "min": list(g.mins), "max": list(g.maxs)}}
            )
        elif isinstance(g, PolygonGate):
            entry["gate"] = {
                "polygon": {"x": dims[0], "y": dims[1], "vertices": [list(v) for v in g.vertices]}
            }
        elif isinstance(g, EllipsoidGate):
            entry["gate"] = {
                "ellipse": {
                    "dimensions": dims,
                    "mean": list(g.mean),
                    "covariance": [list(r) for r in g.covariance],
                    "distance_square": g.distance_square,
                }
            }
        elif isinstance(g, BooleanGate):
            ops = [{"not": r} if c else r for r, c in g.operands]
            entry["gate"] = {"not": g.operands[0][0]} if g.op == "not" else {g.op: ops}
        elif isinstance(g, ad.QuadrantThresholds):
            quad = {
                "x": dims[0],
                "y": dims[1],
                "at": "auto",
                "search": [list(v) for v in g.search],
                "fallback": list(g.fallback),
                **({"per_half": True} if g.per_half else {}),
                **dict(g.valley),
                "populations": {p.name: g.signs},
            }
            if p.parent is not None:
                quad = {"parent": p.parent, **quad}
            pops.append({"quadrant": quad})
            continue
        elif isinstance(g, ad.ThresholdGate):
            entry["gate"] = {
                "threshold": {
                    "dimension": dims[0],
                    "sign": "+" if g.positive else "-",
                    "search": list(g.search),
                    "fallback": g.fallback,
                    "prefer": g.prefer,
                    **g.options(),
                }
            }
        elif isinstance(g, ad.SingletGate):
            entry["gate"] = {"singlets": {"area": dims[0], "height": dims[1], "width": g.width}}
        elif isinstance(g, ad.ScatterClusterGate):
            if len(g.targets) > 1:  # siblings from one mixture fit: one scatter block
                if g.index == 0:
                    pops.append({"scatter": _scatter_block(strategy, p, dims)})
                continue
            entry["gate"] = {
                "scatter_cluster": {
                    "x": dims[0],
                    "y": dims[1],
                    "target": list(g.targets[0]),
                    "components": g.components,
                    "max_distance2": g.max_distance2,
                    "max_offset": g.max_offset,
                    **({"shape": g.shape} if g.shape != "mixture" else {}),
                }
            }
        elif isinstance(g, ad.QuantileGate):
            entry["gate"] = {"quantile": {"dimension": dims[0], "lower": g.lower, "upper": g.upper}}
        elif isinstance(g, ad.TailGate):
            entry["gate"] = {
                "tail": {
                    "dimension": dims[0],
                    "k": g.k,
                    "side": g.side,
                    "quantile": g.quantile,
                    "keep": g.keep,
                }
            }
        elif isinstance(g, ad.MixtureCutGate):
            entry["gate"] = {
                "mixture_cut": {
                    "dimension": dims[0],
                    "sign": "+" if g.positive else "-",
                    "search": list(g.search),
                    "quantile": g.quantile,
                    "fallback": g.fallback,
                }
            }
        elif isinstance(g, ad.ClusterGate):
            entry["gate"] = {
                "cluster": {
                    "x": dims[0],
                    "y": dims[1],
                    "at": list(g.at),
                    "quantile": g.quantile,
                    "components": g.components,
                    "max_offset": g.max_offset,
                }
            }
        elif isinstance(g, FunctionGate):
            entry["gate"] = {
                "custom": {"function": g.function, "dimensions": dims, "params": dict(g.params)}
            }
        else:
            raise StrategyError(f"population {p.name!r}: {type(g).__name__} has no YAML form")
        pops.append(entry)
    doc["populations"] = pops
    return doc


def _scatter_block(strategy: Strategy, first: Population, dims: list[Any]) -> dict[str, Any]:
    """The ``scatter:`` entry of sibling scatter populations sharing ``first``'s mixture fit."""
    g = first.gate
    siblings = {}
    for p in strategy.populations:
        h = p.gate
        if (
            p.parent == first.parent
            and type(h) is type(g)
            and (h.dimensions, h.targets, h.components) == (g.dimensions, g.targets, g.components)
        ):
            at = list(h.targets[h.index])
            siblings[p.name] = at if h.required else {"at": at, "required": False}
    block: dict[str, Any] = {
        "x": dims[0],
        "y": dims[1],
        "components": g.components,
        "max_distance2": g.max_distance2,
        "max_offset": g.max_offset,
        **({"shape": g.shape} if g.shape != "mixture" else {}),
        "populations": siblings,
    }
    return {"parent": first.parent, **block} if first.parent is not None else block


def dump_yaml(strategy: Strategy, path: str | os.PathLike) -> None:
    """Write a strategy in the YAML format (compensation matrices are written beside it as CSV)."""
    import yaml

    path = Path(path)
    for comp in strategy.compensations.values():
        if comp.fluorochromes != comp.detectors:
            raise StrategyError(
                f"compensation {comp.id!r} unmixes into other names than its "
                "detectors; the CSV form cannot hold it (use Gating-ML)"
            )
        with (path.parent / f"{comp.id}.csv").open("w", encoding="utf-8") as f:
            f.write(",".join(comp.detectors) + "\n")
            for row in comp.matrix:
                f.write(",".join(repr(float(v)) for v in row) + "\n")
    path.write_text(
        yaml.safe_dump(strategy_to_dict(strategy), sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
