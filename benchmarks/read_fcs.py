"""Benchmark: how fast `cytowhim.read_fcs` reads a large FCS file, next to other readers.

Goal: ``cytowhim.read_fcs`` should take at most 1.5x as long as the raw floor, a plain
``np.fromfile`` of the DATA segment (the *anchor*), and should not need much more memory than
the events array it returns (the array has the size of the file's DATA segment).

What it does

1. Writes a 1,000,000-event x 14-parameter float32 FCS 3.1 file with ``cytowhim.write_fcs``
   (log-normal-ish scatter and fluorescence values, some negative like compensated data, a
   Time channel, a few markers and a spillover matrix) to a temporary folder, or to ``--out DIR``
   (the file is then kept). ``--byteorder big`` writes big-endian DATA, which exercises the
   byte-swap path.
2. Reads the file once before timing so that every reader finds it in the OS page cache: the
   numbers measure decoding and copying, not the disk.
3. Calls each reader once untimed (warm-up: lazy imports, first allocations) and checks that it
   returned the same values as the anchor (``np.array_equal`` after casting to float64).
4. Times the readers interleaved: ``--repeat`` rounds (default 7), every reader once per round,
   starting each round at the next reader, so machine noise hits all of them alike. Reports
   the median and minimum seconds and the median relative to the anchor's median.
5. Runs each reader once more in a fresh ``python -c`` process and reports its peak extra
   memory: the high-water mark of the resident set during the read minus the resident set after
   the imports. On Linux this uses ``VmHWM`` (reset through ``/proc/self/clear_refs``), because
   ``ru_maxrss`` is inherited across fork/exec and would report this (large) process's peak;
   elsewhere it falls back to ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (marked with ``*``).

Readers: the ``np.fromfile`` anchor; ``cytowhim.read_fcs``; ``flowio.FlowData`` + ``as_array``
(unprocessed); ``fcsparser.parse`` (its DataFrame); ``flowkit.Sample`` + ``get_events('raw')``.
A library that is not installed is listed as such; a reader that raises is listed as
``failed: <reason>`` (fcsparser 0.2.4 calls ``ndarray.newbyteorder``, gone in numpy 2, on
big-endian files). The file has no ``$TIMESTEP``, ``$PnG`` or log ``$PnE``, so the
pre-processing that flowkit applies by default leaves the stored values unchanged.

Packed case (after the float one; ``--case packed`` runs it alone): FCS 2.0 allowed integer
``$PnB`` that are not whole bytes, packed bit after bit (least significant bit first, each value
from its lowest bit), as FACScan files with 9-bit channels are. The benchmark writes a
1,000,000-event x 5-parameter 9-bit file (header, TEXT and DATA built here with numpy, the
stream with ``np.packbits(..., bitorder='little')``: 5.6 MB of DATA), checks that
``cytowhim.read_fcs`` gives back the packed values, and times it against ``np.fromfile`` of the
same number of bytes (the anchor), as above. Goal: at most 3x the anchor (the reader has to
spread every 9 bits into a uint16, so the events array is 16/9 the size of DATA). The other
readers are left out of this case.

Run it from the repository root::

    python benchmarks/read_fcs.py                   # 1,000,000 events, 7 rounds, both cases
    python benchmarks/read_fcs.py --byteorder big   # the byte-swap path
    python benchmarks/read_fcs.py --quick           # smoke run: 100,000 events, 3 rounds
    python benchmarks/read_fcs.py --case packed     # only the bit-packed 9-bit file
    python benchmarks/read_fcs.py --out /tmp/bench --repeat 11 --events 2000000
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHANNELS = [
    "FSC-A", "FSC-H", "SSC-A", "FITC-A", "PE-A", "PerCP-Cy5.5-A", "PE-Cy7-A", "APC-A",
    "APC-R700-A", "APC-H7-A", "BV421-A", "BV510-A", "BV605-A", "Time",
]  # fmt: skip
MARKERS = {
    "FITC-A": "CD3", "PE-A": "CD16", "PerCP-Cy5.5-A": "CD45", "PE-Cy7-A": "CD19",
    "APC-A": "CD56", "APC-H7-A": "CD4", "BV421-A": "CD8",
}  # fmt: skip
FULL_EVENTS, FULL_REPEAT = 1_000_000, 7
QUICK_EVENTS, QUICK_REPEAT = 100_000, 3
GOAL = 1.5  # cytowhim's median may be at most this many times the anchor's
PACKED_CHANNELS = ["FSC-H", "SSC-H", "FL1-H", "FL2-H", "FL3-H"]  # a FACScan's five channels
PACKED_MARKERS = ["", "", "CD3", "CD8", "CD4"]
PACKED_BITS = 9
PACKED_GOAL = 3.0  # for the bit-packed file
MIB = 1024 * 1024


# --------------------------------------------------------------------------- the test file


@dataclass(frozen=True)
class Layout:
    """Where the events are in the file, taken from its TEXT keywords (outside any timing)."""

    path: str
    n_events: int
    n_parameters: int
    begin_data: int
    dtype: str  # numpy dtype of DATA as stored, e.g. '<f4'; 'u1' for bit-packed integers
    nbytes: int = 0  # bytes of DATA (for bit-packed integers: the whole bytes of the stream)

    @classmethod
    def of(cls, path: str | Path) -> Layout:
        import cytowhim

        kw = cytowhim.read_fcs_metadata(path)
        n_events, n_parameters = int(kw["$TOT"]), int(kw["$PAR"])
        widths = [int(kw[f"$P{i}B"]) for i in range(1, n_parameters + 1)]
        if kw["$DATATYPE"].strip() == "I" and any(w % 8 for w in widths):  # bit-packed
            dtype, nbytes = "u1", -(-n_events * sum(widths) // 8)
        elif kw["$DATATYPE"].strip() == "F":
            order = {"1,2,3,4": "<", "4,3,2,1": ">"}[kw["$BYTEORD"].replace(" ", "")]
            dtype, nbytes = f"{order}f4", n_events * n_parameters * 4
        else:
            raise ValueError(f"{path}: expected $DATATYPE F, got {kw['$DATATYPE']!r}")
        return cls(
            path=str(path),
            n_events=n_events,
            n_parameters=n_parameters,
            begin_data=int(kw["$BEGINDATA"]),
            dtype=dtype,
            nbytes=nbytes,
        )


def synthetic_events(n_events: int, seed: int) -> np.ndarray:
    """Log-normal-ish float32 events for CHANNELS: scatter, fluorescence (some < 0), Time."""
    rng = np.random.default_rng(seed)
    cols = []
    for name in CHANNELS:
        if name == "Time":
            cols.append(np.sort(rng.uniform(0.0, 60_000.0, n_events)))
        elif name.startswith(("FSC", "SSC")):
            cols.append(rng.lognormal(mean=11.0, sigma=0.45, size=n_events))
        else:
            signal = rng.lognormal(mean=rng.uniform(4.0, 8.0), sigma=1.3, size=n_events)
            cols.append(signal + rng.normal(0.0, 60.0, n_events))  # spread around zero
    return np.column_stack(cols).astype(np.float32)


def spillover_matrix(seed: int) -> Any:
    """A plausible spillover DataFrame over the fluorescence channels."""
    import pandas as pd

    names = [c for c in CHANNELS if not c.startswith(("FSC", "SSC")) and c != "Time"]
    rng = np.random.default_rng(seed + 1)
    matrix = np.eye(len(names)) + np.triu(rng.uniform(0.0, 0.15, (len(names),) * 2), k=1)
    return pd.DataFrame(np.round(matrix, 6), index=names, columns=names)


def write_test_file(path: Path, n_events: int, byteorder: str, seed: int) -> None:
    import cytowhim

    keywords = {
        "$CYT": "cytowhim benchmark cytometer",
        "$DATE": "12-MAR-2024",
        "$BTIM": "09:14:02",
        "$ETIM": "09:15:02",
        "$FIL": path.name,
        "$SRC": "PB-0001",
        "$SYS": platform.system(),
        **{f"$P{i}R": "262144" for i in range(1, len(CHANNELS) + 1)},
        **{f"$P{i}V": "450" for i in range(1, len(CHANNELS) + 1)},
    }
    sample = cytowhim.Sample(
        events=synthetic_events(n_events, seed),
        channels=list(CHANNELS),
        markers=[MARKERS.get(c, "") for c in CHANNELS],
        keywords=keywords,
        spillover=spillover_matrix(seed),
    )
    cytowhim.write_fcs(path, sample, byteorder=byteorder)


def synthetic_packed_events(n_events: int, seed: int) -> np.ndarray:
    """FACScan-like 9-bit channels (0..511) for PACKED_CHANNELS: forward and side scatter with a
    lymphocyte peak, three log-amplified fluorescence channels with negative and positive
    modes."""
    rng = np.random.default_rng(seed)
    top = (1 << PACKED_BITS) - 1
    cols = [rng.normal(150.0, 25.0, n_events), rng.normal(90.0, 30.0, n_events)]
    for share in (0.7, 0.3, 0.45):  # CD3, CD8, CD4 positive
        positive = rng.random(n_events) < share
        cols.append(np.where(positive, rng.normal(330, 35, n_events), rng.normal(90, 30, n_events)))
    return np.clip(np.rint(np.column_stack(cols)), 0, top).astype(np.uint16)


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Events x parameters integers as one bit stream, least significant bit first (each byte
    from its lowest bit, each value from its lowest bit), zero-padded to whole bytes."""
    planes = np.empty((*values.shape, bits), dtype=np.uint8)
    for k in range(bits):
        np.bitwise_and(values >> k, 1, out=planes[..., k], casting="unsafe")
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def fcs2_file(keywords: dict[str, str], data: bytes, text_start: int = 256) -> bytes:
    """HEADER ('FCS2.0', TEXT and DATA offsets), TEXT with $BEGINDATA/$ENDDATA filled in, DATA."""
    begin = end = 0
    for _ in range(5):  # the offsets' digits change TEXT's length: settle them
        kw = {**keywords, "$BEGINDATA": str(begin), "$ENDDATA": str(end)}
        text = b"/" + b"".join(f"{k}/{v}/".encode() for k, v in kw.items())
        if (text_start + len(text), text_start + len(text) + len(data) - 1) == (begin, end):
            break
        begin, end = text_start + len(text), text_start + len(text) + len(data) - 1
    fields = [text_start, text_start + len(text) - 1, begin, end, 0, 0]
    header = b"FCS2.0    " + b"".join(f"{v:>8d}".encode() for v in fields)
    return header.ljust(text_start, b" ") + text + data


