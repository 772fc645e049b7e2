"""The OSC address table: completeness, validation policy, and docs/osc.md kept in sync."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2m_live.features import FEATURE_ORDER, RANGES
from e2m_live.live.addresses import ADDRESSES, INPUTS, OscRejected, parse_message, render_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "osc.md"


def test_docs_osc_md_is_generated_from_the_table():
    assert DOC.read_text() == render_markdown(), (
        "docs/osc.md is stale: run `python -m e2m_live.live.addresses > docs/osc.md`")


def test_table_is_complete_and_consistent():
    addresses = [a.address for a in ADDRESSES]
    assert len(addresses) == len(set(addresses))
    for name in FEATURE_ORDER:
        assert f"/e2m/{name}" in INPUTS
        assert f"/e2m/state/{name}" in {a.address for a in ADDRESSES if a.direction == "out"}
    for entry in ADDRESSES:
        assert entry.label and entry.effect
        for arg in entry.arguments:
            if arg.default is not None and arg.low is not None and not isinstance(arg.default, str):
                assert arg.low <= arg.default <= (arg.high if arg.high is not None else math.inf)
    assert [a.name for a in INPUTS["/e2m/features"].arguments] == list(FEATURE_ORDER)


def test_out_of_range_fader_is_clamped_with_a_note():
    command = parse_message("/e2m/energy", [1.7])
    assert command.changes == {"energy": 1.0}
    assert "clamped" in command.notes[0]
    assert parse_message("/e2m/tempo", [1000]).changes == {"tempo": RANGES["tempo"][1]}
    assert parse_message("/e2m/time_signature", [2.6]).changes == {"time_signature": 3}


@pytest.mark.parametrize("address,args,why", [
    ("/e2m/energy", [math.nan], "finite"),
    ("/e2m/energy", [math.inf], "finite"),
    ("/e2m/energy", ["loud"], "number"),
    ("/e2m/energy", [], "argument"),
    ("/e2m/key", [12], "0..11"),
    ("/e2m/key", ["H#"], "key"),
    ("/e2m/mode", ["lydian"], "mode"),
    ("/e2m/mood", ["ecstatic"], "mood must be one of"),
    ("/e2m/features", [0.5] * 9, "10 argument"),
    ("/e2m/bogus", [], "unknown address"),
    ("/e2m/state/bar", [1, 2], "feedback address"),
])
def test_rejections_say_why(address, args, why):
    with pytest.raises(OscRejected, match=why):
        parse_message(address, args)


def test_names_numbers_and_flags():
    assert parse_message("/e2m/key", ["F#"]).changes == {"key": 6}
    assert parse_message("/e2m/key", [3.0]).changes == {"key": 3}
    assert parse_message("/e2m/mode", ["minor"]).changes == {"mode": 0}
    assert parse_message("/e2m/mode", [1.0]).changes == {"mode": 1}
    assert parse_message("/e2m/xy", [0.2, 0.8]).changes == {"valence": 0.2, "energy": 0.8}
    assert parse_message("/e2m/play", []).flag is True
    assert parse_message("/e2m/play", [0.0]).flag is False  # a button's release
    assert parse_message("/e2m/loop", [True]).flag is True
    extra = parse_message("/e2m/valence", [0.3, 99])
    assert extra.changes == {"valence": 0.3} and "extra" in extra.notes[0]
    full = parse_message("/e2m/features", [0.1, 0.2, -5, 0.3, 0.4, 0.5, "Bb", "major", 5, 100])
    assert full.changes["key"] == 10 and full.changes["mode"] == 1 and full.changes["tempo"] == 100


_osc_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**40), 2**40),
                        st.text(max_size=12), st.booleans(), st.binary(max_size=8), st.none())


@given(address=st.sampled_from([a.address for a in ADDRESSES] + ["/x", ""]),
       args=st.lists(_osc_values, max_size=12))
def test_any_input_is_accepted_or_rejected_never_raises_otherwise(address, args):
    try:
        command = parse_message(address, args)
    except OscRejected:
        return
    for name, value in command.changes.items():
        low, high = RANGES[name]
        assert low <= value <= high and math.isfinite(value)
