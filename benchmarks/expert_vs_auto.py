"""Benchmark: automatic gates against an expert's, on real files (the real-data yardstick).

The 16 FACScan files of FlowJo's advanced tutorial (4 donors x 4 three-colour tubes, 1993,
bit-packed FCS 2.0; ``$CYTOWHIM_CORPUS/expert_gating/labkey_advanced``) carry an expert's gating
in a FlowJo 9.7.2 workspace with FlowJo's counts. Each tube is gated here automatically with the
bundled strategies ``data/strategies/facscan/*.yaml`` (scatter clusters near typical FACScan
locations, density valleys searched over the middle of the log scale: written as a lab would,
never from the expert's gate positions), and the script prints, per donor and population, the
expert's and the automatic percent of parent side by side, the difference in points, and the time
of the automatic strategy next to the engine's fixed-gate path (the expert's own gates, imported
from the workspace) on the same files, same run.

Then the same for the corpus's other expert-gated files, with strategies in
``data/strategies/corpus/``: OMIP-021 (2 donors, LSRFortessa, cells / debris / CD3+CD4+) and
FlowJo's A2004 DC/monocyte panel (live cells, APCs, monocytes, B cells, mDCs, pDCs), against
FlowJo's counts in ``flowjo/truth_csv``.

    python benchmarks/expert_vs_auto.py            # table + timing (median of 5 runs)
    python benchmarks/expert_vs_auto.py --markdown # the table as Markdown (README)
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != HERE]

import cytowhim as cw  # noqa: E402
from cytowhim.resources import data_path  # noqa: E402
from gating import read_strategy  # noqa: E402
from gating.flowjo import read_flowjo  # noqa: E402

CORPUS = Path(os.environ.get("CYTOWHIM_CORPUS", HERE.parent.parent / "shared" / "corpus"))
LABKEY = CORPUS / "expert_gating" / "labkey_advanced"
WORKSPACE = LABKEY / "advanced-v9.7.2.xml"

# tube -> (strategy, [(expert node, expert parent, automatic population, automatic parent)])
TUBES: dict[str, tuple[str, list[tuple[str, str, str, str]]]] = {
    "01": (
        "CD14_CD16_CD45",
        [
            ("Lymphocytes", "", "lymphocytes", ""),
            ("Lymphocytes/CD45+", "Lymphocytes", "CD45+ lymphocytes", "lymphocytes"),
            ("Monocytes", "", "monocytes", ""),
            ("Monocytes/Mono", "Monocytes", "CD14+ monocytes", "monocytes"),
            ("Monocytes/ProMono", "Monocytes", "CD16+ CD14dim", "monocytes"),
        ],
    ),
    "02": (
        "CD3_CD8_CD4",
        [
            ("Lymphocytes", "", "lymphocytes", ""),
            ("Lymphocytes/T Cells", "Lymphocytes", "T cells", "lymphocytes"),
            ("Lymphocytes/T Cells/CD4 T", "Lymphocytes/T Cells", "CD4 T", "T cells"),
            ("Lymphocytes/T Cells/CD8 T", "Lymphocytes/T Cells", "CD8 T", "T cells"),
            (
                "Lymphocytes/T Cells/Double Negative T",
                "Lymphocytes/T Cells",
                "double negative T",
                "T cells",
            ),
        ],
    ),
}
for _tube, _m in (("07", "CD4"), ("08", "CD8")):
    _t = f"Lymphocytes/{_m} T"
    TUBES[_tube] = (
        f"CD62L_CD45RA_{_m}",
        [
            ("Lymphocytes", "", "lymphocytes", ""),
            (_t, "Lymphocytes", f"{_m} T", "lymphocytes"),
            (f"{_t}/Naive", _t, "naive", f"{_m} T"),
            (f"{_t}/M1", _t, "CD45RA- CD62L-", f"{_m} T"),
            (f"{_t}/M2", _t, "CD45RA- CD62L+", f"{_m} T"),
            (f"{_t}/M3", _t, "CD45RA+ CD62L-", f"{_m} T"),
        ],
    )


def expert_counts() -> dict[tuple[str, str], int]:
    """(file, node path; '' the root) -> FlowJo's count."""
    out = {}
    with (LABKEY / "flowjo_counts.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = f"{row['gate_path']}/{row['population']}".strip("/")
            out[(row["sample"], "" if row["node_type"] == "SampleNode" else path)] = int(
                row["flowjo_count"]
            )
    return out


def read(path: Path) -> cw.Sample:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cw.FCSWarning)  # $BEGINDATA '768I': HEADER offsets used
        return cw.read_fcs(path)


