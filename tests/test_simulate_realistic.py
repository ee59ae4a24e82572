"""The realistic simulator preset: spreads, continua and shoulders, shallow debris valleys, extra
cell types, an analyzer CBC and failed stains, as in real blood; and how well the (untuned) default
strategies recover Table 1 on it, with the bounds they achieve today (a regression guard)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

import cytowhim as cw
from cytowhim.cli import main
from cytowhim.reporting import DEFAULT_CBC_CV
from cytowhim.simulate import realistic, simulate
from cytowhim.simulate.cells import (
    CD4_T,
    CD8_T,
    CELL_TYPES,
    LYMPHOID,
    NK,
    NKT,
    T_CELLS,
    B,
)
from cytowhim.simulate.cohort import ANALYZER_CV, specimens
from cytowhim.simulate.panels import PANELS
from cytowhim.simulate.recovery import recovery, summary
from cytowhim.simulate.tube import Drift, simulate_tube
from gating.adaptive import find_valley, smoothed_density
from gating.transforms import Logicle

SEEDS = (1, 2, 3)  # recovery over these seeds, 3 specimens each (healthy, baseline, peak)
EVENTS = (20_000, 25_000)
LOGICLE = Logicle(T=262144, W=0.5, M=4.5, A=0)  # the default strategies' fluorescence scale


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, object]:
    out = {}
    for seed in SEEDS:
        folder = tmp_path_factory.mktemp(f"realistic{seed}")
        simulate(folder, "realistic", seed=seed, n_healthy=3, events=EVENTS)
        out[seed] = folder
    return out


@pytest.fixture(scope="module")
def recovered(runs) -> pd.DataFrame:
    # one BLAS/OpenMP thread: the scatter gates' mixture fits run 5-8x faster on a busy 2-core
    # machine than with a thread per core (the libraries must be loaded before the limit)
    import sklearn.cluster  # noqa: F401
    import sklearn.mixture  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        frames = [recovery(folder).assign(seed=seed) for seed, folder in runs.items()]
    return pd.concat(frames, ignore_index=True)


def _tube(tube: str, spec, seed: int, real: bool = True, n: int = 30_000, weak=None):
    """(compensated fluorescence on the logicle scale, markers, labels, raw events) of one tube
    simulated directly (the labels say which cell each event is)."""
    rng = np.random.default_rng(seed)
    panel = PANELS[tube]
    markers = [m for _, m in panel.fluorescence]
    drift = Drift.draw(rng, markers, 0.3)
    if real:
        ev, labels = realistic.simulate_tube(
            panel, spec.tube_counts(tube), n, rng, drift, weak=weak
        )
    else:
        ev, labels = simulate_tube(panel, spec.tube_counts(tube), n, rng, drift)
    comp = ev[:, 3:-1].astype(np.float64) @ np.linalg.inv(panel.spillover())
    return comp, markers, labels, ev


def _specimens(n: int = 3, seed: int = 0):
    return specimens("realistic", np.random.default_rng(seed), n)


# --- files, truth and the CBC ---------------------------------------------------------------


def test_manifest_truth_cbc_and_stain_files(runs):
    folder = runs[SEEDS[0]]
    m = pd.read_csv(folder / "manifest.csv")
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
    assert len(m) == 9 and list(m.timepoint.unique()) == ["healthy", "baseline", "peak"]
    cbc = pd.read_csv(folder / "cbc.csv").pivot(index="specimen", columns="count")
    per_specimen = m.drop_duplicates("specimen").set_index("specimen")
    for k in ("WBC", "ANC", "ALC", "AMC"):
        # the manifest gives the analyzer's CBC, cbc.csv both, and they differ from the truth
        assert np.allclose(per_specimen[k], cbc["analyzer"][k].loc[per_specimen.index])
        assert (cbc["analyzer"][k] != cbc["true"][k]).all()
    truth = pd.read_csv(folder / "truth.csv")
    assert "analyzer_absolute_per_uL" in truth.columns
    lymph = truth[(truth.population == "lymphocytes") & (truth.tube == "T")].set_index("specimen")
    # the true absolute of the base is the true ALC; against the analyzer, the analyzer's ALC
    assert np.allclose(lymph.absolute_per_uL, cbc["true"]["ALC"].loc[lymph.index], rtol=1e-3)
    assert np.allclose(
        lymph.analyzer_absolute_per_uL, cbc["analyzer"]["ALC"].loc[lymph.index], rtol=1e-3
    )
    names = set(truth.population)
    assert {"NKT cells", "CD56- NK cells", "non-T/B/NK lymphocytes", "basophils"} <= names
    assert "dendritic cells" in set(truth[truth.tube == "mono"].population)
    stains = pd.read_csv(folder / "failed_stains.csv")
    assert list(stains.columns) == ["file", "specimen", "tube", "marker", "factor"]


def test_truth_partitions_lymphocytes_nkt_are_t_cells(runs):
    """T (CD3+, with NKT cells) + B + NK (CD3-CD56+) + the rest (CD56- NK, other lymphocytes)
    = lymphocytes, exactly, in every tube that shows them; naive + memory = CD4+ (CD8+) T."""
    for folder in runs.values():
        truth = pd.read_csv(folder / "truth.csv")
        for (_, tube), sub in truth.groupby(["specimen", "tube"]):
            e = sub.set_index("population").events
            if tube == "mono":
                assert e["lineage- leukocytes"] >= e["dendritic cells"] + e["basophils"]
                continue
            parts = ["T cells", "B cells", "NK cells", "non-T/B/NK lymphocytes"]
            assert e[parts].sum() == e["lymphocytes"]
            assert 0 < e["NKT cells"] < e["T cells"]
            if tube == "T":
                for lin in ("CD4", "CD8"):
                    assert e[f"{lin} naive"] + e[f"{lin} memory"] == e[f"{lin}+ T cells"]
            else:
                assert e["CD56- NK cells"] <= e["non-T/B/NK lymphocytes"]


def test_lymphosum_in_truth_varies_between_88_and_100_percent(runs):
    sums = []
    for folder in runs.values():
        truth = pd.read_csv(folder / "truth.csv")
        t = truth[truth.tube == "T"].pivot(index="specimen", columns="population", values="events")
        sums.extend(100 * t[["T cells", "B cells", "NK cells"]].sum(axis=1) / t["lymphocytes"])
    assert all(88 <= s < 100 for s in sums), sums
    # per-µL over many specimens: the whole range, never 100 % (the kind presets' value)
    per_ul = []
    for spec in _specimens(300, seed=7):
        c = spec.tube_counts("T")
        tbnk = sum(c[k] for k in (*T_CELLS, *NK, *B))
        per_ul.append(100 * tbnk / sum(c[k] for k in LYMPHOID))
    per_ul = np.array(per_ul)
    assert per_ul.min() >= 88 and per_ul.max() < 100
    assert np.percentile(per_ul, 5) < 94 and np.percentile(per_ul, 95) > 97


def test_analyzer_cbc_differs_from_truth_by_the_analyzer_cv():
    assert ANALYZER_CV == dict(DEFAULT_CBC_CV)  # the QC's own defaults
    specs = _specimens(400, seed=11)
    for k, cv in ANALYZER_CV.items():
        ratio = np.array([s.cbc[k] / s.true_cbc[k] for s in specs])
        assert 0.85 * cv <= ratio.std(ddof=1) <= 1.15 * cv, (k, ratio.std(ddof=1))
        assert abs(ratio.mean() - 1) <= 3 * cv / np.sqrt(len(ratio)), (k, ratio.mean())
    kind = specimens("healthy", np.random.default_rng(0), 2)
    assert all(s.cbc == s.true_cbc for s in kind)  # the kind presets: analyzer = truth


# --- marker distributions -------------------------------------------------------------------


def test_log_normal_spreads_like_real_panels():
    """Robust ln-scale SD of bright populations: 0.35-0.55 (the kind presets: ~0.22); dim
    populations wider."""
    spec = _specimens(1)[0]

    def spread(comp, markers, labels, marker, cells):
        x = np.log(np.clip(comp[np.isin(labels, cells), markers.index(marker)], 1, None))
        q25, q75 = np.percentile(x, [25, 75])
        return (q75 - q25) / 1.349

    cases = [
        ("CD3", T_CELLS),
        ("CD45", LYMPHOID),
        ("CD4", CD4_T),
        ("CD8", CD8_T),
        ("CD19", B),
        ("CD56", ("nk_dim",)),
    ]
    real = _tube("T", spec, 3)
    kind = _tube("T", spec, 3, real=False)
    for marker, cells in cases:
        assert 0.32 <= spread(*real[:3], marker, cells) <= 0.6, marker
        assert spread(*kind[:3], marker, cells) <= 0.26, marker
    b_comp, b_markers, b_labels, _ = _tube("B", spec, 4)
    dim = spread(b_comp, b_markers, b_labels, "IgM", ("b_memory",))  # IgM dim on memory B
    assert dim > spread(b_comp, b_markers, b_labels, "CD19", B) + 0.1


def _modes(y, labels, pos_cells, neg_cells):
    return np.median(y[np.isin(labels, neg_cells)]), np.median(y[np.isin(labels, pos_cells)])


def _dip_between(y, a, b):
    """Least smoothed density between a and b, relative to the lower of the densities at a and
    b (1 = no valley between the two modes, 0 = empty between them)."""
    lo, hi = np.quantile(y, [0.0005, 0.9995])
    centres, density = smoothed_density(y, lo, hi)
    i, j = np.searchsorted(centres, [a, b])
    return density[i : j + 1].min() / min(density[i], density[j])


@pytest.mark.parametrize("k", range(3))  # healthy, WHIM-like baseline, WHIM-like peak
def test_ccr7_of_cd4_t_cells_is_a_shoulder_not_a_second_peak(k):
    spec = _specimens(3)[k]
    ccr7_pos, ccr7_neg = ("cd4_naive", "cd4_cm", "cd4_tm"), ("cd4_temra", "cd4_em", "cd4_pm")
    comp, markers, labels, _ = _tube("T", spec, 20 + k)
    raw = comp[:, markers.index("CCR7")]
    cd4 = np.isin(labels, CD4_T)
    pos_mfi = np.median(raw[np.isin(labels, ccr7_pos)])
    neg_mfi = np.median(raw[np.isin(labels, ccr7_neg)])
    assert 3.0 <= pos_mfi / neg_mfi <= 6.5  # intermediate only ~3-6x the negative
    y = LOGICLE.apply(raw)
    a, b = _modes(y, labels, ccr7_pos, ccr7_neg)
    assert _dip_between(y[cd4], a, b) >= 0.75  # no valley deeper than 25 %
    assert find_valley(y[cd4], (0.3, 0.7)) is None  # nothing for a valley-seeking gate
    comp, markers, labels, _ = _tube("T", spec, 20 + k, real=False)
    y = LOGICLE.apply(comp[:, markers.index("CCR7")])
    a, b = _modes(y, labels, ccr7_pos, ccr7_neg)
    assert _dip_between(y[np.isin(labels, CD4_T)], a, b) < 0.05  # the kind preset: clean


@pytest.mark.parametrize(
    "tube, marker, lineage",
    [
        ("T", "CD45RA", (*CD4_T, *CD8_T)),
        ("T", "CD62L", (*CD4_T, *CD8_T)),
        ("T", "CCR7", (*CD4_T, *CD8_T)),
        ("B", "CD27", B),
        ("B", "IgD", B),
    ],
)
def test_continua_fill_the_gap_between_negative_and_positive(tube, marker, lineage):
    """Share of a lineage's cells in the middle half between the negative and positive modes:
    >= 3.5 % (a continuum) on realistic tubes, <= 2.5 % on the kind presets'."""
    pos = [c for c in lineage if CELL_TYPES[c].level(marker) > 0]
    neg = [c for c in lineage if CELL_TYPES[c].level(marker) == 0]
    for k, spec in enumerate(_specimens(3)):
        shares = []
        for real in (True, False):
            comp, markers, labels, _ = _tube(tube, spec, 40 + k, real=real)
            y = LOGICLE.apply(comp[:, markers.index(marker)])
            a, b = _modes(y, labels, pos, neg)
            mine = y[np.isin(labels, lineage)]
            shares.append(np.mean((mine > a + (b - a) / 4) & (mine < b - (b - a) / 4)))
        assert shares[0] >= 0.035 and shares[1] <= 0.025, (spec.timepoint, shares)


