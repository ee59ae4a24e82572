"""What FlowJo 10 and FlowJo 9 workspaces share: their samples and how they are picked, the
sample's parameter names, its compensation matrix, the population tree under construction, and the
base class of the two readers (:mod:`gating.flowjo10`, :mod:`gating.flowjo9`)."""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import numpy as np

from .compensation import FROM_FILE, UNCOMPENSATED, Compensation
from .errors import GatingError, StrategyError
from .gates import Gate
from .gatingml import NS
from .strategy import Population, Strategy
from .transforms import Transform

_G, _T, _D = (f"{{{NS[k]}}}" for k in ("gating", "transforms", "data-type"))


# --- samples and names ----------------------------------------------------------------------------


@dataclass
class _SampleInfo:
    element: ET.Element
    name: str  # FlowJo's sample name
    files: tuple[str, ...]  # FCS file names: the DataSet URI's, $FIL
    uri: str | None = None

    @property
    def key(self) -> str:
        """What names the sample best: its FCS file name, else its FlowJo name."""
        return self.files[0] if self.files else self.name

    def describe(self) -> str:
        return self.key if self.key == self.name else f"{self.key} ({self.name})"

    @classmethod
    def of(cls, el: ET.Element, uri: str | None = None) -> _SampleInfo | None:
        node = el.find("SampleNode")
        if node is None:
            return None
        files = tuple(dict.fromkeys(f for f in (_file_name(uri), _keyword(el, "$FIL")) if f))
        name = node.get("name") or node.get("nodeName")  # FlowJo 9.7 writes nodeName
        return cls(el, name or (files[0] if files else "?"), files, uri)


class _Names:
    """Maps FlowJo's parameter names to the sample's channel names (FlowJo writes '/' as '_')."""

    def __init__(self, channels: Sequence[str] | None):
        self.channels = list(channels) if channels is not None else None

    def __call__(self, name: str) -> str:
        if self.channels is None or name in self.channels:
            return name
        hits = [c for c in self.channels if c.replace("/", "_") == name]
        return hits[0] if len(hits) == 1 else name


def _file_name(uri: str | None) -> str | None:
    if not uri:
        return None
    name = PurePosixPath(unquote(urlparse(uri).path).replace("\\", "/")).name
    return name or None


def _keyword(sample_el: ET.Element, name: str) -> str | None:
    for kw in sample_el.iterfind("Keywords/Keyword"):
        if kw.get("name") == name:
            return kw.get("value")
    return None


#: Reads an FCS file's TEXT keywords (path -> mapping of keyword -> value). The application that
#: owns an FCS reader lends it (cytowhim sets its ``read_fcs_metadata`` when it reads a strategy),
#: so the engine never imports it; without one, channel names come from the workspace alone.
FCS_KEYWORDS: Callable[[Path], Mapping[str, str]] | None = None


def _fcs_channels(ws_path: Path, info: _SampleInfo) -> list[str] | None:
    """$PnN names from the sample's FCS file, if it is at its URI or next to the workspace and
    an FCS keyword reader was lent (:data:`FCS_KEYWORDS`)."""
    if FCS_KEYWORDS is None:
        return None
    candidates = []
    if info.uri:
        candidates.append(ws_path.parent / unquote(urlparse(info.uri).path))  # relative or not
    candidates += [ws_path.parent / name for name in info.files]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            with warnings.catch_warnings():  # the file's quirks are reported when it is read
                warnings.simplefilter("ignore")
                kw = FCS_KEYWORDS(candidate)
            n = int(kw["$PAR"])
            if not 1 <= n <= 100_000:  # a damaged $PAR: names from the workspace alone
                continue
            return [kw.get(f"$P{i}N", "").strip() for i in range(1, n + 1)]
        except (KeyError, ValueError, OSError):
            continue
    return None


@dataclass(frozen=True)
class _Matrix:
    """How a sample names and compensates its compensated parameters: FlowJo writes them as
    ``prefix + detector + suffix`` ('Comp-FITC-A', '<FITC-A>')."""

    comp_id: str | None = None  # None: not compensated; 'FCS': the file's own matrix
    name: str = ""  # FlowJo's matrix name (FlowJo 9 names calibration tables after it)
    prefix: str = ""
    suffix: str = ""
    detectors: frozenset[str] = frozenset()  # FlowJo's names; empty: any prefixed name

    def split(self, fj_name: str) -> tuple[str, str]:
        """(parameter name without prefix and suffix, compensation id) of a FlowJo name."""
        p, s = self.prefix, self.suffix
        if not (fj_name.startswith(p) and fj_name.endswith(s) and len(fj_name) > len(p + s)):
            return fj_name, UNCOMPENSATED
        bare = fj_name[len(p) : len(fj_name) - len(s)]
        if self.comp_id is None or (self.detectors and bare not in self.detectors):
            return (bare if p or s else fj_name), UNCOMPENSATED
        return bare, self.comp_id


def _spillover(
    ident: str, rows: list[tuple[str | None, list[tuple[str | None, float | None]]]], where: str
) -> Compensation:
    """A spillover matrix from FlowJo's rows: (fluorochrome, [(detector, coefficient), ...])."""
    cols = [c for c, _ in rows[0][1]] if rows else []
    if not rows or any([c for c, _ in r] != cols for _, r in rows):
        raise StrategyError(f"{where}: rows name different detectors (or there are none)")
    if None in cols or any(n is None or None in [v for _, v in r] for n, r in rows):
        raise StrategyError(f"{where}: incomplete matrix")
    try:
        return Compensation(
            ident,
            tuple(str(n) for n, _ in rows),
            tuple(str(c) for c in cols),
            np.array([[v for _, v in r] for _, r in rows], dtype=np.float64),
        )
    except GatingError as exc:
        raise StrategyError(f"{where}: {exc}") from None


class _Tree:
    """Populations under construction, named by path."""

    def __init__(self, where: str):
        self.where = where
        self.populations: list[Population] = []
        self.labels: dict[str, tuple[str, ...]] = {}
        self.reserved: set[str] = set()

    @staticmethod
    def name(parts: tuple[str, ...]) -> str:
        return "/".join(parts)

    def add(self, parts: tuple[str, ...], gate: Gate) -> None:
        name = self.name(parts)
        if name in self.labels and name not in self.reserved:
            raise StrategyError(f"{self.where}: population {name!r} is defined twice")
        self.reserved.discard(name)
        parent = self.name(parts[:-1]) if len(parts) > 1 else None
        self.populations.append(Population(name, gate, parent, parts[-1]))
        self.labels[name] = parts

    def reserve(self, parts: tuple[str, ...]) -> None:
        """Make a population's name known before its gate is built (booleans that refer to
        booleans defined after them)."""
        name = self.name(parts)
        if name in self.labels:
            raise StrategyError(f"{self.where}: population {name!r} is defined twice")
        self.labels[name] = parts
        self.reserved.add(name)

    def resolve(self, dependent: str, parent: tuple[str, ...]) -> str:
        """A FlowJo boolean operand: a path from the sample's root. A path outside the boolean's
        parent is a boolean gate copied from elsewhere: FlowJo re-anchors it on the same-named
        population under the new parent."""
        dependent = dependent.strip("/")
        prefix = self.name(parent) + "/" if parent else ""
        if dependent in self.labels and dependent.startswith(prefix):
            return dependent
        siblings = [
            n
            for n, parts in self.labels.items()
            if parts[:-1] == parent
            and (dependent == parts[-1] or dependent.endswith("/" + parts[-1]))
        ]
        if siblings:
            return max(siblings, key=len)
        if dependent in self.labels:
            return dependent
        raise StrategyError(
            f"{self.where}: boolean gate under {self.name(parent) or 'the root'!r} refers to "
            f"{dependent!r}, which is not a population of this sample"
        )


class _Workspace(ABC):
    """What both dialects share: samples, sample choice, dimensions and the strategy."""

    def __init__(self, path: str | os.PathLike, root: ET.Element):
        self.path = os.fspath(path)
        self.root = root
        self.samples = self._samples()
        self._start(_Names(None), self.path)

    def _start(self, names: _Names, where: str) -> None:
        """Fresh state for building one sample's strategy."""
        self.names = names
        self.transforms: dict[str, Transform] = {}
        self.compensations: dict[str, Compensation] = {}
        self.matrix = _Matrix()
        self.tree = _Tree(where)

    @abstractmethod
    def _samples(self) -> list[_SampleInfo]: ...

    def pick(self, wanted: str) -> _SampleInfo:
        key = str(wanted)
        base = PurePosixPath(key.replace("\\", "/")).name
        rules = (
            lambda s: key in s.files or base in s.files,
            lambda s: s.name in (key, base),
            lambda s: base.casefold() in {f.casefold() for f in s.files},
            lambda s: s.name.casefold() == base.casefold(),
        )
        for rule in rules:
            hits = [s for s in self.samples if rule(s)]
            if len(hits) == 1:
                return hits[0]
            if hits:
                raise StrategyError(
                    f"{self.path}: {key!r} names {len(hits)} samples "
                    f"({', '.join(s.describe() for s in hits)}); give the FCS file name"
                )
        listing = ", ".join(s.describe() for s in self.samples) or "none"
        raise StrategyError(f"{self.path}: no sample {key!r} in this workspace; samples: {listing}")

    def strategy(self, info: _SampleInfo, names: _Names) -> Strategy:
        self._start(names, f"{self.path}: sample {info.describe()!r}")
        self._read_sample(info)
        try:
            return Strategy(
                self.tree.populations,
                self.transforms,
                self.compensations,
                name=f"{Path(self.path).stem}: {info.describe()}",
                source=self.path,
            )
        except StrategyError:
            raise
        except GatingError as exc:
            raise StrategyError(f"{self.tree.where}: {exc}") from None

    @abstractmethod
    def _read_sample(self, info: _SampleInfo) -> None: ...

    def where(self, parts: tuple[str, ...]) -> str:
        return f"{self.tree.where}, population {_Tree.name(parts)!r}"

    def _add_transform(self, ident: str, tr: Transform | None) -> str | None:
        if tr is None:
            return None
        self.transforms.setdefault(ident, tr)
        return ident

    def _use_matrix(self, el: ET.Element, rows, prefix: str, suffix: str) -> None:
        """The sample's spillover matrix (FlowJo's name as its id) and how FlowJo names the
        parameters it compensates."""
        name = (el.get("name") or "").strip()
        ident = name if name not in ("", UNCOMPENSATED, FROM_FILE) else f"FlowJo {name}".strip()
        where = f"{self.tree.where}, compensation matrix {name!r}"
        comp = _spillover(ident, rows, where)
        self.compensations[ident] = Compensation(
            ident,
            tuple(self.names(n) for n in comp.fluorochromes),
            tuple(self.names(n) for n in comp.detectors),
            comp.matrix,
        )
        self.matrix = _Matrix(ident, name, prefix, suffix, frozenset(comp.fluorochromes))

    def _add(self, parts: tuple[str, ...], build) -> None:
        try:
            self.tree.add(parts, build())
        except StrategyError:
            raise
        except (GatingError, ValueError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
            raise StrategyError(f"{self.where(parts)}: {exc}") from None
