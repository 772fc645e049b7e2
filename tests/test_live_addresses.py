"""The OSC address table: completeness, validation policy, and docs/osc.md kept in sync."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from e2m_live.arrangement import ENSEMBLE_NAMES, Arrangement
from e2m_live.features import FEATURE_ORDER, FEATURES, RANGES
from e2m_live.live.addresses import (
    ADDRESSES,
    INPUTS,
    MAX_RAMP_BARS,
    RAMPABLE,
    SCENE_SLOTS,
    STATE,
    OscRejected,
    parse_message,
    render_markdown,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "osc.md"


def test_docs_osc_md_is_generated_from_the_table():
    assert DOC.read_text() == render_markdown(), (
        "docs/osc.md is stale: run `python -m e2m_live.live.addresses > docs/osc.md`"
    )


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


@pytest.mark.parametrize(
    "address,args,why",
    [
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
        ("/e2m/key_lock", [math.nan], "finite"),
        ("/e2m/key_lock", [], "argument"),
        ("/e2m/ensemble", ["disco"], "ensemble must be one of"),
        ("/e2m/ensemble", [3], "ensemble must be one of"),
        ("/e2m/instruments", ["electric"], "ambiguous"),
        ("/e2m/instruments", ["kazoo"], "unknown instrument"),
        ("/e2m/instruments", [128], "0..127"),
        ("/e2m/instruments", [1.5], "program number"),
        ("/e2m/mute", [], "argument"),
        ("/e2m/mute", ["violin, cello"], "one instrument"),
        ("/e2m/unmute", ["nothing at all"], "unknown instrument"),
    ],
)
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


_osc_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**40), 2**40),
    st.text(max_size=12),
    st.booleans(),
    st.binary(max_size=8),
    st.none(),
)


@given(
    address=st.sampled_from([a.address for a in ADDRESSES] + ["/x", ""]),
    args=st.lists(_osc_values, max_size=12),
)
@example(address="/e2m/scene/store", args=[0.0])  # valid ramps and scenes (CI's hypothesis found one)
@example(address="/e2m/scene/recall", args=[7, 64.0])
@example(address="/e2m/scene/morph", args=[0, 1, 0.25])
@example(address="/e2m/ramp", args=["energy", 0.8, 4])
@example(address="/e2m/ramp", args=[0, -3.0, 0])
def test_any_input_is_accepted_or_rejected_never_raises_otherwise(address, args):
    try:
        command = parse_message(address, args)
    except OscRejected:
        return
    if command.kind == "arrangement":  # every accepted value makes a valid arrangement
        changes = dict(command.changes)
        muted = {changes.pop(k) for k in ("mute", "unmute") if k in changes}
        Arrangement(muted=frozenset(muted)).replace(**changes)
        return
    changes = dict(command.changes)
    if command.kind == "ramp":  # a feature's name, a target in its range, whole bars
        assert changes.pop("feature") in RAMPABLE
        assert 0 <= changes.pop("bars") <= MAX_RAMP_BARS
        changes = {command.changes["feature"]: changes["target"]}
    elif command.kind == "scene":  # slots, whole bars, a morph's position
        bounds = {"scene": SCENE_SLOTS - 1, "a": SCENE_SLOTS - 1, "b": SCENE_SLOTS - 1, "bars": MAX_RAMP_BARS}
        assert all(0 <= changes[k] <= high for k, high in bounds.items() if k in changes)
        assert "x" not in changes or 0.0 <= changes["x"] <= 1.0
        return
    for name, value in changes.items():
        low, high = RANGES[name]
        assert low <= value <= high and math.isfinite(value)


def test_arrangement_controls():
    lock = parse_message("/e2m/key_lock", [1.4])
    assert lock.kind == "arrangement" and lock.changes == {"key_lock": 1.0} and "clamped" in lock.notes[0]
    assert parse_message("/e2m/key_lock", [0]).changes == {"key_lock": 0.0}
    for name in ENSEMBLE_NAMES:
        assert parse_message("/e2m/ensemble", [name.upper()]).changes == {"ensemble": name}
    listed = parse_message("/e2m/instruments", ["violin, Cello", 0, "drums"]).changes
    assert listed == {"instruments": ("Acoustic Grand Piano", "Violin", "Cello", "drum")}
    assert parse_message("/e2m/instruments", []).changes == {"instruments": None}
    assert parse_message("/e2m/instruments", ["auto"]).changes == {"instruments": None}
    assert parse_message("/e2m/mute", ["Drums"]).changes == {"mute": "drum"}
    assert parse_message("/e2m/unmute", [33.0]).changes == {"unmute": "Electric Bass (finger)"}
    extra = parse_message("/e2m/mute", ["drums", 7])
    assert extra.changes == {"mute": "drum"} and "extra" in extra.notes[0]


def test_arrangement_feedback_is_in_the_table_and_the_docs():
    outputs = {a.address for a in ADDRESSES if a.direction == "out"}
    assert {
        "/e2m/state/key_lock",
        "/e2m/state/ensemble",
        "/e2m/state/instruments",
        "/e2m/state/muted",
    } <= outputs
    doc = render_markdown()
    for address in (
        "/e2m/key_lock",
        "/e2m/ensemble",
        "/e2m/instruments",
        "/e2m/mute",
        "/e2m/unmute",
        "/e2m/state/instruments",
        "/e2m/state/muted",
    ):
        assert f"`{address}`" in doc
    assert "any number of `instrument`" in doc


def test_feature_arguments_and_feedback_follow_the_feature_schema():
    outputs = {a.address: a for a in ADDRESSES if a.direction == "out"}
    for name, spec in FEATURES.items():
        (single,) = INPUTS[f"/e2m/{name}"].arguments
        in_all = INPUTS["/e2m/features"].arguments[FEATURE_ORDER.index(name)]
        for arg in (single, in_all):
            assert (arg.low, arg.high, arg.out_of_range) == (spec.low, spec.high, spec.out_of_range)
            assert ("s" in arg.types) == bool(spec.names)
        assert (single.unit, single.choices) == (spec.unit, spec.names)
        for address in (f"/e2m/state/{name}", f"/e2m/state/measured/{name}"):
            (state,) = outputs[address].arguments
            assert state.types == ("i" if spec.integer else "f") and (state.low, state.high) == RANGES[name]
    assert [a.types for a in outputs["/e2m/state/features"].arguments] == [
        "i" if FEATURES[n].integer else "f" for n in FEATURE_ORDER
    ]


def test_fractions_of_whole_number_features_round_or_are_rejected_as_the_schema_says():
    assert FEATURES["key"].fraction == "reject"
    with pytest.raises(OscRejected, match=r"key must be an integer 0\.\.11"):
        parse_message("/e2m/key", [3.5])
    assert parse_message("/e2m/mode", [0.7]).changes == {"mode": 1}
    assert parse_message("/e2m/time_signature", [4.4]).changes == {"time_signature": 4}
    with pytest.raises(OscRejected, match=r"mode must be in 0\.\.1"):
        parse_message("/e2m/mode", [2])


def test_the_daemon_sends_only_feedback_addresses_of_the_table():
    source = (Path(__file__).resolve().parents[1] / "e2m_live" / "live" / "daemon.py").read_text()
    used = set(re.findall(r'STATE\["([^"]+)"\]', source))
    assert used and used <= set(STATE), used - set(STATE)
    assert "/e2m/state/" not in source  # every feedback address comes from the table
    assert STATE["bar"] == "/e2m/state/bar" and STATE["measured/key"] == "/e2m/state/measured/key"
    assert all(STATE[name] == f"/e2m/state/{name}" for name in FEATURE_ORDER)
