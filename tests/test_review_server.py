"""Review and sign-out: accounts, status rules, overrides and the append-only audit trail in the
database (SQLite and PostgreSQL), and the review server's authorization, CSRF and concurrent-edit
checks (Flask test client, SQLite), re-gating and a batch re-run from the exported overrides."""

from __future__ import annotations

import re
import time

import pytest
import yaml

from cytowhim.db import review as R

pytest.importorskip("flask")

DIRECTOR = {"name": "dora", "role": "director"}
TECH = {"name": "tom", "role": "technician"}


# --- the database ----------------------------------------------------------------------------


def _engine(url):
    from cytowhim.db.connect import create

    return create(url)


def test_users_are_hashed_checked_and_disabled(db_url):
    engine = _engine(db_url)
    R.add_user(engine, "dora", "secret-pass", "director")
    with pytest.raises(R.ReviewError, match="exists"):
        R.add_user(engine, "dora", "other-pass", "technician")
    with pytest.raises(R.ReviewError, match="role"):
        R.add_user(engine, "x", "secret-pass", "admin")
    with pytest.raises(R.ReviewError, match="8 characters"):
        R.add_user(engine, "y", "short", "technician")
    assert R.authenticate(engine, "dora", "secret-pass") == DIRECTOR
    assert R.authenticate(engine, "dora", "wrong") is None
    import sqlalchemy as sa

    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM users")).scalar()
    assert "secret-pass" not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    R.disable_user(engine, "dora")
    assert R.authenticate(engine, "dora", "secret-pass") is None
    assert [u["disabled"] for u in R.users(engine)] == [True]
    engine.dispose()


def test_sign_out_rules_and_etags(db_url):
    engine = _engine(db_url)
    assert R.status(engine, "P1", "S1")["status"] == "pending"
    with pytest.raises(R.Forbidden):
        R.set_status(engine, "P1", "S1", "release", TECH, 0)
    new = R.set_status(engine, "P1", "S1", "review", TECH, 0)
    assert new["status"] == "reviewed" and new["etag"] == 1
    with pytest.raises(R.Conflict):  # loaded at etag 0: someone changed it since
        R.set_status(engine, "P1", "S1", "release", DIRECTOR, 0)
    with pytest.raises(R.ReviewError, match="QC failed"):
        R.set_status(engine, "P1", "S1", "release", DIRECTOR, 1, qc_failed=True)
    R.set_status(engine, "P1", "S1", "release", DIRECTOR, 1, "control checked", qc_failed=True)
    gate = {"range": {"dimension": "CD3", "min": 0.5}}
    with pytest.raises(R.ReviewError, match="locked"):
        R.add_overrides(
            engine, TECH, 2, patient="P1", specimen="S1", tube="T", file="a.fcs",
            changes=[{"population": "T cells", "before": gate, "after": gate}],
            counts_before={}, counts_after={}, reason="x",
        )  # fmt: skip
    with pytest.raises(R.ReviewError, match="reason"):
        R.set_status(engine, "P1", "S1", "unrelease", DIRECTOR, 2)
    R.set_status(engine, "P1", "S1", "unrelease", DIRECTOR, 2, "recount")
    actions = [a["action"] for a in R.audit_trail(engine, "P1", "S1")]
    assert actions == ["review", "release", "unrelease"]
    engine.dispose()


