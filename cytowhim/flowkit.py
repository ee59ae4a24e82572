"""A bridge to FlowKit: samples and gating strategies in and out in a line.

FlowKit is an optional extra (``pip install 'cytowhim[flowkit]'``), imported only when a function
here runs.

* :func:`to_flowkit_sample` / :func:`from_flowkit_sample`: :class:`cytowhim.Sample` <->
  ``flowkit.Sample`` (the events, channel and marker names, keywords and spillover);
* :func:`to_flowkit_strategy` / :func:`from_flowkit_strategy`: :class:`gating.Strategy` <->
  ``flowkit.GatingStrategy``. FlowKit gates are fixed geometry: a strategy with data-driven gates
  goes over as the gates it took on a sample, ``strategy.apply(sample).frozen()``.

::

    import cytowhim as cw
    from cytowhim.flowkit import to_flowkit_sample, to_flowkit_strategy
    from gating import read_strategy

    sample = cw.read_fcs("P1-baseline_T.fcs")
    frozen = read_strategy("T.yaml").apply(sample).frozen()
    fk_result = to_flowkit_strategy(frozen).gate_sample(to_flowkit_sample(sample))
    fk_result.get_gate_membership("CD4+ T cells")  # the same events as cytowhim's
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gating import Strategy

    from .sample import Sample

_INSTALL = "pip install 'cytowhim[flowkit]'"


def _flowkit() -> Any:
    try:
        import flowkit
    except ImportError as exc:
        raise ImportError(
            f"the FlowKit bridge (cytowhim.flowkit) needs FlowKit, an optional extra: {_INSTALL}"
        ) from exc
    return flowkit


# --- samples ---------------------------------------------------------------------------------------


def to_flowkit_sample(sample: Sample, sample_id: str | None = None, preprocess: bool = True) -> Any:
    """A ``flowkit.Sample`` with the events, names, keywords and spillover of ``sample``.

    The sample goes over as the FCS file :func:`cytowhim.write_fcs` writes of it (in a temporary
    folder), so FlowKit reads exactly what cytowhim would: ``$PnE`` / ``$PnG`` / ``$TIMESTEP``
    are applied by FlowKit's own preprocessing (``preprocess=False`` keeps stored values).
    sample_id: FlowKit's id (default: the file name of ``sample.path``, else ``'sample.fcs'``).
    """
    fk = _flowkit()
    from .fcs import write_fcs

    name = Path(str(sample.path)).name if sample.path else "sample.fcs"
    with tempfile.TemporaryDirectory(prefix="cytowhim-flowkit-") as tmp:
        path = Path(tmp) / (name if name.lower().endswith(".fcs") else f"{name}.fcs")
        write_fcs(path, sample)
        out = fk.Sample(str(path), sample_id=sample_id or name, preprocess=preprocess)
    return out


def _keyword_name(key: str, standard: set[str]) -> str:
    """FlowIO's keyword (lower case, no '$') as cytowhim names it: standard ones '$UPPER'."""
    upper = key.upper()
    if key.lower() in standard or re.fullmatch(r"P\d+[A-Z]", upper):
        return "$" + upper
    return upper


