// cytowhim review: the specimen page. Gates drawn in SVG over binned parent events; range and
// rectangle edges, a quadrant's centre (with its sibling quadrants), polygon vertices and an
// ellipse's centre can be dragged; the server re-gates and counts.
"use strict";
(function () {
  const root = document.getElementById("specimen");
  if (!root) return;
  const csrf = document.body.dataset.csrf;
  const base = "/api/specimen/" + encodeURIComponent(root.dataset.patient) + "/" +
    encodeURIComponent(root.dataset.specimen);
  const NS = "http://www.w3.org/2000/svg";
  const W = 260, H = 200, L = 40, B = 28, T = 6, R = 6;
  let state = null, pending = null;

  function msg(text, error) {
    const m = document.getElementById("message");
    m.textContent = text;
    m.className = error ? "error" : "";
  }
  async function post(path, body) {
    const r = await fetch(base + path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    let data = {};
    try { data = await r.json(); } catch (e) { data = { error: r.statusText }; }
    return { ok: r.ok, status: r.status, data };
  }
  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || v === "") return "";
    if (typeof v !== "number") return String(v);
    return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }
  function colour(c, max) {
    if (!c) return null;
    const t = Math.log(c) / Math.log(Math.max(max, 2));
    const hue = 240 - 240 * t;
    return "hsl(" + hue.toFixed(0) + ",85%," + (45 + 10 * (1 - t)).toFixed(0) + "%)";
  }

  function drawPlot(tube, p) {
    const box = document.createElement("div");
    box.className = "plot";
    box.dataset.population = p.population;
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = p.population + (p.pinned ? " (pinned)" : "");
    box.appendChild(title);
    const svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H });
    svg.dataset.population = p.population;
    box.appendChild(svg);
    const ex = p.extent, twoD = ex.length === 2;
    const sx = (x) => L + (x - ex[0][0]) / (ex[0][1] - ex[0][0]) * (W - L - R);
    const ix = (px) => ex[0][0] + (px - L) / (W - L - R) * (ex[0][1] - ex[0][0]);
    let sy, iy;
    if (twoD) {
      sy = (y) => H - B - (y - ex[1][0]) / (ex[1][1] - ex[1][0]) * (H - B - T);
      iy = (py) => ex[1][0] + (H - B - py) / (H - B - T) * (ex[1][1] - ex[1][0]);
    }
    el("rect", { x: L, y: T, width: W - L - R, height: H - B - T, fill: "#fff", stroke: "#999" }, svg);
    const d = p.density, n = d.length;
    const cw = (W - L - R) / n;
    if (twoD) {
      let max = 1;
      d.forEach((row) => row.forEach((c) => { if (c > max) max = c; }));
      const ch = (H - B - T) / n;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        const c = colour(d[i][j], max);
        if (c) el("rect", { x: L + i * cw, y: H - B - (j + 1) * ch, width: cw + 0.3, height: ch + 0.3, fill: c }, svg);
      }
    } else {
      const max = Math.max(1, ...d);
      for (let i = 0; i < n; i++) {
        const h = d[i] / max * (H - B - T);
        if (h > 0) el("rect", { x: L + i * cw, y: H - B - h, width: cw, height: h, fill: "#6a8fc7" }, svg);
      }
    }
    const tick = (v) => (Math.abs(v) >= 1000 ? (v / 1000).toFixed(0) + "k" : v.toFixed(2));
    for (let k = 0; k <= 2; k++) {
      const vx = ex[0][0] + k / 2 * (ex[0][1] - ex[0][0]);
      const tx = el("text", { x: sx(vx), y: H - B + 10, "text-anchor": "middle", "font-size": 8, fill: "#555" }, svg);
      tx.textContent = tick(vx);
      if (twoD) {
        const vy = ex[1][0] + k / 2 * (ex[1][1] - ex[1][0]);
        const ty = el("text", { x: L - 2, y: sy(vy) + 3, "text-anchor": "end", "font-size": 8, fill: "#555" }, svg);
        ty.textContent = tick(vy);
      }
    }
    const lx = el("text", { x: L + (W - L - R) / 2, y: H - 3, "text-anchor": "middle", "font-size": 10 }, svg);
    lx.textContent = p.labels[0];
    const ly = el("text", { x: 9, y: T + (H - B - T) / 2, "text-anchor": "middle", "font-size": 10,
      transform: "rotate(-90 9 " + (T + (H - B - T) / 2) + ")" }, svg);
    ly.textContent = twoD ? p.labels[1] : "events";
    const edit = p.doc && state.status !== "released";
    const clampX = (x) => Math.min(W - R, Math.max(L, x));
    const clampY = (y) => Math.min(H - B, Math.max(T, y));

    function changed() { regate(tube, p, svg, box); }

    if (p.kind === "rectangle") {
      const g = el("g", {}, svg);
      const x0 = () => (p.min[0] === null ? L : sx(p.min[0]));
      const x1 = () => (p.max[0] === null ? W - R : sx(p.max[0]));
      const y0 = () => (!twoD ? H - B : p.min[1] === null ? H - B : sy(p.min[1]));
      const y1 = () => (!twoD ? T : p.max[1] === null ? T : sy(p.max[1]));
      const outline = el("rect", { fill: "none", stroke: "#000", "stroke-width": 1.5 }, g);
      const handles = [];
      function place() {
        const a = clampX(x0()), b = clampX(x1()), c = clampY(y1()), e = clampY(y0());
        outline.setAttribute("x", Math.min(a, b)); outline.setAttribute("width", Math.abs(b - a));
        outline.setAttribute("y", Math.min(c, e)); outline.setAttribute("height", Math.abs(e - c));
        handles.forEach((h) => h.place());
      }
      function handle(axis, which) {
        const bound = (axis === 0 ? p[which][0] : p[which][1]);
        if (bound === null) return;
        const line = el("line", { stroke: "#e60", "stroke-width": 6, "stroke-opacity": 0.55,
          class: "handle" + (axis === 1 ? " y" : "") }, g);
        line.dataset.edge = (axis === 0 ? "x" : "y") + which;
        line.place = function () {
          if (axis === 0) {
            const x = clampX(sx(p[which][0]));
            line.setAttribute("x1", x); line.setAttribute("x2", x);
            line.setAttribute("y1", clampY(y1())); line.setAttribute("y2", clampY(y0()));
          } else {
            const y = clampY(sy(p[which][1]));
            line.setAttribute("y1", y); line.setAttribute("y2", y);
            line.setAttribute("x1", clampX(x0())); line.setAttribute("x2", clampX(x1()));
          }
        };
        handles.push(line);
        if (!edit) return;
        drag(line, svg, (px, py) => {
          const v = axis === 0 ? ix(clampX(px)) : iy(clampY(py));
          p[which][axis] = v;
          place();
        }, changed);
      }
      handle(0, "min"); handle(0, "max");
      if (twoD) { handle(1, "min"); handle(1, "max"); }
      const corner = quadrantCentre(p);
      if (corner) {  // a quadrant: its centre moves both thresholds of it and its siblings
        const dot = el("circle", { r: 5, fill: "#c30", class: "handle centre" }, g);
        const sideX = p.min[0] !== null ? "min" : "max", sideY = p.min[1] !== null ? "min" : "max";
        handles.push({ place: () => { dot.setAttribute("cx", clampX(sx(p[sideX][0]))); dot.setAttribute("cy", clampY(sy(p[sideY][1]))); } });
        if (edit) drag(dot, svg, (px, py) => {
          p[sideX][0] = ix(clampX(px)); p[sideY][1] = iy(clampY(py)); place();
        }, () => regate(tube, p, svg, box, { centre: [p[sideX][0], p[sideY][1]] }));
      }
      place();
    } else if (p.kind === "polygon" && p.vertices) {
      const poly = el("polygon", { fill: "none", stroke: "#000", "stroke-width": 1.5 }, svg);
      const dots = [];
      const place = () => {
        poly.setAttribute("points", p.vertices.map((v) => sx(v[0]) + "," + sy(v[1])).join(" "));
        dots.forEach((c, k) => { c.setAttribute("cx", sx(p.vertices[k][0])); c.setAttribute("cy", sy(p.vertices[k][1])); });
      };
      p.vertices.forEach((v, k) => {
        const c = el("circle", { r: 4, fill: "#e60", class: "handle" }, svg);
        dots.push(c);
        if (edit) drag(c, svg, (px, py) => { p.vertices[k] = [ix(clampX(px)), iy(clampY(py))]; place(); }, changed);
      });
      place();
    } else if (p.outline) {
      const shape = el("polygon", { fill: "none", stroke: "#000", "stroke-width": 1.5 }, svg);
      const start = p.mean ? p.mean.slice() : null;
      const dot = start && p.doc ? el("circle", { r: 5, fill: "#c30", class: "handle centre" }, svg) : null;
      const place = () => {
        const dx = start ? p.mean[0] - start[0] : 0, dy = start ? p.mean[1] - start[1] : 0;
        shape.setAttribute("points", p.outline.map((v) => sx(v[0] + dx) + "," + sy(v[1] + dy)).join(" "));
        if (dot) { dot.setAttribute("cx", sx(p.mean[0])); dot.setAttribute("cy", sy(p.mean[1])); }
      };
      if (dot && edit) drag(dot, svg, (px, py) => { p.mean = [ix(clampX(px)), iy(clampY(py))]; place(); }, changed);
      place();
    } else if (p.inside && twoD) {
      let max = 1;
      p.inside.forEach((row) => row.forEach((c) => { if (c > max) max = c; }));
      const ch = (H - B - T) / n;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (p.inside[i][j])
        el("rect", { x: L + i * cw, y: H - B - (j + 1) * ch, width: cw, height: ch, fill: "none",
          stroke: "#000", "stroke-width": 0.4 }, svg);
    }
    if (p.data_driven || p.notes.length) {
      const note = document.createElement("div");
      note.className = "note";
      note.textContent = (p.data_driven ? "data-driven (" + p.kind + " as landed on this file). " : "") + p.notes.join(" ");
      box.appendChild(note);
    }
    return box;
  }

  function drag(target, svg, move, done) {
    target.addEventListener("pointerdown", (ev) => {
      ev.preventDefault();
      target.setPointerCapture(ev.pointerId);
      const rect = () => svg.getBoundingClientRect();
      const onMove = (e) => {
        const r = rect();
        move((e.clientX - r.left) * W / r.width, (e.clientY - r.top) * H / r.height);
      };
      const onUp = (e) => {
        target.removeEventListener("pointermove", onMove);
        target.removeEventListener("pointerup", onUp);
        onMove(e);
        done();
      };
      target.addEventListener("pointermove", onMove);
      target.addEventListener("pointerup", onUp);
    });
  }

  function quadrantCentre(p) {  // a 2-D rectangle open on one side of each axis
    if (!p.min || p.min.length !== 2) return null;
    for (let j = 0; j < 2; j++) if ((p.min[j] === null) === (p.max[j] === null)) return null;
    return [p.min[0] !== null ? p.min[0] : p.max[0], p.min[1] !== null ? p.min[1] : p.max[1]];
  }

  function docOf(p) {
    const doc = JSON.parse(JSON.stringify(p.doc));
    if (doc.ellipse && p.mean) { doc.ellipse.mean = p.mean.slice(); return doc; }
    if (doc.range) { doc.range.min = p.min[0]; doc.range.max = p.max[0]; }
    else if (doc.rectangle) { doc.rectangle.min = p.min.slice(); doc.rectangle.max = p.max.slice(); }
    else if (doc.polygon) { doc.polygon.vertices = p.vertices.map((v) => v.slice()); }
    return doc;
  }

  async function regate(tube, p, svg, box, centre) {
    document.querySelectorAll(".plot.selected").forEach((b) => b.classList.remove("selected"));
    box.classList.add("selected");
    pending = centre ? Object.assign({ tube: tube.tube, population: p.population }, centre)
      : { tube: tube.tube, population: p.population, gate: docOf(p) };
    msg("re-gating " + tube.tube + " / " + p.population + " ...");
    const t0 = performance.now();
    const r = await post("/regate", pending);
    if (!r.ok) { msg(r.data.error || "re-gating failed", true); return; }
    fillTable(tube.tube, r.data.rows, true);
    if (centre) redrawSiblings(tube, p, r.data.gates || {});
    document.getElementById("save").disabled = false;
    document.getElementById("cancel").disabled = false;
    msg("re-gated " + tube.tube + " in " + Math.round(r.data.seconds * 1000) + " ms on the server (" +
      Math.round(performance.now() - t0) + " ms round trip); give a reason and save, or discard");
  }

  function redrawSiblings(tube, moved, gates) {  // the other quadrants of a moved centre
    tube.plots.forEach((q) => {
      const doc = gates[q.population];
      if (q === moved || !doc || !doc.rectangle) return;
      q.min = doc.rectangle.min.slice(); q.max = doc.rectangle.max.slice();
      const old = Array.from(document.querySelectorAll(".plot")).find((b) =>
        b.dataset.population === q.population && b.closest("section") === document.querySelector('table.pops[data-tube="' + CSS.escape(tube.tube) + '"]').closest("section"));
      if (old) old.replaceWith(drawPlot(tube, q));
    });
  }

  function fillTable(tube, rows, mark) {
    const body = document.querySelector('table.pops[data-tube="' + CSS.escape(tube) + '"] tbody');
    const old = {};
    body.querySelectorAll("tr").forEach((tr) => { old[tr.dataset.population] = tr.dataset.events; });
    body.innerHTML = "";
    rows.forEach((r) => {
      const tr = document.createElement("tr");
      tr.dataset.population = r.population;
      tr.dataset.events = r.events === null ? "" : String(r.events);
      if (mark && old[r.population] !== tr.dataset.events) tr.className = "changed";
      const cells = [r.population, fmt(r.events, 0), fmt(r.percent_of_parent, 1),
        fmt(r.absolute_per_uL, 1), fmt(r.absolute_error_per_uL, 1)];
      cells.forEach((c, k) => {
        const td = document.createElement("td");
        td.textContent = c;
        if (k) td.className = "num";
        if (k === 1) td.classList.add("events");
        if (k === 3) td.classList.add("absolute");
        tr.appendChild(td);
      });
      const q = document.createElement("td");
      if (r.qc_status) { const s = document.createElement("span"); s.className = "flag " + r.qc_status; s.textContent = r.qc_status; s.title = r.qc || ""; q.appendChild(s); }
      tr.appendChild(q);
      const f = document.createElement("td");
      if (r.reference_flag) { const s = document.createElement("span"); s.className = "flag ref"; s.textContent = r.reference_flag; s.title = fmt(r.reference_low, 0) + "-" + fmt(r.reference_high, 0); f.appendChild(s); }
      tr.appendChild(f);
      body.appendChild(tr);
    });
  }

  function render() {
    const s = document.getElementById("status");
    s.textContent = state.status;
    s.className = "badge " + state.status;
    root.dataset.status = state.status;
    root.dataset.etag = state.etag;
    const tubes = document.getElementById("tubes");
    tubes.innerHTML = "";
    state.tubes.forEach((t) => {
      const sec = document.createElement("section");
      sec.className = "tube";
      const h = document.createElement("h2");
      h.textContent = "Tube " + t.tube + " (" + t.events.toLocaleString("en-US") + " events)";
      sec.appendChild(h);
      const bodyDiv = document.createElement("div");
      bodyDiv.className = "tube-body";
      const plotsDiv = document.createElement("div");
      plotsDiv.className = "plots";
      t.plots.forEach((p) => plotsDiv.appendChild(drawPlot(t, p)));
      const table = document.createElement("table");
      table.className = "pops";
      table.dataset.tube = t.tube;
      table.innerHTML = "<thead><tr><th>Population</th><th>Events</th><th>% parent</th>" +
        "<th>cells/µL</th><th>±</th><th>QC</th><th>Ref.</th></tr></thead><tbody></tbody>";
      bodyDiv.appendChild(table);
      bodyDiv.appendChild(plotsDiv);
      sec.appendChild(bodyDiv);
      tubes.appendChild(sec);
      fillTable(t.tube, t.rows, false);
    });
    const audit = document.querySelector("#audit tbody");
    audit.innerHTML = "";
    state.audit.forEach((a) => {
      const tr = document.createElement("tr");
      [a.utc, a.user_name, a.action, a.detail].forEach((c) => {
        const td = document.createElement("td"); td.textContent = c; tr.appendChild(td);
      });
      audit.appendChild(tr);
    });
    const released = state.status === "released";
    document.getElementById("review").disabled = released || state.status === "reviewed";
    document.getElementById("release").hidden = state.role !== "director";
    document.getElementById("unrelease").hidden = state.role !== "director";
    document.getElementById("release").disabled = released;
    document.getElementById("unrelease").disabled = !released;
    document.getElementById("save").disabled = true;
    document.getElementById("cancel").disabled = true;
    pending = null;
  }

  async function load() {
    const r = await fetch(base, { credentials: "same-origin" });
    state = await r.json();
    render();
    root.dataset.ready = "1";
  }

  async function act(action) {
    const reason = document.getElementById("reason").value;
    const r = await post("/status", { action, reason, etag: state.etag });
    if (!r.ok) { msg(r.data.error || ("refused (" + r.status + ")"), true); return; }
    await load();
    document.getElementById("reason").value = "";
    msg(action === "review" ? "marked reviewed" : action === "release" ? "released" : "un-released");
  }

  document.getElementById("save").addEventListener("click", async () => {
    if (!pending) return;
    const reason = document.getElementById("reason").value.trim();
    if (!reason) { msg("give a reason for the gate change", true); return; }
    const r = await post("/override", Object.assign({}, pending, { reason, etag: state.etag }));
    if (!r.ok) { msg(r.data.error || "not saved", true); return; }
    document.getElementById("reason").value = "";
    await load();
    msg("gate change saved");
  });
  document.getElementById("cancel").addEventListener("click", () => { load(); msg("change discarded"); });
  document.getElementById("review").addEventListener("click", () => act("review"));
  document.getElementById("release").addEventListener("click", () => act("release"));
  document.getElementById("unrelease").addEventListener("click", () => act("unrelease"));
  load().catch((e) => msg("cannot load the specimen: " + e, true));
})();
