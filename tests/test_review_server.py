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
        R.add_override(
            engine, TECH, 2, patient="P1", specimen="S1", tube="T", file="a.fcs",
            population="T cells", gate_before=gate, gate_after=gate, counts_before={},
            counts_after={}, reason="x",
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
