"""The results database end to end, through the command line: runs on different days register
into one database; history, compare --db and controls read it back (issue 14's Must show)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from cytowhim.cli import main
from cytowhim.simulate import simulate

sys.path.insert(0, os.path.dirname(__file__))
import postgres  # noqa: E402

EVENTS = (20_000, 20_000)


def _run(manifest: Path, out: Path, db: str, *extra: str) -> int:
    return main(["run", str(manifest), "--out", str(out), "--db", db, "-q", *extra])


@pytest.fixture(scope="module")
def trial(tmp_path_factory) -> Path:
    """The whim-trial specimens, and their manifest split into baseline and peak."""
    root = tmp_path_factory.mktemp("trial")
    simulate(root, preset="whim-trial", seed=3, events=EVENTS)
    m = pd.read_csv(root / "manifest.csv")
    m[m["timepoint"] == "baseline"].to_csv(root / "baseline.csv", index=False)
    m[m["timepoint"] == "peak"].to_csv(root / "peak.csv", index=False)
    return root


def test_runs_on_different_days_give_one_history_and_the_same_table_1(
    trial, tmp_path, capsys, db_url
):
    db = db_url
    assert _run(trial / "baseline.csv", tmp_path / "jan", db) in (0, 1)
    assert _run(trial / "peak.csv", tmp_path / "jun", db) in (0, 1)
    assert _run(trial / "peak.csv", tmp_path / "jun-again", db) in (0, 1)  # registered twice
    assert main(["run", str(trial / "manifest.csv"), "--out", str(tmp_path / "all"),
                 "--no-db", "-q"]) in (0, 1)  # fmt: skip
    capsys.readouterr()

    assert main(["history", "P1", "--db", db, "--out", str(tmp_path / "h")]) == 0
    hist = pd.read_csv(tmp_path / "h" / "history.csv", encoding="utf-8-sig")
    cd4 = hist[hist["population"] == "CD4+ T cells"]
    assert sorted(cd4["timepoint"]) == ["baseline", "peak"]  # each timepoint once
    wbc = hist[hist["population"] == "WBC"]
    assert sorted(wbc["timepoint"]) == ["baseline", "peak"]
    one_run = pd.read_csv(tmp_path / "all" / "populations.csv", encoding="utf-8-sig")
    want = one_run[(one_run["patient"] == "P1") & (one_run["population"] == "CD4+ T cells")
                   & (one_run["tube"] == "T")]  # fmt: skip
    assert sorted(cd4["absolute_per_uL"]) == sorted(want["absolute_per_uL"])

    args = ["--baseline", "baseline", "--peak", "peak"]
    assert main(["compare", str(tmp_path / "all"), *args, "--out", str(tmp_path / "t1")]) == 0
    assert main(["compare", "--db", db, *args, "--out", str(tmp_path / "t1db")]) == 0
    folder = pd.read_csv(tmp_path / "t1" / "table1.csv", encoding="utf-8-sig")
    from_db = pd.read_csv(tmp_path / "t1db" / "table1.csv", encoding="utf-8-sig")
    pd.testing.assert_frame_equal(folder, from_db)
    assert len(folder) >= 15 and folder["n_pairs"].eq(3).all()
    # a cohort by patient list
    assert main(["compare", "--db", db, *args, "--patients", "P1", "P2",
                 "--out", str(tmp_path / "t1p")]) == 0  # fmt: skip
    assert pd.read_csv(tmp_path / "t1p" / "table1.csv", encoding="utf-8-sig")["n_pairs"].eq(2).all()


def test_a_six_month_course_is_drawn_by_history(tmp_path, capsys):
    sim = tmp_path / "sim"
    simulate(sim, preset="course", seed=1, events=(15_000, 15_000))
    manifest = pd.read_csv(sim / "manifest.csv")
    assert {"draw_time", "dose_time", "visit"} <= set(manifest.columns)
    db = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    assert _run(sim / "manifest.csv", tmp_path / "run", db, "--jobs", "2") in (0, 1)
    capsys.readouterr()
    out = tmp_path / "h"
    assert main(["history", "W1", "--db", db, "--out", str(out), "-p", "CD4+ T cells",
                 "-p", "ANC"]) == 0  # fmt: skip
    hist = pd.read_csv(out / "history.csv", encoding="utf-8-sig")
    cd4 = hist[hist["population"] == "CD4+ T cells"].reset_index(drop=True)
    assert len(cd4) == 29  # 7 visits x 4 draws + 35 days off
    assert pd.to_datetime(cd4["draw_time"]).is_monotonic_increasing
    month6 = cd4[cd4["visit"] == "month 6"].set_index("hours_post_dose")["absolute_per_uL"]
    assert month6.idxmax() == 3.0  # the peak 3 hours after the dose
    assert cd4.loc[cd4["timepoint"] == "baseline", "hours_post_dose"].tolist() == [-0.25]
    page = (out / "history.html").read_text()
    assert page.count("<img") == 2 and "by hours after the dose" in page


def test_a_month_of_controls_finds_the_planted_2_2s(tmp_path, capsys):
    sim = tmp_path / "sim"
    simulate(sim, preset="controls", seed=0, n_healthy=30, events=(15_000, 15_000))
    db = f"sqlite:///{tmp_path / 'lab.sqlite'}"
    assert _run(sim / "manifest.csv", tmp_path / "run", db, "--jobs", "2") in (0, 1)
    capsys.readouterr()
    out = tmp_path / "c"
    status = main(["controls", "--db", db, "--targets", str(sim / "lot.csv"), "--out", str(out)])
    assert status == 1  # a rule is broken and nobody has reviewed it
    violations = pd.read_csv(out / "violations.csv", encoding="utf-8-sig")
    assert set(violations["rule"]) == {"2-2s"}
    assert set(violations["day"]) == {"2026-01-22"}  # day 18: the second day of the error
    assert set(violations["population"]) == {"CD4+ T cells", "CD8+ T cells"}
    assert (out / "controls.html").read_text().count("<img") == 2
    assert main(["controls", "--db", db, "--lot", "CTL-SIM", "--accept", "2026-01-22",
                 "--by", "director", "--reason", "ALC recalibrated"]) == 0  # fmt: skip
    assert main(["controls", "--accept", "2026-01-22"]) == 2  # needs --lot, --by, --reason
    assert "needs --lot, --by and --reason" in capsys.readouterr().err


def test_run_with_an_unreachable_database_stops_before_gating(trial, tmp_path, capsys):
    port = postgres._free_port()
    status = _run(trial / "baseline.csv", tmp_path / "out", f"postgresql://u@127.0.0.1:{port}/x")
    assert status == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "cannot be opened" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "populations.csv").exists()


def test_manifest_time_columns(tmp_path, monkeypatch):
    import time

    from cytowhim.manifest import read_manifest

    monkeypatch.setenv("TZ", "Europe/Berlin")  # the lab's clock: UTC+2 in June
    time.tzset()

    p = tmp_path / "m.csv"
    p.write_text(
        "file,specimen,patient,timepoint,tube,WBC,ANC,ALC,AMC,draw_time,dose_time,"
        "hours_post_dose,visit,control_lot\n"
        "a.fcs,S1,P1,peak,T,5000,2000,2000,500,2026-06-01T11:00,2026-06-01T08:00,,month 6,\n"
        "b.fcs,S1,P1,peak,B,5000,2000,2000,500,,,,,\n"
        "c.fcs,S2,P1,x,T,5000,2000,2000,500,2026-06-01T11:00+02:00,2026-06-01T08:00,,,\n"
        "d.fcs,S3,P1,y,T,5000,2000,2000,500,2026-06-01T11:00,2026-06-01T08:00,5,,\n"
        "e.fcs,S4,C,d1,T,5000,2000,2000,500,2026-06-01T09:30+02:00,,,,LOT1\n"
        "f.fcs,S5,P1,z,T,5000,2000,2000,500,2026-13-01T11:00,,,,\n"
        "g.fcs,S6,P1,w,T,5000,2000,2000,500,2026-06-02T11:00,,-0.5,,\n"
    )
    table, problems = read_manifest(p)
    rows = table.drop_duplicates("specimen").set_index("specimen")
    assert rows.loc["S1", ["draw_time", "dose_time", "visit"]].tolist() == [
        "2026-06-01T11:00:00", "2026-06-01T08:00:00", "month 6"]  # fmt: skip
    assert rows.loc["S1", "hours_post_dose"] == 3.0 and rows.loc["S1", "draw_date"] == "2026-06-01"
    assert rows.loc["S4", "draw_time"] == "2026-06-01T09:30:00"  # +02:00 is the lab's own clock
    assert rows.loc["S4", "control_lot"] == "LOT1"
    assert rows.loc["S6", "hours_post_dose"] == -0.5
    text = "\n".join(map(str, problems))
    assert "row 4 (specimen S2), column dose_time: draw_time and dose_time must both" in text
    assert "row 5 (specimen S3), column hours_post_dose: hours_post_dose 5 disagrees" in text
    assert "row 7 (specimen S5), column draw_time: draw_time='2026-13-01T11:00' is not" in text
    assert set(rows.index) == {"S1", "S4", "S6"}
    # a LIS export in UTC: 22:30Z on 31 May is 00:30 on 1 June in Berlin, the lab's draw date
    p.write_text(
        "file,specimen,patient,timepoint,tube,WBC,ANC,ALC,AMC,draw_time,draw_date\n"
        "a.fcs,S1,P1,peak,T,5000,2000,2000,500,2026-05-31T22:30Z,2026-06-01\n"
    )
    table, problems = read_manifest(p)
    assert not problems and table.loc[0, "draw_time"] == "2026-06-01T00:30:00"
    monkeypatch.delenv("TZ")
    time.tzset()
