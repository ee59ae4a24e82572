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

from ..db import review as R
from ..db.connect import create
from .model import Model, counts_of, plots, table_rows


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
    engine = create(db_url)
    model = Model()
    app.extensions["cytowhim"] = {"engine": engine, "model": model}

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

    @app.get("/specimen/<patient>/<specimen>")
    def specimen_page(patient: str, specimen: str) -> Any:
        entry = _entry(patient, specimen)
        return render_template("specimen.html", entry=entry)

    def _state(patient: str, specimen: str) -> dict[str, Any]:
        entry, spec = _specimen(patient, specimen)
        st = R.status(engine, patient, specimen)
        tubes = []
        for name, ts in spec.tubes.items():
            tubes.append(
                {
                    "tube": name,
                    "file": ts.file,
                    "events": int(ts.sample.n_events),
                    "rows": table_rows(spec.table, name),
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
            "qc_failed": _qc_failed(spec.flags),
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

    @app.post("/api/specimen/<patient>/<specimen>/regate")
    def regate(patient: str, specimen: str) -> Any:
        body = _body()
        _entry_, spec = _specimen(patient, specimen)
        tube, pop, doc = body.get("tube"), body.get("population"), body.get("gate")
        if tube not in spec.tubes or not isinstance(doc, dict):
            abort(400, "give tube, population and gate")
        try:
            out = model.regate(spec, tube, str(pop), doc)
        except Exception as exc:  # a gate the loader refuses
            return jsonify({"error": str(exc)}), 400
        return jsonify(
            {
                "rows": table_rows(out["table"], tube),
                "flags": out["flags"],
                "qc_failed": _qc_failed(out["flags"]),
                "seconds": out["seconds"],
            }
        )

    @app.post("/api/specimen/<patient>/<specimen>/override")
    def save_override(patient: str, specimen: str) -> Any:
        body = _body()
        _entry_, spec = _specimen(patient, specimen)
        tube, pop, doc = body.get("tube"), str(body.get("population")), body.get("gate")
        if tube not in spec.tubes or not isinstance(doc, dict):
            abort(400, "give tube, population and gate")
        ts = spec.tubes[tube]
        from .model import gate_doc

        try:
            name = ts.strategy.resolve_name(pop)
            out = model.regate(spec, tube, name, doc)
        except Exception as exc:
            return jsonify({"error": str(exc)}), 400
        before = counts_of(spec.table, tube)
        after = counts_of(out["table"], tube)
        try:
            new = R.add_override(
                engine,
                g.user,
                int(body.get("etag", -1)),
                patient=patient,
                specimen=specimen,
                tube=tube,
                file=ts.file,
                population=name,
                gate_before=gate_doc(ts.strategy, ts.result.gates[name]),
                gate_after=doc,
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
        _entry_, spec = _specimen(patient, specimen)
        try:
            new = R.set_status(
                engine,
                patient,
                specimen,
                str(body.get("action")),
                g.user,
                int(body.get("etag", -1)),
                str(body.get("reason", "")),
                qc_failed=_qc_failed(spec.flags),
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


def _qc_failed(flags: list) -> bool:
    return any(f.get("severity") == "fail" for f in flags)
