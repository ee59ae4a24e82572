"""Bit-packed integer DATA (FCS 2.0 allowed $PnB that are not whole bytes, e.g. 9): decoded from
files written here by an independent packer, and on the LabKey FACScan files (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cytowhim as cw

from .conftest import CORPUS
from .fcs_builder import params, write

LABKEY = CORPUS / "expert_gating" / "labkey_advanced"


def pack(values: np.ndarray, widths: list[int]) -> bytes:
    """Events x parameters integers as one bit stream, least significant bit first (each byte
    from its lowest bit, each value from its lowest bit), padded to whole bytes."""
    bits = []
    for row in values.tolist():
        for v, w in zip(row, widths):
            bits.extend((int(v) >> k) & 1 for k in range(w))
    bits += [0] * (-len(bits) % 8)
    return np.packbits(np.array(bits, dtype=np.uint8), bitorder="little").tobytes()


@settings(max_examples=60, deadline=None)
@given(
    widths=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=6),
    n=st.integers(min_value=0, max_value=40),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    byteord=st.sampled_from(["1,2,3,4", "4,3,2,1"]),
)
def test_packed_values_of_any_width_read_back(tmp_path_factory, widths, n, seed, byteord):
    if all(w % 8 == 0 for w in widths):
        widths = [*widths[:-1], 9]  # at least one packed width
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            [int(rng.integers(0, 2**w - 1, endpoint=True, dtype=np.uint64)) for w in widths]
            for _ in range(n)
        ],
        dtype=object,
    ).reshape(n, len(widths))
    names = [f"P{i}" for i in range(1, len(widths) + 1)]
    kw = {"$DATATYPE": "I", "$BYTEORD": byteord, "$MODE": "L", "$TOT": str(n)}
    kw |= params(names, widths, R=[str(2**w) for w in widths])
    path = write(
        tmp_path_factory.mktemp("packed") / "p.fcs", kw, pack(values, widths), version="FCS2.0"
    )
    events = cw.read_fcs(path).events
    assert events.shape == (n, len(widths)) and events.dtype.kind == "u"
    assert [[int(v) for v in row] for row in events.tolist()] == values.tolist()


def test_labkey_facscan_files_decode_to_what_flowjo_gates():
    """16 FACScan files, 10,000 events x 5 nine-bit values in 56,250 bytes. Decoded LSB-first
    they have the peaks a person gates: lymphocytes on forward scatter, CD3/CD4/CD8 negative and
    positive modes; values stay within $PnR = 512."""
    files = sorted(LABKEY.glob("*.fcs"))
    assert len(files) == 16
    for path in files:
        with pytest.warns(cw.FCSWarning, match=r"\$BEGINDATA='\s*768I'.*HEADER's DATA offsets"):
            s = cw.read_fcs(path)
        assert s.events.shape == (10_000, 5) and int(s.events.max()) <= 511
    with pytest.warns(cw.FCSWarning):
        s = cw.read_fcs(LABKEY / "931115-C02- Sample 02.fcs")  # CD3 / CD8 / CD4 tube
    assert [m.strip() for m in s.markers] == ["", "", "CD3", "CD8", "CD4"]
    hist = {c: np.histogram(s.events[:, c], bins=16, range=(0, 512))[0] for c in range(5)}
    # forward scatter: one main peak (lymphocytes) in bins 4-6, nothing below bin 3
    assert hist[0][:3].sum() == 0 and hist[0][4:7].sum() > 0.7 * 10_000
    for c in (2, 3, 4):  # negative and positive modes with a valley between
        h = hist[c]
        low, high = int(np.argmax(h[:8])), 8 + int(np.argmax(h[8:]))
        valley = h[low:high].min()
        assert valley < 0.5 * max(h[low], h[high]), (c, h)
    # the other bit orders give near-uniform noise: no such valley on CD3
    raw = (LABKEY / "931115-C02- Sample 02.fcs").read_bytes()
    stream = np.frombuffer(raw[768:57018], dtype=np.uint8)
    msb = np.unpackbits(stream, bitorder="big")[:450_000].reshape(-1, 9)
    wrong = (msb * 2 ** np.arange(9)[::-1]).sum(1).reshape(10_000, 5)
    h = np.histogram(wrong[:, 2], bins=16, range=(0, 512))[0]
    assert h.max() < 2 * h.mean()


# --- $PnE: log-amplified channels ------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    decades=st.floats(min_value=0.5, max_value=6.0),
    f2=st.sampled_from([0.0, 0.01, 0.2, 1.0, 3.0]),
    bits=st.sampled_from([9, 10, 16]),
    channels=st.lists(st.integers(min_value=0, max_value=511), min_size=1, max_size=20),
)
def test_log_amplified_values_decode_as_the_fcs_standard_and_flowjo(
    tmp_path_factory, decades, f2, bits, channels
):
    """$PnE = "f1, f2": value = f2 * 10^(f1 * channel / $PnR), f2 = 0 read as 1 (FCS 3.1 §3.2.20,
    the convention FlowJo follows: its workspace gives the LabKey channels lowValue 0.2 =
    f2 and highValue 1383.66 = 0.2 * 10^3.84); $PnG is not applied to log-amplified values."""
    r = 512
    values = np.array(channels, dtype=object).reshape(-1, 1)
    kw = {"$DATATYPE": "I", "$BYTEORD": "1,2,3,4", "$MODE": "L", "$TOT": str(len(channels))}
    kw |= params(["FL1"], [bits], R=[str(r)])
    kw |= {"$P1E": f"{decades!r}, {f2!r}", "$P1G": "2.5"}
    path = write(
        tmp_path_factory.mktemp("pne") / "log.fcs", kw, pack(values, [bits]), version="FCS2.0"
    )
    s = cw.read_fcs(path)
    expected = (f2 or 1.0) * 10.0 ** (decades * np.array(channels, dtype=float) / r)
    np.testing.assert_allclose(s.linear_values(0), expected, rtol=1e-12)
    assert [int(v) for v in s.events[:, 0]] == channels  # events stay as stored


def test_labkey_log_channels_span_flowjos_display():
    """The FACScan's OrthSc and fluorescence channels ($PnE "3.84, 0.2000", $PnR 512) decode to
    0.2 .. 0.2 * 10^3.84 = 1383.66 across the channels, FlowJo's lowValue/highValue for them in
    the workspace; forward scatter ($PnE "0, 0", $PnG 2.50) to channel / 2.5, up to FlowJo's
    highValue 204.8. FlowJo's gate vertices then sit on whole channels (see test_flowjo9)."""
    with pytest.warns(cw.FCSWarning):
        s = cw.read_fcs(LABKEY / "931115-B01- Sample 01.fcs")
    ch = s.events.astype(float)
    np.testing.assert_allclose(s.linear_values(0), ch[:, 0] / 2.5)
    for j in range(1, 5):
        np.testing.assert_allclose(s.linear_values(j), 0.2 * 10 ** (3.84 * ch[:, j] / 512))
    assert 0.2 * 10**3.84 == pytest.approx(1383.661743164062, rel=1e-6)  # float32 in FlowJo