def _fsc_valley(fsc: np.ndarray, ssc: np.ndarray) -> float:
    """Density dip between the debris and the lymphocyte peaks of FSC-A (events with SSC-A <
    30,000), relative to the smaller peak: 0 = a clean gap, 1 = no valley."""
    centres, density = smoothed_density(fsc[ssc < 30_000], 0, 150_000, bins=150, sigma_bins=2)
    lymph = int(np.argmax(np.where(centres > 40_000, density, 0)))
    debris = int(np.argmax(np.where(centres < 0.6 * centres[lymph], density, 0)))
    return float(density[debris : lymph + 1].min() / min(density[debris], density[lymph]))


def test_debris_valley_is_shallow(runs):
    valleys = []
    for folder in runs.values():
        for f in pd.read_csv(folder / "manifest.csv").file:
            sample = cw.read_fcs(folder / f)
            valleys.append(_fsc_valley(sample.column("FSC-A"), sample.column("SSC-A")))
    assert 0.7 <= np.median(valleys) <= 0.82, valleys
    assert min(valleys) >= 0.55 and max(valleys) <= 0.95, valleys
    _, _, _, kind = _tube("T", _specimens(1)[0], 5, real=False)
    assert _fsc_valley(kind[:, 0], kind[:, 2]) < 0.15  # the kind presets: a clean gap


