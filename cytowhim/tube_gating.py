"""Gating one tube (in a worker process): read the FCS file, apply its tube's strategy, count
each population against its base (:func:`gate_tube`); what :mod:`cytowhim.run` hands to workers."""

from __future__ import annotations

import math
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .executors import _one_line
from .labels import ascii_name
from .panels import Panels


@dataclass(frozen=True)
class TubeTask:
    """Everything :func:`gate_tube` needs, picklable (it runs in worker processes)."""

    file: str
    tube: str
    panels: str  # panel file
    strategies: tuple[tuple[str, str], ...] = ()  # --strategy TUBE=FILE overrides
    save_events: bool = False  # return each population's membership (for --save-events)
    markers: tuple[tuple[str, str], ...] = ()  # strategy name -> the file's marker or channel
    overrides: str = ""  # an overrides file (gating.overrides): reviewers' gates per FCS file


@dataclass
class TubeOutcome:
    task: TubeTask
    rows: pd.DataFrame | None = None  # population, parent, events, percent_of_parent, base, ...
    notes: list[str] = field(default_factory=list)
    geometry: dict = field(default_factory=dict)
    n_events: int = 0
    membership: dict | None = None
    file_sha256: str = ""
    error: str | None = None
    failed: dict[str, str] = field(default_factory=dict)  # population -> why it was not gated
    traceback: str = ""  # of an unexpected error (a bug), for --debug


_PANELS: dict[tuple, Panels] = {}


def _panels_for(task: TubeTask) -> Panels:
    key = (task.panels, task.strategies)
    if key not in _PANELS:
        _PANELS[key] = Panels.load(task.panels).with_strategies(dict(task.strategies))
    return _PANELS[key]