def test_the_audit_trail_is_append_only_in_the_database(db_url):
    import sqlalchemy as sa

    engine = _engine(db_url)
    R.set_status(engine, "P1", "S1", "review", TECH, 0)
    for sql in ("UPDATE review_audit SET user_name = 'eve'", "DELETE FROM review_audit"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(sa.text(sql))
    assert [a["user_name"] for a in R.audit_trail(engine)] == ["tom"]
    engine.dispose()


# --- the server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reviewed_run(tmp_path_factory):
    """A simulated run registered in a SQLite database with a director and a technician."""
    from cytowhim.cli import main
    from cytowhim.simulate import simulate

    folder = tmp_path_factory.mktemp("review")
    simulate(folder / "sim", preset="whim-trial", events=(20000, 20000))
    url = f"sqlite:///{folder / 'results.sqlite'}"
    assert main(["run", str(folder / "sim" / "manifest.csv"), "--out", str(folder / "out"),
                 "--db", url, "-q"]) == 0  # fmt: skip
    engine = _engine(url)
    R.add_user(engine, "dora", "director-pass", "director")
    R.add_user(engine, "tom", "technician-pass", "technician")
    engine.dispose()
    return folder, url


def _client(app, name, password):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/login", data={"name": name, "password": password, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)
    page = client.get("/").get_data(as_text=True)
    client.csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)
    return client


def _post(client, path, body, csrf=True):
    headers = {"X-CSRF-Token": client.csrf} if csrf else {}
    return client.post(path, json=body, headers=headers)


@pytest.fixture(scope="module")
def app(reviewed_run):
    from cytowhim.review.server import create_app

    return create_app(reviewed_run[1])


BASE = "/api/specimen/P1/P1-baseline"


def test_login_is_needed_and_checked(app):
    client = app.test_client()
    assert client.get("/").status_code == 302
    assert client.get(BASE).status_code == 401
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/login", data={"name": "dora", "password": "nope", "csrf_token": token})
    assert r.status_code == 401
    assert (
        client.post("/login", data={"name": "dora", "password": "director-pass"}).status_code == 400
    )


def test_worklist_shows_specimens_status_and_flags(app):
    tech = _client(app, "tom", "technician-pass")
    page = tech.get("/").get_data(as_text=True)
    assert "P1-baseline" in page and "P3-peak" in page and "pending" in page
    assert 'class="flag ref"' in page
    assert "P1-baseline" not in tech.get("/?patient=P2").get_data(as_text=True)
    assert "P1-baseline" not in tech.get("/?status=released").get_data(as_text=True)


def test_a_technician_cannot_release_and_csrf_is_required(app):
    tech = _client(app, "tom", "technician-pass")
    state = tech.get(BASE).get_json()
    assert state["status"] == "pending" and state["tubes"]
    r = _post(tech, BASE + "/status", {"action": "review", "etag": state["etag"]}, csrf=False)
    assert r.status_code == 400
    r = _post(tech, BASE + "/status", {"action": "review", "etag": state["etag"]})
    assert r.status_code == 200 and r.get_json()["status"] == "reviewed"
    r = _post(
        tech, BASE + "/status", {"action": "release", "etag": state["etag"] + 1, "reason": "x"}
    )
    assert r.status_code == 403
    assert tech.get(BASE).get_json()["status"] == "reviewed"
    # a token of another session is refused too
    director = _client(app, "dora", "director-pass")
    r = director.post(BASE + "/status", json={"action": "release", "etag": 1},
                      headers={"X-CSRF-Token": tech.csrf})  # fmt: skip
    assert r.status_code == 400


def _tcells(state, tube="T"):
    t = next(t for t in state["tubes"] if t["tube"] == tube)
    plot = next(p for p in t["plots"] if p["population"] == "T cells")
    row = next(r for r in t["rows"] if r["population"] == "T cells")
    return plot, row


