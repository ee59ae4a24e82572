"""The command line's commands on FCS files: ``inspect`` and ``gate`` (added to the parser by
:mod:`cytowhim.cli`)."""

from __future__ import annotations

import argparse
import json
import sys

from .cli_common import _error


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``inspect`` and ``gate`` subcommands."""
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
