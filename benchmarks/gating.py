"""Benchmark: gating a TBNK-and-memory panel with cytowhim (``gating``) and with FlowKit.

Goal: cytowhim gates at least 20x as many events per second as FlowKit, with less than half of
FlowKit's peak memory, and both find exactly the same events in every population.

What it does

1. Writes synthetic FCS 3.1 files (float32, 15 parameters: FSC-A, FSC-H, SSC-A, eleven
   fluorescence channels with markers, Time) with ``cytowhim.write_fcs``: lymphocytes (T cells
   CD4/CD8 naive / central memory / effector memory / TEMRA, double negative and double positive,
   NK cells CD16+/-, B cells CD27+/-), lymphocyte doublets, CD45- events, monocytes (CD14+ CD16-,
   CD14+ CD16+, CD14-), granulocytes and debris. Marker intensities are drawn on the compensated
   scale, mixed through a spillover matrix that is stored as ``$SPILLOVER``, plus detector noise.
   Events are generated in chunks of 500,000 so that the generator needs little more memory than
   the float32 events.
2. Builds the same 25-population strategy in cytowhim and in FlowKit: lymphocyte and monocyte
   scatter polygons, a singlets polygon (FSC-A vs FSC-H), CD45+ and CD3+ ranges, a CD4/CD8
   quadrant, CD45RA/CCR7 quadrants on CD4 and on CD8 T cells, NK (CD3- CD56+) and B (CD3- CD19+)
   rectangles, CD16+ NK, CD27+ B and CD27- B (a boolean *not*), CD14+ monocytes, CD16+ and CD16-
   (boolean *not*) monocytes. Fluorescence dimensions use the file's spillover ('FCS') and
   logicle (T=262144, W=0.5, M=4.5, A=0); scatter dimensions are uncompensated and linear.
3. For every file size and engine, starts a fresh ``python -c`` process that imports the engine,
   reads the file (``cytowhim.read_fcs`` / ``flowkit.Sample``, not timed), builds the strategy,
   resets the resident-set high-water mark (``/proc/self/clear_refs`` <- ``5``) and then gates
   the sample ``--repeat`` times (``--flowkit-repeat`` for FlowKit), timing each run end to end:
   cytowhim ``strategy.apply(sample)`` plus the population counts, FlowKit
   ``gating_strategy.gate_sample(sample, cache_events=True)`` (which computes its counts and its
   report) with its cache cleared before every run. That is FlowKit's fastest single-process path:
   ``Session.analyze_samples`` calls ``gate_sample`` per sample (in worker processes when asked
   to), and sharing transformed channels between gates within a run made it 10-25% faster than
   ``cache_events=False`` here (``--no-flowkit-cache`` measures that). The first run is timed like
   the others (no separate warm-up: FlowKit on 5M events is slow).
4. Memory: ``gating peak`` is ``VmHWM`` after the first run minus ``VmRSS`` right after the reset
   (imports, file read and strategy done), i.e. what gating needs on top of the loaded sample;
   ``process peak`` is the whole process's ``VmHWM`` (imports and file read included).
5. Prints, per size, a table of the counts side by side (exit status 1 if any population
   differs or an engine fails), the median seconds and events per second of each engine, the ratio
   cytowhim / FlowKit and the memory figures, and says whether the goal is met.

Run it from the repository root::

    python benchmarks/gating.py                     # 1M and 5M events; 3 cytowhim, 2 FlowKit runs
    python benchmarks/gating.py --no-flowkit-cache  # FlowKit's gate_sample(cache_events=False)
    python benchmarks/gating.py --quick             # smoke run: 200,000 events
    python benchmarks/gating.py --sizes 1M --repeat 5 --flowkit-repeat 3
    python benchmarks/gating.py --sizes 2M --out /tmp/bench   # keep the files (reused if there)
    python benchmarks/gating.py --engines cytowhim --sizes 1M # only cytowhim (e.g. profiling)

Linux only for the memory figures (``/proc``); elsewhere they are reported as unavailable.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
# Run as a script, this file's folder comes first on sys.path, where this file would shadow the
# ``gating`` package it benchmarks: drop that folder.
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]

MIB = 1024 * 1024
CHUNK = 500_000
DEFAULT_SIZES = (1_000_000, 5_000_000)
QUICK_SIZE = 200_000
GOAL_SPEED = 20.0  # cytowhim events/s at least this many times FlowKit's
GOAL_MEMORY = 0.5  # cytowhim gating peak below this fraction of FlowKit's
LABELS = {"cytowhim": "cytowhim", "flowkit": "FlowKit"}

# --------------------------------------------------------------------------- the panel

FLUORESCENCE = {
    "BV510-A": "CD45",
    "FITC-A": "CD3",
    "APC-H7-A": "CD4",
    "BV421-A": "CD8",
    "PE-Cy7-A": "CD19",
    "APC-A": "CD56",
    "PE-A": "CD16",
    "BV605-A": "CD14",
    "PerCP-Cy5.5-A": "CD45RA",
    "BV711-A": "CCR7",
    "APC-R700-A": "CD27",
}
CHANNELS = ["FSC-A", "FSC-H", "SSC-A", *FLUORESCENCE, "Time"]
MARKERS = [FLUORESCENCE.get(c, "") for c in CHANNELS]
FLUOR_MARKERS = list(FLUORESCENCE.values())
TOP = 262143.0

#: (fluorochrome channel, detector channel, spill fraction): the notable spillover terms.
SPILL_TERMS = [
    ("FITC-A", "PE-A", 0.21),
    ("PE-A", "PerCP-Cy5.5-A", 0.06),
    ("PE-A", "PE-Cy7-A", 0.03),
    ("PerCP-Cy5.5-A", "APC-R700-A", 0.11),
    ("APC-A", "APC-R700-A", 0.16),
    ("APC-R700-A", "APC-H7-A", 0.08),
    ("PE-Cy7-A", "APC-H7-A", 0.02),
    ("BV421-A", "BV510-A", 0.12),
    ("BV510-A", "BV605-A", 0.05),
    ("BV605-A", "BV711-A", 0.10),
]


@dataclass(frozen=True)
class CellType:
    """A kind of event: share of all events, scatter profile and marker levels.

    levels: marker -> '+' (positive), '++' (bright) or 'd' (dim); markers not named are negative.
    """

    name: str
    share: float
    scatter: str  # 'lymph', 'mono', 'gran' or 'debris'
    levels: dict[str, str]
    doublet: bool = False


def _t(*extra: str, **levels: str) -> dict[str, str]:
    out = {"CD45": "++", "CD3": "+"}
    out.update({m: "+" for m in extra})
    out.update(levels)
    return out


CELL_TYPES = [
    CellType("CD4 naive", 0.100, "lymph", _t("CD4", "CD45RA", "CCR7", "CD27")),
    CellType("CD4 central memory", 0.070, "lymph", _t("CD4", "CCR7", "CD27")),
    CellType("CD4 effector memory", 0.050, "lymph", _t("CD4", CD27="d")),
    CellType("CD4 TEMRA", 0.010, "lymph", _t("CD4", "CD45RA")),
    CellType("CD8 naive", 0.050, "lymph", _t("CD8", "CD45RA", "CCR7", "CD27")),
    CellType("CD8 central memory", 0.020, "lymph", _t("CD8", "CCR7", "CD27")),
    CellType("CD8 effector memory", 0.040, "lymph", _t("CD8", "CD27")),
    CellType("CD8 TEMRA", 0.030, "lymph", _t("CD8", "CD45RA")),
    CellType("T double negative", 0.010, "lymph", _t("CD45RA")),
    CellType("T double positive", 0.005, "lymph", _t("CD4", "CD8", "CCR7")),
    CellType("NK CD56dim", 0.040, "lymph", {"CD45": "++", "CD56": "+", "CD16": "++"}),
    CellType("NK CD56bright", 0.005, "lymph", {"CD45": "++", "CD56": "++", "CCR7": "d"}),
    CellType("B naive", 0.040, "lymph", {"CD45": "++", "CD19": "+", "CD45RA": "+"}),
    CellType("B memory", 0.020, "lymph", {"CD45": "++", "CD19": "+", "CD27": "+"}),
    CellType("CD45- events", 0.020, "lymph", {}),
    CellType("lymphocyte doublets", 0.040, "lymph", _t("CD4", "CD45RA"), doublet=True),
    CellType("classical monocytes", 0.060, "mono", {"CD45": "+", "CD14": "++", "CD4": "d"}),
    CellType("non-classical monocytes", 0.012, "mono", {"CD45": "+", "CD14": "d", "CD16": "+"}),
    CellType("CD14- myeloid", 0.008, "mono", {"CD45": "+", "CD4": "d"}),
    CellType("granulocytes", 0.310, "gran", {"CD45": "+", "CD16": "++"}),
    CellType("debris", 0.060, "debris", {}),
]

# --------------------------------------------------------------------------- the strategy

LOGICLE = {"T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0}
POS = 0.40  # logicle position between negative (< 0.33) and dim (~0.42) / positive (~0.59)


@dataclass(frozen=True)
class Poly:
    """A polygon on two scatter channels (uncompensated, linear)."""

    name: str
    parent: str | None
    x: str
    y: str
    vertices: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Rect:
    """A range / rectangle on fluorescence markers: (marker, min, max) on the logicle scale."""

    name: str
    parent: str | None
    bounds: tuple[tuple[str, float | None, float | None], ...]


@dataclass(frozen=True)
class Quad:
    """A quadrant gate: four populations, named by (x positive, y positive)."""

    name: str  # the gate's name (FlowKit needs one; cytowhim only has the four populations)
    parent: str
    x: str
    x_cut: float
    y: str
    y_cut: float
    quadrants: dict[tuple[bool, bool], str]


@dataclass(frozen=True)
class Not:
    """A boolean *not* of another population, within ``parent``."""

    name: str
    parent: str
    of: str


Spec = Poly | Rect | Quad | Not


def _memory_quad(name: str, parent: str, prefix: str) -> Quad:
    return Quad(
        name,
        parent,
        "CD45RA",
        POS,
        "CCR7",
        POS,
        {
            (True, True): f"{prefix} naive",
            (False, True): f"{prefix} central memory",
            (False, False): f"{prefix} effector memory",
            (True, False): f"{prefix} TEMRA",
        },
    )


STRATEGY: list[Spec] = [
    Poly(
        "lymphocytes",
        None,
        "FSC-A",
        "SSC-A",
        ((25000, 1000), (90000, 1000), (95000, 22000), (60000, 30000), (25000, 22000)),
    ),
    Poly(
        "monocytes",
        None,
        "FSC-A",
        "SSC-A",
        ((70000, 28000), (135000, 28000), (140000, 70000), (75000, 75000)),
    ),
    Poly(
        "singlets",
        "lymphocytes",
        "FSC-A",
        "FSC-H",
        ((0, 0), (TOP, 0.75 * TOP), (TOP, TOP), (0, 40000)),
    ),
    Rect("CD45+", "singlets", (("CD45", 0.45, None),)),
    Rect("CD3+", "CD45+", (("CD3", POS, None),)),
    Quad(
        "CD4 vs CD8",
        "CD3+",
        "CD4",
        POS,
        "CD8",
        POS,
        {
            (True, False): "CD4+ T",
            (False, True): "CD8+ T",
            (True, True): "CD4+ CD8+ T",
            (False, False): "CD4- CD8- T",
        },
    ),
    _memory_quad("CD4 memory", "CD4+ T", "CD4"),
    _memory_quad("CD8 memory", "CD8+ T", "CD8"),
    Rect("NK", "CD45+", (("CD3", None, POS), ("CD56", POS, None))),
    Rect("CD16+ NK", "NK", (("CD16", POS, 0.98),)),
    Rect("B", "CD45+", (("CD3", None, POS), ("CD19", POS, None))),
    Rect("CD27+ B", "B", (("CD27", POS, None),)),
    Not("CD27- B", "B", "CD27+ B"),
    Rect("CD14+ monocytes", "monocytes", (("CD14", POS, None),)),
    Rect("CD16+ monocytes", "CD14+ monocytes", (("CD16", POS, None),)),
    Not("CD16- monocytes", "CD14+ monocytes", "CD16+ monocytes"),
]


def population_names() -> list[str]:
    """Every population of the strategy, in definition order."""
    out: list[str] = []
    for spec in STRATEGY:
        out.extend(spec.quadrants.values() if isinstance(spec, Quad) else [spec.name])
    return out


def cytowhim_strategy() -> Any:
    """The strategy as a :class:`gating.Strategy`."""
    from gating import (
        BooleanGate,
        Dimension,
        Logicle,
        PolygonGate,
        Population,
        RectangleGate,
        Strategy,
    )

    def fl(marker: str) -> Dimension:
        return Dimension(marker, compensation="FCS", transform="logicle")

    pops: list[Population] = []
    for spec in STRATEGY:
        if isinstance(spec, Poly):
            dims = (Dimension(spec.x), Dimension(spec.y))
            pops.append(Population(spec.name, PolygonGate(dims, spec.vertices), spec.parent))
        elif isinstance(spec, Rect):
            gate = RectangleGate(
                tuple(fl(m) for m, _, _ in spec.bounds),
                tuple(lo for _, lo, _ in spec.bounds),
                tuple(hi for _, _, hi in spec.bounds),
            )
            pops.append(Population(spec.name, gate, spec.parent))
        elif isinstance(spec, Quad):
            for (x_pos, y_pos), name in spec.quadrants.items():
                gate = RectangleGate(
                    (fl(spec.x), fl(spec.y)),
                    (spec.x_cut if x_pos else None, spec.y_cut if y_pos else None),
                    (None if x_pos else spec.x_cut, None if y_pos else spec.y_cut),
                )
                pops.append(Population(name, gate, spec.parent))
        else:
            pops.append(Population(spec.name, BooleanGate("not", ((spec.of, False),)), spec.parent))
    return Strategy(pops, transforms={"logicle": Logicle(**LOGICLE)}, name="TBNK + memory")


def flowkit_strategy() -> Any:
    """The strategy as a ``flowkit.GatingStrategy``."""
    import flowkit as fk
    from flowkit import gates

    gs = fk.GatingStrategy()
    gs.add_transform(
        "logicle",
        fk.transforms.LogicleTransform(
            param_t=LOGICLE["T"], param_w=LOGICLE["W"], param_m=LOGICLE["M"], param_a=LOGICLE["A"]
        ),
    )
    node: dict[str, tuple[str, ...]] = {}  # population -> its full path in FlowKit's tree

    def under(parent: str | None) -> tuple[str, ...]:
        return node[parent] if parent is not None else ("root",)

    for spec in STRATEGY:
        if isinstance(spec, Poly):
            dims = [fk.Dimension(spec.x), fk.Dimension(spec.y)]
            gate = gates.PolygonGate(spec.name, dims, [list(v) for v in spec.vertices])
        elif isinstance(spec, Rect):
            dims = [
                fk.Dimension(m, "FCS", "logicle", range_min=lo, range_max=hi)
                for m, lo, hi in spec.bounds
            ]
            gate = gates.RectangleGate(spec.name, dims)
        elif isinstance(spec, Quad):
            xid, yid = f"{spec.name} x", f"{spec.name} y"
            dividers = [
                fk.QuadrantDivider(xid, spec.x, "FCS", [spec.x_cut], "logicle"),
                fk.QuadrantDivider(yid, spec.y, "FCS", [spec.y_cut], "logicle"),
            ]
            quadrants = [
                gates.Quadrant(
                    name,
                    [xid, yid],
                    [
                        (spec.x_cut, None) if x_pos else (None, spec.x_cut),
                        (spec.y_cut, None) if y_pos else (None, spec.y_cut),
                    ],
                )
                for (x_pos, y_pos), name in spec.quadrants.items()
            ]
            gate = gates.QuadrantGate(spec.name, dividers, quadrants)
        else:
            ref = {"ref": spec.of, "path": node[spec.of][:-1], "complement": False}
            gate = gates.BooleanGate(spec.name, "not", [ref])
        parent_path = under(spec.parent)
        gs.add_gate(gate, parent_path)
        if isinstance(spec, Quad):
            for name in spec.quadrants.values():
                node[name] = (*parent_path, spec.name, name)
        else:
            node[spec.name] = (*parent_path, spec.name)
    return gs


# --------------------------------------------------------------------------- the files


def spillover_frame(seed: int) -> Any:
    """The spillover matrix (fluorochromes x detectors, channel names) as a DataFrame."""
    import pandas as pd

    names = list(FLUORESCENCE)
    rng = np.random.default_rng(seed)
    m = np.eye(len(names)) + rng.uniform(0.0, 0.006, (len(names), len(names))) * (
        1 - np.eye(len(names))
    )
    for src, dst, value in SPILL_TERMS:
        m[names.index(src), names.index(dst)] = value
    return pd.DataFrame(np.round(m, 4), index=names, columns=names)


def _levels(rng: np.random.Generator, level: str | None, n: int) -> np.ndarray:
    """Compensated intensities of one marker for n events of one cell type."""
    if level is None:
        return rng.normal(30.0, 80.0, n)
    centre, sigma = {"d": (700.0, 0.35), "+": (4000.0, 0.45), "++": (20000.0, 0.35)}[level]
    return rng.lognormal(np.log(centre), sigma, n)


def _scatter(rng: np.random.Generator, kind: str, doublet: bool, n: int) -> np.ndarray:
    """FSC-A, FSC-H, SSC-A for n events of one scatter profile."""
    fsc_mean, fsc_sd, ssc_centre, ssc_sigma = {
        "lymph": (55000.0, 7000.0, 12000.0, 0.25),
        "mono": (95000.0, 10000.0, 45000.0, 0.18),
        "gran": (115000.0, 12000.0, 130000.0, 0.20),
        "debris": (12000.0, 0.0, 4000.0, 0.60),
    }[kind]
    if kind == "debris":
        fsc_a = rng.lognormal(np.log(fsc_mean), 0.5, n)
    else:
        fsc_a = rng.normal(fsc_mean + (10000.0 if doublet else 0.0), fsc_sd, n)
    ratio = rng.normal(0.60, 0.05, n) if doublet else rng.normal(0.88, 0.03, n)
    ssc_a = rng.lognormal(np.log(ssc_centre), ssc_sigma, n)
    return np.clip(np.column_stack([fsc_a, fsc_a * ratio, ssc_a]), 0.0, TOP)


def synthetic_events(n_events: int, seed: int, spill: np.ndarray) -> np.ndarray:
    """float32 events (n_events x CHANNELS), generated CHUNK events at a time."""
    rng = np.random.default_rng(seed)
    shares = np.array([c.share for c in CELL_TYPES])
    shares /= shares.sum()
    out = np.empty((n_events, len(CHANNELS)), dtype=np.float32)
    fl = [CHANNELS.index(c) for c in FLUORESCENCE]
    for start in range(0, n_events, CHUNK):
        n = min(CHUNK, n_events - start)
        kinds = rng.choice(len(CELL_TYPES), size=n, p=shares)
        true = np.empty((n, len(FLUORESCENCE)))
        scatter = np.empty((n, 3))
        for k, cell in enumerate(CELL_TYPES):
            rows = np.flatnonzero(kinds == k)
            scatter[rows] = _scatter(rng, cell.scatter, cell.doublet, rows.size)
            for j, marker in enumerate(FLUOR_MARKERS):
                true[rows, j] = _levels(rng, cell.levels.get(marker), rows.size)
        detected = true @ spill + rng.normal(0.0, 15.0, true.shape)
        chunk = out[start : start + n]
        chunk[:, :3] = scatter
        chunk[:, fl] = np.clip(detected, -TOP, TOP)
        chunk[:, -1] = np.linspace(start, start + n, n, endpoint=False) * (60000.0 / n_events)
    return out


def write_test_file(path: Path, n_events: int, seed: int) -> None:
    """Write the synthetic panel to ``path`` (FCS 3.1, float32, with $SPILLOVER)."""
    import cytowhim

    spill = spillover_frame(seed)
    keywords = {
        "$CYT": "cytowhim benchmark cytometer",
        "$DATE": "12-MAR-2024",
        "$FIL": path.name,
        "$SRC": "TBNK-0001",
        **{f"$P{i}R": "262144" for i in range(1, len(CHANNELS) + 1)},
    }
    sample = cytowhim.Sample(
        events=synthetic_events(n_events, seed, spill.to_numpy()),
        channels=list(CHANNELS),
        markers=list(MARKERS),
        keywords=keywords,
        spillover=spill,
    )
    cytowhim.write_fcs(path, sample)


def warm_page_cache(path: Path) -> None:
    """Read the file once so that both engines find it in the OS page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(16 * MIB):
            pass


