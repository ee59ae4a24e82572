"""GatingResult: which events fall in which population, and the gates that were applied."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from .evaluator import Evaluator
    from .gates import Gate
    from .strategy import Strategy


@dataclass(eq=False)
class GatingResult:
    """Memberships of every population of a strategy in one sample.

    masks: population name -> bool array over all events (n_events,).
    gates: population name -> the gate actually applied (data-driven gates: their resolved
    geometry for this sample).
    """

    strategy: Strategy
    masks: dict[str, np.ndarray]
    gates: dict[str, Gate]
    evaluator: Evaluator | None = field(default=None, repr=False)
    failed: dict[str, str] = field(default_factory=dict)
    """Population name -> why it has no count: its data-driven gate could not place itself on
    this sample (no valley, no cluster ...), or a population it depends on was not gated. The
    rest of the strategy is gated as usual."""

    @property
    def notes(self) -> list[str]:
        """What the engine had to tell about this sample: data-driven gates that fell back, no
        spillover to compensate with ... (also issued as GatingWarnings)."""
        return [] if self.evaluator is None else list(self.evaluator.notes)

    @property
    def resolved(self) -> dict[str, str]:
        """Each name the gates use (marker or channel) -> the channel ($PnN) of the sample it
        was read from, e.g. {'CD3': '670/30Violet-A'} for a file labelling it 'BV785 - CD3'."""
        return {} if self.evaluator is None else dict(self.evaluator.resolved)

    @property
    def pinned(self) -> dict[str, str]:
        """Population name -> reason, for gates a reviewer pinned for this sample."""
        return dict(self.strategy.pins)

    @property
    def n_events(self) -> int:
        return 0 if self.evaluator is None else self.evaluator.n

    def mask(self, name: str) -> np.ndarray:
        """Bool array over all events for a population: its name (Gating-ML gate id) or path.
        A population that was not gated (see ``failed``) raises GatingError saying why."""
        key = self.strategy.resolve_name(name)
        if key in self.failed:
            from .errors import GatingError

            raise GatingError(
                f"population {key!r} was not gated on this sample: {self.failed[key]}"
            )
        return self.masks[key]

    def count(self, name: str) -> int:
        return int(np.count_nonzero(self.mask(name)))

    def counts(self) -> pd.Series:
        """Events per population, indexed by population path ('lymphocytes/T cells/CD4+')."""
        import pandas as pd

        st = self.strategy
        counts = {
            st.path(p.name): None
            if p.name in self.failed
            else int(np.count_nonzero(self.masks[p.name]))
            for p in st.populations
        }
        # populations that were not gated have no count (<NA>, nullable Int64)
        return pd.Series(counts, name="count", dtype="Int64" if self.failed else "int64")

    def stats(self, medians: bool = False) -> pd.DataFrame:
        """One row per population: path, name, parent, count, percent of parent, percent of all.

        medians=True adds the median of every fluorescence channel per population (compensated
        with the sample's spillover where it has one; column names are markers where known).
        """
        import pandas as pd

        st = self.strategy
        total = self.n_events
        rows = []
        for p in st.populations:
            n = int(np.count_nonzero(self.masks[p.name]))
            parent_n = int(np.count_nonzero(self.masks[p.parent])) if p.parent else total
            row = {
                "population": st.path(p.name),
                "name": p.name,
                "parent": st.path(p.parent) if p.parent else "",
                "gate": type(self.gates[p.name]).kind,
                "count": n,
                "percent_of_parent": 100.0 * n / parent_n if parent_n else float("nan"),
                "percent_of_total": 100.0 * n / total if total else float("nan"),
                "pinned": st.pins.get(p.name, ""),
            }
            if self.failed:
                row["failed"] = self.failed.get(p.name, "")
                if p.name in self.failed:
                    row |= {"count": None, "percent_of_parent": np.nan, "percent_of_total": np.nan}
            rows.append(row)
        frame = pd.DataFrame(rows)
        if self.failed:  # populations that were not gated: no count (<NA>), 'failed' says why
            frame["count"] = frame["count"].astype("Int64")
        if medians and self.evaluator is not None:
            frame = frame.join(self._medians(frame["name"].tolist()))
        return frame

    def _medians(self, names: list[str]) -> pd.DataFrame:
        import pandas as pd

        ev = self.evaluator
        assert ev is not None
        spill = getattr(ev.sample, "spillover", None)
        fluor = list(spill.columns) if spill is not None else []
        cols = {}
        if fluor:
            comp = ev.compensated("FCS")
            for ch in fluor:
                marker = ev.markers[ev.channels.index(ch)] if ch in ev.channels else ""
                cols[f"median {marker or ch}"] = comp[ch]
        else:
            for j, marker in enumerate(ev.markers):
                if marker:
                    cols[f"median {marker}"] = ev.raw(j)
        out = {
            label: [
                float(np.median(v[self.masks[n]])) if self.masks[n].any() else np.nan for n in names
            ]
            for label, v in cols.items()
        }
        return pd.DataFrame(out)

    def geometry(self) -> dict[str, dict[str, Any]]:
        """Population path -> {'gate': kind, 'dimensions': [...], ...geometry} as applied."""
        out = {}
        for p in self.strategy.populations:
            g = self.gates[p.name]
            out[self.strategy.path(p.name)] = {
                "gate": type(g).kind,
                "dimensions": [
                    {"name": d.name, "compensation": d.compensation, "transform": d.transform}
                    for d in g.dimensions
                ],
                **g.geometry(),
            }
            if p.name in self.strategy.pins:
                out[self.strategy.path(p.name)]["pinned"] = self.strategy.pins[p.name]
            if p.name in self.failed:
                out[self.strategy.path(p.name)]["failed"] = self.failed[p.name]
        return out

    def frozen(self, embed_spillover: bool = True) -> Strategy:
        """The gates as applied to this sample, as a :class:`Strategy` of fixed gates: the same
        populations, parents, transforms and compensation, each data-driven gate replaced by the
        geometry it took here (threshold, quantile and tail gates: ranges; automatic quadrants:
        rectangles; singlets: a polygon). A scatter-mixture cluster has no exact fixed form: it
        becomes a polygon tracing its boundary, checked against the cluster on this sample's
        events (``frozen().notes`` says by how many events they differ, usually none).

        Dimensions name the sample's channels ($PnN); the file's spillover matrix is embedded as
        compensation ``'spillover'`` (``embed_spillover=False`` keeps ``'FCS'``). Applying the
        result to the same sample gives the same counts; ``frozen().to_gatingml(path)`` and
        ``frozen().to_flowjo(path, sample)`` export it."""
        from .freeze import freeze

        return freeze(self, embed_spillover=embed_spillover)
