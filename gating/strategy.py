"""Strategy: an immutable tree of populations, each defined by a gate on its parent's events."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .compensation import FROM_FILE, UNCOMPENSATED, Compensation
from .errors import StrategyError
from .gates import BooleanGate, Gate
from .limits import MAX_DEPTH, MAX_NAME_LENGTH, MAX_POPULATIONS, excerpt
from .transforms import Ratio, Transform

if TYPE_CHECKING:
    from .result import GatingResult


_DASHES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2010": "-", "\u2011": "-"})


def _fold(name: str) -> str:
    """A population name with minus signs and dashes as ASCII hyphens (for lookups)."""
    return str(name).translate(_DASHES)


def name_problem(name: object, *, slash: bool = True, label: bool = True) -> str | None:
    """What is wrong with a population name, or None: it must be non-empty text without control
    characters (a NUL, a newline ...); a name that makes up population paths (its ``label``)
    at most MAX_NAME_LENGTH characters; and, unless ``slash``, without '/' (which separates the
    parts of population paths: strategy files may not use it, strategies built in Python may,
    e.g. a ratio named 'FSC/SSC')."""
    if not isinstance(name, str):
        return f"must be text, got {type(name).__name__} {excerpt(name)}"
    if not name.strip():
        return "is empty"
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        return f"holds the control character {bad!r}"
    if label and len(name) > MAX_NAME_LENGTH:
        return f"is {len(name):,} characters long, more than {MAX_NAME_LENGTH}"
    if not slash and "/" in name:
        return (
            "holds '/', which separates the parts of population paths "
            "('lymphocytes/T cells'); use another character (or a label)"
        )
    return None


def _check_population(p: Population, where: str) -> None:
    """StrategyError for a population whose name or label is not sane (see name_problem)."""
    # the name is the population's id; with a label, the label is what paths are made of
    # (FlowJo's populations are named by their path, 'lymphocytes/T cells', labelled 'T cells')
    problem = name_problem(p.name, label=p.label is None)
    if problem is None and p.label is not None:
        problem = name_problem(p.label)
        if problem is not None:
            problem = f"label {excerpt(p.label)} {problem}"
    if problem is not None:
        raise StrategyError(f"{where}: population name {excerpt(p.name)} {problem}")
    if p.parent is not None and not isinstance(p.parent, str):
        raise StrategyError(
            f"{where}: population {excerpt(p.name)}: parent must be a population name, "
            f"got {excerpt(p.parent)}"
        )
    if not isinstance(p.gate, Gate):
        raise StrategyError(
            f"{where}: population {excerpt(p.name)}: gate must be a Gate, got "
            f"{type(p.gate).__name__}"
        )


@dataclass(frozen=True)
class Population:
    """A named population: the events of ``parent`` (all events if None) inside ``gate``.

    ``name`` is unique in its strategy (Gating-ML: the gate id); ``label`` is what people call it
    (defaults to ``name``) and makes up population paths such as ``'lymphocytes/T cells/CD4+'``.
    """

    name: str
    gate: Gate
    parent: str | None = None
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label if self.label is not None else self.name


class Strategy:
    """A gating strategy: populations in dependency order, with the transforms and compensation
    matrices their gates refer to by id.

    Build one in Python, or load one: :meth:`load` (the project's YAML), :meth:`from_gatingml`,
    :meth:`from_flowjo`. Apply it with :meth:`apply`.
    """

    def __init__(
        self,
        populations: Iterable[Population],
        transforms: Mapping[str, Transform | Ratio] | None = None,
        compensations: Mapping[str, Compensation] | None = None,
        name: str = "",
        source: str | None = None,
        pins: Mapping[str, str] | None = None,
        notes: Iterable[str] = (),
    ):
        self.name = name
        self.source = source
        #: population name -> why its gate was pinned for this sample (see :meth:`pin`)
        self.pins: dict[str, str] = dict(pins or {})
        #: what a reader should know about these gates, e.g. that a frozen gate approximates the
        #: region it replaces (see :meth:`GatingResult.frozen`)
        self.notes: list[str] = list(notes)
        self.transforms: dict[str, Transform | Ratio] = dict(transforms or {})
        self.compensations: dict[str, Compensation] = dict(compensations or {})
        pops = list(populations)
        self.populations: tuple[Population, ...] = self._ordered(pops)
        self._by_name = {p.name: p for p in self.populations}
        self._check_references()
        self._paths = {p.name: self._path_of(p) for p in self.populations}

    # --- construction checks ---------------------------------------------------------------

    def _where(self) -> str:
        return self.source or (f"strategy {self.name!r}" if self.name else "strategy")

    def _ordered(self, pops: list[Population]) -> tuple[Population, ...]:
        """Populations after their parents and the populations their booleans refer to (in
        the order given otherwise); StrategyError for a name defined twice, an unknown
        reference, a cycle, or a strategy beyond :data:`~gating.limits.MAX_POPULATIONS` or
        :data:`~gating.limits.MAX_DEPTH`."""
        if len(pops) > MAX_POPULATIONS:
            raise StrategyError(
                f"{self._where()}: {len(pops):,} populations, more than the "
                f"{MAX_POPULATIONS:,} a strategy may have"
            )
        by_name: dict[str, Population] = {}
        for p in pops:
            _check_population(p, self._where())
            if p.name in by_name:
                raise StrategyError(
                    f"{self._where()}: population {excerpt(p.name)} is defined twice"
                )
            by_name[p.name] = p
        self._check_depth(by_name)
        order: list[Population] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done
        # depth-first, parents and references first: an explicit stack (a chain of booleans
        # may be as long as the strategy)
        stack: list[tuple[str, Iterator[tuple[str, str]]]] = []

        def enter(name: str, via: str) -> None:
            if name not in by_name:
                raise StrategyError(
                    f"{self._where()}: {via} refers to unknown population {excerpt(name)}"
                )
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise StrategyError(
                    f"{self._where()}: population {excerpt(name)} depends on itself"
                )
            state[name] = 1
            p = by_name[name]
            deps = [] if p.parent is None else [(p.parent, f"population {name!r} (parent)")]
            deps += [(ref, f"boolean gate {name!r}") for ref in p.gate.references()]
            stack.append((name, iter(deps)))

        for p in pops:
            enter(p.name, f"population {p.name!r}")
            while stack:
                name, deps = stack[-1]
                dep = next(deps, None)
                if dep is None:
                    stack.pop()
                    state[name] = 2
                    order.append(by_name[name])
                else:
                    enter(*dep)
        return tuple(order)

    def _check_depth(self, by_name: dict[str, Population]) -> None:
        """StrategyError when a parent chain is longer than MAX_DEPTH (or loops)."""
        depth: dict[str, int] = {}
        for p in by_name.values():
            chain: list[str] = []
            name: str | None = p.name
            while name is not None and name not in depth:
                chain.append(name)
                if len(chain) > MAX_DEPTH + 1 or name not in by_name:
                    break
                name = by_name[name].parent
                if name in chain:
                    raise StrategyError(
                        f"{self._where()}: population {excerpt(name)} depends on itself "
                        "(it is its own ancestor)"
                    )
            base = 0 if name is None or name not in depth else depth[name]
            for k, n in enumerate(reversed(chain), start=1):
                depth[n] = base + k
            if depth.get(p.name, 0) > MAX_DEPTH:
                raise StrategyError(
                    f"{self._where()}: population {excerpt(p.name)} is nested deeper than "
                    f"{MAX_DEPTH} levels (parent of parent of ...), the limit of a strategy"
                )

    def _check_references(self) -> None:
        for p in self.populations:
            for d in p.gate.dimensions:
                comp = d.compensation
                if comp not in (UNCOMPENSATED, FROM_FILE) and comp not in self.compensations:
                    raise StrategyError(
                        f"{self._where()}: gate {p.name!r} refers to compensation {comp!r}, which "
                        f"is not defined (known: {sorted(self.compensations) or 'none'})"
                    )
                for ref in (d.transform, d.name if d.ratio else None):
                    if ref is not None and ref not in self.transforms:
                        raise StrategyError(
                            f"{self._where()}: gate {p.name!r} refers to transform {ref!r}, which "
                            f"is not defined (known: {sorted(self.transforms) or 'none'})"
                        )
                if d.ratio and not isinstance(self.transforms[d.name], Ratio):
                    raise StrategyError(f"{self._where()}: {d.name!r} is not a ratio transform")

    def _path_of(self, p: Population) -> str:
        parts = [p.display]
        while p.parent is not None:
            p = self._by_name[p.parent]
            parts.append(p.display)
        return "/".join(reversed(parts))

    # --- lookup --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.populations)

    def __iter__(self):
        return iter(self.populations)

    def __getitem__(self, name: str) -> Population:
        return self._by_name[self.resolve_name(name)]

    def path(self, name: str) -> str:
        """Population path, e.g. ``'lymphocytes/T cells/CD4+'``."""
        return self._paths[self.resolve_name(name)]

    def resolve_name(self, key: str) -> str:
        """Population name from a name (gate id) or a path; KeyError listing the names if absent."""
        if key in self._by_name:
            return key
        hits = [n for n, path in self._paths.items() if path == key]
        if not hits:
            hits = [n for n, path in self._paths.items() if path.endswith("/" + key)]
        if not hits:
            hits = [p.name for p in self.populations if p.display == key]
        if not hits:
            # 'CD27- B cells' finds 'CD27− B cells' and back: minus signs and dashes as hyphens
            folded = _fold(key)
            hits = [n for n, path in self._paths.items() if _fold(n) == folded]
            hits = hits or [n for n, path in self._paths.items() if _fold(path) == folded]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise KeyError(f"{key!r} is ambiguous: {[self._paths[h] for h in hits]}")
        raise KeyError(
            f"no population {key!r} in {self._where()}; populations: {list(self._paths.values())}"
        )

    def children(self, name: str | None) -> list[Population]:
        return [p for p in self.populations if p.parent == name]

    # --- use -----------------------------------------------------------------------------------

    def apply(
        self, sample: Any, markers: Mapping[str, str] | str | os.PathLike | None = None
    ) -> GatingResult:
        """Gate ``sample`` (anything with ``events``, ``channels``, ``markers`` and ``spillover``,
        e.g. a :class:`cytowhim.Sample`) and return the populations' memberships.

        Marker names match the sample's labels as instruments write them (``CD3`` finds
        ``BV785 - CD3``, ``CD3 FITC``; see :mod:`gating.markers`); ``markers`` maps the
        strategy's names to the sample's marker or channel names where they differ
        (``{'CD8': 'CD8a'}``), or is a YAML file of such lines. ``result.resolved`` tells which
        channel each name was read from."""
        from .engine import apply_strategy
        from .markers import as_markers

        return apply_strategy(self, sample, as_markers(markers))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Strategy:
        """Load the project's declarative YAML strategy format."""
        from .yaml_format import load_yaml

        return load_yaml(path)

    @classmethod
    def from_gatingml(cls, path: str | os.PathLike) -> Strategy:
        """Load a Gating-ML 2.0 document."""
        from .gatingml import read_gatingml

        return read_gatingml(path)

    def to_yaml(self, path: str | os.PathLike) -> None:
        """Write the strategy in the project's YAML format."""
        from .yaml_format import dump_yaml

        dump_yaml(self, path)

    def to_gatingml(self, path: str | os.PathLike) -> dict[str, str]:
        """Write the strategy as a Gating-ML 2.0 document; returns population name -> gate id
        (names that are not valid XML ids get one; :meth:`from_gatingml` restores the names).
        Data-driven gates have no Gating-ML form: export ``strategy.apply(sample).frozen()``."""
        from .gatingml import write_gatingml

        return write_gatingml(self, path)

    def to_flowjo(self, path: str | os.PathLike, sample: Any) -> None:
        """Write a FlowJo 10 workspace (``.wsp``) holding ``sample`` (its FCS file, spillover and
        keywords) with this strategy's gates, e.g. ``result.frozen().to_flowjo(path, sample)``;
        see :func:`gating.flowjo_export.write_flowjo`."""
        from .flowjo_export import write_flowjo

        write_flowjo(self, path, sample)

    @classmethod
    def from_flowjo(cls, path: str | os.PathLike, sample: str) -> Strategy:
        """The gates a FlowJo workspace applied to ``sample`` (its file name or sample name)."""
        from .flowjo import read_flowjo

        return read_flowjo(path, sample)

    def pin(self, gates: Mapping[str, tuple[Gate, str]]) -> Strategy:
        """A copy in which some populations use a fixed gate (population -> (gate, reason)),
        e.g. a reviewer's geometry for one file; results record the pin and its reason."""
        names = {self.resolve_name(k): v for k, v in gates.items()}
        pops = [
            Population(p.name, names[p.name][0], p.parent, p.label) if p.name in names else p
            for p in self.populations
        ]
        pins = {**self.pins, **{n: reason for n, (_, reason) in names.items()}}
        return Strategy(
            pops, self.transforms, self.compensations, self.name, self.source, pins, self.notes
        )

    def with_compensation(self, compensation: Compensation) -> Strategy:
        """A copy with another compensation matrix under the same id."""
        comps = {**self.compensations, compensation.id: compensation}
        return Strategy(
            self.populations, self.transforms, comps, self.name, self.source, self.pins, self.notes
        )

    def __repr__(self) -> str:
        src = f" from {self.source}" if self.source else ""
        return f"<Strategy {self.name!r}{src}: {len(self.populations)} populations>"


def is_boolean(gate: Gate) -> bool:
    return isinstance(gate, BooleanGate)