def test_a_gate_change_is_regated_saved_with_a_reason_and_concurrent_edits_conflict(app):
    spec = "/api/specimen/P2/P2-baseline"
    tech = _client(app, "tom", "technician-pass")
    director = _client(app, "dora", "director-pass")
    state = tech.get(spec).get_json()
    stale = director.get(spec).get_json()
    plot, row = _tcells(state)
    gate = plot["doc"]
    assert "range" in gate and plot["data_driven"]
    gate["range"]["min"] = (gate["range"]["min"] + plot["extent"][0][1]) / 2  # into the bright
    body = {"tube": "T", "population": "T cells", "gate": gate}
    r = _post(tech, spec + "/regate", body)
    assert r.status_code == 200
    new_row = next(x for x in r.get_json()["rows"] if x["population"] == "T cells")
    assert new_row["events"] < row["events"]
    assert new_row["absolute_per_uL"] < row["absolute_per_uL"]
    r = _post(tech, spec + "/override", {**body, "etag": state["etag"]})
    assert r.status_code == 400 and "reason" in r.get_json()["error"]
    r = _post(tech, spec + "/override", {**body, "etag": state["etag"], "reason": "dim CD3 tail"})
    assert r.status_code == 200
    # the director loaded the specimen before: told it changed, nothing overwritten
    r = _post(director, spec + "/override", {**body, "etag": stale["etag"], "reason": "mine"})
    assert r.status_code == 409 and "changed" in r.get_json()["error"]
    r = _post(director, spec + "/status", {"action": "release", "etag": stale["etag"]})
    assert r.status_code == 409
    after = tech.get(spec).get_json()
    assert _tcells(after)[1]["events"] == new_row["events"]
    assert _tcells(after)[0]["pinned"] == "dim CD3 tail"
    (ov,) = after["overrides"]
    assert ov["created_by"] == "tom" and ov["counts_before"]["T cells"]["events"] == row["events"]
    assert ov["counts_after"]["T cells"]["events"] == new_row["events"]
    assert [a["action"] for a in after["audit"]] == ["gate override"]
    csv = tech.get(spec + "/audit.csv").get_data(as_text=True)
    assert "gate override" in csv and "dim CD3 tail" in csv


def test_a_batch_rerun_reproduces_the_reviewed_counts(app, reviewed_run, tmp_path):
    """Export the overrides (test above saved one for P2-baseline) and run the batch again."""
    import pandas as pd

    from cytowhim.cli import main

    folder, url = reviewed_run
    spec = "/api/specimen/P2/P2-baseline"
    tech = _client(app, "tom", "technician-pass")
    state = tech.get(spec).get_json()
    if not state["overrides"]:
        pytest.skip("needs the override saved by the test before")
    out = tmp_path / "O.yaml"
    assert main(["review", "export-overrides", "--db", url, "--out", str(out)]) == 0
    doc = yaml.safe_load(out.read_text())
    assert list(doc) == ["P2-baseline_T.fcs"] and "T cells" in doc["P2-baseline_T.fcs"]

    from cytowhim.db import ResultsDB
    from cytowhim.run import run_manifest

    db = ResultsDB(url)
    result = run_manifest(
        folder / "sim" / "manifest.csv", out=tmp_path / "rerun", overrides=out, db=db
    )
    # the same from the command line, the overrides read from the database
    argv = ["review", "rerun", str(folder / "sim" / "manifest.csv"), "--out", str(tmp_path / "cli")]
    assert main([*argv, "--db", url]) == 0
    again = pd.read_csv(tmp_path / "cli" / "populations.csv", encoding="utf-8-sig")
    again = again[again.specimen == "P2-baseline"].set_index(["tube", "population"])
    mine = result.table[result.table.specimen == "P2-baseline"].set_index(["tube", "population"])
    assert again["events"].astype(float).equals(mine["events"].astype(float))
    table = result.table  # the reported rows, absolute counts as the server counted them
    pops = db.populations(["P2"])  # every population's events
    pops = pops[pops.specimen == "P2-baseline"]
    for tube in state["tubes"]:
        mine = table[(table.specimen == "P2-baseline") & (table.tube == tube["tube"])]
        absolute = dict(zip(mine.population, mine.absolute_per_uL))
        mine = pops[pops.tube == tube["tube"]]
        events = dict(zip(mine.population, mine.events))
        for r in tube["rows"]:
            name = r["population"]
            if r["events"] is not None:
                assert events[name] == r["events"], (tube["tube"], name)
            if name in absolute and r["absolute_per_uL"] is not None:
                assert absolute[name] == pytest.approx(r["absolute_per_uL"], rel=1e-12), name
    # registered as a new version with the reviewed counts; other specimens unchanged
    pops = db.populations(["P2"])
    row = pops[
        (pops.specimen == "P2-baseline") & (pops.tube == "T") & (pops.population == "T cells")
    ]
    assert row["version"].tolist() == [2]
    assert row["events"].tolist() == [_tcells(state)[1]["events"]]
    versions = {(r["patient"], r["specimen"]): r["version"] for r in R.worklist(db.engine)}
    assert versions[("P2", "P2-baseline")] == 2 and versions[("P1", "P1-baseline")] == 1
    db.close()


