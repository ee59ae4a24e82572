"""`Sample`: one data set of one FCS file, the object every step of cytowhim takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass(eq=False)
class Sample:
    """Events of one FCS data set with their names.

    Attributes
    ----------
    events : numpy.ndarray, shape (events, parameters)
        Raw values as stored in the file: no gain, no log decoding, no compensation. The dtype is
        the stored one (float32 for ``$DATATYPE F``, float64 for ``D``, unsigned integers for ``I``;
        24-bit and mixed-width integers widen to the next unsigned type, ASCII reads as float64).
    channels : list[str]
        ``$PnN`` names, made unique (a repeated name gets a ``_2``, ``_3`` ... suffix and a
        warning).
    markers : list[str]
        ``$PnS`` names, ``''`` where the file has none.
    keywords : dict[str, str]
        TEXT (and supplemental TEXT) keywords. Standard ``$`` keywords are upper-cased (the standard
        makes them case-insensitive); other keywords and all values are kept as in the file.
    spillover : pandas.DataFrame or None
        Spillover matrix (channels x channels, rows = fluorochromes spilling into columns) from
        ``$SPILLOVER`` / ``SPILL`` / ``$SPILL``, indexed by channel name.
    path, data_set, version
        Where the events came from: the file, the data set index (``$NEXTDATA`` chain) and the FCS
        version (``'FCS3.1'`` ...).
    """

    events: np.ndarray
    channels: list[str]
    markers: list[str]
    keywords: dict[str, str] = field(default_factory=dict)
    spillover: pd.DataFrame | None = None
    path: str | None = None
    data_set: int = 0
    version: str = "FCS3.1"
    _scales: list | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        ev = self.events
        if not isinstance(ev, np.ndarray) or ev.ndim != 2:
            raise ValueError(
                f"Sample.events must be a 2-D numpy array (events x parameters), got "
                f"{type(ev).__name__} with shape {getattr(ev, 'shape', None)}"
            )
        n = ev.shape[1]
        if len(self.channels) != n:
            raise ValueError(f"Sample has {n} parameters but {len(self.channels)} channel names")
        if len(self.markers) != n:
            raise ValueError(f"Sample has {n} parameters but {len(self.markers)} marker names")

    @property
    def n_events(self) -> int:
        """Number of events (rows of ``events``)."""
        return int(self.events.shape[0])

    @property
    def n_parameters(self) -> int:
        """Number of parameters (columns of ``events``)."""
        return int(self.events.shape[1])

    def linear_values(self, j: int) -> np.ndarray:
        """Linear (scale) values of parameter ``j`` as float64: ``$PnE`` log-amplified values
        decoded, ``$PnG`` gain divided out, time in ``$TIMESTEP`` units. The gating engine gates
        on these, as Gating-ML and FlowJo do. Shape (events,)."""
        if self._scales is None:
            from .fcs.scale import parameter_scales

            self._scales = parameter_scales(self.keywords, self.channels)
        scale = self._scales[j]
        if scale.identity:
            return np.array(self.events[:, j], dtype=np.float64)
        return scale.apply(self.events[:, j])

    def column(self, name: str) -> np.ndarray:
        """Events of one parameter, found by channel (``$PnN``) or marker (``$PnS``) name."""
        return self.events[:, self.index(name)]

    def index(self, name: str) -> int:
        """Column index of a channel or marker name; a KeyError lists what the sample has."""
        if name in self.channels:
            return self.channels.index(name)
        hits = [i for i, m in enumerate(self.markers) if m == name]
        if len(hits) == 1:
            return hits[0]
        where = self.path or "sample"
        if not hits:  # marker labels as instruments write them ('BV785 - CD3', 'CD3 FITC')
            from gating.errors import AmbiguousMarkerError, MissingDimensionError
            from gating.markers import MarkerIndex

            try:
                return MarkerIndex(self.channels, self.markers, where=str(where)).column(name)
            except AmbiguousMarkerError as exc:
                raise KeyError(str(exc)) from None
            except MissingDimensionError:
                pass
        if hits:
            raise KeyError(
                f"{where}: marker {name!r} labels several channels: "
                f"{[self.channels[i] for i in hits]}"
            )
        raise KeyError(
            f"{where}: no channel or marker named {name!r}; channels: {self.channels}, "
            f"markers: {[m for m in self.markers if m]}"
        )

    def __repr__(self) -> str:
        src = f" from {self.path!r}" if self.path else ""
        spill = "yes" if self.spillover is not None else "no"
        return (
            f"<Sample{src}: {self.n_events} events x {self.n_parameters} parameters "
            f"({self.events.dtype}), {self.version}, spillover={spill}>"
        )
