"""The lab's tubes (``data/panels.yaml``): the strategy that gates each tube, the base population
each gated population is counted against, which tube reports each Table 1 population, and (where
the lab's files name markers otherwise than the strategies) ``markers:``, for all tubes or per
tube: strategy name -> the files' marker or channel (``CD8: CD8a``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import CytowhimError
from .resources import data_path


def read_strategy(path: str | os.PathLike, sample: str | None = None):
    """:func:`gating.read_strategy` with cytowhim's FCS reader lent to the FlowJo importer (it
    reads a sample's channel names from its FCS file when the workspace lacks them)."""
    import gating.flowjo_workspace as workspace
    from gating import read_strategy as read

    from .fcs import read_fcs_metadata

    workspace.FCS_KEYWORDS = workspace.FCS_KEYWORDS or read_fcs_metadata
    return read(path, sample=sample)


class PanelError(CytowhimError, ValueError):
    """The panel configuration or a strategy it names cannot be used."""


@dataclass
class Panels:
    base_populations: dict[str, str]  # base population -> CBC count (ALC, AMC, ANC, WBC)
    strategies: dict[str, Path]  # tube -> strategy file
    bases: dict[str, dict[str, str]] = field(default_factory=dict)  # tube -> population -> base
    report: dict[str, str] = field(default_factory=dict)  # population -> tube
    source: str = ""
    _loaded: dict = field(default_factory=dict, repr=False)
    markers: dict[str, str] = field(default_factory=dict)  # strategy name -> file's, every tube
    tube_markers: dict[str, dict[str, str]] = field(default_factory=dict)  # tube -> its own
    extra_markers: dict[str, str] = field(default_factory=dict)  # --markers FILE: over both

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Panels:
        """The bundled panels, or a lab's own file (strategy paths relative to it)."""
        from gating import GatingError
        from gating.limits import read_yaml
        from gating.markers import parse_markers

        path = Path(path) if path is not None else data_path("panels.yaml")
        doc = read_yaml(path, "panel file", PanelError)
        try:
            tubes = doc["tubes"]
            markers = parse_markers(doc.get("markers"), f"{path}: markers")
            tube_markers = {
                str(t): parse_markers(v.get("markers"), f"{path}: tube {t}: markers")
                for t, v in tubes.items()
            }
            return cls(
                base_populations={str(k): str(v) for k, v in doc["base_populations"].items()},
                strategies={str(t): path.parent / str(v["strategy"]) for t, v in tubes.items()},
                bases={
                    str(t): {str(p): str(b) for p, b in (v.get("bases") or {}).items()}
                    for t, v in tubes.items()
                },
                report={str(p): str(t) for p, t in (doc.get("report") or {}).items()},
                source=str(path),
                markers=markers,
                tube_markers={t: m for t, m in tube_markers.items() if m},
            )
        except GatingError as exc:
            raise PanelError(str(exc)) from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise PanelError(
                f"{path}: expected base_populations, tubes: {{TUBE: {{strategy: "
                f"FILE}}}} and report ({type(exc).__name__}: {exc})"
            ) from None

    def with_strategies(self, overrides: dict[str, str]) -> Panels:
        """A copy with some tubes gated by other strategy files (``--strategy TUBE=FILE``)."""
        strategies = {**self.strategies, **{t: Path(f) for t, f in overrides.items()}}
        return replace(self, strategies=strategies, _loaded={})

    def with_markers(self, markers: dict[str, str]) -> Panels:
        """A copy whose tubes map these strategy names too (``--markers FILE``; they take
        precedence over the panel file's ``markers:``)."""
        return replace(self, extra_markers={**self.extra_markers, **markers}, _loaded={})

    def markers_for(self, tube: str) -> dict[str, str]:
        """Strategy name -> the files' marker or channel for a tube: the panel's ``markers:``,
        then the tube's own, then ``--markers`` (each over the one before)."""
        return {**self.markers, **self.tube_markers.get(tube, {}), **self.extra_markers}

    def strategy(self, tube: str):
        """The gating Strategy of a tube (loaded once); PanelError naming the tube if unknown."""
        if tube not in self.strategies:
            raise PanelError(
                f"tube {tube!r} has no strategy in {self.source or 'the panels'}; "
                f"known tubes: {sorted(self.strategies)} (or give --strategy "
                f"{tube}=FILE)"
            )
        if tube not in self._loaded:
            self._loaded[tube] = read_strategy(self.strategies[tube])
        return self._loaded[tube]

    def base_of(self, tube: str, strategy, population: str) -> str:
        """The base population a population is counted against ('' if none): the panel's
        choice, else its nearest ancestor (or itself) that is a base population."""
        explicit = self.bases.get(tube, {}).get(population)
        if explicit is not None:
            return explicit
        name: str | None = population
        while name is not None:
            if name in self.base_populations:
                return name
            name = strategy[name].parent
        return ""