def test_release_locks_and_unrelease_needs_a_reason(app):
    spec = "/api/specimen/P3/P3-peak"
    tech = _client(app, "tom", "technician-pass")
    director = _client(app, "dora", "director-pass")
    state = director.get(spec).get_json()
    reason = "QC reviewed" if state["qc_failed"] else ""
    r = _post(
        director, spec + "/status", {"action": "release", "etag": state["etag"], "reason": reason}
    )
    assert r.status_code == 200
    etag = r.get_json()["etag"]
    plot, _ = _tcells(state)
    body = {"tube": "T", "population": "T cells", "gate": plot["doc"], "etag": etag, "reason": "r"}
    r = _post(tech, spec + "/override", body)
    assert r.status_code == 400 and "locked" in r.get_json()["error"]
    assert (
        _post(
            tech, spec + "/status", {"action": "unrelease", "etag": etag, "reason": "x"}
        ).status_code
        == 403
    )
    assert (
        _post(director, spec + "/status", {"action": "unrelease", "etag": etag}).status_code == 400
    )
    r = _post(
        director, spec + "/status", {"action": "unrelease", "etag": etag, "reason": "recount"}
    )
    assert r.status_code == 200 and r.get_json()["status"] == "reviewed"


def test_regating_a_200k_event_tube_takes_under_a_second(tmp_path_factory):
    from cytowhim.cli import main
    from cytowhim.review.model import Model, counts_of, gate_doc
    from cytowhim.simulate import simulate

    folder = tmp_path_factory.mktemp("big")
    manifest = simulate(folder / "sim", preset="whim-trial", events=(200_000, 200_000))
    one = folder / "sim" / "one.csv"
    manifest[manifest.specimen == "P1-baseline"].to_csv(one, index=False)
    url = f"sqlite:///{folder / 'results.sqlite'}"
    assert main(["run", str(one), "--out", str(folder / "out"), "--db", url, "-q"]) == 0
    model = Model()
    spec = model.specimen("P1", "P1-baseline", str(folder / "out"), [])
    assert spec.tubes["T"].sample.n_events == 200_000
    ts = spec.tubes["T"]
    doc = gate_doc(ts.strategy, ts.result.gates["T cells"])
    top = float(ts.result.evaluator.values(ts.result.gates["T cells"].dimensions[0], None).max())
    doc["range"]["min"] = (doc["range"]["min"] + top) / 2
    model.regate(spec, "T", "T cells", doc)  # warm
    doc["range"]["min"] += 0.01
    started = time.perf_counter()
    out = model.regate(spec, "T", "T cells", doc)
    seconds = time.perf_counter() - started
    print(f"re-gating a 200k-event tube: {seconds:.3f} s")
    assert (
        counts_of(out["table"], "T")["T cells"]["events"]
        < counts_of(spec.table, "T")["T cells"]["events"]
    )
    assert seconds < 1.0


# --- the command line ------------------------------------------------------------------------