def write_packed_file(path: Path, n_events: int, seed: int) -> np.ndarray:
    """The bit-packed FCS 2.0 file (see the module docstring); returns the values it holds."""
    values = synthetic_packed_events(n_events, seed)
    keywords = {
        "$BYTEORD": "1,2,3,4",
        "$DATATYPE": "I",
        "$MODE": "L",
        "$NEXTDATA": "0",
        "$PAR": str(len(PACKED_CHANNELS)),
        "$TOT": str(n_events),
        "$CYT": "FACScan",
        "$FIL": path.name,
    }
    for i, (name, marker) in enumerate(zip(PACKED_CHANNELS, PACKED_MARKERS), start=1):
        keywords |= {f"$P{i}N": name, f"$P{i}B": str(PACKED_BITS), f"$P{i}R": "512"}
        keywords |= {f"$P{i}E": "0,0"} | ({f"$P{i}S": marker} if marker else {})
    path.write_bytes(fcs2_file(keywords, pack_bits(values, PACKED_BITS)))
    return values


def warm_page_cache(path: Path) -> None:
    """Read the whole file once so every reader finds it in the OS page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(16 * MIB):
            pass


# --------------------------------------------------------------------------- the readers


@dataclass(frozen=True)
class Reader:
    """One way to read the file: ``read(layout)`` is timed, ``values(result)`` is not."""

    name: str
    modules: tuple[str, ...]  # imported before timing / before the memory baseline
    read: Callable[[Layout], Any]
    values: Callable[[Any], np.ndarray]
    version_of: str | None = None  # module whose __version__ goes next to the name
    checked: bool = True  # compare its values with the expected events (not the packed anchor's)


def _read_anchor(lay: Layout) -> np.ndarray:
    count = lay.n_events * lay.n_parameters
    raw = np.fromfile(lay.path, dtype=lay.dtype, count=count, offset=lay.begin_data)
    return raw.reshape(lay.n_events, lay.n_parameters)


def _read_anchor_bytes(lay: Layout) -> np.ndarray:
    """The anchor for bit-packed DATA: its bytes as they are (the events are not whole bytes)."""
    return np.fromfile(lay.path, dtype=np.uint8, count=lay.nbytes, offset=lay.begin_data)


def _read_anchor_swapped(lay: Layout) -> np.ndarray:
    """The anchor plus an in-place swap to native byte order (the least a reader must do)."""
    events = _read_anchor(lay)
    return events.byteswap(inplace=True).view(events.dtype.newbyteorder("="))


def _read_cytowhim(lay: Layout) -> np.ndarray:
    import cytowhim

    return cytowhim.read_fcs(lay.path).events


def _read_flowio(lay: Layout) -> np.ndarray:
    import flowio

    fd = flowio.FlowData(lay.path)
    if hasattr(fd, "as_array"):  # flowio >= 1.1; float64, no gain/log/timestep scaling
        return fd.as_array(preprocess=False)
    return np.reshape(np.array(fd.events, dtype=np.float64), (-1, fd.channel_count))


def _read_fcsparser(lay: Layout) -> Any:
    import fcsparser

    _meta, frame = fcsparser.parse(lay.path, reformat_meta=False)
    return frame


def _read_flowkit(lay: Layout) -> np.ndarray:
    import flowkit

    return flowkit.Sample(lay.path).get_events(source="raw")


def readers(byteorder: str, case: str = "float") -> list[Reader]:
    """The readers, anchor first."""
    as_is: Callable[[Any], np.ndarray] = np.asarray
    if case == "packed":
        return [
            Reader("np.fromfile (anchor)", ("numpy",), _read_anchor_bytes, as_is, checked=False),
            Reader("cytowhim", ("cytowhim.fcs", "pandas"), _read_cytowhim, as_is, "cytowhim"),
        ]
    out = [Reader("np.fromfile (anchor)", ("numpy",), _read_anchor, as_is)]
    if byteorder == "big":
        out.append(Reader("np.fromfile + swap", ("numpy",), _read_anchor_swapped, as_is))
    out += [
        Reader("cytowhim", ("cytowhim.fcs", "pandas"), _read_cytowhim, as_is, "cytowhim"),
        Reader("flowio", ("flowio",), _read_flowio, as_is, "flowio"),
        Reader("fcsparser", ("fcsparser",), _read_fcsparser, lambda df: df.to_numpy(), "fcsparser"),
        Reader("flowkit", ("flowkit",), _read_flowkit, as_is, "flowkit"),
    ]
    return out


def load(reader: Reader) -> str | None:
    """Import what the reader needs; None if that worked, else why not."""
    for module in reader.modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"not installed ({exc.name or module})"
    return None


def label(reader: Reader) -> str:
    if reader.version_of is None:
        return reader.name
    version = getattr(sys.modules.get(reader.version_of), "__version__", "")
    return f"{reader.name} {version}".strip()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"failed: {type(exc).__name__}: {text[:120]}"


# --------------------------------------------------------------------------- timing


@dataclass
class Outcome:
    reader: Reader
    status: str | None = None  # 'not installed ...' / 'failed: ...' when it did not run
    same: bool | None = None
    detail: str = ""  # why the values differ
    warned: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _call(outcome: Outcome, lay: Layout) -> tuple[Any, float]:
    """One read (warnings recorded, not printed); the result and the seconds it took."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        result = outcome.reader.read(lay)
        elapsed = time.perf_counter() - t0
    for w in caught:
        message = f"{w.category.__name__}: {' '.join(str(w.message).split())[:140]}"
        if message not in outcome.warned:
            outcome.warned.append(message)
    return result, elapsed