def compare() -> list[dict[str, object]]:
    """One row per file and population: expert and automatic percent of parent."""
    truth = expert_counts()
    rows = []
    for tube, (strategy_name, pairs) in TUBES.items():
        strategy = read_strategy(data_path("strategies", "facscan", f"{strategy_name}.yaml"))
        for path in sorted(LABKEY.glob(f"931115-?{tube}-*.fcs")):
            sample = read(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # no spillover matrix: gated as recorded
                result = strategy.apply(sample)
            for node, parent, auto, auto_parent in pairs:
                expert = 100 * truth[(path.name, node)] / truth[(path.name, parent)]
                base = result.count(auto_parent) if auto_parent else sample.n_events
                rows.append(
                    {
                        "file": path.name,
                        "donor": path.name[7],
                        "tube": strategy_name.replace("_", "/"),
                        "population": node.split("/")[-1],
                        "automatic": auto,
                        "expert_pct": expert,
                        "auto_pct": 100 * result.count(auto) / base,
                    }
                )
    return rows


FJ = CORPUS / "flowjo"
# file -> (strategy, workspace truth CSV, [(expert node path, automatic population)])
OTHERS: dict[Path, tuple[str, str, list[tuple[str, str]]]] = {
    FJ / "cytopipeline_omip021" / f"Donor{d}.fcs": (
        "omip021_cells_cd4",
        "cytopipeline_omip021__OMIP021_samples_FlowJo.csv",
        [("Cells", "Cells"), ("Debris", "Debris"), ("Cells/CD4+", "CD4+")],
    )
    for d in (1, 2)
}
OTHERS[FJ / "flowworkspacedata_A2004" / "a2004_O1T2pb05i_A2_A02.fcs"] = (
    "a2004_dc_monocytes",
    "flowworkspacedata_A2004__A2004Analysis.csv",
    [
        ("Live", "Live"),
        ("Live/APC", "APC"),
        ("Live/Monocytes", "Monocytes"),
        ("Live/APC/B Cell", "B Cell"),
        ("Live/APC/mDC", "mDC"),
        ("Live/APC/pDC", "pDC"),
    ],
)


def _flowjo_truth(csv_name: str, file: str) -> dict[str, int]:
    """Node path ('' the root) -> FlowJo's count for one file of a corpus workspace."""
    out = {}
    with (FJ / "truth_csv" / csv_name).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["fil"] != file or not row["flowjo_count"]:
                continue
            path = f"{row['gate_path']}/{row['population']}".removeprefix("root").strip("/")
            out["" if row["node_type"] == "SampleNode" else path] = int(float(row["flowjo_count"]))
    return out


def compare_others() -> list[dict[str, object]]:
    """One row per file and population of OMIP-021 and A2004: expert and automatic percent of
    parent, and both counts."""
    rows = []
    for path, (strategy_name, truth_csv, pairs) in OTHERS.items():
        truth = _flowjo_truth(truth_csv, path.name)
        strategy = read_strategy(data_path("strategies", "corpus", f"{strategy_name}.yaml"))
        sample = read(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = strategy.apply(sample)
        for node, auto in pairs:
            parent = node.rsplit("/", 1)[0] if "/" in node else ""
            auto_parent = strategy[auto].parent
            n = result.count(auto)
            base = result.count(auto_parent) if auto_parent else sample.n_events
            rows.append(
                {
                    "file": path.name,
                    "population": node,
                    "expert_events": truth[node],
                    "auto_events": n,
                    "expert_pct": 100 * truth[node] / truth[parent],
                    "auto_pct": 100 * n / base,
                }
            )
    return rows


def timing(repeat: int) -> tuple[float, float]:
    """Median seconds to gate all 16 files: automatic strategies, and the expert's own gates
    (the engine's fixed-gate path)."""
    samples = {p: read(p) for p in sorted(LABKEY.glob("*.fcs"))}
    auto = {
        tube: read_strategy(data_path("strategies", "facscan", f"{name}.yaml"))
        for tube, (name, _) in TUBES.items()
    }
    expert = {p: read_flowjo(WORKSPACE, p.name) for p in samples}

    def run(pick) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for p, s in samples.items():
                    pick(p).apply(s).counts()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return run(lambda p: auto[p.name[8:10]]), run(lambda p: expert[p])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    rows = compare()
    if args.markdown:
        print("| tube | population (expert / automatic) | donor B | donor C | donor D | donor E |")
        print("|---|---|---|---|---|---|")
        keys = dict.fromkeys((r["tube"], r["population"], r["automatic"]) for r in rows)
        for tube, pop, auto in keys:
            cells = [
                f"{r['expert_pct']:.1f} / {r['auto_pct']:.1f}"
                for r in rows
                if (r["tube"], r["population"], r["automatic"]) == (tube, pop, auto)
            ]
            print(f"| {tube} | {pop} / {auto} | " + " | ".join(cells) + " |")
    else:
        print(
            f"{'file':28} {'population':22} {'automatic':20} {'expert%':>8} {'auto%':>7} {'diff':>6}"
        )
        for r in rows:
            d = r["auto_pct"] - r["expert_pct"]
            print(
                f"{r['file']:28} {r['population']:22} {r['automatic']:20} "
                f"{r['expert_pct']:8.1f} {r['auto_pct']:7.1f} {d:+6.1f}"
            )
    diffs = [abs(r["auto_pct"] - r["expert_pct"]) for r in rows]
    within2 = sum(d <= 2 for d in diffs)
    within5 = sum(d <= 5 for d in diffs)
    print(
        f"\n{len(rows)} population x file pairs: within 2 points {within2}, within 5 points "
        f"{within5}; median difference {statistics.median(diffs):.1f} points, worst "
        f"{max(diffs):.1f}"
    )
    others = compare_others()
    print("\nOMIP-021 and A2004 (FlowJo's counts for the expert's gates):")
    print(f"{'file':30} {'population':18} {'expert':>7} {'auto':>7} {'expert%':>8} {'auto%':>7}")
    for r in others:
        print(
            f"{r['file']:30} {r['population']:18} {r['expert_events']:7d} {r['auto_events']:7d} "
            f"{r['expert_pct']:8.1f} {r['auto_pct']:7.1f}"
        )
    big = [r for r in others if r["expert_events"] >= 200]
    close = sum(abs(r["auto_pct"] - r["expert_pct"]) <= 2 for r in big)
    print(f"populations of 200 events or more: {close} of {len(big)} within 2 points")
    t_auto, t_fixed = timing(args.repeat)
    print(
        f"gating all 16 files (160,000 events), median of {args.repeat}: automatic "
        f"{t_auto * 1e3:.0f} ms, expert's fixed gates {t_fixed * 1e3:.0f} ms "
        f"(ratio {t_auto / t_fixed:.1f}x)"
    )


if __name__ == "__main__":
    main()
