"""Run results in HDF5: one part file per specimen, assembled into one results file.

A part (``DIR/parts/<hash>-<ascii>.h5``, see :func:`part_path`: a name built from a hash of the
specimen id, at most 52 ASCII characters whatever the id; the id itself is stored
inside) holds everything one specimen's tubes produced, with the content hashes of the inputs
(``inputs_key``) so a rerun can tell whether it is still valid (:func:`part_is_valid`), and the
error lines the specimen gave (:func:`read_part_errors`: populations that were not gated), so a
rerun that reuses the part reports them as the first run did. Parts and ``DIR/results.h5`` (:func:`assemble`) are
written to a temporary name in the same folder, flushed, fsync'd and ``os.replace``'d into
place: an interrupted write never leaves a partial file under the final name.

Layout of a part (``S`` = a specimen group, the root of a part file)::

    /                                   attrs: format='cytowhim-part', format_version,
                                               cytowhim_version, written_utc
    S/specimen                          group; attrs: specimen, patient, timepoint, inputs_key,
                                               cytowhim_version, written_utc
    S/specimen/errors                   1-D UTF-8 strings: the specimen's error lines (errors.csv)
    S/tubes                             group; attrs: tubes (tube names, in order)
    S/tubes/<tube>                      group; attrs: tube (the real name)
    S/tubes/<tube>/populations          table (below): that tube's population rows
    S/tubes/<tube>/geometry             scalar UTF-8 string: JSON {population path: gate}
    S/tubes/<tube>/qc_flags             scalar UTF-8 string: JSON [{specimen, tube, population,
                                               rule, severity, message}, ...]
    S/tubes/<tube>/notes                1-D UTF-8 strings: the engine's notes
    S/tubes/<tube>/provenance           group; attrs: file, file_sha256, strategy_sha256,
                                               n_events, cytowhim_version, created_utc
    S/tubes/<tube>/membership           group (optional); attrs: n_events, populations (names,
                                               in order), bitorder='big'
    S/tubes/<tube>/membership/<i>       uint8, np.packbits of population i's bool mask;
                                               attr population (its name)

``results.h5`` has the same specimen groups under ``/specimens/<specimen>`` (root attrs
format='cytowhim-results', specimens = names in order), plus two convenience tables of all
specimens: ``/populations`` (every population row) and ``/qc_flags`` (every flag).

A table is a group with one 1-D dataset per column (attr ``columns``: the names, in order; attr
``n_rows``). Numbers and booleans are stored as such (integers with missing values as float64
NaN), everything else as variable-length UTF-8 strings; missing strings are stored as '' and
their row numbers listed in ``_null/<column>``.
Group and dataset names are the real names with '%' and '/' percent-encoded (a name '.' or '..'
entirely); the real names are in the attributes.

Reading without cytowhim::

    import h5py, numpy as np, pandas as pd

    with h5py.File("results.h5") as f:
        g = f["populations"]
        table = pd.DataFrame({c: g[c].asstr()[()] if g[c].dtype.kind == "O" else g[c][()]
                              for c in g.attrs["columns"]})
        m = f["specimens/S1/tubes/TBNK/membership"]
        t_cells = np.unpackbits(m["2"][()], count=m.attrs["n_events"]).astype(bool)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from .errors import CytowhimError
from .h5table import _STR, _dumps, _key, _read_table, _write_table

__all__ = [
    "FORMAT_VERSION",
    "PROVENANCE_COLUMNS",
    "QC_COLUMNS",
    "Results",
    "StoreError",
    "TubeRecord",
    "assemble",
    "atomic_path",
    "file_sha256",
    "part_is_valid",
    "part_path",
    "read_part",
    "read_part_errors",
    "read_results",
    "text_sha256",
    "write_part",
]

FORMAT_VERSION = 1
PART_FORMAT = "cytowhim-part"
RESULTS_FORMAT = "cytowhim-results"
QC_COLUMNS = ("specimen", "tube", "population", "rule", "severity", "message")
PROVENANCE_COLUMNS = (
    "specimen",
    "patient",
    "timepoint",
    "tube",
    "file",
    "file_sha256",
    "strategy_sha256",
    "n_events",
    "cytowhim_version",
    "created_utc",
    "inputs_key",
    "part_written_utc",
)
_CHUNK = 1 << 20  # 1 MiB


class StoreError(CytowhimError, ValueError):
    """A part or results file is not what cytowhim wrote (or not readable); the message says which."""


def _version() -> str:
    from . import __version__

    return __version__


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(eq=False)
class TubeRecord:
    """Everything one tube of a specimen produced, with where it came from.

    ``table``: that tube's population rows; ``geometry``: population path -> gate as applied
    (JSON-able); ``qc_flags``: dicts with :data:`QC_COLUMNS` keys; ``membership``: population
    name -> bool array over the ``n_events`` events (optional, stored bit-packed).
    """

    specimen: str
    patient: str
    timepoint: str
    tube: str
    file: str
    file_sha256: str
    strategy_sha256: str
    table: pd.DataFrame
    geometry: dict[str, Any] = field(default_factory=dict)
    qc_flags: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_events: int = 0
    membership: dict[str, np.ndarray] | None = None
    cytowhim_version: str = field(default_factory=_version)
    created_utc: str = field(default_factory=_utc_now)


# --- hashes and paths -------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    """Hex SHA-256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def part_path(parts_dir: str | os.PathLike, specimen: str) -> Path:
    """``parts_dir/<hash>-<ascii>.h5`` for a specimen: the first 24 hex digits of the SHA-256 of
    its id (UTF-8), then up to 24 of its ASCII letters, digits, '-' and '_' for people to read.

    The name never depends on the length or the bytes of the id beyond that (a 300-character or
    a CJK id gives a name of the same form, at most 52 ASCII characters), cannot start with '.',
    and ids differing only in case or in characters left out get different names; the id itself
    is stored inside the part."""
    if not specimen:
        raise ValueError("part_path: empty specimen name")
    digest = hashlib.sha256(str(specimen).encode("utf-8", "surrogatepass")).hexdigest()[:24]
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", str(specimen))[:24].strip("_")
    return Path(parts_dir) / (f"{digest}-{readable}.h5" if readable else f"{digest}.h5")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, fsync it and
    ``os.replace`` it onto ``path``. On error the temporary file is removed and ``path`` is left
    as it was. Temporary names are ``.<name>.<random>.tmp``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:
        return
    try:
        fd = os.open(folder, os.O_RDONLY | flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- names and tables -------------------------------------------------------------------------


def _flag_dict(flag: Any) -> dict[str, Any]:
    """A QC flag as a dict: dicts as they are, dataclasses (``qc.QCFlag``) by their fields."""
    if isinstance(flag, Mapping):
        return dict(flag)
    if dataclasses.is_dataclass(flag) and not isinstance(flag, type):
        return dataclasses.asdict(flag)
    raise TypeError(f"QC flag must be a dict or a QCFlag; got {type(flag).__name__}")


# --- specimen groups --------------------------------------------------------------------------


def _write_specimen(
    root: h5py.Group, specimen: str, records: Sequence[TubeRecord], inputs_key: str, when: str
) -> None:
    for rec in records:
        if rec.specimen != specimen:
            raise ValueError(
                f"write_part: record of tube {rec.tube!r} is for specimen {rec.specimen!r}, "
                f"not {specimen!r}"
            )
    for attr in ("patient", "timepoint"):
        values = {str(getattr(r, attr)) for r in records}
        if len(values) > 1:
            raise ValueError(f"specimen {specimen!r}: tubes disagree on {attr}: {sorted(values)}")
    tubes = [str(r.tube) for r in records]
    if len(set(tubes)) != len(tubes):
        raise ValueError(f"specimen {specimen!r}: a tube appears twice: {tubes}")
    first = records[0] if records else None
    s = root.create_group("specimen", track_order=True)
    s.attrs.update(
        {
            "specimen": str(specimen),
            "patient": str(first.patient) if first else "",
            "timepoint": str(first.timepoint) if first else "",
            "inputs_key": str(inputs_key),
            "cytowhim_version": _version(),
            "written_utc": when,
        }
    )
    tg = root.create_group("tubes", track_order=True)
    tg.attrs["tubes"] = np.array(tubes, dtype=_STR)
    for rec in records:
        _write_tube(tg, rec)


def _write_tube(parent: h5py.Group, rec: TubeRecord) -> None:
    g = parent.create_group(_key(rec.tube), track_order=True)
    g.attrs["tube"] = str(rec.tube)
    _write_table(g, "populations", rec.table.reset_index(drop=True))
    g.create_dataset("geometry", data=_dumps(rec.geometry), dtype=_STR)
    g.create_dataset("qc_flags", data=_dumps([_flag_dict(f) for f in rec.qc_flags]), dtype=_STR)
    g.create_dataset("notes", data=np.array([str(n) for n in rec.notes], dtype=object), dtype=_STR)
    p = g.create_group("provenance", track_order=True)
    p.attrs.update(
        {
            "file": os.fspath(rec.file),
            "file_sha256": str(rec.file_sha256),
            "strategy_sha256": str(rec.strategy_sha256),
            "n_events": int(rec.n_events),
            "cytowhim_version": str(rec.cytowhim_version),
            "created_utc": str(rec.created_utc),
        }
    )
    if rec.membership is not None:
        _write_membership(g, rec)


def _write_membership(parent: h5py.Group, rec: TubeRecord) -> None:
    names = [str(n) for n in rec.membership or {}]
    m = parent.create_group("membership", track_order=True)
    m.attrs.update(
        {
            "n_events": int(rec.n_events),
            "populations": np.array(names, dtype=_STR),
            "bitorder": "big",
        }
    )
    for i, (name, mask) in enumerate((rec.membership or {}).items()):
        mask = np.asarray(mask)
        if mask.ndim != 1 or len(mask) != rec.n_events:
            raise ValueError(
                f"tube {rec.tube!r}: membership of {name!r} has shape {mask.shape}, "
                f"expected ({rec.n_events},) (n_events)"
            )
        packed = np.packbits(mask.astype(bool, copy=False))
        opts: dict[str, Any] = {}
        if packed.size:
            opts = {
                "chunks": (min(packed.size, _CHUNK),),
                "compression": "gzip",
                "fletcher32": True,
            }
        ds = m.create_dataset(str(i), data=packed, **opts)
        ds.attrs["population"] = str(name)


def _read_specimen(
    root: h5py.Group, membership: bool = True
) -> tuple[dict[str, Any], list[TubeRecord]]:
    """(specimen attrs, records) of a specimen group; ``membership=False`` skips the masks."""
    spec = {k: _attr(v) for k, v in root["specimen"].attrs.items()}
    tg = root["tubes"]
    records = [_read_tube(tg[_key(t)], spec, membership) for t in tg.attrs["tubes"]]
    return spec, records


def _read_tube(g: h5py.Group, spec: Mapping[str, Any], membership: bool = True) -> TubeRecord:
    prov = {k: _attr(v) for k, v in g["provenance"].attrs.items()}
    return TubeRecord(
        specimen=spec["specimen"],
        patient=spec["patient"],
        timepoint=spec["timepoint"],
        tube=str(g.attrs["tube"]),
        file=prov["file"],
        file_sha256=prov["file_sha256"],
        strategy_sha256=prov["strategy_sha256"],
        table=_read_table(g["populations"]),
        geometry=json.loads(g["geometry"].asstr()[()]),
        qc_flags=json.loads(g["qc_flags"].asstr()[()]),
        notes=[str(n) for n in g["notes"].asstr()[()]],
        n_events=int(prov["n_events"]),
        membership=(
            _read_membership(g["membership"]) if membership and "membership" in g else None
        ),
        cytowhim_version=prov["cytowhim_version"],
        created_utc=prov["created_utc"],
    )


def _read_membership(m: h5py.Group) -> dict[str, np.ndarray]:
    n = int(m.attrs["n_events"])
    return {
        str(name): np.unpackbits(m[str(i)][()], count=n).astype(bool)
        for i, name in enumerate(m.attrs["populations"])
    }


def _attr(value: Any) -> Any:
    """An HDF5 attribute as plain Python (numpy scalars unwrapped, bytes decoded)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_format(f: h5py.File, expected: str, path: str | os.PathLike) -> None:
    fmt = _attr(f.attrs.get("format", ""))
    version = _attr(f.attrs.get("format_version", 0))
    if fmt != expected:
        raise StoreError(f"{path}: not a {expected} file (format {fmt!r})")
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{path}: {expected} format version {version} is newer than this cytowhim reads "
            f"({FORMAT_VERSION}); upgrade cytowhim"
        )


def _stamp(f: h5py.File, fmt: str, when: str) -> None:
    f.attrs.update(
        {
            "format": fmt,
            "format_version": FORMAT_VERSION,
            "cytowhim_version": _version(),
            "written_utc": when,
        }
    )


# --- parts ------------------------------------------------------------------------------------


def write_part(
    path: str | os.PathLike,
    specimen: str,
    records: Sequence[TubeRecord],
    inputs_key: str,
    errors: Sequence[str] = (),
) -> None:
    """Write one specimen's records as a self-contained part file, atomically.

    ``inputs_key`` identifies the inputs (e.g. :func:`text_sha256` of the files' and strategies'
    hashes); :func:`part_is_valid` compares it on a rerun. ``errors``: the specimen's error lines
    (e.g. populations that were not gated), read back by :func:`read_part_errors`. Raises
    ValueError for records of another specimen, repeated tubes, or memberships whose length is
    not ``n_events``.
    """
    when = _utc_now()
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        _stamp(f, PART_FORMAT, when)
        _write_specimen(f, specimen, records, inputs_key, when)
        f["specimen"].create_dataset(
            "errors", data=np.array([str(e) for e in errors], dtype=object), dtype=_STR
        )
        f.flush()


def read_part(path: str | os.PathLike) -> tuple[str, list[TubeRecord]]:
    """(inputs_key, records) of a part file; :class:`StoreError` if it is not one."""
    with h5py.File(path, "r") as f:
        _check_format(f, PART_FORMAT, path)
        spec, records = _read_specimen(f)
    return spec["inputs_key"], records


def read_part_errors(path: str | os.PathLike) -> list[str] | None:
    """The error lines stored with a part (see :func:`write_part`); None for a part written
    before they were stored. :class:`StoreError` if ``path`` is not a part."""
    with h5py.File(path, "r") as f:
        _check_format(f, PART_FORMAT, path)
        if "errors" not in f["specimen"]:
            return None
        return [str(e) for e in f["specimen"]["errors"].asstr()[()]]


def part_is_valid(path: str | os.PathLike, inputs_key: str) -> bool:
    """Whether ``path`` is a complete, readable part written for ``inputs_key``.

    False (never an exception) for a missing, truncated or otherwise unreadable file, a file of
    another format, or a different key. The whole part is read, so damage anywhere is caught.
    """
    try:
        if not Path(path).is_file():
            return False
        key, _ = read_part(path)
    except Exception:  # h5py raises OSError, KeyError, ValueError, RuntimeError ... on damage
        return False
    return key == inputs_key


# --- results ----------------------------------------------------------------------------------


def assemble(
    parts_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    specimens: Sequence[str] | None = None,
) -> Path:
    """Write ``out_path`` (results.h5) from the part files in ``parts_dir``, atomically.

    ``specimens``: which specimens, in this order (their parts found by :func:`part_path`; a
    missing one raises FileNotFoundError), so parts left over from an older manifest are left
    out; default every ``*.h5`` part, ordered by specimen name. A damaged part raises
    :class:`StoreError` naming it, and ``out_path`` is left as it was.
    """
    parts_dir = Path(parts_dir)
    if specimens is None:
        paths = sorted(p for p in parts_dir.glob("*.h5") if not p.name.startswith("."))
    else:
        paths = [part_path(parts_dir, s) for s in specimens]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"assemble: no part file for {', '.join(missing)}")
    parts = [_summary(p) for p in paths]  # all but the memberships: a damaged part fails early
    names = [part[0] for part in parts]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StoreError(f"{parts_dir}: several parts for specimen(s) {repeated}")
    if specimens is None:
        parts.sort(key=lambda part: part[0])
    elif [str(s) for s in specimens] != names:
        raise StoreError(f"{parts_dir}: part files hold specimens {names}, expected {specimens}")
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w", track_order=True) as out:
        _stamp(out, RESULTS_FORMAT, _utc_now())
        out.attrs["specimens"] = np.array([part[0] for part in parts], dtype=_STR)
        sg = out.create_group("specimens", track_order=True)
        for name, p, _, _ in parts:
            try:
                with h5py.File(p, "r") as f:
                    g = sg.create_group(_key(name), track_order=True)
                    f.copy(f["specimen"], g, name="specimen")
                    f.copy(f["tubes"], g, name="tubes")
            except Exception as exc:
                raise StoreError(f"{p}: unreadable part file ({exc})") from exc
        _write_table(out, "populations", _concat([t for part in parts for t in part[2]]))
        _write_table(out, "qc_flags", _flags_frame([f for part in parts for f in part[3]]))
        out.flush()
    return out_path


def _summary(path: Path) -> tuple[str, Path, list[pd.DataFrame], list[dict[str, Any]]]:
    """(specimen, path, tables, QC flags) of a part; :class:`StoreError` if it is damaged."""
    try:
        with h5py.File(path, "r") as f:
            _check_format(f, PART_FORMAT, path)
            spec, records = _read_specimen(f, membership=False)
    except StoreError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError ... on damage
        raise StoreError(f"{path}: unreadable part file ({exc})") from exc
    flags = [flag for rec in records for flag in rec.qc_flags]
    return str(spec["specimen"]), path, [rec.table for rec in records], flags


def _concat(tables: list[pd.DataFrame]) -> pd.DataFrame:
    tables = [t for t in tables if len(t.columns)]
    if not tables:
        return pd.DataFrame()
    return pd.concat(tables, ignore_index=True)


def _flags_frame(flags: list[dict[str, Any]]) -> pd.DataFrame:
    columns = list(QC_COLUMNS)
    for f in flags:
        columns.extend(k for k in f if k not in columns)
    return pd.DataFrame(flags, columns=columns)


# The reader of results.h5 lives in cytowhim.results (re-exported here, as before).
from .results import Results, read_results  # noqa: E402
