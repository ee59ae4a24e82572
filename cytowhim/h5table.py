"""Tables and names in HDF5, as cytowhim's part and results files hold them (layout in
:mod:`cytowhim.store`): a table is a group with one 1-D dataset per column; names are
percent-encoded into group keys."""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np
import pandas as pd

_STR = h5py.string_dtype("utf-8")


def _key(name: str) -> str:
    """An HDF5 link name for ``name``: '%' and '/' percent-encoded, '.' and '..' entirely."""
    name = str(name)
    if not name:
        raise ValueError("empty names cannot be stored")
    if name in (".", ".."):
        return "%2E" * len(name)
    return name.replace("%", "%25").replace("/", "%2F")


def _write_table(parent: h5py.Group, name: str, frame: pd.DataFrame) -> h5py.Group:
    """Write ``frame`` (its index dropped) as a group of one dataset per column."""
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise ValueError(f"table {name!r} has repeated column names: {columns}")
    if "_null" in columns:
        raise ValueError(f"table {name!r}: a column cannot be named '_null'")
    g = parent.create_group(name, track_order=True)
    g.attrs["columns"] = np.array(columns, dtype=_STR)
    g.attrs["n_rows"] = len(frame)
    for label, column in zip(columns, frame.columns):
        series = frame[column]
        data, nulls = _column_data(series)
        g.create_dataset(_key(label), data=data, dtype=data.dtype if nulls is None else _STR)
        if nulls is not None and len(nulls):
            g.require_group("_null").create_dataset(_key(label), data=nulls)
    return g


def _column_data(series: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """(values to store, row numbers of missing strings or None for a numeric column)."""
    dtype = series.dtype
    missing = series.isna().to_numpy()
    if pd.api.types.is_bool_dtype(dtype) and not missing.any():
        return series.to_numpy(dtype=bool), None
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        if missing.any() and not pd.api.types.is_float_dtype(dtype):
            return series.to_numpy(dtype=np.float64, na_value=np.nan), None
        numpy_dtype = getattr(dtype, "numpy_dtype", dtype)
        return series.to_numpy(dtype=numpy_dtype), None
    values = np.array(["" if m else str(v) for v, m in zip(series.tolist(), missing)], dtype=object)
    return values, np.flatnonzero(missing).astype(np.int64)


def _read_table(g: h5py.Group) -> pd.DataFrame:
    """A table written by :func:`_write_table`, strings as str and missing strings as None."""
    columns = [str(c) for c in g.attrs["columns"]]
    nulls = g["_null"] if "_null" in g else None
    data: dict[str, Any] = {}
    for label in columns:
        ds = g[_key(label)]
        if ds.dtype.kind == "O":
            values = ds.asstr()[()].astype(object)
            if nulls is not None and _key(label) in nulls:
                values[nulls[_key(label)][()]] = None
            data[label] = values
        else:
            data[label] = ds[()]
    return pd.DataFrame(data, columns=columns, index=pd.RangeIndex(int(g.attrs["n_rows"])))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)
