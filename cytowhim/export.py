"""Exports of run results and gated samples: CSV and XLSX for people, ``.h5ad`` for scanpy.

- :func:`to_csv` / :func:`to_xlsx`: the population table, the QC flags and the provenance of each
  tube (file, hashes, cytowhim version) of a ``results.h5`` (:mod:`cytowhim.store`).
- :func:`to_anndata`: one gated sample as AnnData (events x parameters, one boolean ``obs``
  column per population and a categorical ``population``).

Every file is written to a temporary name and renamed into place (:func:`store.atomic_path`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .spreadsheet import spreadsheet_safe
from .store import Results, atomic_path, read_results

if TYPE_CHECKING:
    from gating import GatingResult

    from .sample import Sample

__all__ = ["OBS_SEPARATOR", "UNGATED", "population_labels", "to_anndata", "to_csv", "to_xlsx"]

#: joins the parts of a population path in ``obs`` column names (h5ad keys cannot hold '/')
OBS_SEPARATOR = "|"
#: the ``population`` category of events in no population
UNGATED = "ungated"


def _results(results: Results | str | os.PathLike) -> Results:
    return results if isinstance(results, Results) else read_results(results)


def _sheets(results: Results) -> dict[str, pd.DataFrame]:
    """The tables as a lab exports them: populations rounded as reported (whole events, the
    default reporting rules; full precision stays in results.h5)."""
    from .reporting import ReportingRules
    from .run import printed_table

    return {
        "populations": printed_table(results.populations(), ReportingRules()),
        "qc_flags": results.qc_flags(),
        "provenance": results.provenance_table(),
    }


def to_csv(results: Results | str | os.PathLike, folder: str | os.PathLike) -> list[Path]:
    """Write ``populations.csv``, ``qc_flags.csv`` and ``provenance.csv`` (UTF-8 with a
    byte-order mark, so Excel shows µ as µ) into ``folder``; returns their paths. Text a
    spreadsheet would run as a formula (an id ``=HYPERLINK(...)``) gets a leading apostrophe
    (:func:`cytowhim.spreadsheet.spreadsheet_safe`)."""
    folder = Path(folder)
    written = []
    for name, frame in _sheets(_results(results)).items():
        path = folder / f"{name}.csv"
        with atomic_path(path) as tmp:  # BOM: Excel reads it as UTF-8; no formula runs
            spreadsheet_safe(frame).to_csv(tmp, index=False, encoding="utf-8-sig")
        written.append(path)
    return written


def to_xlsx(results: Results | str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write one workbook with sheets ``populations``, ``qc_flags`` and ``provenance``.

    Text is always stored as text (a value starting with '=' never becomes a formula); missing
    values are empty cells.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)
    for name, frame in _sheets(_results(results)).items():
        ws = wb.create_sheet(name)
        ws.append([str(c) for c in frame.columns])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in frame.itertuples(index=False, name=None):
            ws.append([_cell(v) for v in row])
        for row in ws.iter_rows(min_row=2):
            for cell in row:
                if cell.data_type == "f":  # openpyxl reads a leading '=' as a formula
                    cell.data_type = "s"
        ws.freeze_panes = "A2"
        for j, column in enumerate(frame.columns, start=1):
            width = max([len(str(column)), *(len(str(v)) for v in frame[column].head(200))])
            ws.column_dimensions[ws.cell(1, j).column_letter].width = min(max(width, 8) + 2, 60)
    path = Path(path)
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return path


def _cell(value: Any) -> Any:
    """A table value as openpyxl takes it: Python scalars, None for missing."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def population_labels(result: GatingResult) -> pd.Categorical:
    """For each event, the path of the deepest population it belongs to ('ungated' if none).

    Depth counts parents (a top-level population is 0); between populations of equal depth the
    one later in strategy order wins. Categories: 'ungated', then every path in strategy order.
    """
    st = result.strategy
    paths = [st.path(p.name) for p in st.populations]
    if len(set(paths)) != len(paths) or UNGATED in paths:
        raise ValueError(f"population paths must be unique and not {UNGATED!r}: {paths}")
    n = len(next(iter(result.masks.values()))) if result.masks else 0
    codes = np.zeros(n, dtype=np.int64)
    best = np.full(n, -1, dtype=np.int64)
    depth: dict[str, int] = {}
    for i, p in enumerate(st.populations, start=1):
        d = depth[p.name] = 0 if p.parent is None else depth[p.parent] + 1
        take = np.asarray(result.masks[p.name], dtype=bool) & (best <= d)
        codes[take] = i
        best[take] = d
    return pd.Categorical.from_codes(codes, categories=[UNGATED, *paths])


def to_anndata(sample: Sample, result: GatingResult, path: str | os.PathLike) -> Path:
    """Write one gated sample as ``.h5ad``.

    ``X``: the events as stored in the file (uncompensated, untransformed), float32, events x
    parameters; ``var``: indexed by channel, with a ``marker`` column; ``obs``: indexed by event
    number, one bool column per population named by its path with '/' replaced by
    :data:`OBS_SEPARATOR` ('lymphocytes|T cells'), and a categorical ``population``
    (:func:`population_labels`); ``uns``: ``geometry`` (JSON of ``result.geometry()``),
    ``populations`` (``name``, ``path``, ``obs_column`` lists), ``strategy``, ``source_file``,
    ``notes`` (JSON list) and ``cytowhim_version``.
    """
    try:
        import anndata
    except ImportError:
        raise ImportError("writing .h5ad needs anndata: pip install 'cytowhim[anndata]'") from None

    from . import __version__

    st = result.strategy
    n = sample.n_events
    names = [p.name for p in st.populations]
    paths = [st.path(name) for name in names]
    columns = [path.replace("/", OBS_SEPARATOR) for path in paths]
    if len(set(columns)) != len(columns) or "population" in columns:
        raise ValueError(f"population paths do not give distinct obs columns: {paths}")
    for name in names:
        if len(result.masks[name]) != n:
            raise ValueError(
                f"population {name!r} has {len(result.masks[name])} events, the sample {n}"
            )
    obs = pd.DataFrame(
        {col: np.asarray(result.masks[name], dtype=bool) for col, name in zip(columns, names)},
        index=pd.Index([str(i) for i in range(n)], name="event"),
    )
    obs["population"] = population_labels(result)
    var = pd.DataFrame(
        {"marker": [str(m) for m in sample.markers]},
        index=pd.Index([str(c) for c in sample.channels], name="channel"),
    )
    adata = anndata.AnnData(
        X=np.asarray(sample.events, dtype=np.float32),
        obs=obs,
        var=var,
        uns={
            "geometry": json.dumps(result.geometry(), ensure_ascii=False),
            "populations": {"name": names, "path": paths, "obs_column": columns},
            "strategy": str(st.name or ""),
            "source_file": str(sample.path or ""),
            "notes": json.dumps(result.notes, ensure_ascii=False),
            "cytowhim_version": __version__,
        },
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return path