def test_extra_cell_types_have_their_phenotypes():
    spec = _specimens(1)[0]
    comp, markers, labels, ev = _tube("mono", spec, 6, n=60_000)

    def med(marker, cells):
        return float(np.median(comp[np.isin(labels, cells), markers.index(marker)]))

    lymph = [c for c in LYMPHOID if c in set(labels)]
    assert med("CD45", ("basophil",)) < med("CD45", lymph) / 4  # CD45 dim
    assert med("HLA-DR", ("basophil",)) < 300
    assert med("HLA-DR", ("pdc",)) > 3_000 and med("HLA-DR", ("mdc",)) > 3_000
    for cells in (("pdc",), ("mdc",), ("basophil",)):  # lineage-, mDCs at most CD14 dim
        assert max(med(m, cells) for m in ("CD3", "CD19", "CD16")) < 300, cells
        assert med("CD14", cells) < 1_000 < med("CD14", ("mono_classical",)) / 10, cells
    basophil_ssc = np.median(ev[labels == "basophil", 2])
    lymph_ssc = np.median(ev[np.isin(labels, lymph), 2])
    assert lymph_ssc < basophil_ssc < 2 * lymph_ssc  # in or next to the lymphocyte gate
    assert CELL_TYPES["basophil"].level("CD123") > 0
    comp, markers, labels, _ = _tube("B", spec, 7, n=60_000)
    assert med("CD3", NKT) > 2_000 and med("CD56", NKT) > 2_000  # CD3+CD56+
    assert med("CD16", ("nk_cd56neg",)) > 5_000 and med("CD56", ("nk_cd56neg",)) < 300
    assert med("CD3", ("lymph_other",)) < 300 and med("CD56", ("lymph_other",)) < 300


