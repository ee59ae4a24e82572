"""Review and sign-out on the command line: ``cytowhim review`` (the web application),
``cytowhim review export-overrides`` and ``cytowhim users add/list/disable``.

Kept apart from :mod:`cytowhim.cli` (which adds these parsers): Flask, SQLAlchemy and the
database modules are imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from .cli_common import _error

PASSWORD_ENV = "CYTOWHIM_PASSWORD"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``review`` and ``users`` subcommands."""
    db_help = "results database (default: $CYTOWHIM_DB or the user's SQLite file)"
    p = sub.add_parser(
        "review",
        help="review and sign-out in the browser: gates, counts, release, audit trail",
        description="Start the review web application on the results database: a worklist of "
        "specimens with their status and flags, each specimen's gates on its events (drag a "
        "gate to re-gate; saving needs a reason), marking reviewed (technician) and releasing "
        "(director), and the append-only audit trail. Bound to 127.0.0.1 unless --host is "
        "given; another address needs user accounts (cytowhim users add).",
    )
    p.add_argument("--db", metavar="URL", help=db_help)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.set_defaults(func=cmd_review)
    rsub = p.add_subparsers(dest="review_command", metavar="{export-overrides,rerun}")
    e = rsub.add_parser(
        "export-overrides",
        help="the reviewers' active gate overrides as an overrides file (YAML)",
        description="Write the active gate overrides of the results database as an overrides "
        "file: `cytowhim gate --overrides` and run_manifest(overrides=...) pin them, so a "
        "batch re-run reproduces the reviewed counts.",
    )
    e.add_argument("--db", metavar="URL", help=db_help)
    e.add_argument("--out", "-o", required=True, metavar="FILE")
    e.set_defaults(func=cmd_export_overrides)
    rr = rsub.add_parser(
        "rerun",
        help="run a manifest again with the reviewers' gates pinned",
        description="cytowhim run with the reviewed gates: the active gate overrides of the "
        "results database (written to OUT/overrides.yaml) or --overrides FILE are pinned in the "
        "files they name, the counts are registered (a new version of each changed specimen) "
        "and written to OUT as by cytowhim run. Bundled panels and QC rules unless given.",
    )
    rr.add_argument("manifest", metavar="MANIFEST")
    rr.add_argument("--out", "-o", required=True, metavar="DIR")
    rr.add_argument("--db", metavar="URL", help=db_help)
    rr.add_argument(
        "--overrides", metavar="FILE", help="an overrides file instead of the database's"
    )
    rr.add_argument("--panels", metavar="FILE", help="panel file (default: the bundled one)")
    rr.add_argument(
        "--qc", metavar="FILE", help="the lab's QC thresholds and reporting rules (YAML)"
    )
    rr.add_argument(
        "--reference", metavar="FILE", help="the lab's reference intervals (CSV; default bundled)"
    )
    rr.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="worker processes")
    rr.set_defaults(func=cmd_review_rerun)

    p = sub.add_parser(
        "users",
        help="review accounts: add, list, disable",
        description="Accounts of the review application, in the results database (passwords "
        "hashed). Roles: technician (reviews, adjusts gates) and director (also releases).",
    )
    usub = p.add_subparsers(dest="users_command", metavar="{add,list,disable}", required=True)
    a = usub.add_parser("add", help="add an account (password asked, or --password-file)")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--role", choices=("technician", "director"), default="technician")
    a.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"read the password from FILE's first line (else ${PASSWORD_ENV}, else a prompt)",
    )
    a.add_argument("--db", metavar="URL", help=db_help)
    a.set_defaults(func=cmd_users_add)
    ls = usub.add_parser("list", help="list the accounts")
    ls.add_argument("--db", metavar="URL", help=db_help)
    ls.set_defaults(func=cmd_users_list)
    d = usub.add_parser("disable", help="disable an account (it can no longer log in)")
    d.add_argument("name", metavar="NAME")
    d.add_argument("--db", metavar="URL", help=db_help)
    d.set_defaults(func=cmd_users_disable)


def _engine(args: argparse.Namespace):
    from .db.connect import create

    return create(args.db)


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n")
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


