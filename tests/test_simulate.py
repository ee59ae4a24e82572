"""The simulator: reproducible files whose truth matches Table 1 (whim-trial) or the reference
intervals (healthy), with per-tube drift, spillover and the three tube panels."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

import cytowhim as cw
from cytowhim.cli import main
from cytowhim.simulate import simulate
from cytowhim.simulate.cohort import table1

SMALL = (20_000, 30_000)
TUBE_OF = {
    "memory B cells": "B",
    "CD27- B cells": "B",
    "transitional B cells": "B",
    "immature B cells": "B",
    "monocytes": "mono",
    "classical monocytes": "mono",
    "inflammatory monocytes": "mono",
}


@pytest.fixture(scope="module")
def whim(tmp_path_factory):
    out = tmp_path_factory.mktemp("whim")
    simulate(out, "whim-trial", seed=11, events=SMALL)
    return out


def test_manifest_and_files(whim):
    m = pd.read_csv(whim / "manifest.csv")
    assert list(m.columns) == [
        "file",
        "specimen",
        "patient",
        "timepoint",
        "tube",
        "WBC",
        "ANC",
        "ALC",
        "AMC",
    ]
    assert len(m) == 18 and set(m.tube) == {"T", "B", "mono"}
    assert set(m.timepoint) == {"baseline", "peak"} and m.patient.nunique() == 3
    per_specimen = m.groupby("specimen")[["WBC", "ANC", "ALC", "AMC"]].nunique()
    assert (per_specimen == 1).all().all()  # the CBC is given once per specimen
    assert (m.WBC > m.ANC + m.ALC + m.AMC - 1).all()
    t = cw.read_fcs(whim / "P1-peak_T.fcs")
    b = cw.read_fcs(whim / "P1-peak_B.fcs")
    assert "CD4" in t.markers and "IgD" in b.markers and "IgD" not in t.markers
    assert t.channels[t.markers.index("CD45")] != b.channels[b.markers.index("CD45")]
    assert t.spillover is not None and t.spillover.shape == (9, 9)
    assert SMALL[0] <= t.n_events <= SMALL[1]


def test_whim_truth_reproduces_table1(whim):
    truth = pd.read_csv(whim / "truth.csv")
    m = pd.read_csv(whim / "manifest.csv").drop_duplicates("specimen").set_index("specimen")
    truth["timepoint"] = truth.specimen.map(m.timepoint)
    for pop, row in table1().items():
        sub = truth[(truth.population == pop) & (truth.tube == TUBE_OF.get(pop, "T"))]
        assert len(sub) == 6, pop
        for tp in ("baseline", "peak"):
            mean = sub[sub.timepoint == tp].absolute_per_uL.mean()
            want = row[f"{tp}_mean"]
            tol = max(0.08 * want, 1.5)  # sampling of events around the exact per-µL truth
            assert abs(mean - want) <= tol, (pop, tp, mean, want)


def test_rare_populations_are_a_few_dozen_events(whim):
    truth = pd.read_csv(whim / "truth.csv")
    cm = truth[(truth.population == "CD4 central memory") & (truth.tube == "T")]
    baseline = cm[cm.specimen.str.endswith("baseline")]
    assert baseline.events.between(3, 100).all(), baseline  # ~1 cell/µL: a few dozen events


def test_same_seed_same_files_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        simulate(out, "healthy", seed=seed, n_healthy=1, events=(5_000, 6_000))

    def digest(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}

    assert digest(a) == digest(b)
    assert digest(a)["H1_T.fcs"] != digest(c)["H1_T.fcs"]


def test_healthy_counts_inside_reference_intervals(tmp_path):
    simulate(tmp_path, "healthy", seed=2, n_healthy=2, events=(40_000, 50_000))
    truth = pd.read_csv(tmp_path / "truth.csv")
    for pop, row in table1().items():
        sub = truth[(truth.population == pop) & (truth.tube == TUBE_OF.get(pop, "T"))]
        lo, hi = row["reference_low"], row["reference_high"]
        slack = 0.1 * (hi - lo) + 2  # event sampling around the drawn value
        assert sub.absolute_per_uL.between(lo - slack, hi + slack).all(), (pop, sub)


def test_drift_moves_markers_between_tubes(whim):
    medians = []
    for name in ("P1-baseline_T.fcs", "P2-baseline_T.fcs", "P3-baseline_T.fcs"):
        s = cw.read_fcs(whim / name)
        cd45 = s.column("CD45")
        medians.append(np.median(cd45[cd45 > 10_000]))
    assert max(medians) / min(medians) > 1.05


def test_cli_simulate(tmp_path, capsys):
    code = main(
        [
            "simulate",
            "--out",
            str(tmp_path),
            "--preset",
            "healthy",
            "--specimens",
            "1",
            "--min-events",
            "3000",
            "--max-events",
            "3000",
            "--seed",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    assert "simulated specimens" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("*.fcs")) == ["H1_B.fcs", "H1_T.fcs", "H1_mono.fcs"]