# --- failed stains, seeds, the command line ---------------------------------------------------


def test_failed_stains_are_weak_and_listed(tmp_path):
    rng = np.random.default_rng(0)
    draws = [realistic.draw_failed_stain(rng, ["CD3", "CD4"]) for _ in range(6000)]
    failed = [d for d in draws if d]
    assert 0.022 <= len(failed) / len(draws) <= 0.045  # about 1 in 30 tubes
    assert all(5 <= f <= 10 for d in failed for f in d.values())
    simulate(tmp_path, "realistic", seed=3, n_healthy=1, events=(3_000, 3_000), failed_stain_rate=1)
    stains = pd.read_csv(tmp_path / "failed_stains.csv")
    assert sorted(stains.file) == ["R1_B.fcs", "R1_T.fcs", "R1_mono.fcs"]
    for row in stains.itertuples():
        assert row.marker in PANELS[row.tube].markers and 5 <= row.factor <= 10
    with pytest.raises(ValueError, match="realistic"):
        simulate(tmp_path / "k", "healthy", n_healthy=1, events=(2000, 2000), failed_stain_rate=1)
    # the weak marker's positive cells: 5-10x dimmer than in the same tube stained well
    spec = _specimens(1)[0]
    good, markers, labels, _ = _tube("T", spec, 8)
    weak, _, _, _ = _tube("T", spec, 8, weak={"CD3": 8.0})
    k, t = markers.index("CD3"), np.isin(labels, T_CELLS)
    ratio = np.median(good[t, k]) / np.median(weak[t, k])
    assert 5 <= ratio <= 10
    cd4, other = np.isin(labels, CD4_T), markers.index("CD4")  # other markers as stained
    assert np.median(weak[cd4, other]) == pytest.approx(np.median(good[cd4, other]), rel=0.02)


def test_same_seed_same_files_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        simulate(out, "realistic", seed=seed, n_healthy=2, events=(4_000, 5_000))

    def digest(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}

    assert digest(a) == digest(b)
    assert len(digest(a)) == 2 * 3 + 4  # FCS files, manifest, truth, cbc, failed stains
    assert digest(a)["R1_T.fcs"] != digest(c)["R1_T.fcs"]
    assert digest(a)["cbc.csv"] != digest(c)["cbc.csv"]


