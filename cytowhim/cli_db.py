"""The results database on the command line: ``history``, ``controls`` and ``compare --db``.

Kept apart from :mod:`cytowhim.cli` (which adds these parsers): SQLAlchemy and the database
modules are imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
from datetime import date

from .cli_common import _error


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``history`` and ``controls`` subcommands."""
    p = sub.add_parser(
        "history",
        help="one patient's counts over time from the results database -> history.csv/.html",
        description="A patient's population counts and CBC from every run registered in the "
        "results database (newest version of each specimen): history.csv and history.html "
        "(per population: counts over calendar time with the reference interval shaded and the "
        "peak and trough marked, and the curves within a day by hours after the dose).",
    )
    p.add_argument("patient", metavar="PATIENT")
    p.add_argument(
        "--population", "-p", action="append", metavar="P", help="only P (repeatable; WBC, "
        "ANC, ALC, AMC for the CBC); default: every population",
    )  # fmt: skip
    p.add_argument("--db", metavar="URL", help="results database (default: $CYTOWHIM_DB or the "
                   "user's SQLite file)")  # fmt: skip
    p.add_argument("--out", "-o", required=True, metavar="DIR")
    p.add_argument("--released", action="store_true", help="only specimens a director released")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser(
        "controls",
        help="control material: Levey-Jennings charts and Westgard rules -> controls.html",
        description="Control specimens (manifest column control_lot) against their lot's "
        "targets: controls.csv (each result with its z score), violations.csv (Westgard 1-3s, "
        "2-2s, R-4s, 4-1s, 10-x) and controls.html (Levey-Jennings charts). A day with a broken "
        "rule flags that day's patient results (QC 'control out of range') until reviewed "
        "with --accept. Exit 1 when a rule is broken and not yet reviewed.",
    )
    p.add_argument("--lot", metavar="L", help="only lot L")
    p.add_argument("--targets", metavar="FILE", help="store the lot file's targets first (CSV: "
                   "lot, population, tube, mean, sd or low/high)")  # fmt: skip
    p.add_argument("--db", metavar="URL", help="results database")
    p.add_argument("--out", "-o", metavar="DIR", help="write controls.csv, violations.csv, "
                   "controls.html into DIR")  # fmt: skip
    p.add_argument("--accept", metavar="DAY", help="review lot --lot's failure on DAY "
                   "(YYYY-MM-DD), with --by and --reason")  # fmt: skip
    p.add_argument("--by", metavar="NAME", help="who reviewed it")
    p.add_argument("--reason", metavar="TEXT", help="why the day's results may be released")
    p.set_defaults(func=cmd_controls)


def add_compare_options(p: argparse.ArgumentParser) -> None:
    """``compare --db``: pair patients from the results database instead of a run folder."""
    p.add_argument("--db", metavar="URL", help="take the counts from the results database "
                   "(newest versions; DIR is then not given and --out is required)")  # fmt: skip
    p.add_argument("--patients", nargs="+", metavar="P", help="with --db: only these patients")
    p.add_argument("--visits", nargs="+", metavar="V", help="with --db: only specimens of these "
                   "visits (manifest column visit)")  # fmt: skip
    p.add_argument("--released", action="store_true", help="with --db: only specimens a "
                   "director released (cytowhim review)")  # fmt: skip


def _open(url: str | None):
    from .db import ResultsDB

    return ResultsDB(url)


def cmd_history(args: argparse.Namespace) -> int:
    from .errors import CytowhimError
    from .history import write_history

    try:
        db = _open(args.db)
        try:
            table = db.history(args.patient, args.population, released_only=args.released)
        finally:
            db.close()
        paths = write_history(table, args.out, args.patient)
    except (CytowhimError, OSError) as exc:
        _error(f"history: {exc}")
        return 2
    print(f"{args.patient}: {table['specimen'].nunique()} specimens, {len(table)} values")
    for path in paths.values():
        print(path)
    return 0


def cmd_controls(args: argparse.Namespace) -> int:
    from .controls import read_lot_file, write_controls
    from .errors import CytowhimError

    if args.accept and not (args.lot and args.by and args.reason):
        _error("controls: --accept DAY needs --lot, --by and --reason")
        return 2
    try:
        day = date.fromisoformat(args.accept) if args.accept else None
    except ValueError:
        _error(f"controls: --accept {args.accept!r} is not a date (YYYY-MM-DD)")
        return 2
    try:
        db = _open(args.db)
        try:
            if args.targets:
                n = db.set_control_targets(read_lot_file(args.targets), source=str(args.targets))
                print(f"{n} targets stored from {args.targets}")
            if day is not None:
                db.review_control_day(args.lot, day, args.by, args.reason)
                print(f"lot {args.lot}, {day}: reviewed by {args.by}")
            if db.control_targets(args.lot).empty:
                _error(f"controls: no targets for {'lot ' + args.lot if args.lot else 'any lot'} "
                       "in the database; store a lot file with --targets FILE")  # fmt: skip
                return 2
            report = db.control_report(args.lot)
        finally:
            db.close()
        if args.out:
            for path in write_controls(report, args.out).values():
                print(path)
    except (CytowhimError, ValueError, OSError) as exc:
        _error(f"controls: {exc}")
        return 2
    n = report.measurements["specimen"].nunique()
    print(f"{n} control specimens, {len(report.violations)} Westgard violation(s)")
    for v in report.violations.to_dict("records"):
        print(f"  {v['day']}  lot {v['lot']}  {v['population']}  {v['rule']}  "
              f"{v['absolute_per_uL']:g} cells/µL (z {v['z']:+.2f})")  # fmt: skip
    for day_open, messages in sorted(report.open_days.items(), key=lambda kv: str(kv[0])):
        when = day_open or "controls without a draw date (their runs' patients)"
        print(f"  {when}: patient results flagged until reviewed ({len(messages)} rule(s))")
    return 1 if report.open_days else 0


def compare_db(args: argparse.Namespace) -> int:
    """``cytowhim compare --db URL --baseline A --peak B --out DIR``."""
    from .compare import PopulationTableError, compare_timepoints, print_table
    from .errors import CytowhimError
    from .panels import Panels
    from .reference import ReferenceIntervals

    if not args.out:
        _error("compare: with --db give --out DIR for table1.csv/.md/.html")
        return 2
    try:
        db = _open(args.db)
        try:
            table = db.population_table(
                args.patients, visits=args.visits, released_only=args.released
            )
            where = db.url
        finally:
            db.close()
        if table.empty:
            _error(f"compare: no patient results in {where} for that cohort")
            return 2
        lookup = ReferenceIntervals.load(args.reference) if args.reference else None
        comparison = compare_timepoints(
            table,
            args.baseline,
            args.peak,
            sources=Panels.load(args.panels).report,
            reference=lookup,
            include_flagged=args.include_flagged,
        )
        comparison.write(args.out)
    except PopulationTableError as exc:
        _error(f"compare: {where}: {exc.problem}")
        return 2
    except (CytowhimError, ValueError, OSError) as exc:
        _error(f"compare: {exc}")
        return 2
    print(print_table(comparison))
    return 0
