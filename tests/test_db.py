"""The results database on SQLite and on a real PostgreSQL server: registration (idempotent,
versioned, concurrent), migrations, queries, control material."""

from __future__ import annotations

import multiprocessing
import os
import sys
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from cytowhim.db import DatabaseError, ResultsDB, RunInfo, SpecimenEntry

sys.path.insert(0, os.path.dirname(__file__))
import postgres  # noqa: E402


def _pops(values: dict[str, float], tube: str = "T") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "tube": tube,
                "population": p,
                "events": 1000,
                "percent_of_parent": 10.0,
                "absolute_per_uL": v,
                "absolute_error_per_uL": v * 0.05,
                "qc": "",
                "qc_status": "",
                "reference_flag": "",
                "reference_low": 100.0,
                "reference_high": 1000.0,
            }
            for p, v in values.items()
        ]
    )


def _entry(specimen="S1", patient="P1", key="k1", value=500.0, **kw) -> SpecimenEntry:
    kw.setdefault("draw_time", datetime(2026, 1, 5, 8))
    return SpecimenEntry(
        specimen=specimen,
        patient=patient,
        timepoint=kw.pop("timepoint", "baseline"),
        inputs_key=key,
        populations=_pops({"CD4+ T cells": value, "B cells": value / 2}),
        tubes=[{"tube": "T", "file": "T.fcs", "file_sha256": "ab" * 32, "strategy_sha256": "cd"}],
        cbc={"WBC": 5000.0, "ALC": 1500.0},
        **kw,
    )


def test_register_is_idempotent_and_versioned(db_url):
    db = ResultsDB(db_url)
    run = RunInfo(out_dir="/runs/a")
    assert db.register(_entry(), run) == "added"
    assert db.register(_entry(), run) == "unchanged"
    assert db.register(_entry(), RunInfo(out_dir="/runs/b")) == "unchanged"
    assert db.register(_entry(key="k2", value=700.0), RunInfo()) == "new version"
    latest = db.populations()
    assert len(latest) == 2 and set(latest["version"]) == {2}
    assert latest.set_index("population").loc["CD4+ T cells", "absolute_per_uL"] == 700.0
    every = db.populations(latest=False)
    assert sorted(every["version"].unique()) == [1, 2] and len(every) == 4
    assert db.specimens()["specimen"].tolist() == ["S1"]
    assert len(db.specimens(latest=False)) == 2
    cbc = db.cbc()
    assert dict(zip(cbc["analyte"], cbc["per_uL"])) == {"WBC": 5000.0, "ALC": 1500.0}
    db.close()


def test_times_and_visits_round_trip(db_url):
    db = ResultsDB(db_url)
    db.register(
        _entry(
            visit="month 6",
            draw_time=datetime(2026, 6, 1, 11, 0),
            dose_time=datetime(2026, 6, 1, 8, 0),
            hours_post_dose=3.0,
            age=31.5,
            sex="F",
        ),
        RunInfo(),
    )
    row = db.populations().iloc[0]
    assert row["visit"] == "month 6" and row["hours_post_dose"] == 3.0 and row["age"] == 31.5
    assert row["draw_time"] == pd.Timestamp("2026-06-01 11:00")
    assert row["dose_time"] == pd.Timestamp("2026-06-01 08:00")
    assert db.patients()["sex"].tolist() == ["F"]


def test_history_lists_each_timepoint_once_with_the_cbc(db_url):
    db = ResultsDB(db_url)
    for k, day in enumerate((5, 12, 19)):
        e = _entry(specimen=f"S{k}", key=f"k{k}", value=400.0 + 100 * k)
        e.draw_time = datetime(2026, 1, day, 8)
        db.register(e, RunInfo())
        db.register(e, RunInfo())  # twice: nothing added
    hist = db.history("P1", ["CD4+ T cells", "WBC"])
    cd4 = hist[hist["population"] == "CD4+ T cells"]
    assert cd4["absolute_per_uL"].tolist() == [400.0, 500.0, 600.0]
    assert cd4["specimen"].tolist() == ["S0", "S1", "S2"]
    wbc = hist[hist["population"] == "WBC"]
    assert wbc["tube"].unique().tolist() == ["CBC"] and len(wbc) == 3
    with pytest.raises(DatabaseError, match="no results for patient 'nobody'"):
        db.history("nobody")
    with pytest.raises(DatabaseError, match="no population 'CD99'"):
        db.history("P1", ["CD99"])


