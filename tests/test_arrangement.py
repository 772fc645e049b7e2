"""e2m_live.arrangement: instrument names, ensembles, palette and muted rules, errors, dict round trip."""

from __future__ import annotations

import math
import pickle

import pretty_midi
import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2m_live.arrangement import (
    AUTO,
    DEFAULT_KEY_LOCK,
    ENSEMBLE_NAMES,
    ENSEMBLES,
    Arrangement,
    ArrangementError,
    instrument_name,
    parse_instruments,
)
from e2m_live.description.vocab import DRUM_INSTRUMENT

GM = [pretty_midi.program_to_instrument_name(p) for p in range(128)]


def test_defaults():
    arrangement = Arrangement()
    assert arrangement.key_lock == DEFAULT_KEY_LOCK and 0 < DEFAULT_KEY_LOCK <= 1
    assert arrangement.ensemble == AUTO and arrangement.instruments is None
    assert arrangement.palette() is None and arrangement.excluded() == frozenset()


@pytest.mark.parametrize(
    "value,name",
    [
        (0, "Acoustic Grand Piano"),
        ("0", "Acoustic Grand Piano"),
        (" 33 ", "Electric Bass (finger)"),
        (127, "Gunshot"),
        ("violin", "Violin"),
        ("VIOLIN", "Violin"),
        ("acoustic grand piano", "Acoustic Grand Piano"),
        ("drums", DRUM_INSTRUMENT),
        ("Drum Kit", DRUM_INSTRUMENT),
        ("percussion", DRUM_INSTRUMENT),
        ("sawtooth", "Lead 2 (sawtooth)"),
        ("piano", "Acoustic Grand Piano"),
        ("Bass", "Electric Bass (finger)"),
        ("sax", "Tenor Sax"),
    ],
)
def test_instrument_names(value, name):
    assert instrument_name(value) == name


@pytest.mark.parametrize(
    "value,why",
    [
        ("electric", "ambiguous"),
        ("acoustic", "ambiguous"),
        ("kazoo", "unknown instrument"),
        ("", "unknown"),
        (128, "0..127"),
        (-1, "0..127"),
        ("200", "0..127"),
        (True, "not an instrument"),
        (1.5, "not an instrument"),
        (None, "not an instrument"),
    ],
)
def test_bad_instruments_raise_arrangement_errors(value, why):
    with pytest.raises(ArrangementError, match=why):
        instrument_name(value)
    assert issubclass(ArrangementError, ValueError)


def test_every_gm_name_and_number_round_trips():
    for program, name in enumerate(GM):
        assert instrument_name(name) == name == instrument_name(program) == instrument_name(name.upper())


def test_parse_instruments_orders_by_vocabulary_and_drops_duplicates():
    parsed = parse_instruments(["drums", "Violin", 40, "cello", 0])
    assert parsed == ("Acoustic Grand Piano", "Violin", "Cello", DRUM_INSTRUMENT)
    assert parse_instruments([]) == ()


def test_ensembles_are_valid_and_auto_is_not_a_preset():
    assert ENSEMBLE_NAMES[0] == AUTO and AUTO not in ENSEMBLES
    assert (
        set(ENSEMBLE_NAMES[1:])
        == set(ENSEMBLES)
        >= {"piano", "band", "rock", "electronic", "strings", "orchestra", "jazz"}
    )
    for name, members in ENSEMBLES.items():
        assert members and all(m in GM or m == DRUM_INSTRUMENT for m in members), name
        assert Arrangement(ensemble=name).palette() == members
    assert DRUM_INSTRUMENT not in ENSEMBLES["strings"] and DRUM_INSTRUMENT in ENSEMBLES["rock"]


def test_an_explicit_list_replaces_the_ensemble_and_muted_ones_leave_the_palette():
    arrangement = Arrangement(ensemble="jazz", instruments=("drums", "violin", 42))
    assert arrangement.instruments == ("Violin", "Cello", DRUM_INSTRUMENT)
    assert arrangement.palette() == ("Violin", "Cello", DRUM_INSTRUMENT)
    muted = arrangement.replace(muted=frozenset({"Drums"}))
    assert muted.muted == frozenset({DRUM_INSTRUMENT}) and muted.palette() == ("Violin", "Cello")
    jazz = Arrangement(ensemble="jazz", muted=frozenset({"tenor sax"}))
    assert jazz.palette() == ("Acoustic Grand Piano", "Acoustic Bass", DRUM_INSTRUMENT)
    assert jazz.excluded() == frozenset({"Tenor Sax"})


def test_auto_keeps_the_muted_out_through_excluded():
    auto = Arrangement(muted=frozenset({"drums", 0}))
    assert auto.palette() is None
    assert auto.excluded() == frozenset({DRUM_INSTRUMENT, "Acoustic Grand Piano"})


def test_muting_every_instrument_of_a_palette_raises():
    with pytest.raises(ArrangementError, match="muted"):
        Arrangement(ensemble="piano", muted=frozenset({"Acoustic Grand Piano"})).palette()
    with pytest.raises(ArrangementError, match="muted"):
        Arrangement(instruments=("drums",), muted=frozenset({"drums"})).palette()


@pytest.mark.parametrize(
    "changes,why",
    [
        ({"key_lock": 1.5}, "key_lock"),
        ({"key_lock": -0.1}, "key_lock"),
        ({"key_lock": math.nan}, "key_lock"),
        ({"key_lock": "high"}, "key_lock"),
        ({"key_lock": True}, "key_lock"),
        ({"ensemble": "disco"}, "unknown ensemble"),
        ({"ensemble": "Band"}, "unknown ensemble"),
        ({"instruments": ()}, "at least one"),
        ({"instruments": ("kazoo",)}, "unknown instrument"),
        ({"muted": frozenset({"kazoo"})}, "unknown instrument"),
    ],
)
def test_bad_values_raise(changes, why):
    with pytest.raises(ArrangementError, match=why):
        Arrangement(**changes)


def test_key_lock_is_stored_as_a_float():
    assert Arrangement(key_lock=1).key_lock == 1.0 and isinstance(Arrangement(key_lock=0).key_lock, float)


def test_dict_round_trip_and_unknown_fields():
    arrangement = Arrangement(
        key_lock=0.5, ensemble="rock", instruments=("drums", 30), muted=frozenset({"Cello", "drums"})
    )
    data = arrangement.to_dict()
    assert data == {
        "key_lock": 0.5,
        "ensemble": "rock",
        "instruments": ["Distortion Guitar", DRUM_INSTRUMENT],
        "muted": ["Cello", DRUM_INSTRUMENT],
    }
    assert Arrangement.from_dict(data) == arrangement
    assert Arrangement.from_dict({}) == Arrangement()
    with pytest.raises(ArrangementError, match="unknown arrangement field"):
        Arrangement.from_dict({"key_lock": 0.5, "tempo": 120})


def test_it_is_frozen_hashable_and_pickles():
    arrangement = Arrangement(ensemble="band", muted=frozenset({"drums"}))
    with pytest.raises(AttributeError):
        arrangement.ensemble = "rock"  # type: ignore[misc]
    assert hash(arrangement) == hash(Arrangement(ensemble="band", muted=frozenset({"drum"})))
    # The engine sends it to the generation worker process: it must survive pickling.
    assert pickle.loads(pickle.dumps(arrangement)) == arrangement


@given(
    key_lock=st.floats(0.0, 1.0),
    ensemble=st.sampled_from(ENSEMBLE_NAMES),
    instruments=st.none() | st.lists(st.integers(0, 127) | st.just("drums"), min_size=1, max_size=6),
    muted=st.lists(st.integers(0, 127) | st.just("drums"), max_size=4),
)
def test_any_valid_arrangement_round_trips(key_lock, ensemble, instruments, muted):
    arrangement = Arrangement(
        key_lock=key_lock,
        ensemble=ensemble,
        instruments=None if instruments is None else tuple(instruments),
        muted=frozenset(muted),
    )
    assert Arrangement.from_dict(arrangement.to_dict()) == arrangement
    try:
        palette = arrangement.palette()
    except ArrangementError:
        return
    if palette is not None:
        assert palette and not set(palette) & arrangement.muted
