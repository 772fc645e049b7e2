"""The ten emotion controls, with Spotify's audio-feature semantics and ranges.

:class:`EmotionFeatures` is the value the performer steers (OSC faders, mood presets) and the
label the models are trained on. Field order, ranges and the normalised model-input vector are
defined once here; see ``docs/features.md`` for the table and the mood presets.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FEATURE_ORDER",
    "INTEGER_FIELDS",
    "KEY_NAMES",
    "MOODS",
    "RANGES",
    "EmotionFeatures",
    "FeatureError",
    "clamp",
    "key_name",
    "parse_key",
    "parse_mode",
]


class FeatureError(ValueError):
    """A feature value is missing, of the wrong type or outside its range."""


#: Field order of :class:`EmotionFeatures`, of its vector, of ``/e2m/features`` and of the JSON.
FEATURE_ORDER: tuple[str, ...] = (
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

#: Inclusive range of every field. Tempo 40..240 BPM covers Spotify's tempo estimates
#: (the 1,248 seed tracks span 62..205 BPM) with room for very slow and very fast material.
RANGES: dict[str, tuple[float, float]] = {
    "energy": (0.0, 1.0),
    "valence": (0.0, 1.0),
    "loudness": (-60.0, 0.0),
    "instrumentalness": (0.0, 1.0),
    "danceability": (0.0, 1.0),
    "acousticness": (0.0, 1.0),
    "key": (0, 11),
    "mode": (0, 1),
    "time_signature": (3, 7),
    "tempo": (40.0, 240.0),
}

#: Fields that hold whole numbers (pitch class, minor/major, beats per bar).
INTEGER_FIELDS: frozenset[str] = frozenset({"key", "mode", "time_signature"})

#: Pitch-class names, sharps for the black keys (as pretty_midi names notes).
KEY_NAMES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

_LETTER_PITCH = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"#": 1, "♯": 1, "b": -1, "♭": -1, "": 0}
_MODE_NAMES = {"major": 1, "maj": 1, "minor": 0, "min": 0, "m": 0, "1": 1, "0": 0}


def key_name(key: int) -> str:
    """Name of pitch class ``key`` (0 = C), e.g. ``key_name(6) == "F#"``."""
    _check_value("key", key)
    return KEY_NAMES[int(key)]


def parse_key(name: str | int) -> int:
    """Pitch class of a key name: ``"F#"``, ``"Gb"``, ``"g♭"``, ``"Bb"`` or a number ``0..11``.

    Enharmonic spellings (``"E#"``, ``"Cb"``) wrap around the octave.
    """
    if isinstance(name, bool):
        raise FeatureError(f"key must be a name such as 'F#' or an integer 0..11, got {name!r}")
    if isinstance(name, int | np.integer):
        _check_value("key", name)
        return int(name)
    if not isinstance(name, str):
        raise FeatureError(f"key must be a name such as 'F#' or an integer 0..11, got {name!r}")
    text = name.strip()
    if text.isdigit():
        return parse_key(int(text))
    letter, accidental = text[:1].upper(), text[1:]
    if letter not in _LETTER_PITCH or accidental not in _ACCIDENTALS:
        raise FeatureError(f"key: cannot parse {name!r}; use C, C#, Db, ... B or an integer 0..11")
    return (_LETTER_PITCH[letter] + _ACCIDENTALS[accidental]) % 12


def parse_mode(name: str | int) -> int:
    """``1`` for ``"major"``/``"maj"``/``1``, ``0`` for ``"minor"``/``"min"``/``"m"``/``0``."""
    if isinstance(name, bool):
        raise FeatureError(f"mode must be 'major', 'minor', 0 or 1, got {name!r}")
    if isinstance(name, int | np.integer):
        _check_value("mode", name)
        return int(name)
    if isinstance(name, str) and name.strip().lower() in _MODE_NAMES:
        return _MODE_NAMES[name.strip().lower()]
    raise FeatureError(f"mode must be 'major', 'minor', 0 or 1, got {name!r}")


def _range_text(field: str) -> str:
    low, high = RANGES[field]
    if field in INTEGER_FIELDS:
        return f"an integer in {int(low)}..{int(high)}"
    return f"a number in {low:g}..{high:g}"


def _check_value(field: str, value: Any) -> int | float:
    """Validate one value and return it as ``int`` (integer fields) or ``float``."""
    if field not in RANGES:
        raise FeatureError(f"unknown feature {field!r}; features are {', '.join(FEATURE_ORDER)}")
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FeatureError(f"{field} must be {_range_text(field)}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise FeatureError(f"{field} must be {_range_text(field)}, got {value!r}")
    low, high = RANGES[field]
    if field in INTEGER_FIELDS:
        if number != round(number):
            raise FeatureError(f"{field} must be {_range_text(field)}, got {value!r}")
        number = round(number)
    if not low <= number <= high:
        raise FeatureError(f"{field} must be {_range_text(field)}, got {value!r}")
    return number


def clamp(field: str, value: float) -> tuple[int | float, bool]:
    """Clamp ``value`` into ``field``'s range; returns ``(value, was_clamped)``.

    Integer fields are rounded to the nearest whole number first (rounding alone does not
    count as clamping). Raises :class:`FeatureError` for an unknown field or a non-finite value.
    """
    if field not in RANGES:
        raise FeatureError(f"unknown feature {field!r}; features are {', '.join(FEATURE_ORDER)}")
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FeatureError(f"{field} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise FeatureError(f"{field} must be a finite number, got {value!r}")
    low, high = RANGES[field]
    if field in INTEGER_FIELDS:
        number = float(round(number))
    clamped = min(max(number, low), high)
    result: int | float = int(clamped) if field in INTEGER_FIELDS else clamped
    return result, clamped != number


@dataclass(frozen=True, slots=True)
class EmotionFeatures:
    """The ten controls, validated on construction (immutable; use :meth:`replace`).

    energy, valence, instrumentalness, danceability, acousticness: 0..1; loudness: dB, -60..0;
    key: pitch class 0..11 (0 = C); mode: 0 minor, 1 major; time_signature: beats per bar 3..7;
    tempo: BPM 40..240.
    """

    energy: float = 0.5
    valence: float = 0.5
    loudness: float = -8.0
    instrumentalness: float = 0.0
    danceability: float = 0.5
    acousticness: float = 0.2
    key: int = 0
    mode: int = 1
    time_signature: int = 4
    tempo: float = 120.0

    def __post_init__(self) -> None:
        for name in FEATURE_ORDER:
            object.__setattr__(self, name, _check_value(name, getattr(self, name)))

    # -- model input -------------------------------------------------------------------------
    def to_vector(self) -> np.ndarray:
        """The model input: every field scaled to 0..1 by its range, in :data:`FEATURE_ORDER`.

        ``(value - low) / (high - low)``, so key 0..11 -> 0..1, mode stays 0/1,
        time_signature 3..7 -> 0..1, tempo 40..240 -> 0..1, loudness -60..0 -> 0..1.
        """
        return np.array(
            [
                (getattr(self, name) - RANGES[name][0]) / (RANGES[name][1] - RANGES[name][0])
                for name in FEATURE_ORDER
            ],
            dtype=np.float32,
        )

    @classmethod
    def from_vector(cls, vector: Sequence[float] | np.ndarray) -> EmotionFeatures:
        """Inverse of :meth:`to_vector` (up to float32 precision); integer fields are rounded."""
        values = np.asarray(vector, dtype=np.float64)
        if values.shape != (len(FEATURE_ORDER),):
            raise FeatureError(f"feature vector must have shape ({len(FEATURE_ORDER)},), got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise FeatureError(f"feature vector must be finite, got {values.tolist()}")
        fields: dict[str, int | float] = {}
        for name, scaled in zip(FEATURE_ORDER, values, strict=True):
            if not -1e-6 <= scaled <= 1 + 1e-6:
                raise FeatureError(f"{name}: vector entry must be in 0..1, got {scaled:g}")
            low, high = RANGES[name]
            value = low + min(max(float(scaled), 0.0), 1.0) * (high - low)
            fields[name] = round(value) if name in INTEGER_FIELDS else value
        return cls(**fields)

    # -- dict / JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, int | float]:
        """Plain dict in :data:`FEATURE_ORDER`."""
        return {name: getattr(self, name) for name in FEATURE_ORDER}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EmotionFeatures:
        """Build from a mapping with all ten fields. ``key`` may be a name (``"F#"``), ``mode``
        ``"major"``/``"minor"``. Unknown or missing fields raise :class:`FeatureError`."""
        if not isinstance(data, Mapping):
            raise FeatureError(f"features must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(FEATURE_ORDER))
        missing = [name for name in FEATURE_ORDER if name not in data]
        if unknown:
            raise FeatureError(f"unknown feature(s) {', '.join(map(str, unknown))}")
        if missing:
            raise FeatureError(f"missing feature(s) {', '.join(missing)}")
        values = dict(data)
        if isinstance(values["key"], str):
            values["key"] = parse_key(values["key"])
        if isinstance(values["mode"], str):
            values["mode"] = parse_mode(values["mode"])
        return cls(**values)

    def to_json(self) -> str:
        """JSON object with the ten fields in :data:`FEATURE_ORDER`."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> EmotionFeatures:
        """Inverse of :meth:`to_json`; invalid JSON raises :class:`FeatureError`."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as error:
            raise FeatureError(f"features: invalid JSON ({error})") from None
        return cls.from_dict(data)

    # -- editing -----------------------------------------------------------------------------
    def replace(self, **changes: Any) -> EmotionFeatures:
        """A copy with some fields changed (validated; ``key``/``mode`` may be names)."""
        unknown = sorted(set(changes) - set(FEATURE_ORDER))
        if unknown:
            raise FeatureError(
                f"unknown feature(s) {', '.join(unknown)}; features are {', '.join(FEATURE_ORDER)}"
            )
        if isinstance(changes.get("key"), str):
            changes["key"] = parse_key(changes["key"])
        if isinstance(changes.get("mode"), str):
            changes["mode"] = parse_mode(changes["mode"])
        return dataclasses.replace(self, **changes)

    @property
    def key_label(self) -> str:
        """Key as text, e.g. ``"F# minor"``."""
        return f"{KEY_NAMES[self.key]} {'major' if self.mode else 'minor'}"


#: Mood presets. valence/energy place each mood on Russell's circumplex (valence = pleasure,
#: energy = arousal); loudness, danceability, acousticness and instrumentalness are the medians
#: of the 40 Spotify seed tracks nearest to that (valence, energy) point; mode follows the
#: valence (minor for the negative moods); tempo follows arousal. Table and method:
#: docs/features.md. One row per mood, values in FEATURE_ORDER: energy, valence, loudness,
#: instrumentalness, danceability, acousticness, key, mode, time_signature, tempo.
_MOOD_TABLE: dict[str, tuple[float, ...]] = {
    "happy": (0.75, 0.85, -7.5, 0.0, 0.68, 0.14, 0, 1, 4, 120.0),
    "sad": (0.25, 0.15, -13.6, 0.0, 0.36, 0.69, 9, 0, 4, 72.0),
    "calm": (0.2, 0.55, -14.4, 0.0, 0.47, 0.65, 5, 1, 4, 80.0),
    "angry": (0.92, 0.2, -4.3, 0.0, 0.36, 0.0, 4, 0, 4, 140.0),
    "tense": (0.7, 0.3, -5.3, 0.0, 0.4, 0.02, 2, 0, 4, 130.0),
    "dreamy": (0.3, 0.45, -13.3, 0.0, 0.46, 0.67, 3, 1, 3, 84.0),
    "triumphant": (0.9, 0.7, -4.3, 0.0, 0.51, 0.02, 2, 1, 4, 125.0),
    "melancholic": (0.4, 0.3, -9.5, 0.0, 0.47, 0.36, 2, 0, 4, 92.0),
}
MOODS: dict[str, EmotionFeatures] = {name: EmotionFeatures(*row) for name, row in _MOOD_TABLE.items()}
