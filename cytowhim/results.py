"""Reading a run's ``results.h5`` (written by :func:`cytowhim.store.assemble`): populations, QC
flags, gate geometry, notes, provenance and memberships per specimen and tube."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from .h5table import _key, _read_table
from .store import (
    PROVENANCE_COLUMNS,
    RESULTS_FORMAT,
    StoreError,
    TubeRecord,
    _attr,
    _check_format,
    _read_membership,
    _read_specimen,
)


class Results:
    """Read access to a ``results.h5`` written by :func:`assemble` (the file is opened per call)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            with h5py.File(self.path, "r") as f:
                _check_format(f, RESULTS_FORMAT, self.path)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read results ({exc})") from None

    def __repr__(self) -> str:
        return f"<Results {str(self.path)!r}>"

    def _open(self) -> h5py.File:
        return h5py.File(self.path, "r")

    def _specimen(self, f: h5py.File, specimen: str) -> h5py.Group:
        known = [str(s) for s in f.attrs["specimens"]]
        if specimen not in known:
            raise KeyError(f"{self.path}: no specimen {specimen!r}; specimens: {known}")
        return f["specimens"][_key(specimen)]

    def _tube(self, f: h5py.File, specimen: str, tube: str) -> h5py.Group:
        tg = self._specimen(f, specimen)["tubes"]
        tubes = [str(t) for t in tg.attrs["tubes"]]
        if tube not in tubes:
            raise KeyError(
                f"{self.path}: specimen {specimen!r} has no tube {tube!r}; tubes: {tubes}"
            )
        return tg[_key(tube)]

    def specimens(self) -> list[str]:
        """Specimen names, in the file's order."""
        with self._open() as f:
            return [str(s) for s in f.attrs["specimens"]]

    def tubes(self, specimen: str) -> list[str]:
        """Tube names of one specimen, in order."""
        with self._open() as f:
            return [str(t) for t in self._specimen(f, specimen)["tubes"].attrs["tubes"]]

    def populations(self) -> pd.DataFrame:
        """Every population row of every specimen and tube."""
        with self._open() as f:
            return _read_table(f["populations"])

    def qc_flags(self) -> pd.DataFrame:
        """Every QC flag (columns :data:`QC_COLUMNS`, then any others)."""
        with self._open() as f:
            return _read_table(f["qc_flags"])

    def geometry(self, specimen: str, tube: str) -> dict[str, Any]:
        """Population path -> gate as applied, for one tube."""
        with self._open() as f:
            return json.loads(self._tube(f, specimen, tube)["geometry"].asstr()[()])

    def notes(self, specimen: str, tube: str) -> list[str]:
        """The engine's notes for one tube."""
        with self._open() as f:
            return [str(n) for n in self._tube(f, specimen, tube)["notes"].asstr()[()]]

    def provenance(self, specimen: str, tube: str) -> dict[str, Any]:
        """Where one tube's results came from: specimen, patient, timepoint, tube, file,
        file_sha256, strategy_sha256, n_events, cytowhim_version, created_utc, inputs_key and
        part_written_utc."""
        with self._open() as f:
            return _provenance(self._specimen(f, specimen), self._tube(f, specimen, tube))

    def provenance_table(self) -> pd.DataFrame:
        """:meth:`provenance` of every tube, one row each."""
        rows = []
        with self._open() as f:
            for specimen in f.attrs["specimens"]:
                sg = self._specimen(f, specimen)
                for tube in sg["tubes"].attrs["tubes"]:
                    rows.append(_provenance(sg, sg["tubes"][_key(str(tube))]))
        return pd.DataFrame(rows, columns=list(PROVENANCE_COLUMNS))

    def membership(self, specimen: str, tube: str) -> dict[str, np.ndarray]:
        """Population name -> bool array over the tube's events ({} if none was stored)."""
        with self._open() as f:
            g = self._tube(f, specimen, tube)
            return _read_membership(g["membership"]) if "membership" in g else {}

    def records(self, specimen: str) -> list[TubeRecord]:
        """One specimen's tube records, as :func:`read_part` returns them."""
        with self._open() as f:
            return _read_specimen(self._specimen(f, specimen))[1]


def _provenance(sg: h5py.Group, tg: h5py.Group) -> dict[str, Any]:
    spec = {k: _attr(v) for k, v in sg["specimen"].attrs.items()}
    prov = {k: _attr(v) for k, v in tg["provenance"].attrs.items()}
    return {
        "specimen": spec["specimen"],
        "patient": spec["patient"],
        "timepoint": spec["timepoint"],
        "tube": str(tg.attrs["tube"]),
        **{k: prov[k] for k in PROVENANCE_COLUMNS[4:10]},
        "inputs_key": spec["inputs_key"],
        "part_written_utc": spec["written_utc"],
    }


def read_results(path: str | os.PathLike) -> Results:
    """Open a results file for reading; :class:`StoreError` if it is not one."""
    return Results(path)