def _register_many(url: str, worker: int, n: int) -> None:
    db = ResultsDB(url)
    run = RunInfo(out_dir=f"/runs/{worker}")
    for k in range(n):
        # specimens 0..n-1 are registered by every worker with the same inputs: once in all
        db.register(_entry(specimen=f"shared{k}", patient=f"P{k % 3}", key=f"s{k}"), run)
        db.register(_entry(specimen=f"own{worker}_{k}", patient=f"P{k % 3}", key="x"), run)
    db.close()


def test_concurrent_registrations_lose_and_duplicate_nothing(db_url):
    ResultsDB(db_url).close()  # created once; the workers race on registering, not migrating
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_register_many, args=(db_url, w, 8)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    db = ResultsDB(db_url)
    spec = db.specimens(latest=False)
    assert len(spec) == 8 + 4 * 8
    assert spec.groupby(["patient", "specimen"]).size().max() == 1
    assert len(db.populations(latest=False)) == 2 * (8 + 4 * 8)
    assert sorted(db.patients()["patient"]) == ["P0", "P1", "P2"]


def test_concurrent_first_open_migrates_once(db_url):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_register_many, args=(db_url, w, 2)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(ResultsDB(db_url).specimens(latest=False)) == 2 + 3 * 2


def test_a_first_version_database_is_upgraded_in_place(db_url):
    import sqlalchemy as sa
    from alembic import command

    from cytowhim.db import connect

    engine = sa.create_engine(db_url)
    cfg = connect._config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    assert connect.revision(engine) == "0001"
    now = datetime(2026, 1, 1)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (run_uid, started_utc, run_by, host, cytowhim_version, "
                "out_dir, command, settings) VALUES ('r1', :t, 'tech', 'h', '0.0.9', '/o', "
                "'cytowhim run', '{}')"
            ),
            {"t": now},
        )
        conn.execute(sa.text("INSERT INTO patients (patient, sex) VALUES ('P1', 'M')"))
        conn.execute(
            sa.text(
                "INSERT INTO specimens (patient_id, specimen, version, inputs_key, run_id, "
                "registered_utc, timepoint, visit) VALUES (1, 'S-old', 1, 'k', 1, :t, "
                "'baseline', '')"
            ),
            {"t": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO populations (specimen_row, tube, population, parent, base, units, "
                "reported, qc, qc_status, reference_flag, reference_band, reference_source, "
                '"absolute_per_uL") '
                "VALUES (1, 'T', 'CD4+ T cells', '', '', '', '', '', '', '', '', '', 812.0)"
            )
        )
    engine.dispose()
    db = ResultsDB(db_url)  # opening migrates to the newest schema
    assert connect.revision(db.engine) == connect.head() == "0003"
    row = db.populations().iloc[0]
    assert (row["specimen"], row["absolute_per_uL"], row["control_lot"]) == ("S-old", 812.0, "")
    assert db.control_targets().empty


def test_the_schema_module_matches_the_migrations(db_url):
    import sqlalchemy as sa

    from cytowhim.db import schema

    db = ResultsDB(db_url)
    inspector = sa.inspect(db.engine)
    for table in schema.metadata.sorted_tables:
        got = {c["name"] for c in inspector.get_columns(table.name)}
        assert got == {c.name for c in table.columns}, table.name


def test_bad_urls_are_one_clear_error(tmp_path):
    with pytest.raises(DatabaseError, match="not a database URL"):
        ResultsDB("no such thing")
    with pytest.raises(DatabaseError, match="'mysql' is not supported"):
        ResultsDB("mysql://u@h/db")
    with pytest.raises(DatabaseError, match="must be a file"):
        ResultsDB("sqlite://")
    port = postgres._free_port()
    with pytest.raises(DatabaseError, match=rf"127\.0\.0\.1:{port}.*cannot be opened"):
        ResultsDB(f"postgresql://u:secret@127.0.0.1:{port}/db")
    try:
        ResultsDB(f"postgresql://u:secret@127.0.0.1:{port}/db")
    except DatabaseError as exc:
        assert "secret" not in str(exc)


def test_default_url_is_the_environment_then_the_user_data_dir(monkeypatch, tmp_path):
    from cytowhim.db import default_url

    monkeypatch.setenv("CYTOWHIM_DB", "sqlite:////x/y.sqlite")
    assert default_url() == "sqlite:////x/y.sqlite"
    monkeypatch.delenv("CYTOWHIM_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_url() == f"sqlite:///{tmp_path}/cytowhim/results.sqlite"


# --- control material ---------------------------------------------------------------------


def _controls(db: ResultsDB, values: list[float], lot="L1", start=date(2026, 3, 1)) -> None:
    for k, v in enumerate(values):
        day = datetime.combine(start + timedelta(days=k), datetime.min.time()) + timedelta(hours=7)
        e = _entry(specimen=f"C{k}", patient=f"control {lot}", key=f"c{k}", value=v,
                   control_lot=lot, draw_time=day)  # fmt: skip
        db.register(e, RunInfo())


def test_a_planted_2_2s_violation_flags_that_days_patients_until_reviewed(db_url):
    db = ResultsDB(db_url)
    targets = pd.DataFrame(
        [{"lot": "L1", "population": "CD4+ T cells", "tube": "", "mean": 800.0, "sd": 40.0,
          "low": np.nan, "high": np.nan}]
    )  # fmt: skip
    assert db.set_control_targets(targets, "lot sheet") == 1
    rng = np.random.default_rng(3)
    values = list(800 + 40 * np.clip(rng.normal(0, 0.6, 30), -1.4, 1.4))
    values[16:18] = [800 + 2.3 * 40, 800 + 2.6 * 40]  # days 17 and 18: 2-2s
    _controls(db, values)
    for day in (17, 18):  # patients drawn on 2026-03-17 and -18
        db.register(
            _entry(
                specimen=f"pt{day}", patient=f"P{day}", key="k", draw_time=datetime(2026, 3, day, 9)
            ),  # fmt: skip
            RunInfo(),
        )
    report = db.control_report()
    assert report.violations[["day", "rule"]].values.tolist() == [[date(2026, 3, 18), "2-2s"]]
    assert len(report.measurements) == 30
    table = db.populations()
    flagged = table[table["qc_status"] == "fail"]
    assert set(flagged["specimen"]) == {"pt18"}
    assert flagged["qc"].str.contains("control out of range: lot L1, CD4\\+ T cells 2-2s").all()
    assert (db.populations(controls=True)["qc_status"] == "").all()  # the controls themselves
    db.review_control_day("L1", date(2026, 3, 18), "director", "recalibrated; repeat in range")
    assert (db.populations()["qc_status"] == "").all()
    assert db.control_reviews()["reviewed_by"].tolist() == ["director"]
    with pytest.raises(ValueError, match="reason"):
        db.review_control_day("L1", date(2026, 3, 18), "director", " ")


def test_history_and_controls_pages(tmp_path):
    from cytowhim.controls import write_controls
    from cytowhim.history import write_history

    db = ResultsDB(f"sqlite:///{tmp_path / 'r.sqlite'}")
    for k in range(6):
        e = _entry(specimen=f"S{k}", key=f"k{k}", value=300.0 + 80 * (k % 3), visit=f"month {k // 3}",
                   draw_time=datetime(2026, 1 + k // 3, 5, 8 + 3 * (k % 3)),
                   dose_time=datetime(2026, 1 + k // 3, 5, 8), hours_post_dose=3.0 * (k % 3))  # fmt: skip
        db.register(e, RunInfo())
    hist = db.history("P1")
    paths = write_history(hist, tmp_path / "h", "P1")
    page = paths["html"].read_text()
    assert page.count("<img") == hist.groupby(["tube", "population"]).ngroups == 4
    assert "data:image/png;base64," in page and "peak" in page
    back = pd.read_csv(paths["csv"], encoding="utf-8-sig")
    assert list(back.columns) == list(pd.Index(hist.columns))
    assert len(back) == len(hist)
    db.set_control_targets(
        pd.DataFrame(
            [
                {
                    "lot": "L1",
                    "population": "B cells",
                    "tube": "",
                    "mean": 150.0,
                    "sd": 10.0,
                    "low": None,
                    "high": None,
                }
            ]
        )  # fmt: skip
    )
    _controls(db, [300, 304, 362, 296, 298], lot="L1")  # B cells: half of each
    report = db.control_report()
    assert report.violations["rule"].tolist() == ["1-3s"]  # 181 = mean + 3.1 SD
    out = write_controls(report, tmp_path / "c")
    assert out["html"].read_text().count("<img") == 1
    assert pd.read_csv(out["violations"], encoding="utf-8-sig")["rule"].tolist() == ["1-3s"]


# --- regressions from the review of the first version -------------------------------------------


def test_newest_version_is_per_specimen_not_of_the_whole_database(db_url):
    db = ResultsDB(db_url)
    db.register(_entry(specimen="S1", key="a", value=400.0), RunInfo())
    db.register(_entry(specimen="S2", key="b", value=500.0), RunInfo())
    db.register(_entry(specimen="S2", key="c", value=600.0), RunInfo())
    spec = db.specimens().set_index("specimen")
    assert spec["version"].to_dict() == {"S1": 1, "S2": 2}
    cd4 = db.populations().query("population == 'CD4+ T cells'").set_index("specimen")
    assert cd4["absolute_per_uL"].to_dict() == {"S1": 400.0, "S2": 600.0}


def test_going_back_to_earlier_inputs_adds_a_version_with_them(db_url):
    db = ResultsDB(db_url)
    db.register(_entry(key="b", value=500.0), RunInfo())
    assert db.register(_entry(key="c", value=650.0), RunInfo()) == "new version"  # a typo
    assert db.register(_entry(key="b", value=500.0), RunInfo()) == "new version"  # fixed back
    assert db.register(_entry(key="b", value=500.0), RunInfo()) == "unchanged"
    row = db.populations().query("population == 'CD4+ T cells'").iloc[0]
    assert (row["version"], row["absolute_per_uL"]) == (3, 500.0)


def test_a_reader_holding_a_transaction_does_not_block_registration(tmp_path):
    import threading
    import time

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    reader = ResultsDB(url)
    ResultsDB(url).register(_entry(specimen="S0"), RunInfo())
    done = {}

    def write():
        t = time.perf_counter()
        ResultsDB(url).register(_entry(specimen="S1"), RunInfo())
        done["seconds"] = time.perf_counter() - t

    with reader.engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SELECT count(*) FROM specimens").scalar()
        writer = threading.Thread(target=write)
        writer.start()
        writer.join(20)
    assert done and done["seconds"] < 5  # not the 60 s busy wait


def test_a_cbc_count_of_zero_is_kept(tmp_path):
    import pandas as pd  # noqa: F811

    from cytowhim.db.from_run import specimen_entry
    from cytowhim.reporting import ReportingRules
    from cytowhim.store import TubeRecord

    rows = pd.DataFrame([{"specimen": "S1", "patient": "P1", "timepoint": "b", "WBC": 900.0,
                          "ANC": 0.0, "ALC": 700.0, "AMC": float("nan"), "draw_date": "2026-01-05"}])  # fmt: skip
    rec = TubeRecord("S1", "P1", "b", "T", "T.fcs", "ab", "cd", _pops({"B cells": 5.0}))
    entry = specimen_entry(rows, [rec], "k", ReportingRules())
    assert entry.cbc == {"WBC": 900.0, "ANC": 0.0, "ALC": 700.0}
    assert entry.draw_date == date(2026, 1, 5)


def test_controls_by_draw_date_by_run_and_undated(db_url):
    db = ResultsDB(db_url)
    targets = pd.DataFrame([{"lot": "L1", "population": "CD4+ T cells", "tube": "", "mean": 800.0,
                             "sd": 40.0, "low": np.nan, "high": np.nan}])  # fmt: skip
    db.set_control_targets(targets)
    run = RunInfo()
    # a control with only a draw date that fails 1-3s, and a patient with the same draw date
    e = _entry(specimen="C1", patient="control L1", key="c", value=1000.0, control_lot="L1")
    e.draw_time, e.draw_date = None, date(2026, 4, 1)
    db.register(e, run)
    p = _entry(specimen="pt1", patient="P9", key="p")
    p.draw_time, p.draw_date = None, date(2026, 4, 1)
    db.register(p, RunInfo())
    # an undated failing control flags the patients of its own run
    u = _entry(specimen="C2", patient="control L1", key="u", value=300.0, control_lot="L1")
    u.draw_time = None
    run2 = RunInfo()
    db.register(u, run2)
    q = _entry(specimen="pt2", patient="P8", key="q", draw_time=datetime(2026, 5, 2, 9))
    db.register(q, run2)
    report = db.control_report()
    assert set(report.violations["rule"]) == {"1-3s"}
    assert set(report.open_days) == {date(2026, 4, 1), None}
    flagged = db.populations().query("qc_status == 'fail'")
    assert set(flagged["specimen"]) == {"pt1", "pt2"}


def test_r_4s_is_a_within_run_rule():
    from cytowhim.westgard import violations

    assert violations([2.1, -2.2]) == [[], []]  # two days: no R-4s
    assert violations([2.1, -2.2], runs=["d1", "d1"]) == [[], ["R-4s"]]


def test_history_and_the_cohort_can_be_limited_to_released_results(db_url):
    from cytowhim.db import review

    db = ResultsDB(db_url)
    for k in range(2):
        db.register(
            _entry(specimen=f"S{k}", key="k", draw_time=datetime(2026, 1, 5 + k, 8)), RunInfo()
        )
    director = {"name": "dora", "role": "director"}
    review.set_status(db.engine, "P1", "S1", "release", director, etag=0)
    assert set(db.population_table()["specimen"]) == {"S0", "S1"}
    assert set(db.population_table(released_only=True)["specimen"]) == {"S1"}
    hist = db.history("P1", ["CD4+ T cells", "WBC"], released_only=True)
    assert set(hist["specimen"]) == {"S1"} and len(hist) == 2
    with pytest.raises(DatabaseError, match="no released results for patient 'P2'"):
        db.register(_entry(specimen="X", patient="P2", key="k"), RunInfo())
        db.history("P2", released_only=True)


def test_a_version_registered_after_the_release_is_not_released(db_url):
    import time

    from cytowhim.db import review

    db = ResultsDB(db_url)
    db.register(_entry(specimen="S1", key="a"), RunInfo())
    review.set_status(db.engine, "P1", "S1", "release", {"name": "d", "role": "director"}, 0)
    assert len(db.population_table(released_only=True)) == 2
    time.sleep(1.1)  # registration times are stored to the second
    db.register(_entry(specimen="S1", key="b", value=900.0), RunInfo())  # changed inputs
    assert db.population_table(released_only=True).empty
