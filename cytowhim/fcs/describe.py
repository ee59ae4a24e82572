"""`describe`: what an FCS file holds, without decoding its events (for ``cytowhim inspect``)."""

from __future__ import annotations

import os
import warnings
from typing import Any

from .read import _open, parameter_names
from .segments import format_of, resolve_data, walk_data_sets
from .spillover import find_spillover_keyword, parse_spillover


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of every data set of an FCS file: version, instrument, events, parameters, spillover.

    Checks that each data set's DATA is where TEXT says and fits the file, so a file that describes
    cleanly also reads. Raises :class:`cytowhim.FCSError` otherwise; reader warnings are collected
    under ``"warnings"`` instead of printed.
    """
    name, f, size = _open(path)
    with f, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sets = walk_data_sets(f, name, size, None)
        described = []
        for ds in sets:
            fmt = format_of(ds)
            span = resolve_data(ds, fmt, size)
            channels, markers = parameter_names(ds.keywords, fmt.n_parameters, name)
            kw = ds.keywords
            spill_key = find_spillover_keyword(kw)
            spill: dict[str, Any] | None = None
            if spill_key is not None:
                try:
                    spill_channels, _ = parse_spillover(kw[spill_key], channels, markers)
                    spill = {"keyword": spill_key, "channels": spill_channels}
                except ValueError as exc:
                    spill = {"keyword": spill_key, "error": str(exc)}
            n_events = span.n_events
            described.append(
                {
                    "data_set": ds.index,
                    "version": ds.version,
                    "instrument": kw.get("$CYT", "").strip(),
                    "date": kw.get("$DATE", "").strip(),
                    "events": n_events,
                    "datatype": fmt.datatype,
                    "byte_order": "little"
                    if fmt.little_endian
                    else "big"
                    if fmt.big_endian
                    else ",".join(str(b + 1) for b in fmt.byte_order),
                    "data_offsets": [span.start, span.start + span.nbytes - 1]
                    if span.nbytes
                    else [0, 0],
                    "parameters": [
                        {
                            "index": i + 1,
                            "channel": c,
                            "marker": m,
                            "bits": fmt.widths[i],
                            "range": kw.get(f"$P{i + 1}R", "").strip(),
                        }
                        for i, (c, m) in enumerate(zip(channels, markers))
                    ],
                    "spillover": spill,
                }
            )
    return {
        "file": name,
        "size_bytes": size,
        "data_sets": described,
        "warnings": [str(w.message).removeprefix(f"{name}: ") for w in caught],
    }