# The kind presets' output must not change with the realistic preset: events, manifest and truth
# of small simulations (sha256 of the events read back, so FCS layout changes do not count).
KIND_DIGESTS = {
    ("whim-trial", 11): "17707f9512efeb22b61745a45c1a21c4dbfd5cc2e3bb1e3677c95a45bcca0616",
    ("healthy", 3): "af9f958730d322e170fd81f1cdc06de662f8330df91ed68d1371f60437774ec7",
}


def _digest(folder) -> str:
    h = hashlib.sha256()
    for name in ("manifest.csv", "truth.csv"):
        h.update((folder / name).read_bytes())
    for f in pd.read_csv(folder / "manifest.csv").file:
        h.update(np.ascontiguousarray(cw.read_fcs(folder / f).events, dtype=np.float32).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("preset, seed", list(KIND_DIGESTS))
def test_kind_presets_unchanged(tmp_path, preset, seed):
    simulate(tmp_path, preset, seed=seed, n_healthy=2, events=(3_000, 4_000))
    assert _digest(tmp_path) == KIND_DIGESTS[preset, seed]


def test_cli_simulate_realistic(tmp_path, capsys):
    code = main(
        [
            "simulate",
            "--preset",
            "realistic",
            "--out",
            str(tmp_path),
            "--specimens",
            "2",
            "--min-events",
            "3000",
            "--max-events",
            "3000",
            "--quiet",
        ]
    )
    assert code == 0 and "realistic" in capsys.readouterr().out
    assert len(list(tmp_path.glob("*.fcs"))) == 6
    assert (tmp_path / "cbc.csv").is_file() and (tmp_path / "failed_stains.csv").is_file()


# --- recovery by the default strategies -------------------------------------------------------

# What the untuned default strategies (data/strategies) achieve today on the realistic preset,
# seeds SEEDS x 3 specimens, EVENTS events per tube: per Table 1 population with >= 200 true events
# in some specimen, (median, worst) |gated - truth| / truth over the specimens where its gate was
# placed, and how many of them may fail (no valley: CCR7 is a shoulder, so the CM/EM quadrants
# usually find none). Bounds sit above today's figures with a margin: a regression guard, not a
# goal. Populations never reaching 200 true events here are not listed.
# Today (seeds 1-3): population: median, worst error; failed / specimens with >= 200 true events.
BOUNDS: dict[str, tuple[float, float, int]] = {
    "CD4+ T cells": (0.02, 0.03, 0),  # 0.0 %, 0.1 %; 0/9
    "CD4 naive": (0.10, 0.20, 0),  # 5.6 %, 13 % (CD45RA continuum); 0/9
    "CD4 memory": (0.05, 0.12, 0),  # 2.0 %, 7.7 %; 0/9
    "CD4 effector memory": (0.40, 0.70, 9),  # 9/9 failed (CCR7 is a shoulder: no valley)
    "CD8+ T cells": (0.02, 0.03, 0),  # 0.0 %, 0.0 %; 0/9
    "CD8 naive": (0.08, 0.15, 0),  # 4.6 %, 9.3 %; 0/9
    "CD8 memory": (0.07, 0.25, 0),  # 4.1 %, 16 %; 0/9
    "CD8 effector memory": (0.50, 0.65, 5),  # 32 %, 40 % (a valley in the wrong place); 5/8
    "NK cells": (0.02, 0.04, 0),  # 0.4 %, 1.0 %; 0/9
    "B cells": (0.02, 0.10, 0),  # 0.3 %, 6.4 % (a failed CD19 stain, seed 2 R1); 0/8
    "CD27- B cells": (0.04, 0.11, 0),  # 1.4 %, 7.4 %; 0/8
    "transitional B cells": (0.23, 0.27, 0),  # 15 %, 18 % (IgD continuum); 0/3
    "monocytes": (0.02, 0.03, 0),  # 0.1 %, 0.6 %; 0/9
    "classical monocytes": (0.02, 0.03, 0),  # 0.1 %, 1.0 %; 0/9
}


def test_default_strategies_recover_realistic_specimens_within_todays_bounds(recovered):
    table = summary(recovered).set_index("population")
    table = table[table.n > 0]
    assert set(table.index) == set(BOUNDS), table
    for pop, (median, worst, failures) in BOUNDS.items():
        row = table.loc[pop]
        assert row.failed <= failures, (pop, row.to_dict())
        if row.failed < row.n:
            assert row.median_error <= median and row.worst_error <= worst, (pop, row.to_dict())