def compare(values: np.ndarray, expected: np.ndarray) -> tuple[bool, str]:
    got = np.asarray(values, dtype=np.float64)
    if got.shape != expected.shape:
        return False, f"shape {got.shape}, expected {expected.shape}"
    if np.array_equal(got, expected):
        return True, ""
    bad = np.argwhere(got != expected)
    r, c = (int(i) for i in bad[0])
    return False, (
        f"{len(bad)} values differ, first at event {r} column {c}: "
        f"{got[r, c]!r} instead of {expected[r, c]!r}"
    )


def run_timings(
    lay: Layout, reader_list: list[Reader], repeat: int, expected: np.ndarray | None = None
) -> list[Outcome]:
    """``expected``: the events every checked reader must return (default: the anchor's)."""
    outcomes = [Outcome(r, status=load(r)) for r in reader_list]
    if expected is None:
        expected = _read_anchor(lay)
    expected = np.asarray(expected, dtype=np.float64)

    for o in outcomes:  # warm-up and correctness, untimed
        if o.status is not None:
            continue
        try:
            result, _ = _call(o, lay)
            if o.reader.checked:
                o.same, o.detail = compare(o.reader.values(result), expected)
        except Exception as exc:  # noqa: BLE001 - any reader failure is a result to report
            o.status = _reason(exc)
        result = None
    del expected
    gc.collect()

    live = [o for o in outcomes if o.status is None]
    for rnd in range(repeat):
        start = rnd % len(live)
        for o in live[start:] + live[:start]:
            if o.status is not None:
                continue
            gc.collect()
            try:
                result, elapsed = _call(o, lay)
            except Exception as exc:  # noqa: BLE001
                o.status = _reason(exc)
                continue
            o.seconds.append(elapsed)
            del result
    return outcomes