def from_flowkit_sample(fk_sample: Any) -> Sample:
    """A :class:`cytowhim.Sample` from a ``flowkit.Sample``: its events, channel ($PnN) and
    marker ($PnS) names, keywords (standard ones as ``$`` keywords; FlowIO lower-cases the others,
    they come back upper-cased) and spillover (the file's, else the compensation FlowKit was
    given).

    FlowKit preprocesses events by default (gain, log decoding, time step). Where undoing that is
    exact (a gain, the time step), the stored values come back with the file's keywords; where
    not (log-amplified parameters), FlowKit's linear values come back with neutral ``$PnE`` /
    ``$PnG`` / ``$TIMESTEP``. Either way ``linear_values`` (what the gating engine gates on)
    equals FlowKit's values. Float data of ``$DATATYPE F`` files comes back as float32.
    """
    _flowkit()
    import numpy as np

    from .fcs.scale import parameter_scales
    from .fcs.spillover import spillover_frame
    from .sample import Sample

    try:
        from flowio.fcs_keywords import FCS_STANDARD_KEYWORDS

        standard = {k.lower() for k in FCS_STANDARD_KEYWORDS}
    except ImportError:  # pragma: no cover - FlowIO comes with FlowKit
        standard = set()
    events = np.array(fk_sample.get_events(source="raw"), dtype=np.float64)
    channels = [str(c) for c in fk_sample.pnn_labels]
    markers = [str(m or "") for m in fk_sample.pns_labels]
    keywords = {_keyword_name(k, standard): str(v) for k, v in fk_sample.metadata.items()}
    single = keywords.get("$DATATYPE", "").upper() == "F"
    if fk_sample.is_preprocessed:
        for j, scale in enumerate(parameter_scales(keywords, channels)):
            if scale.identity:
                continue
            col = events[:, j]
            if scale.decades <= 0:  # a gain or the time step: undo it where that is exact
                stored = col / scale.timestep if scale.timestep != 1.0 else col * scale.gain
                if single:  # the nearest float32: what the file stores
                    stored = stored.astype(np.float32).astype(np.float64)
                if np.array_equal(scale.apply(stored), col, equal_nan=True):
                    events[:, j] = stored
                    continue
            keywords[f"$P{j + 1}E"] = "0,0"  # FlowKit's linear values, stored as they are
            if f"$P{j + 1}G" in keywords:
                keywords[f"$P{j + 1}G"] = "1"
            if scale.timestep != 1.0:
                keywords["$TIMESTEP"] = "1"
    if single:
        as_stored = events.astype(np.float32)
        if np.array_equal(as_stored.astype(np.float64), events, equal_nan=True):
            events = as_stored  # the file's float32 values, as cytowhim.read_fcs gives them
    name = fk_sample.original_filename or fk_sample.id
    spill = spillover_frame(keywords, channels, markers, name)
    comp = getattr(fk_sample, "compensation", None)
    if spill is None and comp is not None:
        import pandas as pd

        names = [str(d) for d in comp.detectors]
        spill = pd.DataFrame(np.asarray(comp.matrix, dtype=np.float64), index=names, columns=names)
    version = str(fk_sample.version or "3.1")
    return Sample(
        events=events,
        channels=channels,
        markers=markers,
        keywords=keywords,
        spillover=spill,
        path=str(name) if name else None,
        version=version if version.startswith("FCS") else f"FCS{version}",
    )


# --- strategies ------------------------------------------------------------------------------------


def to_flowkit_strategy(strategy: Strategy, sample: Any = None) -> Any:
    """A ``flowkit.GatingStrategy`` with the gates, transforms and compensation matrices of a
    strategy of fixed gates (ranges, rectangles, polygons, ellipsoids, boolean gates; data-driven
    gates: ``strategy.apply(sample).frozen()``). FlowKit's gate names are the population names.

    FlowKit knows channels ($PnN) only: give ``sample`` to resolve marker names as the engine
    does (frozen strategies name channels already). FlowJo's grid polygons (from workspaces)
    become exact polygons in FlowKit.
    """
    fk = _flowkit()
    from gating.errors import StrategyError
    from gating.gates import BooleanGate, EllipsoidGate, PolygonGate, RectangleGate

    if sample is not None:
        from gating.freeze import on_channels

        strategy = on_channels(strategy, sample)
    gs = fk.GatingStrategy()
    for ident, tr in strategy.transforms.items():
        gs.add_transform(ident, _fk_transform(fk, ident, tr))
    for ident, comp in strategy.compensations.items():
        matrix = fk.Matrix(comp.matrix, list(comp.detectors), list(comp.fluorochromes))
        gs.add_comp_matrix(ident, matrix)

    def dim(d: Any, lo: float | None = None, hi: float | None = None) -> Any:
        # compensation: 'uncompensated', 'FCS' (the sample's own) or a matrix id, as in Gating-ML
        if d.ratio:
            return fk.RatioDimension(
                d.name, d.compensation, d.transform, range_min=lo, range_max=hi
            )
        return fk.Dimension(d.name, d.compensation, d.transform, range_min=lo, range_max=hi)

    paths: dict[str, tuple[str, ...]] = {}  # population -> FlowKit's gate path of its gate
    for pop in strategy.populations:
        gate, complement = pop.gate, False
        inner = getattr(gate, "gate", None)
        if inner is not None and not isinstance(gate, BooleanGate):  # FlowJo's outside gate
            gate, complement = inner, True
        parent = ("root",) if pop.parent is None else (*paths[pop.parent], pop.parent)
        if isinstance(gate, RectangleGate):
            dims = [dim(d, lo, hi) for d, lo, hi in zip(gate.dimensions, gate.mins, gate.maxs)]
            out = fk.gates.RectangleGate(pop.name, dims, use_complement=complement)
        elif isinstance(gate, PolygonGate):
            dims = [dim(d) for d in gate.dimensions]
            verts = [list(v) for v in gate.vertices]
            out = fk.gates.PolygonGate(pop.name, dims, verts, use_complement=complement)
        elif isinstance(gate, EllipsoidGate) and not complement:
            out = fk.gates.EllipsoidGate(
                pop.name,
                [dim(d) for d in gate.dimensions],
                list(gate.mean),
                [list(r) for r in gate.covariance],
                gate.distance_square,
            )
        elif isinstance(gate, BooleanGate):
            refs = [
                {"ref": ref, "path": (*paths[ref],), "complement": comp}
                for ref, comp in gate.operands
            ]
            out = fk.gates.BooleanGate(pop.name, gate.op, refs)
        else:
            raise StrategyError(
                f"population {pop.name!r}: {type(pop.gate).__name__} has no FlowKit form "
                "(data-driven gates go over as applied: strategy.apply(sample).frozen())"
            )
        gs.add_gate(out, parent)
        paths[pop.name] = parent
    return gs