def test_users_on_the_command_line(tmp_path, monkeypatch, capsys):
    from cytowhim.cli import main

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    secret = tmp_path / "pw"
    secret.write_text("a-long-password\n")
    # no accounts: the server refuses to start, on another address above all
    assert main(["review", "--db", url, "--host", "0.0.0.0"]) == 2
    assert "no user accounts" in capsys.readouterr().err
    assert main(["users", "add", "dora", "--role", "director", "--password-file", str(secret),
                 "--db", url]) == 0  # fmt: skip
    monkeypatch.setenv("CYTOWHIM_PASSWORD", "another-password")
    assert main(["users", "add", "tom", "--db", url]) == 0
    assert main(["users", "add", "tom", "--db", url]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["users", "disable", "tom", "--db", url]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--db", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[:3] for ln in lines] == [
        ["dora", "director", "active"],
        ["tom", "technician", "disabled"],
    ]
    engine = _engine(url)
    assert R.authenticate(engine, "dora", "a-long-password") == DIRECTOR
    assert R.authenticate(engine, "tom", "another-password") is None
    engine.dispose()


def test_the_command_line_does_not_import_the_web_framework():
    import subprocess
    import sys

    code = "import sys, cytowhim.cli; print('flask' in sys.modules, 'sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_login_redirects_only_within_the_application(app):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post(
        "/login?next=//evil.example/x",
        data={"name": "dora", "password": "director-pass", "csrf_token": token},
    )
    assert r.status_code == 302 and r.headers["Location"] == "/"


def _race(url, n, barrier_etag):
    """A process saving a status change against etag ``barrier_etag``; 'ok' or 'conflict'."""
    engine = _engine(url)
    try:
        R.set_status(engine, "P9", "S9", "review", {"name": f"user{n}", "role": "technician"},
                     barrier_etag)  # fmt: skip
        return "ok"
    except R.Conflict:
        return "conflict"
    finally:
        engine.dispose()


@pytest.mark.parametrize("etag", [0, 1])
def test_simultaneous_changes_of_one_specimen_one_wins(db_url, etag):
    import multiprocessing

    engine = _engine(db_url)
    if etag:
        R.set_status(engine, "P9", "S9", "review", TECH, 0)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        outcomes = pool.starmap(_race, [(db_url, n, etag) for n in range(4)])
    assert sorted(outcomes) == ["conflict"] * 3 + ["ok"]
    assert R.status(engine, "P9", "S9")["etag"] == etag + 1
    assert len(R.audit_trail(engine, "P9", "S9")) == etag + 1
    engine.dispose()


def test_polygon_vertices_and_rectangle_edges_are_regated(app):
    spec = "/api/specimen/P3/P3-baseline"
    tech = _client(app, "tom", "technician-pass")
    state = tech.get(spec).get_json()
    tube = next(t for t in state["tubes"] if t["tube"] == "T")
    events = {r["population"]: r["events"] for r in tube["rows"]}
    plots = {p["population"]: p for p in tube["plots"]}
    singlets = plots["singlets"]["doc"]
    vertices = singlets["polygon"]["vertices"]
    cx = sum(v[0] for v in vertices) / len(vertices)
    cy = sum(v[1] for v in vertices) / len(vertices)
    singlets["polygon"]["vertices"] = [
        [cx + (x - cx) * 0.5, cy + (y - cy) * 0.5] for x, y in vertices
    ]
    r = _post(tech, spec + "/regate", {"tube": "T", "population": "singlets", "gate": singlets})
    assert r.status_code == 200, r.get_json()
    rows = {x["population"]: x["events"] for x in r.get_json()["rows"]}
    assert rows["singlets"] < events["singlets"]
    quadrant = plots["CD4+ T cells"]["doc"]
    assert "rectangle" in quadrant
    top = plots["CD4+ T cells"]["extent"][0][1]
    quadrant["rectangle"]["min"][0] = (quadrant["rectangle"]["min"][0] + top) / 2
    r = _post(tech, spec + "/regate", {"tube": "T", "population": "CD4+ T cells", "gate": quadrant})
    rows = {x["population"]: x["events"] for x in r.get_json()["rows"]}
    assert rows["CD4+ T cells"] < events["CD4+ T cells"]
    bad = {"range": {"dimension": "no such marker", "min": 0.5}}
    r = _post(tech, spec + "/regate", {"tube": "T", "population": "T cells", "gate": bad})
    assert r.status_code == 400 and r.get_json()["error"]
    assert tech.get(spec).get_json()["etag"] == state["etag"]  # nothing stored