def test_write_fcs_keeps_writing_byte_aligned_data(tmp_path):
    """A packed file read and written again comes out byte-aligned (16-bit $PnB here), with the
    same values, the same $PnR and the same $PnE (so the same linear values)."""
    with pytest.warns(cw.FCSWarning):
        s = cw.read_fcs(LABKEY / "931115-C02- Sample 02.fcs")
    cw.write_fcs(tmp_path / "copy.fcs", s)
    back = cw.read_fcs(tmp_path / "copy.fcs")
    assert {back.keywords[f"$P{i}B"] for i in range(1, 6)} == {"16"}
    np.testing.assert_array_equal(back.events, s.events)
    for j in range(5):
        assert back.keywords[f"$P{j + 1}R"] == "512"
        np.testing.assert_allclose(back.linear_values(j), s.linear_values(j))


def test_inspect_names_a_packed_file_as_such(capsys):
    """Issue 11: `cytowhim inspect` stopped with "$P1B=9: integer parameters must be 8 to 64 bits
    in whole bytes"; it now describes the file, saying its values are bit-packed."""
    from cytowhim.cli import main

    assert main(["inspect", str(LABKEY / "931115-C07- Sample 02.fcs")]) == 0
    out = capsys.readouterr().out
    assert "events      10,000" in out and "$DATATYPE I, bit-packed, bytes 768-57017" in out
    assert "L-selectin" in out and "9  512" in out