def cmd_users_add(args: argparse.Namespace) -> int:
    from .db import review as R
    from .db.connect import DatabaseError

    try:
        password = _password(args)
        R.add_user(_engine(args), args.name, password, args.role, by=getpass.getuser())
    except (R.ReviewError, DatabaseError, OSError, ValueError) as exc:
        _error(str(exc))
        return 2
    print(f"user {args.name} added ({args.role})")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from .db import review as R
    from .db.connect import DatabaseError

    try:
        rows = R.users(_engine(args))
    except DatabaseError as exc:
        _error(str(exc))
        return 2
    for u in rows:
        state = "disabled" if u["disabled"] else "active"
        print(f"{u['name']}\t{u['role']}\t{state}\t{u['created_utc']:%Y-%m-%d %H:%M}")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    from .db import review as R
    from .db.connect import DatabaseError

    try:
        R.disable_user(_engine(args), args.name, by=getpass.getuser())
    except (R.ReviewError, DatabaseError) as exc:
        _error(str(exc))
        return 2
    print(f"user {args.name} disabled")
    return 0


def cmd_export_overrides(args: argparse.Namespace) -> int:
    import yaml

    from .db import review as R
    from .db.connect import DatabaseError

    try:
        doc = R.overrides_document(_engine(args))
        with open(args.out, "w", encoding="utf-8") as fh:
            yaml.safe_dump(doc, fh, sort_keys=True, allow_unicode=True)
    except (DatabaseError, OSError) as exc:
        _error(str(exc))
        return 2
    n = sum(len(v) for v in doc.values())
    print(f"{n} gate overrides in {len(doc)} files -> {args.out}")
    return 0


def cmd_review_rerun(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from .batch_lock import output_lock
    from .db import ResultsDB
    from .db import review as R
    from .db.from_run import run_info
    from .errors import CytowhimError
    from .panels import Panels
    from .run import run_manifest, write_run

    db = None
    try:
        panels = Panels.load(args.panels)
        qc_rules = reporting = reference = None
        if args.qc:
            from .qc import read_lab_rules

            qc_rules, reporting = read_lab_rules(args.qc)
        if args.reference:
            from .reference import ReferenceIntervals

            reference = ReferenceIntervals.load(args.reference)
        db = ResultsDB(args.db)
        with output_lock(args.out):
            overrides = args.overrides
            if not overrides:
                overrides = Path(args.out) / "overrides.yaml"
                doc = R.overrides_document(db.engine)
                overrides.write_text(yaml.safe_dump(doc, sort_keys=True, allow_unicode=True))
            result = run_manifest(
                args.manifest,
                panels=panels,
                jobs=args.jobs,
                out=args.out,
                db=db,
                run_info=run_info(args.out, panels),
                overrides=overrides,
                qc_rules=qc_rules,
                reporting=reporting,
                reference=reference,
            )
            path = write_run(
                result,
                args.out,
                manifest=args.manifest,
                panels=panels,
                lab_files={"qc": args.qc, "reference": args.reference},
            )
    except (CytowhimError, ValueError, OSError) as exc:
        _error(" ".join(str(exc).split()))
        return 2
    finally:
        if db is not None:
            db.close()
    for line in result.errors:
        _error(line)
    print(f"{len(result.table)} population rows -> {path} (gates pinned from {overrides})")
    return 1 if result.errors else 0


def cmd_review(args: argparse.Namespace) -> int:
    from .db import review as R
    from .db.connect import DatabaseError

    try:
        engine = _engine(args)
        accounts = R.has_users(engine)
    except DatabaseError as exc:
        _error(str(exc))
        return 2
    if args.host not in LOCAL_HOSTS and not accounts:
        _error(
            f"--host {args.host}: other machines could reach the review server, and no user "
            "accounts exist; add them first (cytowhim users add NAME --role director)"
        )
        return 2
    if not accounts:
        _error("no user accounts yet: add one with `cytowhim users add NAME --role director`")
        return 2
    try:
        import waitress  # noqa: F401

        from .review.server import create_app
    except ImportError as exc:
        _error(f"the review server needs Flask and waitress ({exc}); pip install cytowhim")
        return 2
    app = create_app(args.db)
    url = f"http://{args.host}:{args.port}/"
    print(f"cytowhim review on {url} (Ctrl-C stops it)", file=sys.stderr)
    from waitress import serve

    serve(app, host=args.host, port=args.port, threads=4)
    return 0
