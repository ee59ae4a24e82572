"""Per-sample overrides: a reviewer pins a gate's geometry for one file.

An overrides file (YAML) maps FCS file names to populations and the gate to use for them there::

    P1-baseline_T.fcs:
      CD4 central memory:
        reason: shallow CCR7 valley, pinned after review (JD 2026-11-26)
        gate: {rectangle: {dimensions: [CCR7, CD62L], transform: fluor, min: [0.45, 0.5],
                           max: [null, null]}}

Gates are written as in strategy files and may use the strategy's transforms. Rerunning with the
file applies the pinned gate instead of the strategy's (data-driven or not) and the result records
that the population was overridden, and why.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StrategyError
from .gates import Gate
from .strategy import Strategy

Overrides = dict[str, dict[str, tuple[Gate, str]]]  # file name -> population -> (gate, reason)


def load_overrides(path: str | os.PathLike, strategy: Strategy) -> Overrides:
    """Read an overrides file for ``strategy``; StrategyError naming the file, the FCS file and
    the population at fault."""
    from .limits import read_yaml
    from .yaml_format import _Loader

    path = Path(path)
    doc = read_yaml(path, "overrides file")
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise StrategyError(f"{path}: expected FCS file names mapping to populations")
    loader = _Loader(path, {})
    loader.transforms = dict(strategy.transforms)
    loader.compensations = dict(strategy.compensations)
    if len(strategy.compensations) == 1:
        loader.default_comp = next(iter(strategy.compensations))
    out: Overrides = {}
    for fcs_name, pops in doc.items():
        if not isinstance(pops, dict):
            raise StrategyError(f"{path}: {fcs_name}: expected populations with a gate each")
        pinned = {}
        for pop, spec in pops.items():
            where = f"{fcs_name}: population {pop!r}"
            try:
                strategy.resolve_name(str(pop))
            except KeyError:
                raise StrategyError(
                    f"{path}: {where} is not in {strategy.source or 'the strategy'}"
                ) from None
            if not isinstance(spec, dict) or "gate" not in spec:
                raise StrategyError(f"{path}: {where}: needs a gate (and a reason)")
            gate = loader._gate(where, spec["gate"])
            pinned[str(pop)] = (gate, str(spec.get("reason", "pinned by a reviewer")))
        out[str(fcs_name)] = pinned
    return out


def for_file(overrides: Overrides, path: str | os.PathLike) -> dict[str, tuple[Gate, str]]:
    """The pins for one FCS file (matched by file name)."""
    return overrides.get(Path(path).name, {})
