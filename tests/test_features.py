"""EmotionFeatures: ranges, validation, vector, JSON, keys, clamping and mood presets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2m_live.features import (
    FEATURE_ORDER,
    FEATURES,
    INTEGER_FIELDS,
    KEY_NAMES,
    MOODS,
    RANGES,
    EmotionFeatures,
    FeatureError,
    clamp,
    key_name,
    parse_key,
    parse_mode,
    parse_names,
)


def _field_strategy(name: str) -> st.SearchStrategy:
    low, high = RANGES[name]
    if name in INTEGER_FIELDS:
        return st.integers(int(low), int(high))
    return st.floats(low, high, allow_nan=False)


features_strategy = st.builds(EmotionFeatures, **{name: _field_strategy(name) for name in FEATURE_ORDER})


def test_field_order_is_the_documented_one() -> None:
    assert FEATURE_ORDER == (
        "energy",
        "valence",
        "loudness",
        "instrumentalness",
        "danceability",
        "acousticness",
        "key",
        "mode",
        "time_signature",
        "tempo",
    )
    assert tuple(field for field in EmotionFeatures.__dataclass_fields__) == FEATURE_ORDER
    assert set(RANGES) == set(FEATURE_ORDER)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("energy", 1.5, "energy must be a number in 0..1"),
        ("valence", -0.1, "valence must be a number in 0..1"),
        ("loudness", 3.0, "loudness must be a number in -60..0"),
        ("key", 12, "key must be an integer in 0..11"),
        ("key", 2.5, "key must be an integer in 0..11"),
        ("mode", 2, "mode must be an integer in 0..1"),
        ("time_signature", 2, "time_signature must be an integer in 3..7"),
        ("tempo", 20.0, "tempo must be a number in 40..240"),
        ("tempo", math.nan, "tempo must be a number in 40..240"),
        ("danceability", "high", "danceability must be a number"),
        ("mode", True, "mode must be an integer"),
    ],
)
def test_invalid_values_name_field_and_range(field: str, value: object, fragment: str) -> None:
    with pytest.raises(FeatureError, match=fragment):
        EmotionFeatures(**{field: value})


def test_feature_error_is_a_value_error() -> None:
    assert issubclass(FeatureError, ValueError)


def test_integer_fields_accept_integral_floats_and_numpy_scalars() -> None:
    features = EmotionFeatures(
        key=np.int64(7), mode=1.0, time_signature=np.float32(3.0), tempo=np.float32(90)
    )
    assert (features.key, features.mode, features.time_signature) == (7, 1, 3)
    assert all(type(getattr(features, name)) is int for name in INTEGER_FIELDS)
    assert type(features.tempo) is float


@given(features_strategy)
def test_vector_round_trip(features: EmotionFeatures) -> None:
    vector = features.to_vector()
    assert vector.dtype == np.float32 and vector.shape == (len(FEATURE_ORDER),)
    assert np.all((vector >= 0) & (vector <= 1))
    back = EmotionFeatures.from_vector(vector)
    for name in FEATURE_ORDER:
        low, high = RANGES[name]
        assert getattr(back, name) == pytest.approx(getattr(features, name), abs=1e-6 * (high - low))


def test_vector_is_range_normalised_in_feature_order() -> None:
    features = EmotionFeatures(energy=0.2, loudness=-15.0, key=11, mode=0, time_signature=5, tempo=140.0)
    vector = features.to_vector()
    assert vector[FEATURE_ORDER.index("energy")] == pytest.approx(0.2)
    assert vector[FEATURE_ORDER.index("loudness")] == pytest.approx(0.75)
    assert vector[FEATURE_ORDER.index("key")] == pytest.approx(1.0)
    assert vector[FEATURE_ORDER.index("mode")] == 0.0
    assert vector[FEATURE_ORDER.index("time_signature")] == pytest.approx(0.5)
    assert vector[FEATURE_ORDER.index("tempo")] == pytest.approx(0.5)


@pytest.mark.parametrize("vector", [np.zeros(9), np.full(10, 1.5), np.array([np.nan] * 10)])
def test_bad_vectors_are_rejected(vector: np.ndarray) -> None:
    with pytest.raises(FeatureError):
        EmotionFeatures.from_vector(vector)


@given(features_strategy)
def test_json_and_dict_round_trip_exactly(features: EmotionFeatures) -> None:
    assert EmotionFeatures.from_json(features.to_json()) == features
    assert EmotionFeatures.from_dict(features.to_dict()) == features
    assert list(features.to_dict()) == list(FEATURE_ORDER)


def test_from_dict_accepts_key_and_mode_names() -> None:
    data = {**EmotionFeatures().to_dict(), "key": "Gb", "mode": "minor"}
    features = EmotionFeatures.from_dict(data)
    assert (features.key, features.mode) == (6, 0)
    assert features.key_label == "F# minor"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("{not json", "invalid JSON"),
        ('{"energy": 0.5}', "missing feature"),
        ("[1, 2]", "must be a mapping"),
    ],
)
def test_bad_json_is_a_feature_error(payload: str, fragment: str) -> None:
    with pytest.raises(FeatureError, match=fragment):
        EmotionFeatures.from_json(payload)


def test_unknown_field_in_dict_is_named() -> None:
    with pytest.raises(FeatureError, match=r"unknown feature.*speechiness"):
        EmotionFeatures.from_dict({**EmotionFeatures().to_dict(), "speechiness": 0.1})


def test_replace_validates_and_leaves_original() -> None:
    base = EmotionFeatures()
    changed = base.replace(valence=0.9, key="Bb")
    assert (changed.valence, changed.key) == (0.9, 10)
    assert base.valence == 0.5
    with pytest.raises(FeatureError, match="valence must be"):
        base.replace(valence=2.0)
    with pytest.raises(FeatureError, match="unknown feature"):
        base.replace(volume=0.5)


def test_features_are_immutable() -> None:
    with pytest.raises(AttributeError):
        EmotionFeatures().energy = 0.9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "expected", "was_clamped"),
    [
        ("energy", 1.3, 1.0, True),
        ("energy", 0.4, 0.4, False),
        ("loudness", -80.0, -60.0, True),
        ("tempo", 300.0, 240.0, True),
        ("key", 4.4, 4, False),
        ("key", 14, 11, True),
        ("time_signature", 1, 3, True),
    ],
)
def test_clamp(field: str, value: float, expected: float, was_clamped: bool) -> None:
    assert clamp(field, value) == (expected, was_clamped)


def test_clamp_rejects_unknown_field_and_nan() -> None:
    with pytest.raises(FeatureError, match="unknown feature"):
        clamp("volume", 0.5)
    with pytest.raises(FeatureError, match="finite"):
        clamp("energy", math.inf)


@pytest.mark.parametrize(
    ("text", "pitch_class"),
    [
        ("C", 0),
        ("F#", 6),
        ("Gb", 6),
        ("g♭", 6),
        ("F♯", 6),
        ("Bb", 10),
        ("Cb", 11),
        ("E#", 5),
        ("B", 11),
        ("7", 7),
        (3, 3),
    ],
)
def test_parse_key(text: str | int, pitch_class: int) -> None:
    assert parse_key(text) == pitch_class


@pytest.mark.parametrize("text", ["H", "F##", "", "C major", 12, -1, 2.0])
def test_parse_key_rejects(text: object) -> None:
    with pytest.raises(FeatureError, match="key"):
        parse_key(text)  # type: ignore[arg-type]


def test_key_names_round_trip() -> None:
    assert [parse_key(key_name(pc)) for pc in range(12)] == list(range(12))
    assert KEY_NAMES[6] == "F#"


def test_parse_mode() -> None:
    assert [parse_mode(m) for m in ("major", "Minor", "maj", "min", "m", 1, 0)] == [1, 0, 1, 0, 0, 1, 0]
    with pytest.raises(FeatureError, match="mode"):
        parse_mode("dorian")


REQUIRED_MOODS = ("happy", "sad", "calm", "angry", "tense", "dreamy", "triumphant", "melancholic")


def test_moods_present_and_valid() -> None:
    assert set(REQUIRED_MOODS) <= set(MOODS)
    assert len(set(MOODS.values())) == len(MOODS), "two presets are the same"
    for name, features in MOODS.items():
        for field in FEATURE_ORDER:
            value = getattr(features, field)
            low, high = RANGES[field]
            assert low <= value <= high, (name, field, value)
            assert isinstance(value, int) == (field in INTEGER_FIELDS), (name, field, value)
        assert EmotionFeatures.from_dict(features.to_dict()) == features, name
        assert features != EmotionFeatures(), f"{name} is just the defaults"


def test_moods_sit_in_their_russell_quadrant() -> None:
    high_arousal = {"happy", "angry", "tense", "triumphant"}
    positive = {"happy", "calm", "triumphant"}
    for name in REQUIRED_MOODS:
        mood = MOODS[name]
        assert (mood.energy > 0.5) == (name in high_arousal), name
        if name in positive:
            assert mood.valence > 0.5 and mood.mode == 1, name
        if name in {"sad", "angry", "tense", "melancholic"}:
            assert mood.valence < 0.5 and mood.mode == 0, name
    # Louder and faster with more arousal, as in the Spotify tables.
    assert MOODS["angry"].loudness > MOODS["sad"].loudness
    assert MOODS["happy"].tempo > MOODS["calm"].tempo


def test_one_spec_per_feature_drives_the_derived_tables() -> None:
    assert tuple(FEATURES) == FEATURE_ORDER
    for name, spec in FEATURES.items():
        assert spec.name == name and RANGES[name] == (spec.low, spec.high)
        assert (name in INTEGER_FIELDS) == spec.integer
        assert spec.low <= getattr(EmotionFeatures(), name) <= spec.high
        assert spec.out_of_range in ("clamp", "reject") and spec.fraction in ("clamp", "reject")
        assert bool(spec.names) == (spec.parse_name is not None)
        for value, label in enumerate(spec.names):  # every name parses back to its value
            assert spec.parse_name(label) == value
        assert "{" not in spec.flag_help()
    assert FEATURES["tempo"].flag_help() == "BPM, 40..240"
    assert FEATURES["key"].describe() == "an integer in 0..11"


def test_parse_names_turns_names_into_values_and_leaves_the_rest() -> None:
    assert parse_names({"key": "Bb", "mode": "minor", "energy": 0.3, "tempo": "fast"}) == {
        "key": 10,
        "mode": 0,
        "energy": 0.3,
        "tempo": "fast",
    }
    with pytest.raises(FeatureError, match="key"):
        parse_names({"key": "H"})
