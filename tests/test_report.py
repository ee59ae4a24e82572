"""`cytowhim report`: one self-contained HTML page per run folder, checked as HTML, as embedded
PNGs and rendered in headless Chromium (``apt-get install chromium``; CYTOWHIM_SKIP_BROWSER=1
skips that part)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from cytowhim.labels import ascii_name
from cytowhim.panels import Panels
from cytowhim.report import RunFolder, _Painter, _qc_html, build_report, main_report
from cytowhim.run import run_manifest, write_run
from cytowhim.simulate import simulate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MISSING = "missing_T.fcs"  # a manifest row whose file does not exist: a failure to show


class _Page(HTMLParser):
    """Tags of interest in a report: images, sections, scripts and external references."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "img":
            self.images.append(a)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("src", "href"):
            value = a.get(key, "")
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A small simulated run (6 specimens x 3 tubes) plus one tube whose file is missing."""
    root = tmp_path_factory.mktemp("report")
    specimens = root / "specimens"
    simulate(specimens, "whim-trial", seed=3, events=(8000, 10000))
    manifest = specimens / "manifest.csv"
    with manifest.open("a", encoding="utf-8") as f:
        f.write(f"{MISSING},P9-baseline,P9,baseline,T,1000,400,500,80\n")
    panels = Panels.load()
    out = root / "run"
    write_run(run_manifest(manifest, panels=panels), out, manifest=manifest, panels=panels)
    assert (out / "run.json").is_file()
    return out


@pytest.fixture(scope="module")
def report(run_dir: Path) -> tuple[Path, str, list[str]]:
    steps: list[str] = []
    path = build_report(run_dir, progress=steps.append)
    return path, path.read_text(encoding="utf-8"), steps


@pytest.fixture(scope="module")
def page(report) -> _Page:
    parser = _Page()
    parser.feed(report[1])
    parser.close()
    return parser


def _gated_tubes(run_dir: Path) -> pd.DataFrame:
    table = pd.read_csv(run_dir / "populations.csv", dtype=str, keep_default_na=False)
    return table[["specimen", "tube"]].drop_duplicates()


def test_report_is_one_self_contained_page(run_dir, report, page):
    path, text, steps = report
    assert path == run_dir / "report.html"
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert {"summary", "qc", "table1", "reference", "specimens"} <= page.ids
    assert page.external == [], "the page must load nothing from outside"
    assert "script" not in page.tags and "link" not in page.tags and "style" in page.tags
    assert steps[0].startswith("1/19 ") and len(steps) >= 19
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]  # atomic write


def test_one_image_per_gate_per_tube(run_dir, page):
    panels = Panels.load()
    gate_images = [i for i in page.images if i.get("class") == "gate"]
    expected = 0
    table = pd.read_csv(run_dir / "populations.csv", dtype=str, keep_default_na=False)
    for spec, tube in _gated_tubes(run_dir).itertuples(index=False):
        rows = table[(table.specimen == spec) & (table.tube == tube)]
        not_gated = set(rows.population[rows.events == ""])  # its gate failed on this file
        names = [
            p.name
            for p in panels.strategy(tube)
            if p.gate.dimensions and ascii_name(p.name) not in not_gated
        ]
        mine = [i for i in gate_images if (i["data-specimen"], i["data-tube"]) == (spec, tube)]
        assert [i["data-population"] for i in mine] == names, (spec, tube)
        expected += len(names)
    assert len(gate_images) == expected
    assert not [i for i in gate_images if i["data-specimen"] == "P9-baseline"]


def test_images_are_png(page):
    from PIL import Image

    assert page.images
    for img in page.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == PNG_SIGNATURE
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            width, height = im.size
        assert width > 100 and height > 100
        assert img["alt"]


def test_summary_qc_table_and_failures(run_dir, report):
    text = report[1]
    table = pd.read_csv(run_dir / "populations.csv", dtype=str, keep_default_na=False)
    noted = table[table.qc != ""]
    assert len(noted) > 0
    qc = text.split('id="qc"', 1)[1].split("</section>", 1)[0]
    assert qc.count("<tr class=") == len(noted)
    summary = text.split('id="summary"', 1)[1].split("</section>", 1)[0]
    errors = pd.read_csv(run_dir / "errors.csv").error.tolist()
    assert any(MISSING in e for e in errors)
    failures = summary.split('<ul class="errors">', 1)[1].split("</ul>", 1)[0]
    assert MISSING in failures
    assert re.search(r'<div class="tile bad"><div class="n">\d+</div><div class="l">failures', text)
    section = re.search(r'<section class="tube" id="tube-19">.*?</section>', text, re.S)
    assert section and 'class="error"' in section.group(0) and MISSING in section.group(0)


def test_fail_flags_are_red(report):
    table = pd.DataFrame(
        {
            "specimen": ["S1", "S1"],
            "tube": ["T", "T"],
            "population": ["lymphocytes", "NK cells"],
            "events": [3000, 50],
            "qc": ["fail lymphosum: 80 %", "info imprecise: 50 events"],
        }
    )
    flags = pd.DataFrame(
        {
            "specimen": ["S1", "S1"],
            "tube": ["T", "T"],
            "population": ["NK cells", "lymphocytes"],
            "rule": ["imprecise", "lymphosum"],
            "severity": ["info", "fail"],
            "message": ["50 events", "80 %"],
        }
    )
    run = RunFolder(Path("."), table, flags, [], Path("m.csv"), Panels.load())
    html = _qc_html(run)
    rows = re.findall(r'<tr class="(\w*)">.*?</tr>', html)
    assert rows == ["fail", "info"]  # worst first
    assert "table.qc tr.fail td{background:var(--failbg);color:var(--fail)" in report[1]


def test_every_gate_kind_is_drawn():
    """Rectangles (open-sided), polygons, ellipses (1-D and 2-D), Gaussian mixture regions,
    custom gates and boolean gates (a text card, no image) on synthetic events."""
    import numpy as np

    from cytowhim.report import _gate_card, _Painter, _Tube
    from cytowhim.sample import Sample
    from gating import Population, Strategy
    from gating.adaptive import ScatterClusterGate
    from gating.gates import (
        BooleanGate,
        Dimension,
        EllipsoidGate,
        FunctionGate,
        PolygonGate,
        RectangleGate,
        register_gate,
    )

    register_gate("report_test_upper")(lambda values: values[:, 0] > np.median(values[:, 0]))
    rng = np.random.default_rng(1)
    centres = np.array([[60_000, 10_000], [100_000, 40_000], [120_000, 130_000]])
    events = np.concatenate([rng.normal(c, c * 0.08, (800, 2)) for c in centres])
    sample = Sample(events=events.astype(np.float32), channels=["FSC-A", "SSC-A"], markers=["", ""])
    x, y = Dimension("FSC-A"), Dimension("SSC-A")
    pops = [
        Population("box", RectangleGate((x, y), (30_000, None), (None, 80_000))),
        Population("range", RectangleGate((x,), (80_000,), (None,)), parent="box"),
        Population("poly", PolygonGate((x, y), ((0, 0), (150_000, 0), (150_000, 60_000)))),
        Population("oval", EllipsoidGate((x, y), (60_000, 10_000), ((4e7, 0), (0, 1e6)), 9.0)),
        Population("line", EllipsoidGate((x,), (100_000,), ((1e8,),), 4.0)),
        Population("lymphs", ScatterClusterGate((x, y), tuple(map(tuple, centres)), components=3)),
        Population("custom", FunctionGate((x,), "report_test_upper")),
        Population("both", BooleanGate("and", (("box", False), ("poly", True)))),
    ]
    result = Strategy(pops).apply(sample)
    painter, tube = _Painter(), _Tube(1, "S1", "T", "s1.fcs")
    flags = pd.DataFrame(columns=["specimen", "tube", "population", "severity", "rule"])
    for pop in pops:
        card = _gate_card(painter, result, pop.name, tube, flags, 1000)
        assert card.count("<img ") == (0 if pop.name == "both" else 1), pop.name
    card = _gate_card(painter, result, "both", tube, flags, 1000)
    assert "boolean gate: box and not poly" in card


def test_scatter_on_linear_axes_with_the_fitted_regions_outline():
    """FSC/SSC on linear axes (50K, 100K), other dimensions of a fitted mixture region on its
    log10 scale; the outline drawn is the region the gate applies, on those axes."""
    import numpy as np
    from matplotlib.path import Path as MplPath

    from cytowhim.report_plots import _mixture_coordinates, _Painter
    from cytowhim.sample import Sample
    from gating import Population, Strategy
    from gating.adaptive import MixtureRegion, ScatterClusterGate
    from gating.gates import Dimension

    rng = np.random.default_rng(7)
    centres = np.array(
        [[60_000, 10_000, 20_000], [100_000, 40_000, 8_000], [120_000, 130_000, 3_000]]
    )
    events = np.concatenate([rng.normal(c, c * 0.08, (1500, 3)) for c in centres])
    sample = Sample(
        events=events.astype(np.float32), channels=["FSC-A", "SSC-A", "CD45"], markers=["", "", ""]
    )
    fsc, ssc, cd45 = Dimension("FSC-A"), Dimension("SSC-A"), Dimension("CD45")
    scatter = tuple(map(tuple, centres[:, :2]))
    bright = tuple(map(tuple, centres[:, [2, 1]]))
    strategy = Strategy(
        [
            Population("lymphs", ScatterClusterGate((fsc, ssc), scatter, components=3)),
            Population("cd45 lymphs", ScatterClusterGate((cd45, ssc), bright, components=3)),
        ]
    )
    result = strategy.apply(sample)
    painter, every = _Painter(), np.arange(result.n_events)
    for name, linear, columns in (
        ("lymphs", (True, True), [0, 1]),
        ("cd45 lymphs", (False, True), [2, 1]),
    ):
        gate = result.gates[name]
        assert isinstance(gate, MixtureRegion)
        painter.gate_plot(result, name, every, name, "")
        ax = painter.fig.axes[0]
        xlabel, ylabel = ax.get_xlabel(), ax.get_ylabel()
        assert ylabel == "SSC-A" and ax.get_ylim()[1] > 100_000  # values, not log10 (about 5)
        assert any(t.get_text().endswith("K") for t in ax.get_yticklabels())
        if linear[0]:
            assert xlabel == "FSC-A" and ax.get_xlim()[1] > 100_000
        else:
            assert xlabel == "CD45 (log10)" and 3 < ax.get_xlim()[1] < 5
        # the drawn outline, on these axes, takes the events the region takes
        values = events[:, columns]
        plotted = _mixture_coordinates(values, linear)
        loops = [line.get_xydata() for line in ax.lines]
        assert loops and all(np.allclose(loop[0], loop[-1]) for loop in loops)
        drawn = np.zeros(len(values), dtype=bool)
        for loop in loops:
            drawn ^= MplPath(loop).contains_points(plotted)
        exact = gate.contains(values)
        assert exact.sum() > 1000
        assert np.count_nonzero(drawn != exact) <= 0.002 * len(values)


def test_table1_and_reference_plots(report, page):
    text = report[1]
    table1 = text.split('id="table1"', 1)[1].split("</section>", 1)[0]
    assert "<table>" in table1 and "CD4+ T cells" in table1 and "§" in table1
    refs = [i for i in page.images if i.get("class") == "refplot"]
    assert len(refs) >= 15 and "CD4+ T cells" in {i["data-population"] for i in refs}
    assert "Simulated specimens" in text


def test_population_names_show_the_minus_sign(report, page):
    """Names are ASCII in data (populations.csv, data-* attributes), a true minus on screen."""
    text = report[1]
    assert "CD27\u2212 B cells" in text and 'data-population="CD27- B cells"' in text
    gates = [i for i in page.images if i.get("data-population") == "CD27- B cells"]
    assert gates and all(i["alt"].startswith("CD27\u2212 B cells") for i in gates)
    assert "gated on CD27\u2212 B cells" in text  # transitional B cells' parent
    assert "gated on CD3\u2212 lymphocytes" in text  # B cells' parent in tube B
    assert "gated on CD27- B cells" not in text and "gated on CD3- lymphocytes" not in text
    refs = [i for i in page.images if i.get("class") == "refplot"]
    cd27 = [i for i in refs if i["data-population"] == "CD27- B cells"]
    assert len(cd27) == 1 and cd27[0]["alt"].startswith("CD27\u2212 B cells:")


def _crafted_table() -> pd.DataFrame:
    """Two patients, baseline and peak, CD4+ T cells flagged against different recorded
    intervals (a lab's age bands), and a CD4/CD8 ratio row per specimen."""
    rows = []
    for patient, age, low, high, band, counts in (
        ("P1", 34, 359.0, 1565.0, "age 18 y and over", (400.0, 1700.0)),
        ("P2", 4, 1000.0, 2500.0, "age 2 to under 6 y", (900.0, 2000.0)),
    ):
        for timepoint, count in zip(("baseline", "peak"), counts):
            common = {
                "specimen": f"{patient}-{timepoint}",
                "patient": patient,
                "timepoint": timepoint,
                "age": age,
                "sex": "F",
                "tube": "T",
            }
            flag = "H" if count > high else "L" if count < low else ""
            rows.append(
                {
                    **common,
                    "population": "CD4+ T cells",
                    "parent": "T cells",
                    "events": int(count * 10),
                    "percent_of_parent": 55.0,
                    "base": "lymphocytes",
                    "absolute_per_uL": count,
                    "units": "cells/uL",
                    "reported": f"{count:g}",
                    "qc": "",
                    "qc_status": "",
                    "reference_flag": flag,
                    "reference_low": low,
                    "reference_high": high,
                    "reference_band": band,
                    "reference_source": "lab CD4 intervals 2024",
                }
            )
            rows.append(
                {
                    **common,
                    "population": "CD4/CD8 ratio",
                    "units": "ratio",
                    "reported": "1.85",
                    "qc": "info ratio_note: checked by hand" if patient == "P1" else "",
                }
            )
    return pd.DataFrame(rows)


def test_reference_plots_use_each_rows_recorded_interval(run_dir, tmp_path):
    """populations.csv records the interval each count was flagged against; patients whose
    intervals differ get their own box, and the caption says the interval varies."""
    import matplotlib.collections
    from matplotlib.figure import Figure

    from cytowhim.compare import compare_timepoints
    from cytowhim.report import _reference_plots
    from cytowhim.report_html import _reference_html
    from cytowhim.report_plots import _draw_reference

    table = _crafted_table()
    folder = tmp_path / "crafted"
    folder.mkdir()
    table.to_csv(folder / "populations.csv", index=False)
    doc = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    rows = pd.read_csv(doc["manifest"], dtype=str)
    rows[rows.file == "P2-baseline_mono.fcs"].to_csv(folder / "manifest.csv", index=False)
    (folder / "P2-baseline_mono.fcs").symlink_to(
        Path(doc["manifest"]).parent / "P2-baseline_mono.fcs"
    )
    (folder / "run.json").write_text(
        json.dumps({**doc, "manifest": str(folder / "manifest.csv")}), encoding="utf-8"
    )
    text = build_report(folder).read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(text)
    refs = [i for i in parser.images if i.get("class") == "refplot"]
    assert [i["data-population"] for i in refs] == ["CD4+ T cells"]  # not the ratio
    section = text.split('id="reference"', 1)[1].split("</section>", 1)[0]
    assert "varies by age/sex" in section
    assert "P1: 359–1565 (age 18 y and over)" in section
    assert "P2: 1000–2500 (age 2 to under 6 y)" in section
    assert "lab CD4 intervals 2024" in section and "Table 1, healthy adults" not in section
    qc = text.split('id="qc"', 1)[1].split("</section>", 1)[0]
    assert "CD4/CD8 ratio" in qc and "ratio 1.85" in qc

    # each point is drawn against its own interval: one box per count at its x position
    frame = table[table.population == "CD4+ T cells"].reset_index(drop=True)
    limits = frame[["reference_low", "reference_high"]].to_numpy(dtype=float)
    ax = Figure().add_subplot()
    _draw_reference(ax, frame, ["baseline", "peak"], limits)
    boxes = [c for c in ax.collections if isinstance(c, matplotlib.collections.PolyCollection)]
    assert len(boxes) == len(frame)
    spans = sorted(
        (round(float(v[:, 1].min())), round(float(v[:, 1].max())))
        for v in (b.get_paths()[0].vertices for b in boxes)
    )
    assert spans == [(359, 1565), (359, 1565), (1000, 2500), (1000, 2500)]
    markers = [line.get_marker() for line in ax.lines if line.get_marker() != "None"]
    assert markers.count("^") == 1 and markers.count("v") == 1  # P1 peak H, P2 baseline L

    # one shared interval: shaded across the plot as before, no per-patient caption
    same = table.assign(reference_low=359.0, reference_high=1565.0, reference_band="all ages")
    comparison = compare_timepoints(same, "baseline", "peak")
    (plot,) = _reference_plots(_Painter(), same, comparison)
    assert plot.bands == [] and "varies" not in _reference_html([plot])
    # older run folders record no interval: the bundled Table 1 intervals
    legacy = table.drop(columns=[c for c in table.columns if c.startswith("reference_")])
    (plot,) = _reference_plots(_Painter(), legacy, compare_timepoints(legacy, "baseline", "peak"))
    assert plot.bands == [] and "Table 1, healthy adults" in _reference_html([plot])


def test_main_report_exit_codes(run_dir, tmp_path, capsys):
    assert main_report(tmp_path / "nowhere") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "populations.csv" in err
    folder = tmp_path / "no-json"
    folder.mkdir()
    shutil.copy(run_dir / "populations.csv", folder)
    assert main_report(folder) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run.json" in err
    for timepoints in ({"baseline": "baseline"}, {"baseline": "baseline", "peak": "week 9"}):
        assert main_report(run_dir, **timepoints) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("both" in err or "'week 9'" in err)
    # one good tube: 0; plus the missing file: 1, naming it on stderr
    doc = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    rows = pd.read_csv(doc["manifest"], dtype=str)
    for name, keep, code in (("one", 1, 0), ("two", 2, 1)):
        small = tmp_path / name
        small.mkdir()
        shutil.copy(run_dir / "populations.csv", small)
        picked = pd.concat([rows[rows.file == "P2-baseline_mono.fcs"], rows[rows.file == MISSING]])
        picked.head(keep).to_csv(small / "manifest.csv", index=False)
        (small / "P2-baseline_mono.fcs").symlink_to(
            Path(doc["manifest"]).parent / "P2-baseline_mono.fcs"
        )
        (small / "run.json").write_text(
            json.dumps({**doc, "manifest": str(small / "manifest.csv")}), encoding="utf-8"
        )
        assert main_report(small, quiet=True) == code
        err = capsys.readouterr().err
        assert (MISSING in err) == (code == 1)
        assert (small / "report.html").is_file()


# --- in a browser ---------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]
COUNT_IMAGES = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.title = "loaded:" + ok + "/" + imgs.length;
});
</script>
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing (CYTOWHIM_SKIP_BROWSER=1 skips)."""
    if os.environ.get("CYTOWHIM_SKIP_BROWSER") == "1":
        pytest.skip("CYTOWHIM_SKIP_BROWSER=1: the report is not rendered in a browser")
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        install = subprocess.run(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium",
            shell=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
        found = shutil.which("chromium")
        if found is None:
            pytest.fail(
                "chromium is not installed and `apt-get install -y chromium` failed "
                f"(set CYTOWHIM_SKIP_BROWSER=1 to skip): {install.stderr[-500:]}"
            )
    return found


def _chromium(binary: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_image_renders_in_chromium(chromium, report, page, tmp_path):
    text = report[1]
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", COUNT_IMAGES + "</body>"), encoding="utf-8")
    out = _chromium(chromium, tmp_path, "--dump-dom", probe.as_uri())
    title = re.search(r"<title>loaded:(\d+)/(\d+)</title>", out.stdout)
    assert title, f"no image count in the dumped DOM: {out.stdout[:300]} {out.stderr[-500:]}"
    assert int(title.group(2)) == len(page.images)
    assert int(title.group(1)) == len(page.images)


def test_screenshot_is_not_blank(chromium, report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    out = _chromium(
        chromium, tmp_path, "--window-size=1280,1600", f"--screenshot={shot}", report[0].as_uri()
    )
    assert shot.is_file(), out.stderr[-500:]
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
    assert rgb.size == (1280, 1600)
    colours = rgb.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, "the screenshot is (nearly) one colour"
