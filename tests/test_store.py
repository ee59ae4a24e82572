"""cytowhim.store: part files per specimen, atomic writes, validity checks, results.h5."""

from __future__ import annotations

import hashlib
import math
import os

import h5py
import numpy as np
import pandas as pd
import pytest

from cytowhim import __version__, store
from cytowhim.store import (
    StoreError,
    TubeRecord,
    assemble,
    file_sha256,
    part_is_valid,
    part_path,
    read_part,
    read_part_errors,
    read_results,
    text_sha256,
    write_part,
)


def make_table(specimen: str, tube: str, populations: list[str]) -> pd.DataFrame:
    """Population rows shaped like ``cytowhim run``'s table (strings, ints, floats, missing)."""
    n = len(populations)
    return pd.DataFrame(
        {
            "specimen": [specimen] * n,
            "patient": ["P-ä1"] * n,
            "timepoint": ["baseline"] * n,
            "tube": [tube] * n,
            "population": populations,
            "parent": [""] + populations[:-1],
            "events": np.arange(100, 100 + n, dtype=np.int64),
            "percent_of_parent": np.linspace(10.5, 90.25, n),
            "base": ["lymphocytes"] * (n - 1) + [""],
            "base_events": [2500.0] * (n - 1) + [math.nan],
            "percent_of_base": [12.5] * (n - 1) + [math.nan],
            "absolute_per_uL": [310.0] * (n - 1) + [math.nan],
            "absolute_error_per_uL": [4.25] * (n - 1) + [math.nan],
            "qc": ["", "warn lymphosum: 93 % ≈ low"] + [""] * (n - 2),
            "reference_flag": ["low"] + [None] * (n - 1),
        }
    )


def make_record(specimen: str, tube: str, n_events: int = 37, seed: int = 0) -> TubeRecord:
    populations = ["lymphocytes", "B cells", "CD27- B cells"]
    rng = np.random.default_rng(seed)
    return TubeRecord(
        specimen=specimen,
        patient="P-ä1",
        timepoint="baseline",
        tube=tube,
        file=f"/data/{specimen}_{tube}.fcs",
        file_sha256=text_sha256(f"{specimen}/{tube}"),
        strategy_sha256=text_sha256(tube),
        table=make_table(specimen, tube, populations),
        geometry={
            "lymphocytes": {"gate": "polygon", "vertices": [[1.0, 2.0], [3.5, 4.0], [5.0, 0.25]]},
            "lymphocytes/B cells/CD27- B cells": {"gate": "rectangle", "min": [None], "max": [0.4]},
        },
        qc_flags=[
            {
                "specimen": specimen,
                "tube": tube,
                "population": "CD27- B cells",
                "rule": "imprecise",
                "severity": "info",
                "message": "37 events for CD27- B cells: counting error ≈ 16 %",
            }
        ],
        notes=["lymphocytes: scatter_cluster fell back to its default µ gate"],
        n_events=n_events,
        membership={p: rng.random(n_events) < 0.4 for p in populations},
    )


def assert_records_equal(got: TubeRecord, want: TubeRecord) -> None:
    for name in (
        "specimen",
        "patient",
        "timepoint",
        "tube",
        "file",
        "file_sha256",
        "strategy_sha256",
        "geometry",
        "qc_flags",
        "notes",
        "n_events",
        "cytowhim_version",
        "created_utc",
    ):
        assert getattr(got, name) == getattr(want, name), name
    pd.testing.assert_frame_equal(got.table, want.table.reset_index(drop=True))
    if want.membership is None:
        assert got.membership is None
    else:
        assert list(got.membership) == list(want.membership)
        for name, mask in want.membership.items():
            assert got.membership[name].dtype == bool
            assert np.array_equal(got.membership[name], mask)


