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
import sys
from collections.abc import Sequence

from . import __version__
from .cli_common import _error, _failed
from .cli_db import add_compare_options
from .cli_db import add_parsers as add_db_parsers
from .cli_files import add_parsers as add_file_parsers
from .cli_review import add_parsers as add_review_parsers


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
            path = write_run(
                result,
                args.out,
                manifest=args.manifest,
                panels=panels,
                lab_files={"qc": args.qc, "reference": args.reference},
            )
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
    if args.patients or args.visits or args.released:
        _error(
            "compare: --patients, --visits and --released choose a cohort from the database "
            "(--db URL)"
        )
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

    add_file_parsers(sub)

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
    add_review_parsers(sub)

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
