"""Names of a strategy's dimensions, found among a sample's channels and markers.

A strategy names a channel (``$PnN``: ``FITC-A``) or a marker (``$PnS``: ``CD3``). Instruments
write ``$PnS`` with the fluorochrome: ``BV785 - CD3``, ``APCCy7 - CD4``, ``PerCP-Cy55 - CD45RA``,
``CD3 FITC``, ``CD3-APC``, ``CD3 (FITC)``, ``FITC CD3``. :class:`MarkerIndex` finds a name's column
once per sample; the first of these rules that finds anything decides:

1. an explicit mapping (``markers={'CD8': 'CD8a'}``: strategy name -> the sample's marker or
   channel, itself found by the rules below);
2. a channel name, exactly;
3. a marker label, exactly, then ignoring case;
4. a channel with '/' written '_' (as FlowJo writes channel names);
5. a marker label equal to the name after :func:`normalize` (``HLA DR`` = ``HLA-DR`` = ``hla_dr``);
6. a marker label whose marker part (:func:`split_label`: the label without its fluorochrome)
   equals the name after normalisation (``CD3`` = ``BV785 - CD3``).

One column is the answer; several are an error listing them (:class:`AmbiguousMarkerError`). There
is no prefix matching: ``CD8`` is not ``CD8a``, and the error for a missing name lists such near
misses and how to map the name.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AmbiguousMarkerError, MissingDimensionError, StrategyError

#: Fluorochromes (and viability dyes) recognised in marker labels, as labs spell them. A label's
#: fluorochrome part is recognised when, with case, spaces and punctuation ignored, it is one of
#: these or of the numbered families in :data:`_FAMILIES` (BV421 ... BV786, AF350 ... AF790,
#: eFluor 450 ..., Zombie <colour>, LIVE/DEAD <colour> ...).
FLUOROCHROMES: tuple[str, ...] = (
    # BD Horizon Brilliant: violet, ultraviolet, blue
    *("BV421", "BV480", "BV510", "BV570", "BV605", "BV650", "BV711", "BV750", "BV785", "BV786"),
    *("BUV395", "BUV496", "BUV563", "BUV615", "BUV661", "BUV737", "BUV805"),
    *("BB515", "BB700", "Super Bright 436", "SB600", "V450", "V500", "R718", "RB545", "RY586"),
    # blue / green
    *("FITC", "AF488", "Alexa Fluor 488"),
    # PE and its tandems
    *("PE", "PE-CF594", "PE-Dazzle594", "PE-Dazzle 594", "PE-Texas Red", "PE-eFluor610"),
    *("PE-Cy5", "PECy5", "PE-Cy5.5", "PE-Cy7", "PECy7", "PE/Cy7", "PE-Fire700", "PE-Vio770"),
    # PerCP and its tandems
    *("PerCP", "PerCP-Cy5.5", "PerCP-Cy55", "PerCPCy5.5", "PerCP-eFluor710", "PerCP-Vio700"),
    # APC and its tandems, red-laser Alexa Fluors
    *("APC", "APC-R700", "AF647", "Alexa Fluor 647", "AF700", "Alexa Fluor 700"),
    *("APC-Cy7", "APCCy7", "APC/Cy7", "APC-H7", "APC-Fire750", "APC-Fire 750", "APC-eFluor780"),
    *("APC-Vio770", "APC-A750", "APC-Alexa Fluor 750"),
    # eBioscience, Pacific, Beckman Coulter (Kaluza: PB, KO)
    *("eFluor450", "eF450", "eFluor506", "eFluor660", "Pacific Blue", "PacBlue", "Pacific Orange"),
    *("Krome Orange", "ECD", "PC5", "PC5.5", "PC7", "PB", "KO", "Texas Red", "Cy5", "Cy7"),
    # spectral
    *("Spark NIR 685", "Spark Blue 550", "cFluor V450", "cFluor R668"),
    # viability dyes
    *("L/D Aqua", "LIVE/DEAD Aqua", "Live/Dead Fixable Near-IR", "LD", "Zombie Aqua", "Zombie NIR"),
    *("Zombie Violet", "Zombie Yellow", "FVS510", "FVS780", "7-AAD", "DAPI", "PI"),
    *("Propidium Iodide", "SYTOX Blue", "TO-PRO-3", "DRAQ7", "ViaKrome 808", "Aqua"),
)

# Numbered families and tandems, on the compact form (lower case, letters and digits only).
_FAMILIES = re.compile(
    r"""(?:bv|buv|bb|byg|rb|ry|sb|superbright|brilliantviolet|brilliantultraviolet
          |af|alexafluor|alexa|efluor|ef|v|fvs|qdot|qd|dylight|cf|viakrome|nfb|nfr|nfv|nfy)\d{3}
      |spark(?:blue|violet|uv|nir|yg|red|plus)?\d{3}
      |cfluor(?:v|b|bv|yg|r|uv)?\d{3}
      |(?:livedead(?:fixable)?|fixablelivedead|ld|zombie)
          (?:aqua|violet|blue|green|yellow|orange|red|farred|nir|nearir|uv|\d{3})?
      |sytox(?:blue|green|orange|red|aadvanced)?
      |(?:pe|apc|percp)(?:cy[357]|cy55|efluor\d{3}|ef\d{3}|fire\d{3}|vio\d{3}|alexafluor\d{3}
          |af\d{3}|a\d{3}|cf\d{3}|dazzle(?:\d{3})?|texasred|txred|r\d{3}|h7)
    """,
    re.VERBOSE,
)

_DASHES = {c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"}
_GREEK = {"α": "a", "β": "b", "γ": "g", "δ": "d", "ε": "e", "κ": "k", "λ": "l"}
_FOLD = str.maketrans({**_DASHES, **_GREEK})
_DASH_TABLE = str.maketrans(_DASHES)
_SEPARATORS = r"[\s\-_/:;,|()\[\]{}]+"
_SPLIT = re.compile(f"({_SEPARATORS})")
_EDGES = re.compile(f"^{_SEPARATORS}|{_SEPARATORS}$")


def _folded(label: str) -> str:
    return unicodedata.normalize("NFKC", str(label)).casefold().translate(_FOLD)


def normalize(label: str) -> str:
    """A marker label for comparison: case-folded, Greek letters spelled in Latin (TCRγδ =
    TCRgd), spaces, hyphens, underscores, dashes and the minus sign (U+2212) dropped:
    ``normalize('HLA-DR') == normalize('HLA DR') == normalize('hla_dr') == 'hladr'``."""
    return re.sub(r"[\s\-_]+", "", _folded(label))


def _compact(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", _folded(text))


_FLUOR_KEYS = frozenset(_compact(f) for f in FLUOROCHROMES)


def is_fluorochrome(text: str) -> bool:
    """Whether ``text`` names a fluorochrome or viability dye (case, spaces and punctuation
    ignored: PE-Cy7 = PECy7 = PE/Cy7; PerCP-Cy5.5 = PerCP-Cy55)."""
    key = _compact(text)
    return bool(key) and (key in _FLUOR_KEYS or _FAMILIES.fullmatch(key) is not None)


def split_label(label: str) -> tuple[str, str]:
    """(marker, fluorochrome) of a ``$PnS`` label, as written; ``(label, '')`` when no
    fluorochrome is recognised at its start or end.

    Either order, with the usual separators (`` - ``, ``-``, space, ``_``, ``/``, parentheses):
    ``'BV785 - CD3'``, ``'CD3 FITC'``, ``'CD3-APC'``, ``'CD3 (FITC)'``, ``'L/D Aqua - Viability'``
    -> the marker CD3 (Viability). The longest fluorochrome wins (``PE-Cy7 - CD4``: PE-Cy7).
    """
    text = _EDGES.sub("", str(label).translate(_DASH_TABLE))
    parts = _SPLIT.split(text)
    tokens, seps = parts[0::2], parts[1::2]
    n = len(tokens)
    if n < 2:
        return str(label), ""

    def join(a: int, b: int) -> str:
        out = tokens[a]
        for k in range(a + 1, b):
            out += seps[k - 1] + tokens[k]
        return out

    for k in range(n - 1, 0, -1):  # fluorochrome first: tokens[:k]
        if is_fluorochrome(join(0, k)):
            if k == n - 1 and tokens[-1] in ("A", "H", "W"):
                break  # a channel name as a label ('FITC-A'): no marker
            return join(k, n), join(0, k)
    for k in range(1, n):  # fluorochrome last: tokens[k:]
        if is_fluorochrome(join(k, n)):
            return join(0, k), join(k, n)
    return str(label), ""


@dataclass(frozen=True)
class _Label:
    column: int
    channel: str
    text: str  # $PnS as written
    key: str  # normalize(text)
    marker: str  # the marker part as written ('' without a recognised fluorochrome)
    marker_key: str
    fluor_key: str

    def show(self) -> str:
        return f"{self.channel} ({self.text})"


def _label(j: int, channel: str, text: str) -> _Label:
    marker, fluor = split_label(text) if text else (text, "")
    if not fluor:
        return _Label(j, channel, text, normalize(text), "", "", "")
    return _Label(j, channel, text, normalize(text), marker, normalize(marker), _compact(fluor))


class MarkerIndex:
    """The columns of one sample by channel or marker name (see the module docstring), each name
    found once and remembered. ``mapping``: strategy name -> the sample's marker or channel.
    ``where`` and ``sample`` name the strategy and the sample in error messages."""

    def __init__(
        self,
        channels: list[str],
        markers: list[str],
        mapping: Mapping[str, str] | None = None,
        where: str = "the strategy",
        sample: str = "the sample",
    ):
        self.channels = [str(c) for c in channels]
        self.markers = [str(m or "") for m in markers]
        self.mapping = dict(mapping or {})
        self._mapped = {normalize(k): v for k, v in self.mapping.items()}
        self.where, self.sample = where, sample
        self._labels: list[_Label] | None = None
        self._columns: dict[str, int] = {}

    @property
    def labels(self) -> list[_Label]:
        if self._labels is None:
            self._labels = [
                _label(j, c, m) for j, (c, m) in enumerate(zip(self.channels, self.markers)) if m
            ]
        return self._labels

    def target(self, name: str) -> str | None:
        """The sample name the mapping gives for ``name`` (None: not mapped)."""
        if name in self.mapping:
            return self.mapping[name]
        return self._mapped.get(normalize(name))

    def column(self, name: str) -> int:
        """Column of ``name``; MissingDimensionError listing near misses when the sample has no
        such channel or marker, AmbiguousMarkerError listing the candidates when it has several."""
        j = self._columns.get(name)
        if j is None:
            target = self.target(name)
            hits = self._find(name if target is None else target)
            if len(hits) != 1:
                raise self._error(name, hits)
            j = self._columns[name] = hits[0]
        return j

    def _find(self, name: str) -> list[int]:
        """Columns of the first rule (2-6 of the module docstring) that finds any."""
        if name in self.channels:
            return [self.channels.index(name)]
        hits = [j for j, m in enumerate(self.markers) if m == name]
        if hits:
            return hits
        folded = name.casefold()
        hits = [j for j, m in enumerate(self.markers) if m and m.casefold() == folded]
        if hits:
            return hits
        if "/" in name:  # FlowJo writes '/' in channel names as '_'
            alias = [
                j
                for j, c in enumerate(self.channels)
                if c.replace("/", "_") == name.replace("/", "_")
            ]
            if len(alias) == 1:
                return alias
        key = normalize(name)
        if not key:
            return []
        hits = [lab.column for lab in self.labels if lab.key == key]
        if hits:
            return hits
        marker, fluor = split_label(name)
        if fluor:  # the name has a fluorochrome too ('CD3 FITC'): both must agree
            mkey, fkey = normalize(marker), _compact(fluor)
            return [
                lab.column
                for lab in self.labels
                if lab.marker_key == mkey and lab.fluor_key == fkey
            ]
        return [lab.column for lab in self.labels if lab.marker_key == key]

    def near_misses(self, name: str) -> list[_Label]:
        """Labels whose marker starts with the name (``CD8``: ``BV650 - CD8a``, ``APC - CD8b``)."""
        key = normalize(name)
        if not key:
            return []

        def variant(label: str) -> bool:  # CD8 -> CD8a, CD8b; not CD4 -> CD45 (another marker)
            rest = label[len(key) :]
            return (
                label.startswith(key)
                and bool(rest)
                and not (key[-1].isdigit() and rest[0].isdigit())
            )

        return [lab for lab in self.labels if variant(lab.marker_key or lab.key)]

    def detail(self, name: str) -> str:
        """What to say of a name that was not found: its mapping, its near misses."""
        out = []
        target = self.target(name)
        if target is not None:
            out.append(f"markers maps it to {target!r}, which the sample lacks")
        near = self.near_misses(name if target is None else target)
        if near:
            out.append(f"near misses: {', '.join(lab.show() for lab in near)}")
        return "; ".join(out)

    def hint(self, names: list[str]) -> str:
        """How to map the first of ``names`` (to its first near miss where there is one)."""
        for name in names:
            near = self.near_misses(self.target(name) or name)
            if near:
                return f"map the name to one: markers: {{{name}: {near[0].marker or near[0].text}}}"
        return f"map a name to one of these with markers: {{{names[0]}: MARKER_OR_CHANNEL}}"

    def _error(self, name: str, hits: list[int]) -> MissingDimensionError:
        if hits:
            target = self.target(name)
            shown = repr(name) if target is None else f"{target!r} (mapped from {name!r})"
            cands = ", ".join(
                f"{self.channels[j]} ({self.markers[j]})" if self.markers[j] else self.channels[j]
                for j in hits
            )
            return AmbiguousMarkerError(
                f"{self.where}: marker {shown} labels several channels of {self.sample}: "
                f"{cands}; name the channel instead, or map it: "
                f"markers: {{{name}: {self.channels[hits[0]]}}}"
            )
        detail = self.detail(name)
        return MissingDimensionError(
            f"{self.where}: {self.sample} has no channel or marker {name!r}"
            + (f" ({detail})" if detail else "")
            + f"; {self.hint([name])}; it has: {self.inventory()}"
        )

    def require(self, needed: Mapping[str, list[str]]) -> None:
        """Every name of ``needed`` (name -> what needs it) is found; else one error naming all
        the missing ones, what needs them and their near misses. An ambiguity raises at once."""
        missing, names = [], []
        for name, users in needed.items():
            try:
                self.column(name)
            except AmbiguousMarkerError:
                raise
            except MissingDimensionError:
                detail = self.detail(name)
                names.append(name)
                missing.append(
                    f"{name!r} (for {', '.join(dict.fromkeys(users))}"
                    + (f"; {detail}" if detail else "")
                    + ")"
                )
        if missing:
            raise MissingDimensionError(
                f"{self.where}: {self.sample} has no channel or marker {'; '.join(missing)}; "
                f"{self.hint(names)}; it has: {self.inventory()}"
            )

    def inventory(self) -> str:
        """'channel (marker), ...' of the sample, for error messages."""
        return ", ".join(f"{c} ({m})" if m else c for c, m in zip(self.channels, self.markers))


# --- explicit mappings ---------------------------------------------------------------------------


def parse_markers(doc: Any, where: str) -> dict[str, str]:
    """A marker mapping (strategy name -> the sample's marker or channel) from parsed YAML:
    ``{CD8: CD8a}``, or ``{markers: {CD8: CD8a}}``; None is an empty mapping."""
    if doc is None:
        return {}
    if isinstance(doc, dict) and set(doc) == {"markers"} and isinstance(doc["markers"], dict):
        doc = doc["markers"]
    if not isinstance(doc, dict):
        raise StrategyError(
            f"{where}: a marker mapping is 'NAME: MARKER' lines (the strategy's name: the "
            f"sample's marker or channel), e.g. 'CD8: CD8a'; got {type(doc).__name__}"
        )
    out = {}
    for k, v in doc.items():
        if v is None or isinstance(v, (dict, list, bool)) or k is None:
            raise StrategyError(
                f"{where}: marker {k!r} must map to one marker or channel name, got {v!r}"
            )
        out[str(k)] = str(v)
    return out


def load_markers(path: str | os.PathLike) -> dict[str, str]:
    """A marker mapping from a YAML file of ``NAME: MARKER`` lines (``CD8: CD8a``), or with them
    under ``markers:``; StrategyError naming the file when it is not one."""
    from .limits import read_yaml

    return parse_markers(read_yaml(Path(path), "marker mapping"), str(path))


def as_markers(markers: Mapping[str, str] | str | os.PathLike | None) -> dict[str, str]:
    """A mapping as given, or loaded from a YAML file (see :func:`load_markers`)."""
    if markers is None:
        return {}
    if isinstance(markers, (str, os.PathLike)):
        return load_markers(markers)
    return parse_markers(dict(markers), "markers")