def gate_tube(task: TubeTask) -> TubeOutcome:
    """Gate one tube file: its population rows (events, parents, bases), the engine's notes and the
    geometry the gates took. A pure function of the task; failures come back in ``error``."""
    from gating import GatingError

    from .errors import FCSError
    from .fcs import read_fcs
    from .panels import PanelError

    try:  # an exception other than these is the executor's failure (e.g. a broken install)
        panels = _panels_for(task)
        strategy = panels.strategy(task.tube)
        if task.overrides:
            strategy = pinned(strategy, task.overrides, task.file)
    except (FCSError, GatingError, PanelError) as exc:
        return TubeOutcome(task, error=str(exc))
    except OSError as exc:
        return TubeOutcome(task, error=f"{exc.filename or task.panels}: {exc.strerror or exc}")
    problem = not_a_regular_file(task.file)
    if problem:  # a FIFO would block read_fcs forever
        return TubeOutcome(task, error=problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recorded in result.notes instead
            sample = read_fcs(task.file)
            result = strategy.apply(sample, markers=dict(task.markers))
    except (FCSError, GatingError, PanelError) as exc:
        return TubeOutcome(task, error=str(exc))
    except OSError as exc:
        return TubeOutcome(task, error=f"{task.file}: {exc.strerror or exc}")
    except (MemoryError, RecursionError) as exc:
        return TubeOutcome(task, error=f"{task.file}: cannot be gated ({_one_line(exc)})")
    except Exception as exc:  # a bug met on this file: the other files are still gated
        import traceback

        return TubeOutcome(
            task,
            error=f"{task.file}: cannot be gated ({_one_line(exc)}): an error in cytowhim; "
            "please report it with this line (cytowhim --debug run ... shows the traceback)",
            traceback=traceback.format_exc(),
        )
    return outcome_of(task, panels, strategy, sample, result)


def pinned(strategy, overrides: str, file: str):
    """``strategy`` with the gates the overrides file ``overrides`` (:mod:`gating.overrides`)
    pins for ``file`` (matched by file name; the other files' entries are not read here)."""
    from gating.errors import StrategyError
    from gating.limits import read_yaml

    st = os.stat(overrides)
    key = (overrides, st.st_mtime_ns, st.st_size)  # an edited file is read again
    if key not in _OVERRIDES:
        _OVERRIDES[key] = read_yaml(Path(overrides), "overrides file") or {}
    doc = _OVERRIDES[key]
    if not isinstance(doc, dict):
        raise StrategyError(f"{overrides}: expected FCS file names mapping to populations")
    name = Path(file).name
    pops = doc.get(name)
    if not pops:
        return strategy
    if not isinstance(pops, dict):
        raise StrategyError(f"{overrides}: {name}: expected populations with a gate each")
    pins = {}
    for pop, spec in pops.items():
        where = f"{overrides}: {name}: population {pop!r}"
        try:
            strategy.resolve_name(str(pop))
        except KeyError:
            raise StrategyError(f"{where} is not in {strategy.source or 'the strategy'}") from None
        if not isinstance(spec, dict) or "gate" not in spec:
            raise StrategyError(f"{where}: needs a gate (and a reason)")
        gate = override_gate(strategy, where, spec["gate"])
        pins[str(pop)] = (gate, str(spec.get("reason", "pinned by a reviewer")))
    return strategy.pin(pins)


def override_gate(strategy, where: str, doc):
    """A gate written as in a strategy file, read for ``strategy`` as
    :func:`gating.overrides.load_overrides` reads it (its transforms and compensation)."""
    from gating.yaml_format import _Loader

    loader = _Loader(Path(strategy.source or "strategy"), {})
    loader.transforms = dict(strategy.transforms)
    loader.compensations = dict(strategy.compensations)
    if len(strategy.compensations) == 1:
        loader.default_comp = next(iter(strategy.compensations))
    return loader._gate(where, doc)


_OVERRIDES: dict[tuple, object] = {}


def outcome_of(task: TubeTask, panels: Panels, strategy, sample, result) -> TubeOutcome:
    """The outcome of gating ``sample`` (``task``'s file) into ``result`` with ``strategy``."""
    stats = result.stats()
    counts = dict(zip(stats["name"], stats["count"]))
    parent_pct = dict(zip(stats["name"], stats["percent_of_parent"]))
    rows = []
    for p in strategy:
        base = panels.base_of(task.tube, strategy, p.name)
        gated = p.name not in result.failed and (not base or base not in result.failed)
        nested, inside = (
            _nesting(strategy, result, p.name, base, counts) if gated else (False, math.nan)
        )
        events = counts[p.name]
        rows.append(
            {
                "population": ascii_name(p.name),  # 'CD27- B cells' in every output
                "parent": ascii_name(p.parent or ""),
                # a population whose gate failed on this file has no count (NaN)
                "events": math.nan if events is pd.NA else events,
                "percent_of_parent": float(parent_pct[p.name]),
                "base": ascii_name(base),
                "base_events": (
                    math.nan if not base or counts.get(base, pd.NA) is pd.NA else counts[base]
                ),
                "nested": nested,
                "events_in_base": inside,
            }
        )
    notes = [f"{Path(task.file).name}: {n}" for n in result.notes]
    membership = dict(result.masks) if task.save_events else None
    return TubeOutcome(
        task,
        pd.DataFrame(rows),
        notes,
        result.geometry(),
        sample.n_events,
        membership,
        failed={ascii_name(k): v for k, v in result.failed.items()},
    )


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not read as an FCS file (one line naming it), or None for a regular file
    (links followed). Only regular files are opened: reading a FIFO or a device blocks or never
    ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    except ValueError as exc:  # an embedded NUL
        return f"{str(path)!r}: {exc}"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"{path}: not a regular file ({kind}); give the FCS file itself"


def _nesting(strategy, result, name: str, base: str, counts: dict) -> tuple[bool, float]:
    """(whether the population lies inside its base, its events inside the base): nested when
    the base is the population or one of its ancestors, or when every event of it is inside the
    base; NaN events for rows without a base."""
    import numpy as np

    if not base or base not in counts:
        return False, math.nan
    ancestor: str | None = name
    while ancestor is not None:
        if ancestor == base:
            return True, float(counts[name])
        ancestor = strategy[ancestor].parent
    inside = int(np.count_nonzero(result.mask(name) & result.mask(base)))
    return inside == counts[name], float(inside)
