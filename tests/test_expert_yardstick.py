"""Automatic gates against an expert's on real blood: the bundled FACScan strategies
(data/strategies/facscan) on the 16 LabKey files, percent of parent next to FlowJo's counts for
the expert's gates (benchmarks/expert_vs_auto.py prints the table). The bounds are today's
figures, so that a change that makes the automatic gates worse on real data fails here."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.expert_vs_auto import compare


@pytest.fixture(scope="module")
def rows():
    return compare()


def test_every_expert_population_has_an_automatic_one(rows):
    assert len(rows) == 88  # 4 donors x (5 + 5 + 6 + 6) populations
    assert {r["donor"] for r in rows} == set("BCDE")


def test_t_cell_tube_agrees_within_2_5_points(rows):
    t = [r for r in rows if r["tube"] == "CD3/CD8/CD4"]
    assert len(t) == 20
    worst = max(abs(r["auto_pct"] - r["expert_pct"]) for r in t)
    assert worst <= 2.5, worst


def test_overall_agreement(rows):
    diffs = [abs(r["auto_pct"] - r["expert_pct"]) for r in rows]
    assert sum(d <= 2 for d in diffs) >= 50
    assert sum(d <= 5 for d in diffs) >= 72
    assert statistics.median(diffs) <= 1.6 and max(diffs) <= 11