# --------------------------------------------------------------------------- memory

_CHILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("_bench_read_fcs", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = mod
spec.loader.exec_module(mod)
print(json.dumps(mod.child_memory(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])))
"""


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def child_memory(name: str, layout_json: str, byteorder: str, case: str) -> dict[str, Any]:
    """Runs in the fresh process: peak extra bytes of one read by reader ``name``."""
    lay = Layout(**json.loads(layout_json))
    reader = next(r for r in readers(byteorder, case) if r.name == name)
    missing = load(reader)
    if missing:
        return {"error": missing}
    gc.collect()
    try:  # Linux: reset VmHWM to the current resident set
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base, method = _status_kib("VmRSS") * 1024, "VmHWM"
    except OSError:
        base, method = _maxrss_bytes(), "ru_maxrss"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = reader.read(lay)
    except Exception as exc:  # noqa: BLE001
        return {"error": _reason(exc)}
    peak = _status_kib("VmHWM") * 1024 if method == "VmHWM" else _maxrss_bytes()
    del result
    return {"extra": peak - base, "method": method}


def measure_memory(lay: Layout, reader: Reader, byteorder: str, case: str) -> dict[str, Any]:
    args = [sys.executable, "-c", _CHILD, str(Path(__file__).resolve()), reader.name]
    args += [json.dumps(lay.__dict__), byteorder, case]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"failed: subprocess exit {proc.returncode}: {last[:120]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def print_timings(outcomes: list[Outcome]) -> None:
    anchor = statistics.median(outcomes[0].seconds)
    width = max(len(label(o.reader)) for o in outcomes) + 2
    print(f"{'reader':<{width}}{'median s':>10}{'min s':>10}{'vs anchor':>11}  same values")
    for o in outcomes:
        name = label(o.reader)
        if o.status is not None:
            mark = "" if o.same is None else ("  ✓" if o.same else "  ✗")
            print(f"{name:<{width}}{o.status}{mark}")
            continue
        med, low = statistics.median(o.seconds), min(o.seconds)
        mark = "-" if o.same is None else "✓" if o.same else "✗"
        print(f"{name:<{width}}{med:>10.5f}{low:>10.5f}{med / anchor:>10.2f}x  {mark}")
    for o in outcomes:
        if o.same is False:
            print(f"  ✗ {label(o.reader)}: {o.detail}")
        for message in o.warned:
            print(f"  ! {label(o.reader)} warned: {message}")


def print_memory(lay: Layout, outcomes: list[Outcome], byteorder: str, case: str = "float") -> None:
    file_mib = os.path.getsize(lay.path) / MIB
    events_type = "uint16" if case == "packed" else "float32"
    events_mib = lay.n_events * lay.n_parameters * np.dtype(events_type).itemsize / MIB
    print(
        f"\npeak extra memory of one read, each in a fresh process "
        f"(file {file_mib:.1f} MiB, {events_type} events {events_mib:.1f} MiB):"
    )
    width = max(len(label(o.reader)) for o in outcomes) + 2
    print(f"{'reader':<{width}}{'extra MiB':>10}{'x file':>9}")
    for o in outcomes:
        name = label(o.reader)
        if o.status is not None and o.status.startswith("not installed"):
            print(f"{name:<{width}}{o.status}")
            continue
        got = measure_memory(lay, o.reader, byteorder, case)
        if "error" in got:
            print(f"{name:<{width}}{got['error']}")
            continue
        extra = got["extra"] / MIB
        flag = "" if got["method"] == "VmHWM" else " *"
        print(f"{name:<{width}}{extra:>10.1f}{extra / file_mib:>8.2f}x{flag}")
    print("(extra = peak resident set during the read minus the resident set after imports;")
    print(" * = measured with ru_maxrss, which can include the parent process's peak)")


def verdict(outcomes: list[Outcome], goal: float = GOAL) -> None:
    anchor = statistics.median(outcomes[0].seconds)
    ours = next(o for o in outcomes if o.reader.name == "cytowhim")
    if not ours.seconds:
        print(f"\ncytowhim: {ours.status}")
        return
    ratio = statistics.median(ours.seconds) / anchor
    ok = ratio <= goal and ours.same
    print(
        f"\ngoal cytowhim <= {goal}x np.fromfile: {ratio:.2f}x, values "
        f"{'identical' if ours.same else 'DIFFERENT'} -> {'met' if ok else 'NOT met'}"
    )
    swap = next((o for o in outcomes if o.reader.name == "np.fromfile + swap"), None)
    if swap is not None and swap.seconds:
        floor = statistics.median(swap.seconds)
        print(
            f"  (the byte swap to native order alone makes np.fromfile + swap "
            f"{floor / anchor:.2f}x; cytowhim is {statistics.median(ours.seconds) / floor:.2f}x "
            "of that)"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 100,000 events, 3 rounds")
    p.add_argument("--events", type=int, help=f"events in the file (default {FULL_EVENTS:,})")
    p.add_argument("--repeat", type=int, help=f"timed rounds (default {FULL_REPEAT})")
    p.add_argument("--byteorder", choices=("little", "big"), default="little")
    p.add_argument("--out", type=Path, help="write (and keep) the file in this folder")
    p.add_argument("--seed", type=int, default=20240312)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument(
        "--case",
        choices=("all", "float", "packed"),
        default="all",
        help="the float32 file, the bit-packed 9-bit one, or both (default)",
    )
    args = p.parse_args(argv)
    args.events = args.events or (QUICK_EVENTS if args.quick else FULL_EVENTS)
    args.repeat = args.repeat or (QUICK_REPEAT if args.quick else FULL_REPEAT)
    if args.events < 1 or args.repeat < 1:
        p.error("--events and --repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cytowhim-bench-") as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(
            f"python {platform.python_version()}, numpy {np.__version__}, "
            f"{platform.machine()}, {os.cpu_count()} CPUs"
        )
        if args.case in ("all", "float"):
            run_float_case(args, folder)
        if args.case in ("all", "packed"):
            if args.case == "all":
                print("\n" + "-" * 78 + "\n")
            run_packed_case(args, folder)
    return 0


def _time_and_report(
    args: argparse.Namespace,
    path: Path,
    lay: Layout,
    reader_list: list[Reader],
    expected: np.ndarray | None,
    case: str,
) -> None:
    warm_page_cache(path)
    print(
        "page cache: file read once before timing (warm cache for all readers); one "
        "untimed warm-up call per reader"
    )
    print(
        f"timing: {args.repeat} interleaved rounds (each reader once per round, rotating start)\n"
    )
    outcomes = run_timings(lay, reader_list, args.repeat, expected)
    print_timings(outcomes)
    if not args.no_memory:
        print_memory(lay, outcomes, args.byteorder, case)
    verdict(outcomes, PACKED_GOAL if case == "packed" else GOAL)


def run_float_case(args: argparse.Namespace, folder: Path) -> None:
    path = folder / f"bench_{args.events}x{len(CHANNELS)}_{args.byteorder}.fcs"
    t0 = time.perf_counter()
    write_test_file(path, args.events, args.byteorder, args.seed)
    lay = Layout.of(path)
    size = path.stat().st_size
    print(
        f"file: {path} ({size / MIB:.1f} MiB, FCS 3.1, {lay.n_events:,} events x "
        f"{lay.n_parameters} float32 parameters, {args.byteorder}-endian, "
        f"written in {time.perf_counter() - t0:.1f} s)"
    )
    _time_and_report(args, path, lay, readers(args.byteorder), None, "float")


def run_packed_case(args: argparse.Namespace, folder: Path) -> None:
    path = folder / f"bench_{args.events}x{len(PACKED_CHANNELS)}_packed{PACKED_BITS}.fcs"
    t0 = time.perf_counter()
    values = write_packed_file(path, args.events, args.seed)
    lay = Layout.of(path)
    size = path.stat().st_size
    print(
        f"file: {path} ({size / MIB:.1f} MiB, FCS 2.0, {lay.n_events:,} events x "
        f"{lay.n_parameters} {PACKED_BITS}-bit integer parameters packed bit after bit: "
        f"DATA {lay.nbytes:,} bytes, written in {time.perf_counter() - t0:.1f} s)"
    )
    print(
        f"anchor: np.fromfile of the {lay.nbytes:,} DATA bytes; cytowhim must return the "
        "packed values (as uint16)"
    )
    _time_and_report(args, path, lay, readers(args.byteorder, "packed"), values, "packed")


if __name__ == "__main__":
    sys.exit(main())