# --------------------------------------------------------------------------- one engine, one file


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _status_kib("VmHWM")
    except (OSError, KeyError):
        return False
    return True


def _cytowhim_runner(path: str) -> Callable[[], dict[str, int]]:
    import cytowhim

    sample = cytowhim.read_fcs(path)
    strategy = cytowhim_strategy()

    def run() -> dict[str, int]:
        result = strategy.apply(sample)
        return {p.name: result.count(p.name) for p in strategy.populations}

    return run


def _flowkit_runner(path: str, cache: bool) -> Callable[[], dict[str, int]]:
    import flowkit

    sample = flowkit.Sample(path)
    strategy = flowkit_strategy()
    names = population_names()

    def run() -> dict[str, int]:
        strategy.clear_cache()  # cache_events=True keeps the cache: start every run without it
        result = strategy.gate_sample(sample, cache_events=cache)
        return {name: int(result.get_gate_count(name)) for name in names}

    return run


def _peak_now() -> int | None:
    """VmHWM in bytes, None where /proc/self/status is not available."""
    try:
        return _status_kib("VmHWM") * 1024
    except (OSError, KeyError):
        return None


def child_run(engine: str, path: str, repeat: int, flowkit_cache: bool) -> dict[str, Any]:
    """Runs in a fresh process: read, build, then gate ``repeat`` times; times, counts, memory."""
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    run = _cytowhim_runner(path) if engine == "cytowhim" else _flowkit_runner(path, flowkit_cache)
    read_s = time.perf_counter() - t0
    gc.collect()
    read_peak = _peak_now()  # imports, file read, strategy: the reset below forgets it
    linux = read_peak is not None and _reset_peak()
    base = _status_kib("VmRSS") * 1024 if linux else 0
    times: list[float] = []
    counts: dict[str, int] = {}
    gating_peak = None
    for i in range(repeat):
        gc.collect()
        t = time.perf_counter()
        counts = run()
        times.append(time.perf_counter() - t)
        if i == 0 and linux:
            gating_peak = _status_kib("VmHWM") * 1024 - base
    end_peak = _peak_now()
    return {
        "engine": engine,
        "read_s": read_s,
        "times": times,
        "counts": counts,
        "base": base,
        "gating_peak": gating_peak,
        "process_peak": max(read_peak, end_peak) if read_peak and end_peak else None,
    }


_CHILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("_bench_gating", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = mod
spec.loader.exec_module(mod)
out = mod.child_run(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1")
print(json.dumps(out))
"""


def run_child(engine: str, path: Path, repeat: int, flowkit_cache: bool) -> dict[str, Any]:
    """Gate ``path`` with ``engine`` in a fresh process; its report (or {'error': ...})."""
    args = [sys.executable, "-c", _CHILD, str(Path(__file__).resolve()), engine, str(path)]
    args += [str(repeat), "1" if flowkit_cache else "0"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        args, capture_output=True, text=True, check=False, env=env, cwd=HERE.parent
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"engine": engine, "error": f"exit {proc.returncode}: {last[:200]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def parse_size(text: str) -> int:
    """'1M' -> 1_000_000, '200k' -> 200_000, '12345' -> 12345."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    number = float(t[:-1]) if factor > 1 else float(t)
    n = int(round(number * factor))
    if n < 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1 event: {text!r}")
    return n


def _label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:,.0f}"


def print_counts(names: list[str], reports: list[dict[str, Any]]) -> bool:
    """Counts side by side; True when every engine that ran agrees on every population."""
    ran = [r for r in reports if "error" not in r]
    width = max(len(n) for n in names) + 2
    header = "".join(f"{LABELS[r['engine']]:>12}" for r in ran)
    print(f"{'population':<{width}}{header}  same")
    same_all = True
    for name in names:
        values = [r["counts"].get(name) for r in ran]
        same = len(set(values)) <= 1
        same_all &= same
        cells = "".join(f"{v:>12,}" if v is not None else f"{'-':>12}" for v in values)
        print(f"{name:<{width}}{cells}  {'yes' if same else 'NO'}")
    return same_all


def print_speed(n: int, reports: list[dict[str, Any]]) -> dict[str, float]:
    """Timing and memory per engine; returns events/s per engine."""
    print(
        f"\n{'engine':<10}{'runs':>5}{'median s':>10}{'min s':>9}{'events/s':>14}"
        f"{'gating peak MiB':>17}{'process peak MiB':>18}{'read s':>8}  every run s"
    )
    rates: dict[str, float] = {}
    for r in reports:
        if "error" in r:
            print(f"{LABELS[r['engine']]:<10}failed: {r['error']}")
            continue
        med = statistics.median(r["times"])
        rates[r["engine"]] = n / med
        print(
            f"{LABELS[r['engine']]:<10}{len(r['times']):>5}{med:>10.3f}{min(r['times']):>9.3f}"
            f"{n / med:>14,.0f}{_mib(r['gating_peak']):>17}{_mib(r['process_peak']):>18}"
            f"{r['read_s']:>8.2f}  {' '.join(f'{t:.3f}' for t in r['times'])}"
        )
    return rates


def verdict(rates: dict[str, float], reports: list[dict[str, Any]], same: bool) -> bool:
    """Print the ratios against the goals; True when both goals are met and counts agree."""
    by = {r["engine"]: r for r in reports if "error" not in r}
    if "cytowhim" not in rates or "flowkit" not in rates:
        return same
    speed = rates["cytowhim"] / rates["flowkit"]
    ours, theirs = by["cytowhim"]["gating_peak"], by["flowkit"]["gating_peak"]
    memory = ours / theirs if ours is not None and theirs else None
    whole = by["cytowhim"]["process_peak"], by["flowkit"]["process_peak"]
    print(f"speed  cytowhim / FlowKit events/s: {speed:.1f}x (goal >= {GOAL_SPEED:.0f}x)")
    if memory is not None:
        print(
            f"memory cytowhim / FlowKit gating peak: {memory:.2f} (goal < {GOAL_MEMORY}); "
            f"process peak: {whole[0] / whole[1]:.2f}"
        )
    met = speed >= GOAL_SPEED and (memory is None or memory < GOAL_MEMORY) and same
    print(f"counts {'identical' if same else 'DIFFERENT'} -> goal {'met' if met else 'NOT met'}")
    return met


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=lambda s: [parse_size(x) for x in s.split(",") if x.strip()],
        help="comma-separated event counts, e.g. 1M,5M or 200k (default 1M,5M)",
    )
    p.add_argument("--repeat", type=int, help="timed cytowhim runs per size (default 3)")
    p.add_argument("--flowkit-repeat", type=int, help="timed FlowKit runs per size (default 2)")
    p.add_argument("--quick", action="store_true", help="smoke run: 200k events, 3 + 1 runs")
    p.add_argument(
        "--engines",
        default="cytowhim,flowkit",
        help="comma-separated engines to run: cytowhim, flowkit (default both)",
    )
    p.add_argument(
        "--flowkit-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="FlowKit gate_sample(cache_events=True), cache cleared before each run (default)",
    )
    p.add_argument("--out", type=Path, help="write (and keep, and reuse) the files in this folder")
    p.add_argument("--seed", type=int, default=20240312)
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([QUICK_SIZE] if args.quick else list(DEFAULT_SIZES))
    args.repeat = args.repeat or 3
    args.flowkit_repeat = args.flowkit_repeat or (1 if args.quick else 2)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not set(args.engines) <= {"cytowhim", "flowkit"} or not args.engines:
        p.error("--engines takes cytowhim and/or flowkit")
    if args.repeat < 1 or args.flowkit_repeat < 1:
        p.error("--repeat and --flowkit-repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import flowkit

    import cytowhim

    print(
        f"cytowhim {cytowhim.__version__}, FlowKit {flowkit.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs"
    )
    names = population_names()
    print(
        f"strategy: {len(names)} populations; panel: {len(CHANNELS)} float32 parameters with "
        "$SPILLOVER; each engine in a fresh process, file read and strategy built before timing"
    )
    if "flowkit" in args.engines:
        print(f"FlowKit: gate_sample(sample, cache_events={args.flowkit_cache}) per run")
    ok = True
    with tempfile.TemporaryDirectory(prefix="cytowhim-gating-") as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for n in args.sizes:
            path = folder / f"tbnk_{n}_seed{args.seed}.fcs"
            t0 = time.perf_counter()
            if not path.exists():
                write_test_file(path, n, args.seed)
            print(
                f"\n=== {_label(n)}: {n:,} events ({path.stat().st_size / MIB:,.0f} MiB file, "
                f"ready in {time.perf_counter() - t0:.1f} s) ==="
            )
            warm_page_cache(path)
            reports = [
                run_child(
                    e,
                    path,
                    args.repeat if e == "cytowhim" else args.flowkit_repeat,
                    args.flowkit_cache,
                )
                for e in args.engines
            ]
            same = print_counts(names, reports)
            rates = print_speed(n, reports)
            verdict(rates, reports, same)
            ok &= same and all("error" not in r for r in reports)
    print(
        "\n(gating peak = VmHWM during the first run minus VmRSS after imports, file read and "
        "strategy; process peak = the whole process's VmHWM)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
