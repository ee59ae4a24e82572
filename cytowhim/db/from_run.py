"""What ``cytowhim run`` registers: a finished specimen's records as a :class:`SpecimenEntry`,
and the run itself as a :class:`RunInfo`."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .register import RunInfo, SpecimenEntry


def _time(text: Any) -> datetime | None:
    text = "" if text is None else str(text)
    if not text or text == "nan":
        return None
    return datetime.fromisoformat(text)


def _day(text: Any) -> date | None:
    text = "" if text is None else str(text)
    return date.fromisoformat(text) if text and text != "nan" else None


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def specimen_entry(
    spec_tubes: pd.DataFrame, records: Sequence[Any], inputs_key: str, reporting: Any
) -> SpecimenEntry:
    """The entry of one specimen: its manifest rows (``spec_tubes``, as
    :func:`cytowhim.manifest.read_manifest` gives them), its tube records
    (:class:`cytowhim.store.TubeRecord`) and the content hash of its inputs. Population rows
    as ``populations.csv`` has them (rounded as reported)."""
    from ..run import printed_table
    from ..store import _flag_dict

    first = spec_tubes.iloc[0]
    table = printed_table(pd.concat([r.table for r in records], ignore_index=True), reporting)
    tubes = [
        {
            "tube": r.tube,
            "file": r.file,
            "file_sha256": r.file_sha256,
            "strategy_sha256": r.strategy_sha256,
            "n_events": int(r.n_events),
        }
        for r in records
    ]
    flags = [_flag_dict(f) for r in records for f in r.qc_flags]
    return SpecimenEntry(
        specimen=str(first["specimen"]),
        patient=str(first["patient"]),
        timepoint=str(first["timepoint"]),
        inputs_key=inputs_key,
        populations=table,
        tubes=tubes,
        qc_flags=flags,
        cbc={
            k: v for k in ("WBC", "ANC", "ALC", "AMC") if (v := _number(first.get(k))) is not None
        },
        visit=str(first.get("visit", "") or ""),
        draw_time=_time(first.get("draw_time")),
        draw_date=_day(first.get("draw_date")),
        dose_time=_time(first.get("dose_time")),
        hours_post_dose=_number(first.get("hours_post_dose")),
        age=_number(first.get("age")),
        sex=str(first.get("sex", "") or ""),
        control_lot=str(first.get("control_lot", "") or ""),
    )


def run_info(out: Any, panels: Any, argv: Sequence[str] | None = None) -> RunInfo:
    """The run as the database records it: output folder, command line, panel file and the
    sha256 of each tube's strategy file."""
    from ..store import file_sha256

    strategies = {}
    for tube, path in sorted(panels.strategies.items()):
        try:
            strategies[tube] = {"file": str(path), "sha256": file_sha256(path)}
        except OSError:  # unreadable: the run reports it per tube; named here without a hash
            strategies[tube] = {"file": str(path), "sha256": ""}
    settings = {
        "panels": str(getattr(panels, "source", "") or "bundled"),
        "strategies": strategies,
    }
    command = " ".join(argv if argv is not None else ["cytowhim", *sys.argv[1:]])
    return RunInfo(
        out_dir=str(Path(out).resolve()) if out else "", command=command, settings=settings
    )