def test_part_round_trip(tmp_path):
    records = [make_record("S1", "TBNK"), make_record("S1", "B/memory", seed=1)]
    records[1].membership = None
    path = part_path(tmp_path, "S1")
    write_part(path, "S1", records, "key-1")
    key, back = read_part(path)
    assert key == "key-1"
    assert [r.tube for r in back] == ["TBNK", "B/memory"]
    for got, want in zip(back, records):
        assert_records_equal(got, want)
    assert back[0].cytowhim_version == __version__
    assert back[0].table["reference_flag"].tolist() == ["low", None, None]
    assert back[0].table["events"].dtype == np.int64
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_part_with_odd_names_and_empty_tables(tmp_path):
    rec = make_record(".", "..", n_events=0)
    rec.membership = {}
    empty = make_record(".", "%2F", n_events=0)
    empty.table = pd.DataFrame()
    empty.geometry, empty.qc_flags, empty.notes, empty.membership = {}, [], [], None
    path = part_path(tmp_path, ".")
    assert path.parent == tmp_path and not path.name.startswith(".")
    write_part(path, ".", [rec, empty], "k")
    _, back = read_part(path)
    assert [r.tube for r in back] == ["..", "%2F"]
    assert back[0].membership == {}
    assert back[1].table.empty and back[1].geometry == {} and back[1].notes == []


def test_qc_flag_objects_are_stored_as_dicts(tmp_path):
    from cytowhim.qc import QCFlag

    rec = make_record("S1", "TBNK")
    flag = QCFlag("S1", "TBNK", "lymphocytes", "lymphosum", "warn", "lymphosum 93.0 %")
    rec.qc_flags = [flag]
    write_part(tmp_path / "S1.h5", "S1", [rec], "k")
    assert read_part(tmp_path / "S1.h5")[1][0].qc_flags == [vars(flag)]


