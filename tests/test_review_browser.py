"""End to end in a real browser (Playwright for Python driving the system Chromium; no browser
download): log in, open a flagged specimen, drag a threshold, give a reason, see the count
change, mark reviewed, release, and find each step in the audit trail and the database; a
technician cannot release through the page or a crafted request. Screenshots are checked to be
non-blank (``CYTOWHIM_SCREENSHOTS=DIR`` keeps them)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from cytowhim.db import review as R

CHROMIUM = os.environ.get("CYTOWHIM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _need(ok: bool, why: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI installs it)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from werkzeug.serving import make_server

    from cytowhim.cli import main
    from cytowhim.db.connect import create
    from cytowhim.review.server import create_app
    from cytowhim.simulate import simulate

    folder = tmp_path_factory.mktemp("browser")
    simulate(folder / "sim", preset="whim-trial", events=(20000, 20000))
    url = f"sqlite:///{folder / 'results.sqlite'}"
    assert main(["run", str(folder / "sim" / "manifest.csv"), "--out", str(folder / "out"),
                 "--db", url, "-q"]) == 0  # fmt: skip
    engine = create(url)
    R.add_user(engine, "dora", "director-pass", "director")
    R.add_user(engine, "tom", "technician-pass", "technician")
    srv = make_server("127.0.0.1", 0, create_app(url), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}", engine
    srv.shutdown()
    engine.dispose()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "Playwright for Python is not installed")
    _need(Path(CHROMIUM).is_file() or bool(shutil.which(CHROMIUM)), f"no Chromium at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _login(page, base: str, name: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_selector("table.worklist")


def _not_blank(png: bytes, where: Path | None, name: str) -> None:
    import io

    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
    assert image.std() > 10, f"{name} looks blank"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, f"{name} has almost no content"
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
        (where / name).write_bytes(png)


def _events(page, population: str) -> str:
    row = page.locator(f'table.pops[data-tube="T"] tr[data-population="{population}"] td.events')
    return row.inner_text()


def test_review_drag_sign_out_in_the_browser(server, browser):
    from playwright.sync_api import expect

    base, engine = server
    shots = (
        Path(os.environ["CYTOWHIM_SCREENSHOTS"]) if os.environ.get("CYTOWHIM_SCREENSHOTS") else None
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _login(page, base, "tom", "technician-pass")
    _not_blank(page.screenshot(), shots, "review-worklist.png")
    flagged = page.locator("tr:has(span.flag.ref) a").first
    specimen = flagged.inner_text()
    patient = specimen.split("-")[0]
    flagged.click()
    page.wait_for_selector("#specimen[data-ready='1']", timeout=60_000)
    assert page.inner_text("#status") == "pending"
    before = _events(page, "T cells")
    before_abs = page.locator(
        'table.pops[data-tube="T"] tr[data-population="T cells"] td.absolute'
    ).inner_text()

    # drag the T-cell CD3 threshold to the right
    handle = page.locator('.plot[data-population="T cells"] line[data-edge="xmin"]').first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 30, y, steps=5)
    page.mouse.move(x + 60, y, steps=5)
    page.mouse.up()
    page.wait_for_selector('table.pops[data-tube="T"] tr.changed[data-population="T cells"]')
    after = _events(page, "T cells")
    assert int(after.replace(",", "")) < int(before.replace(",", ""))
    assert "re-gated T in" in page.inner_text("#message")
    after_abs = page.locator(
        'table.pops[data-tube="T"] tr[data-population="T cells"] td.absolute'
    ).inner_text()
    assert after_abs != before_abs
    page.click("#save")  # no reason: refused
    assert "reason" in page.inner_text("#message")
    page.fill("#reason", "CD3 dim events are debris here")
    page.click("#save")
    expect(page.locator("#message")).to_have_text("gate change saved")
    assert _events(page, "T cells") == after
    _not_blank(page.screenshot(), shots, "review-specimen.png")

    # the technician has no release button, and a crafted request is refused
    assert page.locator("#release").is_hidden()
    status = page.evaluate(
        """async () => {
            const root = document.getElementById('specimen');
            const r = await fetch('/api/specimen/' + root.dataset.patient + '/' +
                root.dataset.specimen + '/status', {method: 'POST',
                headers: {'Content-Type': 'application/json',
                          'X-CSRF-Token': document.body.dataset.csrf},
                body: JSON.stringify({action: 'release', reason: 'x',
                                      etag: Number(root.dataset.etag)})});
            return r.status;
        }"""
    )
    assert status == 403
    page.click("#review")
    expect(page.locator("#status")).to_have_text("reviewed")
    context.close()

    # the director releases
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _login(page, base, "dora", "director-pass")
    page.goto(f"{base}/specimen/{patient}/{specimen}")
    page.wait_for_selector("#specimen[data-ready='1']", timeout=60_000)
    assert page.inner_text("#status") == "reviewed"
    assert _events(page, "T cells") == after  # the saved override is applied
    page.fill("#reason", "gates and QC checked")
    page.click("#release")
    expect(page.locator("#status")).to_have_text("released")
    audit = page.inner_text("#audit")
    for action in ("gate override", "review", "release"):
        assert action in audit
    context.close()

    # ... and in the database
    st = R.status(engine, patient, specimen)
    assert st["status"] == "released" and st["changed_by"] == "dora"
    (ov,) = R.overrides(engine, patient, specimen)
    assert (ov["population"], ov["created_by"]) == ("T cells", "tom")
    assert ov["reason"] == "CD3 dim events are debris here"
    assert ov["counts_before"]["T cells"]["events"] == int(before.replace(",", ""))
    assert ov["counts_after"]["T cells"]["events"] == int(after.replace(",", ""))
    trail = [(a["user_name"], a["action"]) for a in R.audit_trail(engine, patient, specimen)]
    assert trail == [("tom", "gate override"), ("tom", "review"), ("dora", "release")]


def test_dragging_a_quadrant_centre_moves_its_siblings(server, browser):
    base, engine = server
    row = next(r for r in R.worklist(engine) if r["status"] == "pending")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _login(page, base, "tom", "technician-pass")
    page.goto(f"{base}/specimen/{row['patient']}/{row['specimen']}")
    page.wait_for_selector("#specimen[data-ready='1']", timeout=60_000)
    tube_t = 'section:has(table.pops[data-tube="T"]) '
    sibling = page.locator(tube_t + '.plot[data-population="CD8+ T cells"] circle.centre').first
    sibling_x = float(sibling.get_attribute("cx"))
    before = _events(page, "CD4+ T cells")
    dot = page.locator(tube_t + '.plot[data-population="CD4+ T cells"] circle.centre').first
    dot.scroll_into_view_if_needed()
    box = dot.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 30, y, steps=5)
    page.mouse.move(x + 60, y, steps=5)
    page.mouse.up()
    page.wait_for_selector('table.pops[data-tube="T"] tr.changed[data-population="CD4+ T cells"]')
    assert int(_events(page, "CD4+ T cells").replace(",", "")) < int(before.replace(",", ""))
    sibling = page.locator(tube_t + '.plot[data-population="CD8+ T cells"] circle.centre').first
    assert float(sibling.get_attribute("cx")) > sibling_x + 20  # redrawn at the new centre
    context.close()