# --- what the release check and the counts are made of ---------------------------------------


def _copy(reviewed_run, tmp_path):
    """A copy of the module's database (the other tests' changes stay theirs)."""
    import shutil

    folder, _url = reviewed_run
    shutil.copy(folder / "results.sqlite", tmp_path / "copy.sqlite")
    return f"sqlite:///{tmp_path / 'copy.sqlite'}"


def test_a_failing_control_blocks_release_without_a_reason(reviewed_run, tmp_path):
    from datetime import date, datetime, timedelta

    import numpy as np
    import pandas as pd

    from cytowhim.db import ResultsDB
    from cytowhim.db.register import RunInfo
    from cytowhim.review.server import create_app
    from tests.test_db import _entry

    url = _copy(reviewed_run, tmp_path)
    db = ResultsDB(url)
    entry = next(r for r in R.worklist(db.engine) if r["specimen"] == "P1-peak")
    targets = pd.DataFrame(
        [{"lot": "L1", "population": "CD4+ T cells", "tube": "", "mean": 800.0, "sd": 40.0,
          "low": np.nan, "high": np.nan}]
    )  # fmt: skip
    db.set_control_targets(targets, "lot sheet")
    values = [800.0, 790.0, 810.0, 805.0, 795.0, 800 + 2.3 * 40, 800 + 2.6 * 40]  # 2-2s at the end
    for k, v in enumerate(values):  # the control gated in the same run as the patients
        day = datetime.combine(date(2026, 3, 1) + timedelta(days=k), datetime.min.time())
        run = RunInfo(run_uid=entry["run_uid"], out_dir=entry["out_dir"])
        db.register(_entry(specimen=f"C{k}", patient="control L1", key=f"c{k}", value=v,
                           control_lot="L1", draw_time=day), run)  # fmt: skip
    assert (db.populations(["P1"]).query("specimen == 'P1-peak'")["qc_status"] == "fail").all()
    client = _client(create_app(url), "dora", "director-pass")
    spec = "/api/specimen/P1/P1-peak"
    state = client.get(spec).get_json()
    assert state["qc_failed"] and "2-2s" in state["control_failures"][0]
    row = state["tubes"][0]["rows"][0]
    assert row["qc_status"] == "fail" and "control out of range" in row["qc"]
    r = _post(client, spec + "/status", {"action": "release", "etag": state["etag"]})
    assert r.status_code == 400 and "QC failed" in r.get_json()["error"]
    r = _post(client, spec + "/status",
              {"action": "release", "etag": state["etag"], "reason": "control repeated in range"})  # fmt: skip
    assert r.status_code == 200 and r.get_json()["status"] == "released"
    (audit,) = [a for a in R.audit_trail(db.engine, "P1", "P1-peak") if a["action"] == "release"]
    assert '"qc_failed": true' in audit["after"] and audit["detail"] == "control repeated in range"
    db.close()


def _one_specimen_manifest(reviewed_run, tmp_path, specimen, **changes):
    import pandas as pd

    folder, _url = reviewed_run
    sim = folder / "sim"
    rows = pd.read_csv(sim / "manifest.csv")
    rows = rows[rows["specimen"] == specimen].copy()
    rows["file"] = [str(sim / f) for f in rows["file"]]
    for k, v in changes.items():
        rows[k] = v
    path = tmp_path / f"manifest-{specimen}.csv"
    rows.to_csv(path, index=False)
    return path