def test_empty_specimen_part(tmp_path):
    path = tmp_path / "S9.h5"
    write_part(path, "S9", [], "k")
    assert read_part(path) == ("k", [])
    assert part_is_valid(path, "k")


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1003])
def test_membership_bit_packing(tmp_path, n):
    rng = np.random.default_rng(n)
    masks = {
        "all": np.ones(n, dtype=bool),
        "none": np.zeros(n, dtype=bool),
        **{f"random {i}": rng.random(n) < rng.random() for i in range(5)},
    }
    rec = make_record("S1", "TBNK", n_events=n)
    rec.membership = masks
    path = tmp_path / "p.h5"
    write_part(path, "S1", [rec], "k")
    got = read_part(path)[1][0].membership
    assert list(got) == list(masks)
    for name, mask in masks.items():
        assert got[name].dtype == bool and got[name].shape == (n,)
        assert np.array_equal(got[name], mask), name
    with h5py.File(path) as f:  # stored packed: one byte per 8 events
        assert f["tubes/TBNK/membership/2"].dtype == np.uint8
        assert f["tubes/TBNK/membership/2"].shape == ((n + 7) // 8,)


def test_bad_records_are_refused_and_leave_nothing(tmp_path):
    path = tmp_path / "S1.h5"
    other = make_record("S2", "TBNK")
    with pytest.raises(ValueError, match="specimen 'S2'"):
        write_part(path, "S1", [make_record("S1", "T"), other], "k")
    with pytest.raises(ValueError, match="appears twice"):
        write_part(path, "S1", [make_record("S1", "T"), make_record("S1", "T")], "k")
    short = make_record("S1", "T")
    short.membership = {"lymphocytes": np.ones(5, dtype=bool)}
    with pytest.raises(ValueError, match="n_events"):
        write_part(path, "S1", [short], "k")
    assert list(tmp_path.iterdir()) == []


def _crash_on_second_tube(monkeypatch):
    real = store._write_tube
    calls = []

    def crashing(parent, rec):
        calls.append(rec.tube)
        if len(calls) == 2:
            raise RuntimeError("simulated crash while writing")
        real(parent, rec)

    monkeypatch.setattr(store, "_write_tube", crashing)


def test_interrupted_write_leaves_no_part(tmp_path, monkeypatch):
    _crash_on_second_tube(monkeypatch)
    path = part_path(tmp_path, "S1")
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_part(path, "S1", [make_record("S1", "A"), make_record("S1", "B")], "k")
    assert list(tmp_path.iterdir()) == []
    assert not part_is_valid(path, "k")


def test_interrupted_rewrite_keeps_previous_part(tmp_path, monkeypatch):
    path = part_path(tmp_path, "S1")
    write_part(path, "S1", [make_record("S1", "A")], "old")
    before = path.read_bytes()
    _crash_on_second_tube(monkeypatch)
    with pytest.raises(RuntimeError):
        write_part(path, "S1", [make_record("S1", "A"), make_record("S1", "B")], "new")
    assert path.read_bytes() == before
    assert part_is_valid(path, "old") and not part_is_valid(path, "new")
    assert list(tmp_path.iterdir()) == [path]


def test_failed_rename_keeps_previous_part(tmp_path, monkeypatch):
    path = tmp_path / "S1.h5"
    write_part(path, "S1", [make_record("S1", "A")], "old")

    def no_replace(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(store.os, "replace", no_replace)
    with pytest.raises(OSError, match="before rename"):
        write_part(path, "S1", [make_record("S1", "A")], "new")
    assert read_part(path)[0] == "old"
    assert list(tmp_path.iterdir()) == [path]


def test_part_is_valid(tmp_path):
    path = tmp_path / "S1.h5"
    write_part(path, "S1", [make_record("S1", "A", n_events=5000)], "k")
    data = path.read_bytes()
    assert part_is_valid(path, "k")
    assert not part_is_valid(path, "other key")
    assert not part_is_valid(tmp_path / "missing.h5", "k")
    assert not part_is_valid(tmp_path, "k")  # a folder
    for size in (0, 8, 512, len(data) // 2, len(data) - 1):
        broken = tmp_path / f"cut{size}.h5"
        broken.write_bytes(data[:size])
        assert not part_is_valid(broken, "k"), size
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(os.urandom(4096))
    assert not part_is_valid(garbage, "k")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2, 3]
    assert not part_is_valid(foreign, "k")
    with pytest.raises(StoreError, match="not a cytowhim-part"):
        read_part(foreign)


def write_parts(parts_dir, specimens=("S2", "S1", "S/3")):
    records = {}
    for i, spec in enumerate(specimens):
        records[spec] = [make_record(spec, "TBNK", seed=i), make_record(spec, "B", seed=10 + i)]
        write_part(part_path(parts_dir, spec), spec, records[spec], f"key {spec}")
    return records


def test_assemble(tmp_path):
    parts = tmp_path / "parts"
    records = write_parts(parts)
    (parts / ".S1.h5.0123.tmp").write_bytes(b"left over by a killed run")
    out = assemble(parts, tmp_path / "results.h5")
    assert out == tmp_path / "results.h5"
    res = read_results(out)
    assert res.specimens() == ["S/3", "S1", "S2"]  # by name by default
    assert res.tubes("S1") == ["TBNK", "B"]
    want = pd.concat(
        [r.table for spec in res.specimens() for r in records[spec]], ignore_index=True
    )
    pd.testing.assert_frame_equal(res.populations(), want)
    flags = res.qc_flags()
    assert list(flags.columns) == list(store.QC_COLUMNS) and len(flags) == 6
    assert flags["message"].iloc[0].endswith("≈ 16 %")
    rec = records["S/3"][1]
    assert res.geometry("S/3", "B") == rec.geometry
    assert res.notes("S/3", "B") == rec.notes
    for name, mask in res.membership("S/3", "B").items():
        assert np.array_equal(mask, rec.membership[name])
    prov = res.provenance("S/3", "B")
    assert prov["file"] == rec.file and prov["file_sha256"] == rec.file_sha256
    assert prov["strategy_sha256"] == rec.strategy_sha256 and prov["n_events"] == 37
    assert prov["inputs_key"] == "key S/3" and prov["cytowhim_version"] == __version__
    assert prov["patient"] == "P-ä1" and prov["tube"] == "B"
    assert len(res.provenance_table()) == 6
    for got, want_rec in zip(res.records("S1"), records["S1"]):
        assert_records_equal(got, want_rec)
    with pytest.raises(KeyError, match="no specimen 'S4'"):
        res.geometry("S4", "B")
    with pytest.raises(KeyError, match="no tube 'T'"):
        res.geometry("S1", "T")


def test_assemble_chosen_specimens(tmp_path):
    parts = tmp_path / "parts"
    write_parts(parts)
    res = read_results(assemble(parts, tmp_path / "results.h5", specimens=["S2", "S1"]))
    assert res.specimens() == ["S2", "S1"]  # the stale part S/3 is left out
    assert res.populations()["specimen"].unique().tolist() == ["S2", "S1"]
    with pytest.raises(FileNotFoundError, match="S4"):
        assemble(parts, tmp_path / "other.h5", specimens=["S1", "S4"])
    assert not (tmp_path / "other.h5").exists()


def test_assemble_damaged_part_keeps_previous_results(tmp_path):
    parts = tmp_path / "parts"
    write_parts(parts)
    out = assemble(parts, tmp_path / "results.h5")
    before = out.read_bytes()
    bad = part_path(parts, "S1")
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(StoreError, match="S1.h5"):
        assemble(parts, out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts", "results.h5"]


def test_assemble_no_parts(tmp_path):
    res = read_results(assemble(tmp_path / "parts", tmp_path / "results.h5"))
    assert res.specimens() == [] and res.populations().empty and res.qc_flags().empty


def test_results_readable_with_plain_h5py(tmp_path):
    parts = tmp_path / "parts"
    records = write_parts(parts, specimens=("S1",))
    out = assemble(parts, tmp_path / "results.h5")
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == "cytowhim-results"
        g = f["populations"]
        table = pd.DataFrame(
            {
                c: g[c].asstr()[()] if g[c].dtype.kind == "O" else g[c][()]
                for c in g.attrs["columns"]
            }
        )
        tube = f["specimens/S1/tubes/TBNK"]
        m = tube["membership"]
        names = list(m.attrs["populations"])
        cd27 = np.unpackbits(m[str(names.index("CD27- B cells"))][()], count=m.attrs["n_events"])
        spec = dict(f["specimens/S1/specimen"].attrs)
        prov = dict(tube["provenance"].attrs)
    assert table["population"].tolist()[:3] == ["lymphocytes", "B cells", "CD27- B cells"]
    assert table["events"].tolist()[:3] == [100, 101, 102]
    assert np.array_equal(cd27.astype(bool), records["S1"][0].membership["CD27- B cells"])
    assert spec["inputs_key"] == "key S1" and spec["patient"] == "P-ä1"
    assert prov["file_sha256"] == records["S1"][0].file_sha256


def test_read_results_refuses_other_files(tmp_path):
    path = tmp_path / "part.h5"
    write_part(path, "S1", [], "k")
    with pytest.raises(StoreError, match="not a cytowhim-results"):
        read_results(path)
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(StoreError, match="cannot read"):
        read_results(tmp_path / "junk.h5")


def test_hashes(tmp_path):
    data = os.urandom((1 << 20) * 2 + 123)  # spans several 1 MiB chunks
    path = tmp_path / "blob.fcs"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    name = "CD27\u2212 B cells"  # UTF-8, not ASCII
    assert text_sha256(name) == hashlib.sha256(name.encode("utf-8")).hexdigest()


def test_part_path_is_safe_and_distinct(tmp_path):
    names = ["S1", "s 1", "a/b", "a%2Fb", "..", ".hidden", "Pätient-µ"]
    paths = [part_path(tmp_path, n) for n in names]
    assert len(set(paths)) == len(names)
    for p in paths:
        assert p.parent == tmp_path and p.suffix == ".h5" and not p.name.startswith(".")
    digest = hashlib.sha256(b"S-001").hexdigest()[:24]
    assert part_path(tmp_path, "S-001") == tmp_path / f"{digest}-S-001.h5"
    with pytest.raises(ValueError):
        part_path(tmp_path, "")


@pytest.mark.parametrize(
    "specimen",
    ["X" * 300, "\u60a3\u8005" * 25, "\U0001f9ea" * 80, "a" * 5000, "/", "CON", "\u00e9" * 200],
)
def test_part_names_do_not_depend_on_the_length_or_bytes_of_the_id(tmp_path, specimen):
    """Issue 13: a 300-character id (or 50 CJK characters) made a file name over 255 bytes and
    h5py failed 'name too long', losing the batch. Names are a hash, the id is stored inside."""
    path = part_path(tmp_path, specimen)
    assert path.parent == tmp_path and len(path.name) <= 52 and path.name.isascii()
    assert not path.name.startswith(".")
    write_part(path, specimen, [make_record(specimen, "T")], "k", errors=["one", "two"])
    key, records = read_part(path)
    assert key == "k" and records[0].specimen == specimen
    assert read_part_errors(path) == ["one", "two"]


def test_ids_differing_in_case_or_left_out_characters_get_different_parts(tmp_path):
    names = ["S1", "s1", "S 1", "S_1", "S\u00b51", "S\u03bc1", "S-1", "S1 "]
    assert len({part_path(tmp_path, n).name.lower() for n in names}) == len(names)


def test_part_errors_round_trip_and_older_parts_have_none(tmp_path):
    path = part_path(tmp_path, "S1")
    write_part(path, "S1", [make_record("S1", "A")], "k")
    assert read_part_errors(path) == []
    with h5py.File(path, "a") as f:  # as written before errors were stored
        del f["specimen/errors"]
    assert read_part_errors(path) is None
