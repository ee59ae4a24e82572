"""Specimens for review: gate a registered specimen's tubes again (as its run did), with the
reviewers' gate overrides pinned, count them exactly as ``cytowhim run`` does, and give each gate
with its parent's events for drawing.

A drag is re-gated quickly: the populations the changed gate cannot affect keep the gates they
resolved to on this file (pinned as resolved, e.g. fitted scatter mixtures are not fitted again),
the changed population and everything below it are gated again. The counts are those of a batch
re-run with the same overrides (:func:`cytowhim.run.run_manifest` ``overrides=``).
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

BINS = 64
PLOT_EVENTS = 20_000
KEEP_SPECIMENS = 8  # gated specimens kept in memory (their FCS files' events with them)


def gate_from_doc(strategy: Any, population: str, doc: dict) -> Any:
    """A gate written as in an overrides file (strategy-file syntax) for ``strategy``, read as a
    batch run reads the exported overrides (:func:`cytowhim.tube_gating.override_gate`)."""
    from ..tube_gating import override_gate

    return override_gate(strategy, f"population {population!r}", doc)


def gate_doc(strategy: Any, gate: Any) -> dict | None:
    """An editable gate (range, rectangle, polygon, 2-D ellipse) in strategy-file syntax; None
    for others."""
    from gating.gates import EllipsoidGate, PolygonGate, RectangleGate
    from gating.yaml_dump import FROM_FILE, _dim_doc

    comps = set(strategy.compensations)
    default = next(iter(comps)) if len(comps) == 1 else FROM_FILE
    dims = [_dim_doc(d, default) for d in gate.dimensions]
    if isinstance(gate, RectangleGate):
        if len(dims) == 1:
            return {"range": {"dimension": dims[0], "min": gate.mins[0], "max": gate.maxs[0]}}
        return {"rectangle": {"dimensions": dims, "min": list(gate.mins), "max": list(gate.maxs)}}
    if isinstance(gate, PolygonGate) and len(dims) == 2:
        return {
            "polygon": {
                "x": dims[0],
                "y": dims[1],
                "vertices": [list(map(float, v)) for v in gate.vertices],
            }
        }
    if isinstance(gate, EllipsoidGate) and len(dims) == 2:
        return {
            "ellipse": {
                "dimensions": dims,
                "mean": [float(v) for v in gate.mean],
                "covariance": [[float(v) for v in row] for row in gate.covariance],
                "distance_square": float(gate.distance_square),
            }
        }
    return None


def _bound(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def quadrant_centre(doc: dict | None) -> list[float] | None:
    """The corner of a quadrant (a 2-D rectangle open on one side of each axis): [x, y] of its
    two thresholds; None for other gates."""
    rect = (doc or {}).get("rectangle")
    if not rect or len(rect["min"]) != 2:
        return None
    corner = []
    for lo, hi in zip(rect["min"], rect["max"]):
        lo, hi = _bound(lo), _bound(hi)
        if (lo is None) == (hi is None):
            return None
        corner.append(lo if hi is None else hi)
    return corner


def move_quadrant_centre(state: TubeState, population: str, centre: list[float]) -> dict:
    """population -> gate doc for ``population``'s quadrant and its sibling quadrants (same
    parent and axes, same corner) with the corner moved to ``centre`` (both thresholds at once).
    ValueError if ``population`` is not a quadrant."""
    strategy, result = state.strategy, state.result
    name = strategy.resolve_name(population)
    pops = {p.name: p for p in strategy.populations}
    mine = gate_doc(strategy, result.gates[name]) if name in result.gates else None
    old = quadrant_centre(mine)
    if old is None:
        raise ValueError(f"{population!r} is not a quadrant (a rectangle open on two sides)")
    new = [float(centre[0]), float(centre[1])]
    out = {}
    for p in strategy.populations:
        if p.parent != pops[name].parent or p.name in result.failed or p.name not in result.gates:
            continue
        doc = gate_doc(strategy, result.gates[p.name])
        if (
            quadrant_centre(doc) is None
            or doc["rectangle"]["dimensions"] != mine["rectangle"]["dimensions"]
            or not np.allclose(quadrant_centre(doc), old, rtol=1e-9, atol=1e-12)
        ):
            continue
        rect = doc["rectangle"]
        for j in range(2):
            for side in ("min", "max"):
                if _bound(rect[side][j]) is not None:
                    rect[side][j] = new[j]
        out[p.name] = doc
    return out


@dataclass
class TubeState:
    tube: str
    file: str
    sample: Any
    strategy: Any  # the tube's strategy, reviewers' overrides pinned
    result: Any
    outcome: Any


@dataclass
class Specimen:
    """One specimen as gated for review: its tubes, its counts table and QC flags."""

    patient: str
    specimen: str
    out_dir: str
    rows: pd.DataFrame  # the manifest rows of its tubes
    panels: Any
    tubes: dict[str, TubeState] = field(default_factory=dict)
    table: pd.DataFrame | None = None
    flags: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    rules: Any = None  # (QCRules, ReportingRules) the run counted with
    reference: Any = None  # the run's ReferenceIntervals


def run_settings(out_dir: str) -> tuple[Any, Any]:
    """((QCRules, ReportingRules), ReferenceIntervals) the run in ``out_dir`` counted with: the
    ``--qc`` and ``--reference`` files its run.json names, else the defaults."""
    import json
    from pathlib import Path

    from ..qc import QCRules, read_lab_rules
    from ..reference import ReferenceIntervals
    from ..reporting import ReportingRules

    path = Path(out_dir) / "run.json"
    doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    rules = read_lab_rules(doc["qc"]) if doc.get("qc") else (QCRules(), ReportingRules())
    reference = (
        ReferenceIntervals.load(doc["reference"])
        if doc.get("reference")
        else ReferenceIntervals.bundled()
    )
    return rules, reference


class Model:
    """Loads specimens (cached; a lock per process serialises gating)."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Specimen] = {}
        self._samples: dict[str, Any] = {}
        self._sha: dict[str, str] = {}
        self.lock = threading.RLock()

    def _hashes(self, path) -> str:
        from .. import store

        key = str(path)
        if key not in self._sha:
            self._sha[key] = store.file_sha256(path)
        return self._sha[key]

    def _sample(self, path: str) -> Any:
        from ..fcs import read_fcs

        if path not in self._samples:
            while len(self._samples) >= 4 * KEEP_SPECIMENS:
                self._samples.pop(next(iter(self._samples)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._samples[path] = read_fcs(path)
        return self._samples[path]

    def forget(self, patient: str, specimen: str) -> None:
        self._cache = {k: v for k, v in self._cache.items() if k[:2] != (patient, specimen)}

    def specimen(self, patient: str, specimen: str, out_dir: str, pins: list[dict]) -> Specimen:
        """The specimen gated with ``pins`` (active overrides: tube, population, gate_after)."""
        key = (
            patient,
            specimen,
            out_dir,
            repr([(p["tube"], p["population"], p["gate_after"]) for p in pins]),
        )
        with self.lock:
            if key not in self._cache:
                self.forget(patient, specimen)
                while len(self._cache) >= KEEP_SPECIMENS:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = self._load(patient, specimen, out_dir, pins)
            return self._cache[key]

    def _load(self, patient, specimen, out_dir, pins) -> Specimen:
        from ..manifest import read_manifest
        from ..report import load_run

        run = load_run(out_dir)
        tubes, _problems = read_manifest(run.manifest)
        rows = tubes[(tubes["specimen"] == specimen) & (tubes["patient"] == patient)]
        spec = Specimen(patient, specimen, out_dir, rows, run.panels)
        spec.rules, spec.reference = run_settings(out_dir)
        for rec in rows.to_dict("records"):
            tube, file = str(rec["tube"]), str(rec["file"])
            strategy = run.panels.strategy(tube)
            mine = {p["population"]: p for p in pins if p["tube"] == tube}
            if mine:
                strategy = strategy.pin(
                    {
                        n: (gate_from_doc(strategy, n, p["gate_after"]), p["reason"])
                        for n, p in mine.items()
                    }
                )
            sample = self._sample(file)
            spec.tubes[tube] = self._gate(tube, file, sample, strategy, run.panels)
        self._count(spec)
        return spec

    def _gate(self, tube, file, sample, strategy, panels) -> TubeState:
        from ..tube_gating import TubeTask, outcome_of

        markers = panels.markers_for(tube)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = strategy.apply(sample, markers=markers)
        task = TubeTask(file, tube, str(panels.source), markers=tuple(sorted(markers.items())))
        return TubeState(
            tube, file, sample, strategy, result, outcome_of(task, panels, strategy, sample, result)
        )

    def _count(self, spec: Specimen, tubes: dict[str, TubeState] | None = None) -> tuple:
        from ..specimen_counts import specimen_records

        tubes = tubes or spec.tubes
        outcomes = [tubes[str(t)].outcome for t in spec.rows["tube"]]
        errors: list[str] = []
        records = specimen_records(
            spec.rows,
            outcomes,
            spec.panels,
            spec.rules,
            spec.reference,
            errors,
            self._hashes,
        )
        table = pd.concat([r.table for r in records], ignore_index=True) if records else None
        flags = [f for r in records for f in r.qc_flags] if records else []
        if tubes is spec.tubes:
            spec.table, spec.flags, spec.errors = table, flags, errors
        return table, flags, errors

    def regate(self, spec: Specimen, tube: str, population: str, doc: dict) -> dict:
        """The specimen's counts with ``population``'s gate in ``tube`` replaced by ``doc``
        (nothing stored): {'table', 'flags', 'seconds', 'gate'}."""
        return self.regate_many(spec, tube, {population: doc})

    def regate_many(self, spec: Specimen, tube: str, docs: dict[str, dict]) -> dict:
        """:meth:`regate` with several gates of ``tube`` replaced at once (population -> doc)."""
        started = time.perf_counter()
        with self.lock:
            state = spec.tubes[tube]
            strategy = state.strategy
            new_gates = {}
            for population, doc in docs.items():
                name = strategy.resolve_name(population)
                new_gates[name] = gate_from_doc(strategy, name, doc)
            dirty = set(new_gates)
            for p in strategy.populations:
                if p.parent in dirty or any(r in dirty for r in p.gate.references()):
                    dirty.add(p.name)
            keep = {
                p.name: (state.result.gates[p.name], strategy.pins.get(p.name, "as resolved"))
                for p in strategy.populations
                if p.name not in dirty and p.name not in state.result.failed
            }
            quick = strategy.pin({**keep, **{n: (g, "review") for n, g in new_gates.items()}})
            new_state = self._gate(tube, state.file, state.sample, quick, spec.panels)
            table, flags, errors = self._count(spec, {**spec.tubes, tube: new_state})
        return {
            "table": table,
            "flags": flags,
            "errors": errors,
            "seconds": time.perf_counter() - started,
            "result": new_state.result,
        }


def counts_of(table: pd.DataFrame | None, tube: str) -> dict[str, dict[str, Any]]:
    """population -> events, percent of parent, absolute per uL (one tube), JSON-ready."""
    out: dict[str, dict[str, Any]] = {}
    if table is None:
        return out
    for r in table[table["tube"] == tube].to_dict("records"):
        out[str(r["population"])] = {
            "events": _num(r.get("events")),
            "percent_of_parent": _num(r.get("percent_of_parent")),
            "absolute_per_uL": _num(r.get("absolute_per_uL")),
        }
    return out


def table_rows(table: pd.DataFrame | None, tube: str) -> list[dict[str, Any]]:
    """The tube's population table for the page."""
    if table is None:
        return []
    cols = (
        "population",
        "parent",
        "events",
        "percent_of_parent",
        "absolute_per_uL",
        "absolute_error_per_uL",
        "qc_status",
        "reference_flag",
        "reference_low",
        "reference_high",
        "qc",
    )
    rows = []
    for r in table[table["tube"] == tube].to_dict("records"):
        rows.append(
            {c: _num(r.get(c)) if not isinstance(r.get(c), str) else r.get(c) for c in cols}
        )
    return rows


def _num(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return None if math.isnan(f) else f


def plots(state: TubeState) -> list[dict[str, Any]]:
    """Per population: its gate over its parent's events, binned (x, y: gate coordinates)."""
    from gating.gates import EllipsoidGate, PolygonGate, RectangleGate

    from ..report_plots import _axis_label, _is_scatter, _sample_index

    result, strategy = state.result, state.strategy
    ev = result.evaluator
    n = state.sample.n_events
    out = []
    for p in strategy.populations:
        gate = result.gates.get(p.name)
        if gate is None or p.name in result.failed or not gate.dimensions:
            continue
        dims = gate.dimensions[:2]
        mask = None if p.parent is None else result.mask(p.parent)
        idx = _sample_index(mask, n, PLOT_EVENTS)
        values = (
            np.column_stack([ev.values(d, idx) for d in dims])
            if idx.size
            else np.empty((0, len(dims)))
        )
        values = values[np.all(np.isfinite(values), axis=1)]
        entry: dict[str, Any] = {
            "population": p.name,
            "parent": p.parent or "",
            "kind": type(gate).kind,
            "labels": [_axis_label(result, d) for d in dims],
            "linear": [_is_scatter(result, d) for d in dims],
            "pinned": strategy.pins.get(p.name, ""),
            "data_driven": type(p.gate).__name__ != type(gate).__name__,
            "notes": [x for x in result.notes if p.name in x],
            "doc": gate_doc(strategy, gate) if len(gate.dimensions) <= 2 else None,
        }
        if isinstance(gate, RectangleGate):
            entry["min"], entry["max"] = list(gate.mins[:2]), list(gate.maxs[:2])
        elif isinstance(gate, PolygonGate):
            entry["vertices"] = [list(map(float, v)) for v in gate.vertices]
        elif isinstance(gate, EllipsoidGate) and len(dims) == 2:
            from ..report_plots import _ellipse

            pts = _ellipse(
                np.asarray(gate.mean), np.asarray(gate.covariance), math.sqrt(gate.distance_square)
            )
            entry["outline"] = pts.tolist()
            entry["mean"] = [float(v) for v in gate.mean[:2]]
        extent = []
        for j in range(len(dims)):
            col = values[:, j] if values.size else np.array([0.0, 1.0])
            lo, hi = (float(v) for v in np.quantile(col, [0.001, 0.999]))
            span = hi - lo or max(abs(hi), 1.0)
            extent.append([lo - 0.05 * span, hi + 0.05 * span])
        entry["extent"] = extent
        if len(dims) == 2:
            h, _, _ = np.histogram2d(values[:, 0], values[:, 1], bins=BINS, range=extent)
        else:
            h, _ = np.histogram(values[:, 0], bins=BINS, range=extent[0])
        entry["density"] = h.astype(int).tolist()
        if (
            entry["kind"] == "mixture"
            or "outline" not in entry
            and not isinstance(gate, (RectangleGate, PolygonGate))
        ):
            inside = result.mask(p.name)[idx] if idx.size else np.zeros(0, bool)
            fin = (
                np.all(np.isfinite(np.column_stack([ev.values(d, idx) for d in dims])), axis=1)
                if idx.size
                else inside
            )
            v_in = values[inside[fin]] if values.size else values
            if len(dims) == 2:
                hi_, _, _ = np.histogram2d(v_in[:, 0], v_in[:, 1], bins=BINS, range=extent)
            else:
                hi_, _ = np.histogram(v_in[:, 0], bins=BINS, range=extent[0])
            entry["inside"] = hi_.astype(int).tolist()
        out.append(entry)
    return out