def test_the_page_counts_with_the_runs_reference_intervals(reviewed_run, tmp_path):
    import json

    import pandas as pd

    from cytowhim.cli import main
    from cytowhim.review.server import create_app

    manifest = _one_specimen_manifest(reviewed_run, tmp_path, "P1-baseline")
    reference = tmp_path / "lab-reference.csv"
    reference.write_text("population,low,high,units,source\nCD4+ T cells,1,2,cells/uL,our lab\n")
    url = f"sqlite:///{tmp_path / 'ref.sqlite'}"
    out = tmp_path / "out"
    assert main(["run", str(manifest), "--out", str(out), "--db", url, "--reference",
                 str(reference), "-q"]) == 0  # fmt: skip
    assert json.loads((out / "run.json").read_text())["reference"] == str(reference.resolve())
    R.add_user(_engine(url), "tom", "technician-pass", "technician")
    csv = pd.read_csv(out / "populations.csv", encoding="utf-8-sig")
    mine = csv[(csv.tube == "T") & (csv.population == "CD4+ T cells")].iloc[0]
    assert mine["reference_flag"] and mine["reference_high"] == 2  # the lab's, not the bundled
    client = _client(create_app(url), "tom", "technician-pass")
    state = client.get("/api/specimen/P1/P1-baseline").get_json()
    tube = next(t for t in state["tubes"] if t["tube"] == "T")
    row = next(r for r in tube["rows"] if r["population"] == "CD4+ T cells")
    assert row["reference_flag"] == mine["reference_flag"]
    assert (row["reference_low"], row["reference_high"]) == (1, 2)


def test_a_newer_version_after_release_is_pending_again(reviewed_run, tmp_path):
    from cytowhim.cli import main
    from cytowhim.review.server import create_app

    url = _copy(reviewed_run, tmp_path)
    app = create_app(url)
    director = _client(app, "dora", "director-pass")
    spec = "/api/specimen/P1/P1-peak"
    state = director.get(spec).get_json()
    r = _post(director, spec + "/status",
              {"action": "release", "etag": state["etag"], "reason": "checked"})  # fmt: skip
    assert r.status_code == 200
    assert "P1-peak" in director.get("/?patient=P1&status=released").get_data(as_text=True)
    # a re-run with a changed input (the CBC corrected): a new version of the specimen
    manifest = _one_specimen_manifest(reviewed_run, tmp_path, "P1-peak", WBC=4321.0)
    assert main(["run", str(manifest), "--out", str(tmp_path / "rerun"), "--db", url, "-q"]) == 0
    (row,) = [w for w in R.worklist(_engine(url)) if w["specimen"] == "P1-peak"]
    assert row["version"] == 2 and row["status"] == "pending"
    after = director.get(spec).get_json()
    assert after["status"] == "pending" and after["etag"] == state["etag"] + 2
    page = director.get("/?patient=P1&status=released").get_data(as_text=True)
    assert "P1-peak" not in page
    new = after["audit"][-1]
    assert new["action"] == "new version" and new["user_name"] == "system"
    assert "version 2" in new["detail"] and "released" in new["detail"]
    assert len([a for a in after["audit"] if a["action"] == "new version"]) == 1  # once
    # signed again at version 2: it stays released
    r = _post(director, spec + "/status",
              {"action": "release", "etag": after["etag"], "reason": "checked v2"})  # fmt: skip
    assert r.status_code == 200
    assert director.get(spec).get_json()["status"] == "released"


# --- moving a quadrant's centre and an ellipse -------------------------------------------------


def test_a_quadrant_centre_moves_its_sibling_quadrants_together(reviewed_run, tmp_path):
    from cytowhim.review.model import quadrant_centre
    from cytowhim.review.server import create_app

    url = _copy(reviewed_run, tmp_path)
    tech = _client(create_app(url), "tom", "technician-pass")
    spec = "/api/specimen/P1/P1-peak"
    state = tech.get(spec).get_json()
    tube = next(t for t in state["tubes"] if t["tube"] == "T")
    plots = {p["population"]: p for p in tube["plots"]}
    events = {r["population"]: r["events"] for r in tube["rows"]}
    x, y = quadrant_centre(plots["CD4+ T cells"]["doc"])
    assert quadrant_centre(plots["CD8+ T cells"]["doc"]) == [x, y]
    (_x0, x1), (_y0, y1) = plots["CD4+ T cells"]["extent"]
    centre = [(x + x1) / 2, (y + y1) / 2]  # into both bright populations
    body = {"tube": "T", "population": "CD4+ T cells", "centre": centre}
    r = _post(tech, spec + "/regate", body)
    assert r.status_code == 200, r.get_json()
    moved = r.get_json()["gates"]
    assert set(moved) == {"CD4+ T cells", "CD8+ T cells"}  # both thresholds of both quadrants
    assert all(quadrant_centre(d) == centre for d in moved.values())
    rows = {x["population"]: x["events"] for x in r.get_json()["rows"]}
    assert rows["CD4+ T cells"] < events["CD4+ T cells"]  # its CD4 threshold moved up
    assert rows["T cells"] == events["T cells"]  # the parent is not touched
    r = _post(tech, spec + "/regate", {"tube": "T", "population": "T cells", "centre": centre})
    assert r.status_code == 400 and "quadrant" in r.get_json()["error"]
    r = _post(tech, spec + "/override", {**body, "etag": state["etag"], "reason": "CD4 dim"})
    assert r.status_code == 200 and r.get_json()["etag"] == state["etag"] + 1  # one step
    after = tech.get(spec).get_json()
    assert {o["population"] for o in after["overrides"]} == {"CD4+ T cells", "CD8+ T cells"}
    tube = next(t for t in after["tubes"] if t["tube"] == "T")
    plots = {p["population"]: p for p in tube["plots"]}
    assert quadrant_centre(plots["CD8+ T cells"]["doc"]) == centre
    assert plots["CD8+ T cells"]["pinned"] == "CD4 dim"
    assert {x["population"]: x["events"] for x in tube["rows"]} == rows


def test_an_ellipse_is_drawn_with_its_centre_and_moved(reviewed_run, tmp_path):
    from cytowhim.review.server import create_app

    url = _copy(reviewed_run, tmp_path)
    tech = _client(create_app(url), "tom", "technician-pass")
    spec = "/api/specimen/P1/P1-peak"
    state = tech.get(spec).get_json()
    tube = next(t for t in state["tubes"] if t["tube"] == "T")
    poly = next(p for p in tube["plots"] if p["population"] == "singlets")["doc"]["polygon"]
    xs = [v[0] for v in poly["vertices"]]
    ys = [v[1] for v in poly["vertices"]]
    mean = [sum(xs) / len(xs), sum(ys) / len(ys)]
    sx, sy = (max(xs) - min(xs)) / 4, (max(ys) - min(ys)) / 4
    ellipse = {"ellipse": {"dimensions": [poly["x"], poly["y"]], "mean": mean,
                           "covariance": [[sx * sx, 0.0], [0.0, sy * sy]], "distance_square": 4.0}}  # fmt: skip
    body = {"tube": "T", "population": "singlets", "gate": ellipse}
    r = _post(tech, spec + "/override", {**body, "etag": state["etag"], "reason": "round gate"})
    assert r.status_code == 200, r.get_json()
    state = tech.get(spec).get_json()
    tube = next(t for t in state["tubes"] if t["tube"] == "T")
    plot = next(p for p in tube["plots"] if p["population"] == "singlets")
    assert plot["kind"] == "ellipsoid" and plot["outline"]
    assert plot["mean"] == pytest.approx(mean) and plot["doc"]["ellipse"]["mean"] == plot["mean"]
    before = next(x["events"] for x in tube["rows"] if x["population"] == "singlets")
    moved = plot["doc"]
    moved["ellipse"]["mean"] = [mean[0] + 2 * sx, mean[1]]  # the centre dragged right
    r = _post(tech, spec + "/regate", {**body, "gate": moved})
    assert r.status_code == 200, r.get_json()
    after = next(x["events"] for x in r.get_json()["rows"] if x["population"] == "singlets")
    assert after < before
