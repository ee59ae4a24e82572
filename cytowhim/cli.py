"""The ``cytowhim`` command line. Subcommands import what they need when they run, so
``cytowhim --help`` starts fast.

Exit status: 0 all done; 1 finished but some inputs failed (each named on stderr);
2 bad usage, an input the command cannot start without (manifest, panel or strategy file), or
a failure that stops it (output folder locked, not writable or full; the Dask cluster
unreachable; an error in cytowhim). No input ends in a traceback: each problem is one line
naming the file, row, column or key; ``cytowhim --debug`` shows the tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__
from .cli_db import add_compare_options
from .cli_db import add_parsers as add_db_parsers


def _error(message: str) -> None:
    print(f"cytowhim: {message}", file=sys.stderr)


def _failed(args: argparse.Namespace, exc: BaseException, status: int = 2) -> int:
    """One line for ``exc`` on stderr (with ``--debug`` its traceback first); ``status``."""
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    _error(" ".join(str(exc).split()) or type(exc).__name__)
    return status


def _number_text(value) -> str:
    if value is None:
        return "?"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _format_inspection(info: dict) -> str:
    lines = [info["file"]]
    n_sets = len(info["data_sets"])
    if not info.get("readable", True):
        problem = "; ".join(info.get("problems", []))
        lines.append(f"  warning: the events cannot be read ({problem}); shown from its keywords")
    for ds in info["data_sets"]:
        head = f"  data set {ds['data_set'] + 1} of {n_sets}" if n_sets > 1 else "  "
        if n_sets > 1:
            lines.append(head)
        pad = "    " if n_sets > 1 else "  "
        instrument = ds["instrument"] or "(no $CYT)"
        lines.append(f"{pad}version     {ds['version']}")
        lines.append(f"{pad}instrument  {instrument}")
        if ds["date"]:
            lines.append(f"{pad}date        {ds['date']}")
        events = ds["events"]
        lines.append(f"{pad}events      " + (f"{events:,}" if events is not None else "?"))
        offsets = ds["data_offsets"]
        where = f"bytes {offsets[0]}-{offsets[1]}" if offsets else "bytes unknown"
        order = ds["byte_order"]
        order = order if order == "bit-packed" else f"{order}-endian"
        lines.append(f"{pad}data        $DATATYPE {ds['datatype']}, {order}, {where}")
        spill = ds["spillover"]
        if spill is None:
            lines.append(f"{pad}spillover   none")
        elif "error" in spill:
            lines.append(
                f"{pad}spillover   {spill['keyword']} present but unreadable: {spill['error']}"
            )
        else:
            lines.append(
                f"{pad}spillover   {spill['keyword']} ({len(spill['channels'])} channels: "
                f"{', '.join(spill['channels'])})"
            )
        params = ds["parameters"]
        lines.append(f"{pad}parameters  {len(params)}")
        if params:
            wc = max(len("channel"), *(len(p["channel"]) for p in params))
            wm = max(len("marker"), *(len(p["marker"]) for p in params))
            lines.append(f"{pad}  {'#':>3}  {'channel':<{wc}}  {'marker':<{wm}}  bits  range")
        for p in params:
            lines.append(
                f"{pad}  {p['index']:>3}  {p['channel']:<{wc}}  {p['marker']:<{wm}}  "
                f"{_number_text(p['bits']):>4}  {_number_text(p['range'])}"
            )
    for w in info["warnings"]:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def _file_notes(info: dict) -> tuple[list[str], list[str]]:
    """(problems: why the events cannot be read, warnings: what was read around) of one file."""
    warnings_ = list(info["warnings"])
    for ds in info["data_sets"]:
        spill = ds["spillover"]
        if spill and "error" in spill:
            warnings_.append(f"{spill['keyword']} unreadable: {spill['error']}")
    return list(info.get("problems", [])), warnings_


def _inspection_row(info: dict, shown: str) -> list[str]:
    sets = info["data_sets"]
    first = sets[0] if sets else None
    problems, warnings_ = _file_notes(info)
    if first is None:
        version = instrument = events = params = spill = ""
    else:
        version = first["version"]
        instrument = first["instrument"] or "(no $CYT)"
        counts = [ds["events"] for ds in sets]
        events = f"{sum(counts):,}" if None not in counts else "?"
        if len(sets) > 1:
            events += f" ({len(sets)} sets)"
        params = str(len(first["parameters"]))
        spills = [ds["spillover"] for ds in sets]
        spill = (
            "no"
            if all(s is None for s in spills)
            else "unreadable"
            if any(s is not None and "error" in s for s in spills)
            else "yes"
        )
    notes = [("unreadable: " if not info.get("readable", True) else "") + p for p in problems]
    notes += [f"warning: {w}" for w in warnings_]
    text = notes[0] if notes else ""
    if not problems and len(text) > 110:  # a warning in full: cytowhim inspect FILE
        text = text[:107] + "..."
    if len(notes) > 1:
        text += f" (+{len(notes) - 1} more)"
    return [shown, version, instrument, events, params, spill, text]


def _format_table(rows: list[list[str]]) -> str:
    header = ["file", "version", "instrument", "events", "parameters", "spillover", "problems"]
    right = {3, 4}
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        cells = [
            f"{c:>{w}}" if i in right else f"{c:<{w}}" for i, (c, w) in enumerate(zip(r, widths))
        ]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .fcs import describe
    from .fcs.describe import find_fcs_files
    from .resources import example_files

    inputs = list(args.files)
    if args.example:
        inputs += [str(p) for p in example_files()]
    if not inputs:
        _error("inspect: give FCS files or folders, or --example for the bundled ones")
        return 2
    folders = [arg for arg in inputs if Path(arg).is_dir()]
    entries: list[tuple[str, str]] = []  # (path, as shown in the table)
    empty = []
    for arg in inputs:
        if arg not in folders:
            entries.append((arg, arg))
            continue
        found = find_fcs_files(arg)
        if not found:
            empty.append(arg)
        alone = len(inputs) == 1
        entries += [(str(p), p.relative_to(arg).as_posix() if alone else str(p)) for p in found]
    for arg in empty:
        _error(f"{arg}: no FCS files in this folder (.fcs, .lmd, or files starting with 'FCS')")
    if not entries:
        return 1
    table = bool(folders) and not args.json
    results, rows = [], []
    failed = warned = 0  # files that cannot be read; files read around a problem
    for path, shown in entries:
        info = describe(path, partial=True)
        problems, warnings_ = _file_notes(info)
        failed += bool(problems)
        warned += bool(warnings_) and not problems
        if problems and not table:
            _error(f"{path}: {'; '.join(problems)}")
        if args.json:
            results.append(info)
        elif table:
            rows.append(_inspection_row(info, shown))
        elif info["data_sets"]:
            print(_format_inspection(info))
            print()
    if args.json:
        json.dump(results, sys.stdout, indent=2, ensure_ascii=False)
        print()
    elif table:
        print(_format_table(rows))
        n = len(entries)
        print(
            f"\n{n} file{'s' if n != 1 else ''}, {n - failed} readable, "
            f"{failed + warned} with problems ({failed} unreadable, {warned} with warnings)"
        )
    return 1 if failed or empty else 0


def _freeze(result, sample, out, fcs, n_files: int):
    """Write ``result``'s gates as applied (:meth:`GatingResult.frozen`) for ``cytowhim gate
    --freeze OUT``: to OUT for one file; with several files to <FCS stem>.<OUT name> next to OUT.
    Returns the path written."""
    target = out if n_files == 1 else out.with_name(f"{fcs.stem}.{out.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    frozen = result.frozen()
    if target.suffix.lower() == ".wsp":
        frozen.to_flowjo(target, sample)
    else:
        frozen.to_gatingml(target)
    traced = [n for n in frozen.notes if "approximated" in n]
    tail = f" ({len(traced)} mixture clusters traced as polygons: see its notes)" if traced else ""
    print(f"froze the gates applied to {fcs} -> {target}{tail}", file=sys.stderr)
    return target


def cmd_gate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gating import GatingError, load_markers
    from gating.io import is_workspace

    from .errors import FCSError
    from .fcs import read_fcs
    from .panels import read_strategy

    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    if args.freeze and Path(args.freeze).suffix.lower() not in (".xml", ".wsp"):
        _error(f"--freeze {args.freeze}: give a .xml (Gating-ML 2.0) or .wsp (FlowJo 10) file")
        return 2
    try:
        per_sample = is_workspace(args.strategy)  # FlowJo: each file has its own gates
        shared = None if per_sample else read_strategy(args.strategy)
        overrides = {}
        if args.overrides:
            from gating.overrides import load_overrides

            if shared is None:
                raise GatingError(f"{args.overrides}: overrides need a YAML or Gating-ML strategy")
            overrides = load_overrides(args.overrides, shared)
        markers = load_markers(args.markers) if args.markers else {}
    except (GatingError, OSError) as exc:
        _error(str(exc))
        return 2
    failed = 0
    for n, path in enumerate(args.files, start=1):
        try:
            sample = read_fcs(path)
            strategy = shared or read_strategy(args.strategy, sample=Path(path).name)
            pins = overrides.get(Path(path).name)
            if pins:
                strategy = strategy.pin(pins)
            result = strategy.apply(sample, markers=markers)
            table = result.stats(medians=args.medians)
            if args.freeze:
                _freeze(result, sample, Path(args.freeze), Path(path), len(args.files))
        except (FCSError, GatingError, OSError) as exc:
            failed += 1
            _error(str(exc) if not isinstance(exc, OSError) else f"{path}: {exc.strerror or exc}")
            continue
        if result.failed:  # the table is printed; the failed rows have no count
            failed += 1
            for name, why in result.failed.items():
                _error(f"{path}: population {name!r} was not gated: {why}")
        labels = dict(zip(sample.channels, sample.markers))
        found = ", ".join(  # which channel each marker name was read from
            f"{k} -> {v}" + (f" ({labels[v]})" if labels.get(v) else "")
            for k, v in result.resolved.items()
            if k != v
        )
        if out_dir is None:
            print(f"# {path}")
            if found:
                print(f"# markers: {found}")
            shown = table
            if "failed" in table:  # the reasons are on stderr; the rows say NOT GATED
                shown = table.drop(columns="failed").astype({"count": object})
                shown.loc[table["failed"] != "", "count"] = "NOT GATED"
            print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
            print()
        else:
            target = out_dir / f"{Path(path).stem}.populations.csv"
            gates = result.gates
            table["channels"] = [  # the channels ($PnN) each population's gate read
                "; ".join(result.resolved.get(d.name, d.name) for d in gates[name].dimensions)
                for name in table["name"]
            ]
            table.to_csv(target, index=False, encoding="utf-8-sig")  # BOM: for Excel
            print(f"[{n}/{len(args.files)}] {path}: {len(table)} populations -> {target}")
    return 1 if failed else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import simulate

    total = 3 * (6 if args.preset == "whim-trial" else args.specimens)
    done = [0]

    def progress(name: str) -> None:
        done[0] += 1
        if not args.quiet:
            print(f"[{done[0]}/{total}] {name}", file=sys.stderr)

    manifest = simulate(
        args.out,
        preset=args.preset,
        seed=args.seed,
        drift=args.drift,
        n_healthy=args.specimens,
        events=(args.min_events, args.max_events),
        progress=progress,
        composition=args.composition,
    )
    print(
        f"wrote {len(manifest)} FCS files, manifest.csv and truth.csv to {args.out} "
        f"({args.preset}, seed {args.seed}; simulated specimens, not patient data)"
    )
    return 0


def _progress(args: argparse.Namespace, total: int):
    """A progress line per file on a terminal; quiet when not a tty or with --quiet."""
    done = [0]
    show = not getattr(args, "quiet", False) and sys.stderr.isatty()

    def step(name: str) -> None:
        done[0] += 1
        if show:
            print(f"\r[{done[0]}/{total}] {name:<40}", end="", file=sys.stderr, flush=True)
            if done[0] == total:
                print(file=sys.stderr)

    return step


def _strategy_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        tube, sep, path = item.partition("=")
        if not sep or not tube or not path:
            raise ValueError(f"--strategy {item!r}: expected TUBE=FILE")
        out[tube] = path
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from .batch_lock import output_lock
    from .errors import CytowhimError
    from .manifest import read_manifest
    from .panels import Panels
    from .run import run_manifest, write_run

    try:
        if args.executor == "dask" and not args.scheduler:
            raise ValueError("--executor dask needs --scheduler ADDRESS")
        if args.scheduler and args.executor != "dask":
            raise ValueError(
                "--scheduler is the address of a Dask scheduler: add --executor dask, or leave "
                "--scheduler out to gate on this machine"
            )
        panels = Panels.load(args.panels).with_strategies(_strategy_overrides(args.strategy))
        if args.markers:
            from gating import load_markers

            panels = panels.with_markers(load_markers(args.markers))
        qc_rules = reporting = None
        if args.qc:
            from .qc import read_lab_rules

            qc_rules, reporting = read_lab_rules(args.qc)
        reference = None
        if args.reference:
            from .reference import ReferenceIntervals

            reference = ReferenceIntervals.load(args.reference)
        # the manifest is read whole before anything is written: a manifest the run cannot
        # use leaves the output folder as it was
        total = len(read_manifest(args.manifest, units=args.units, decimal=args.decimal)[0])
        db = run_info = None
        if not args.no_db:
            from .db import ResultsDB
            from .db.from_run import run_info as make_run_info

            db = ResultsDB(args.db)  # unreachable or unusable: one line, nothing gated yet
            run_info = make_run_info(args.out, panels)
    except (CytowhimError, ValueError, OSError) as exc:
        return _failed(args, exc)
    try:
        with output_lock(args.out, wait=args.wait, waiting=_error):
            result = run_manifest(
                args.manifest,
                panels=panels,
                qc_rules=qc_rules,
                reference=reference,
                progress=_progress(args, total),
                jobs=args.jobs,
                out=args.out,
                save_events=args.save_events,
                scheduler=args.scheduler if args.executor == "dask" else None,
                reporting=reporting,
                units=args.units,
                decimal=args.decimal,
                db=db,
                run_info=run_info,
            )
            path = write_run(result, args.out, manifest=args.manifest, panels=panels)
    except CytowhimError as exc:  # locked, disk full, Dask unreachable or failing, manifest gone
        return _failed(args, exc)
    finally:
        if db is not None:
            db.close()
    for line in result.errors:
        _error(line)
    n_spec = result.table["specimen"].nunique() if len(result.table) else 0
    print(
        f"{n_spec} specimens, {len(result.table)} population rows -> {path}"
        + (f"; {len(result.flags)} QC flags" if result.flags else "")
        + (f"; {len(result.errors)} inputs failed (errors.csv)" if result.errors else "")
        + (f"; registered in {db.url}" if db is not None else "")
    )
    return 1 if result.errors else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_folder, print_table
    from .errors import CytowhimError

    if args.db:
        if args.dir is not None:
            _error("compare: give a run folder DIR or --db URL, not both")
            return 2
        from .cli_db import compare_db

        return compare_db(args)
    if args.dir is None:
        _error("compare: give a run folder DIR (written by cytowhim run), or --db URL")
        return 2
    if args.patients or args.visits:
        _error("compare: --patients and --visits choose a cohort from the database (--db URL)")
        return 2

    try:
        comparison = compare_folder(
            args.dir,
            args.baseline,
            args.peak,
            out=args.out,
            panels=args.panels,
            reference=args.reference,
            include_flagged=args.include_flagged,
        )
    except (CytowhimError, ValueError, OSError) as exc:
        _error(str(exc))
        return 2
    print(print_table(comparison))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import CytowhimError
    from .export import to_csv, to_xlsx

    results = Path(args.dir) / "results.h5"
    if not (args.xlsx or args.csv):
        _error("export: give --xlsx FILE and/or --csv DIR")
        return 2
    try:
        written = []
        if args.xlsx:
            written.append(to_xlsx(results, args.xlsx))
        if args.csv:
            written.extend(to_csv(results, args.csv))
    except (CytowhimError, OSError) as exc:
        _error(f"export: {exc}")
        return 2
    for path in written:
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import main_report

    return main_report(
        args.dir, out=args.out, baseline=args.baseline, peak=args.peak, quiet=args.quiet
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from .compare import print_table
    from .demo import run_demo

    comparison, result = run_demo(args.out, seed=args.seed, progress=_progress(args, 36))
    print(print_table(comparison))
    print(
        f"\nSimulated specimens (whim-trial preset, seed {args.seed}), not patient data. "
        f"Files in {args.out}: table1.csv/.md/.html, populations.csv, specimens/."
    )
    for line in result.errors:
        _error(line)
    return 1 if result.errors else 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give 1 or more worker processes")
    return value


def _debug_flag(parser: argparse.ArgumentParser, default) -> None:
    # on the subcommand too (cytowhim run ... --debug); SUPPRESS there keeps the main one's value
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="for developers: show tracebacks and debug messages instead of one-line errors",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cytowhim",
        description="Flow cytometry for the clinical immunology lab: FCS files in; gated "
        "leukocyte subsets, absolute counts (cells/µL), QC and reference flags out.",
        epilog="Exit status: 0 all done, 1 some inputs failed (named on stderr), 2 bad usage.",
    )
    parser.add_argument("--version", action="version", version=f"cytowhim {__version__}")
    _debug_flag(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "inspect",
        help="header, channels/markers, event count, spillover of FCS files or folders",
        description="Show what FCS files hold: version, instrument, events, "
        "parameters with markers, spillover. A folder is searched with its subfolders (.fcs, "
        ".lmd, and files starting with 'FCS') and listed as a table, one line per file, with a "
        "summary. A file whose events cannot be read (e.g. truncated) is named on stderr (in a "
        "table: in its problems column), shown from its keywords where they read, and the "
        "others are still inspected (exit status 1); warnings alone leave exit status 0.",
    )
    p.add_argument("files", nargs="*", metavar="PATH", help="FCS files or folders")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    p.add_argument("--example", action="store_true", help="also inspect the bundled example files")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "gate",
        help="gate FCS files with a strategy; a population table per file",
        description="Apply a gating strategy (cytowhim YAML, Gating-ML 2.0 .xml, or a FlowJo "
        "workspace whose gates for each file are used) to FCS files. Prints one population table "
        "per file (population, parent, count, percent of parent and of all events), or writes "
        "DIR/<file>.populations.csv with --out. A broken file or a missing marker is named on "
        "stderr and the other files are still gated (exit status 1).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="FCS files")
    p.add_argument("--strategy", "-s", required=True, metavar="S", help="strategy file")
    p.add_argument("--out", "-o", metavar="DIR", help="write one CSV per file into DIR")
    p.add_argument("--medians", action="store_true", help="add median fluorescence per marker")
    p.add_argument(
        "--overrides",
        metavar="O",
        help="YAML file pinning gates for named files (recorded as overridden)",
    )
    p.add_argument(
        "--markers",
        metavar="FILE",
        help="YAML file mapping the strategy's marker names to the files' (CD8: CD8a)",
    )
    p.add_argument(
        "--freeze",
        metavar="OUT",
        help="write the gates as applied to FILE: OUT.xml Gating-ML 2.0, OUT.wsp a FlowJo 10 "
        "workspace; with several FILEs one per file, named <FILE stem>.<OUT name> next to OUT",
    )
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser(
        "simulate",
        help="synthetic specimens with known truth (FCS files, manifest.csv, truth.csv)",
        description="Simulate lysed whole-blood specimens: a T-cell, a B/NK and a monocyte tube "
        "per specimen (each its own panel and channel names, with spillover, detector noise and "
        "instrument drift), the CBC in manifest.csv and the true events and cells/µL of every "
        "population in truth.csv. Presets: whim-trial (3 patients x baseline and peak, matching "
        "Table 1 of the plerixafor study) and healthy (counts inside the reference intervals).",
    )
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--preset",
        choices=["whim-trial", "healthy", "realistic", "course", "controls"],
        default="whim-trial",
        help="realistic: --specimens specimens with real panels' spreads, continua, debris, extra "
        "cell types, an analyzer CBC and occasional failed stains; course: one patient's 6-month "
        "plerixafor course with draw and dose times; controls: --specimens days of control "
        "material with lot.csv and a planted Westgard 2-2s (default: whim-trial)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    p.add_argument(
        "--drift",
        type=float,
        default=0.3,
        help="largest relative instrument drift between tubes (default 0.3 = ±30%%)",
    )
    p.add_argument(
        "--specimens", type=int, default=3, help="specimens of the healthy and realistic presets"
    )
    p.add_argument("--min-events", type=int, default=60_000, help="fewest events per tube")
    p.add_argument("--max-events", type=int, default=120_000, help="most events per tube")
    p.add_argument(
        "--composition",
        choices=["multinomial", "exact"],
        default="multinomial",
        help="sample each tube's events from the specimen (default), or give each cell type "
        "exactly its designed share",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "run",
        help="batch: gate, absolute counts, QC, reference flags -> DIR/populations.csv",
        description="Gate every tube of a manifest (CSV or XLSX: file, specimen, patient, "
        "timepoint, tube and the CBC WBC, ANC, ALC, AMC), turn events into absolute counts "
        "(cells/µL) with the CBC or counting beads, run the QC rules and flag values outside "
        "reference intervals. Writes DIR/populations.csv and DIR/qc_flags.csv; inputs that "
        "failed are named on stderr and in DIR/errors.csv (exit status 1).",
    )
    p.add_argument("manifest", help="manifest.csv or .xlsx")
    p.add_argument("--out", "-o", required=True, metavar="DIR")
    p.add_argument(
        "--strategy",
        action="append",
        metavar="TUBE=FILE",
        help="gate a tube with another strategy (repeatable)",
    )
    p.add_argument("--panels", metavar="FILE", help="the lab's panel file (default: bundled)")
    p.add_argument(
        "--markers",
        metavar="FILE",
        help="YAML file mapping the strategies' marker names to the files' (CD8: CD8a; over the "
        "panel file's markers:)",
    )
    p.add_argument(
        "--qc", metavar="FILE", help="the lab's QC thresholds and reporting rules (YAML)"
    )
    p.add_argument("--reference", metavar="FILE", help="the lab's reference intervals (CSV)")
    p.add_argument(
        "--units",
        metavar="UNIT",
        help="CBC unit where the manifest states none (default cells/uL; x10^3/uL, x10^9/L)",
    )
    p.add_argument(
        "--decimal",
        choices=[".", ","],
        help="the manifest's decimal separator; a number with a comma is refused without it",
    )
    p.add_argument(
        "--executor",
        choices=["local", "dask"],
        default="local",
        help="local processes (default) or a Dask distributed cluster",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (with --executor dask)",
    )
    p.add_argument(
        "--save-events",
        action="store_true",
        help="store each event's population membership (bit-packed) in DIR/results.h5",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=_positive_int,
        default=1,
        metavar="N",
        help="gate files in N processes (default 1; N >= 1)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="if another run is writing into DIR, wait for it to finish (default: refuse)",
    )
    p.add_argument(
        "--db",
        metavar="URL",
        help="register each finished specimen in this results database (default: $CYTOWHIM_DB, "
        "else a SQLite file in the user's data directory; see cytowhim history)",
    )
    p.add_argument("--no-db", action="store_true", help="do not register in a results database")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress")
    _debug_flag(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "compare",
        help="baseline vs peak in the layout of Table 1, paired statistics",
        description="Pair patients across two timepoints of DIR/populations.csv: mean ± SEM, "
        "two-sided paired t test, fold change, reference range and how many patients fall "
        "below/within/above it. Writes table1.csv, .md and .html; patients missing a timepoint "
        "are listed.",
    )
    p.add_argument(
        "dir", nargs="?", metavar="DIR", help="a folder written by cytowhim run (or use --db)"
    )
    p.add_argument("--baseline", required=True, metavar="A", help="baseline timepoint label")
    p.add_argument("--peak", required=True, metavar="B", help="peak timepoint label")
    p.add_argument("--out", "-o", metavar="DIR", help="where to write table1.* (default: DIR)")
    add_compare_options(p)
    p.add_argument(
        "--panels",
        metavar="FILE",
        help="panel file naming each population's reporting tube (default: the run's, else bundled)",
    )
    p.add_argument(
        "--reference",
        metavar="FILE",
        help="the lab's reference intervals (CSV; age/sex bands per patient; default: the run's)",
    )
    p.add_argument(
        "--include-flagged",
        action="store_true",
        help="compare counts whose QC failed too (by default they are left out and listed)",
    )
    p.set_defaults(func=cmd_compare)
    add_db_parsers(sub)

    p = sub.add_parser(
        "export",
        help="population table, QC flags and provenance of DIR/results.h5 as XLSX or CSV",
        description="Export the results of cytowhim run (DIR/results.h5) for a spreadsheet or "
        "a LIMS: sheets/files populations, qc_flags and provenance. For events with population "
        "labels in AnnData (.h5ad), use cytowhim.export.to_anndata from Python.",
    )
    p.add_argument("dir", metavar="DIR", help="a folder written by cytowhim run")
    p.add_argument("--xlsx", metavar="FILE", help="write one workbook")
    p.add_argument("--csv", metavar="FOLDER", help="write populations.csv, qc_flags.csv, ...")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "report",
        help="one self-contained HTML report with gate plots, QC flags and Table 1",
        description="Build DIR/report.html from a folder written by cytowhim run: per specimen "
        "and tube each gate drawn on a density plot of its parent's events, QC flags "
        "highlighted, the Table 1 comparison and reference-range plots per population.",
    )
    p.add_argument("dir", metavar="DIR", help="a folder written by cytowhim run")
    p.add_argument("--out", "-o", metavar="FILE", help="report path (default DIR/report.html)")
    p.add_argument("--baseline", metavar="A", help="baseline timepoint label")
    p.add_argument("--peak", metavar="B", help="peak timepoint label")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "demo",
        help="the whole job on simulated specimens of the WHIM plerixafor study",
        description="Simulate the whim-trial preset, run it (gating, counts, QC, flags), compare "
        "baseline with peak and print the Table 1 comparison; writes DIR/table1.csv.",
    )
    p.add_argument(
        "--out",
        "-o",
        default="cytowhim-demo",
        metavar="DIR",
        help="output folder (default: ./cytowhim-demo)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress")
    p.set_defaults(func=cmd_demo)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"cytowhim: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cytowhim`` command; returns the exit status."""
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False)
    handler = _debug_logging() if debug else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # an error in cytowhim: one line, the traceback with --debug
        if debug:
            raise
        text = " ".join(str(exc).split())
        _error(
            f"{args.command}: unexpected {type(exc).__name__}"
            + (f": {text[:300]}" if text else "")
            + "; an error in cytowhim: please report it (cytowhim --debug shows the traceback)"
        )
        return 2
    finally:
        if handler is not None:
            import logging

            logging.getLogger("cytowhim").removeHandler(handler)


def _debug_logging():
    """Debug messages of cytowhim's loggers on stderr (``--debug``); the handler added."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cytowhim: debug: %(name)s: %(message)s"))
    logger = logging.getLogger("cytowhim")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler
