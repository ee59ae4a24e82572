"""The review web application (Flask): login, worklist, specimen view, gate adjustment, sign-out.

Every state-changing request is a POST carrying the session's CSRF token (form field
``csrf_token`` or header ``X-CSRF-Token``; 400 without it) and is authorized on the server from
the logged-in user's role as stored in the database (403 otherwise). Gate changes and sign-out
carry the specimen's ``etag`` as the page loaded it; a stale one is refused with 409.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from typing import Any

from flask import (
    Flask,
    Response,
    abort,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from ..db import ResultsDB
from ..db import review as R
from .model import Model, counts_of, move_quadrant_centre, plots, table_rows


def create_app(db_url: str | None = None, secret_key: str | None = None) -> Flask:
    """The application on the results database ``db_url`` (default: $CYTOWHIM_DB, else the
    user's SQLite file)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_hex(32),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        MAX_CONTENT_LENGTH=1 << 20,
    )
    db = ResultsDB(db_url)
    engine = db.engine
    model = Model()
    app.extensions["cytowhim"] = {"engine": engine, "model": model, "db": db}

    @app.before_request
    def _load_user() -> Any:
        g.user = None
        name = session.get("user")
        if name:
            g.user = R.user(engine, name)
            if g.user is None:  # disabled since
                session.clear()
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        if request.method == "POST":
            sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
            if not sent or not secrets.compare_digest(str(sent), session["csrf"]):
                abort(400, "missing or wrong CSRF token")
        if request.endpoint not in ("login", "static") and g.user is None:
            if request.path.startswith("/api/"):
                abort(401)
            return redirect(url_for("login", next=request.path))
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
        )
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    @app.context_processor
    def _context() -> dict[str, Any]:
        return {"user": g.get("user"), "csrf": session.get("csrf", "")}

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = ""
        if request.method == "POST":
            user = R.authenticate(
                engine, request.form.get("name", ""), request.form.get("password", "")
            )
            if user is None:
                error = "unknown user, wrong password or disabled account"
            else:
                session.clear()
                session["user"] = user["name"]
                session["csrf"] = secrets.token_urlsafe(32)
                target = request.args.get("next") or "/"
                local = target.startswith("/") and not target.startswith(("//", "/\\"))
                return redirect(target if local else "/")
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    def worklist() -> Any:
        rows = R.worklist(engine)
        f = {k: request.args.get(k, "").strip() for k in ("day", "status", "patient", "run")}
        if f["day"]:
            rows = [r for r in rows if r["day"] == f["day"]]
        if f["status"]:
            rows = [r for r in rows if r["status"] == f["status"]]
        if f["patient"]:
            rows = [r for r in rows if f["patient"].lower() in r["patient"].lower()]
        if f["run"]:
            rows = [r for r in rows if r["run_uid"].startswith(f["run"])]
        return render_template("worklist.html", rows=rows, f=f, statuses=R.STATUSES)

    def _entry(patient: str, specimen: str) -> dict[str, Any]:
        for r in R.worklist(engine):
            if r["patient"] == patient and r["specimen"] == specimen:
                return r
        abort(404, f"no specimen {specimen} of {patient}")

    def _specimen(patient: str, specimen: str):
        entry = _entry(patient, specimen)
        pins = R.overrides(engine, patient, specimen)
        return entry, model.specimen(patient, specimen, entry["out_dir"], pins)

    def _registered_failures(patient: str, specimen: str) -> list[str]:
        """QC failures of the specimen's registered rows (newest version), with the control
        failures of its draw day or run ('control out of range ...', until a director reviews
        the control day): what the release check counts besides the re-gated flags."""
        rows = db.populations([patient])
        rows = rows[(rows["specimen"] == specimen) & (rows["qc_status"] == "fail")]
        return list(dict.fromkeys(str(q) for q in rows["qc"].fillna("") if str(q)))

    def _qc_failed_all(patient: str, specimen: str, flags: list) -> bool:
        return _qc_failed(flags) or bool(_registered_failures(patient, specimen))

    def _control_failures(patient: str, specimen: str) -> list[str]:
        out = []
        for text in _registered_failures(patient, specimen):
            out += [p.strip() for p in text.split(";") if "control out of range" in p]
        return list(dict.fromkeys(out))

    @app.get("/specimen/<patient>/<specimen>")
    def specimen_page(patient: str, specimen: str) -> Any:
        entry = _entry(patient, specimen)
        return render_template("specimen.html", entry=entry)

    def _state(patient: str, specimen: str) -> dict[str, Any]:
        entry, spec = _specimen(patient, specimen)
        st = R.status(engine, patient, specimen)
        registered = _registered_failures(patient, specimen)
        controls = _control_failures(patient, specimen)
        tubes = []
        for name, ts in spec.tubes.items():
            tubes.append(
                {
                    "tube": name,
                    "file": ts.file,
                    "events": int(ts.sample.n_events),
                    "rows": _with_controls(table_rows(spec.table, name), controls),
                    "plots": plots(ts),
                    "notes": list(ts.result.notes),
                }
            )
        audit = [
            {k: (str(v) if k == "utc" else v) for k, v in a.items()}
            for a in R.audit_trail(engine, patient, specimen)
        ]
        return {
            "patient": patient,
            "specimen": specimen,
            "status": st["status"],
            "etag": st["etag"],
            "changed_by": st["changed_by"],
            "qc_failed": _qc_failed(spec.flags) or bool(registered),
            "control_failures": controls,
            "flags": spec.flags,
            "errors": spec.errors,
            "tubes": tubes,
            "audit": audit,
            "overrides": [
                {k: (str(v) if k == "created_utc" else v) for k, v in o.items()}
                for o in R.overrides(engine, patient, specimen)
            ],
            "role": g.user["role"],
            "user": g.user["name"],
        }

    @app.get("/api/specimen/<patient>/<specimen>")
    def specimen_state(patient: str, specimen: str) -> Any:
        return jsonify(_state(patient, specimen))

    def _body() -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, "expected a JSON object")
        return body

    def _changes(body: dict[str, Any], spec: Any) -> tuple[str, dict[str, dict]]:
        """The tube and its changed gates (population -> doc) a request asks for: ``population``
        and ``gate``; ``gates`` [{population, gate}, ...]; or ``population`` (a quadrant) and
        ``centre`` [x, y]: it and its sibling quadrants with their corner moved there."""
        tube = body.get("tube")
        if tube not in spec.tubes:
            abort(400, "give tube, population and gate")
        state = spec.tubes[tube]
        if isinstance(body.get("gates"), list):
            docs = {}
            for item in body["gates"]:
                if not isinstance(item, dict) or not isinstance(item.get("gate"), dict):
                    abort(400, "gates: a list of {population, gate}")
                docs[state.strategy.resolve_name(str(item.get("population")))] = item["gate"]
            if not docs:
                abort(400, "gates: a list of {population, gate}")
            return tube, docs
        pop = str(body.get("population"))
        centre = body.get("centre")
        if centre is not None:
            if not (isinstance(centre, list) and len(centre) == 2):
                abort(400, "centre: [x, y]")
            return tube, move_quadrant_centre(state, pop, [float(c) for c in centre])
        doc = body.get("gate")
        if not isinstance(doc, dict):
            abort(400, "give tube, population and gate")
        return tube, {state.strategy.resolve_name(pop): doc}

    def _regated(body: dict[str, Any], spec: Any) -> tuple[str, dict, dict]:
        """(tube, gates, re-gated tube) for the change a request asks for; 400 for a gate the
        loader refuses."""
        try:
            tube, docs = _changes(body, spec)
            return tube, docs, model.regate_many(spec, tube, docs)
        except HTTPException:
            raise
        except Exception as exc:  # a gate the loader refuses
            abort(400, str(exc))

    @app.post("/api/specimen/<patient>/<specimen>/regate")
    def regate(patient: str, specimen: str) -> Any:
        body = _body()
        _entry_, spec = _specimen(patient, specimen)
        tube, docs, out = _regated(body, spec)
        controls = _control_failures(patient, specimen)
        return jsonify(
            {
                "rows": _with_controls(table_rows(out["table"], tube), controls),
                "flags": out["flags"],
                "qc_failed": _qc_failed(out["flags"]) or bool(controls),
                "seconds": out["seconds"],
                "gates": docs,
            }
        )

    @app.post("/api/specimen/<patient>/<specimen>/override")
    def save_override(patient: str, specimen: str) -> Any:
        body = _body()
        _entry_, spec = _specimen(patient, specimen)
        from .model import gate_doc

        tube, docs, out = _regated(body, spec)
        ts = spec.tubes[tube]
        before = counts_of(spec.table, tube)
        after = counts_of(out["table"], tube)
        try:
            new = R.add_overrides(
                engine,
                g.user,
                int(body.get("etag", -1)),
                patient=patient,
                specimen=specimen,
                tube=tube,
                file=ts.file,
                changes=[
                    {
                        "population": name,
                        "before": gate_doc(ts.strategy, ts.result.gates[name])
                        if name in ts.result.gates
                        else None,
                        "after": doc,
                    }
                    for name, doc in docs.items()
                ],
                counts_before=before,
                counts_after=after,
                reason=str(body.get("reason", "")),
            )
        except R.Conflict as exc:
            return jsonify({"error": str(exc)}), 409
        except R.ReviewError as exc:
            return jsonify({"error": str(exc)}), 400
        model.forget(patient, specimen)
        return jsonify({"etag": new["etag"], "seconds": out["seconds"]})

    @app.post("/api/specimen/<patient>/<specimen>/status")
    def change_status(patient: str, specimen: str) -> Any:
        body = _body()
        entry, spec = _specimen(patient, specimen)
        try:
            new = R.set_status(
                engine,
                patient,
                specimen,
                str(body.get("action")),
                g.user,
                int(body.get("etag", -1)),
                str(body.get("reason", "")),
                qc_failed=_qc_failed_all(patient, specimen, spec.flags),
                version=int(entry["version"]),
                run_uid=str(entry["run_uid"]),
            )
        except R.Forbidden as exc:
            return jsonify({"error": str(exc)}), 403
        except R.Conflict as exc:
            return jsonify({"error": str(exc)}), 409
        except R.ReviewError as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify(new | {"changed_utc": str(new["changed_utc"])})

    @app.get("/api/specimen/<patient>/<specimen>/audit.csv")
    def audit_csv(patient: str, specimen: str) -> Any:
        out = io.StringIO()
        cols = (
            "id",
            "utc",
            "user_name",
            "action",
            "patient",
            "specimen",
            "detail",
            "before",
            "after",
        )
        w = csv.writer(out)
        w.writerow(cols)
        for a in R.audit_trail(engine, patient, specimen):
            w.writerow([a[c] for c in cols])
        return Response(
            out.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": f"attachment; filename=audit-{specimen}.csv"},
        )

    @app.errorhandler(400)
    @app.errorhandler(401)
    @app.errorhandler(403)
    @app.errorhandler(404)
    def _error(exc: Any) -> Any:
        if request.path.startswith("/api/") or request.is_json:
            return jsonify({"error": exc.description}), exc.code
        return Response(f"{exc.code}: {exc.description}", exc.code, mimetype="text/plain")

    app.jinja_env.filters["tojson_attr"] = lambda v: json.dumps(v)
    return app


def _with_controls(rows: list[dict[str, Any]], controls: list[str]) -> list[dict[str, Any]]:
    """The table rows, each failed and its QC text extended by the control failures."""
    if not controls:
        return rows
    text = "; ".join(controls)
    for r in rows:
        r["qc_status"] = "fail"
        r["qc"] = f"{r['qc']}; {text}" if r.get("qc") else text
    return rows


def _qc_failed(flags: list) -> bool:
    return any(f.get("severity") == "fail" for f in flags)