def _fk_transform(fk: Any, ident: str, tr: Any) -> Any:
    from gating.errors import StrategyError
    from gating.transforms import (
        Asinh,
        FlowJoBiex,
        FlowJoLog,
        Hyperlog,
        Linear,
        Log,
        Logicle,
        Ratio,
    )

    t = fk.transforms
    if isinstance(tr, Ratio):
        return t.RatioTransform([tr.numerator, tr.denominator], tr.A, tr.B, tr.C)
    if isinstance(tr, Linear):
        return t.LinearTransform(param_t=tr.T, param_a=tr.A)
    if isinstance(tr, Log):
        return t.LogTransform(param_t=tr.T, param_m=tr.M)
    if isinstance(tr, Asinh):
        return t.AsinhTransform(param_t=tr.T, param_m=tr.M, param_a=tr.A)
    if isinstance(tr, Logicle):
        return t.LogicleTransform(param_t=tr.T, param_w=tr.W, param_m=tr.M, param_a=tr.A)
    if isinstance(tr, Hyperlog):
        return t.HyperlogTransform(param_t=tr.T, param_w=tr.W, param_m=tr.M, param_a=tr.A)
    if isinstance(tr, FlowJoLog):
        return t.WSPLogTransform(offset=tr.offset, decades=tr.decades)
    if isinstance(tr, FlowJoBiex):
        return t.WSPBiexTransform(
            negative=tr.negative, width=tr.width, positive=tr.positive, max_value=tr.max_value
        )
    raise StrategyError(f"transform {ident!r} ({type(tr).__name__}) has no FlowKit form")


def from_flowkit_strategy(gs: Any, name: str = "") -> Strategy:
    """A :class:`gating.Strategy` from a ``flowkit.GatingStrategy``, through Gating-ML 2.0
    (``flowkit.export_gatingml`` read by :meth:`gating.Strategy.from_gatingml`): population names
    are FlowKit's gate names."""
    fk = _flowkit()
    from gating import Strategy

    fd, tmp = tempfile.mkstemp(prefix="cytowhim-flowkit-", suffix=".xml")
    try:
        with os.fdopen(fd, "wb") as fh:
            fk.export_gatingml(gs, fh)
        strategy = Strategy.from_gatingml(tmp)
    finally:
        os.unlink(tmp)
    return Strategy(
        strategy.populations,
        strategy.transforms,
        strategy.compensations,
        name=name or "FlowKit gating strategy",
    )
