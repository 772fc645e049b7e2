"""The ten emotion controls, with Spotify's audio-feature semantics and ranges.

:class:`EmotionFeatures` is the value the performer steers (OSC faders, mood presets) and the
label the models are trained on. :data:`FEATURES` holds one :class:`FeatureSpec` per feature
(range, whole numbers or not, unit, help, what a live control does out of range); the
validation here, the OSC address table, the command-line flags and the daemon's configuration
are derived from it. See ``docs/features.md`` for the table and the mood presets.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "FEATURES",
    "FEATURE_ORDER",
    "INTEGER_FIELDS",
    "KEY_NAMES",
    "MOODS",
    "RANGES",
    "EmotionFeatures",
    "FeatureError",
    "FeatureSpec",
    "clamp",
    "key_name",
    "parse_key",
    "parse_mode",
    "parse_names",
]


class FeatureError(ValueError):
    """A feature value is missing, of the wrong type or outside its range."""


#: What a live control (OSC, the browser surface) does with a number outside a feature's range,
#: or with a fraction for a whole-number feature: ``clamp`` (or round) it and say so, or ``reject`` it.
Policy = Literal["clamp", "reject"]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature, the single source every consumer derives from: the validation of
    :class:`EmotionFeatures` (:func:`clamp` too), the OSC address table's arguments and feedback,
    the command-line flags and the ``[features]`` keys of the daemon's TOML configuration."""

    name: str
    low: float  #: inclusive range (an ``int`` for whole-number features)
    high: float
    help: str  #: one line for ``--help``; ``{range}`` stands for ``low..high``
    integer: bool = False  #: whole numbers only (pitch class, minor/major, beats per bar)
    unit: str = ""  #: shown beside the range (docs/osc.md, the patches)
    names: tuple[str, ...] = ()  #: value ``i`` is called ``names[i]`` (key: C..B; mode: minor, major)
    parse_name: Callable[[str], int] | None = None  #: a name (aliases too) -> value, for ``names``
    out_of_range: Policy = "clamp"  #: a live control outside the range: clamped (and reported) or rejected
    fraction: Policy = "clamp"  #: a live control's fraction for an ``integer`` feature: rounded or rejected

    @property
    def range(self) -> str:
        """``"0..1"``, ``"-60..0"``, ``"40..240"``."""
        return f"{self.low:g}..{self.high:g}"

    def describe(self) -> str:
        """``"an integer in 3..7"``, ``"a number in 0..1"`` (the validation messages' wording)."""
        return f"an integer in {self.range}" if self.integer else f"a number in {self.range}"

    def flag_help(self) -> str:
        """The command-line help, e.g. ``"BPM, 40..240"``."""
        return self.help.format(range=self.range)


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


#: The ten features, in the field order of :class:`EmotionFeatures`, of its vector, of
#: ``/e2m/features`` and of the JSON. Tempo 40..240 BPM covers Spotify's tempo estimates (the
#: 1,248 seed tracks span 62..205 BPM) with room for very slow and very fast material. Key and
#: mode reject what is out of range (a pitch class 12 or a mode 2 means nothing near), and key
#: rejects fractions (3.5 names no pitch class; a mode toggle's 0.7 rounds to major).
FEATURES: dict[str, FeatureSpec] = {
    spec.name: spec
    for spec in (
        FeatureSpec("energy", 0.0, 1.0, "intensity and activity, {range}"),
        FeatureSpec("valence", 0.0, 1.0, "musical positiveness, {range}"),
        FeatureSpec("loudness", -60.0, 0.0, "overall loudness in dB, {range}", unit="dB"),
        FeatureSpec("instrumentalness", 0.0, 1.0, "absence of a sung line, {range}"),
        FeatureSpec("danceability", 0.0, 1.0, "suitability for dancing, {range}"),
        FeatureSpec("acousticness", 0.0, 1.0, "acoustic rather than electric/electronic sound, {range}"),
        FeatureSpec(
            "key",
            0,
            11,
            "tonic: C, C#, Db, ... B or {range}",
            integer=True,
            names=KEY_NAMES,
            parse_name=parse_key,
            out_of_range="reject",
            fraction="reject",
        ),
        FeatureSpec(
            "mode",
            0,
            1,
            "major or minor (1/0)",
            integer=True,
            names=("minor", "major"),
            parse_name=parse_mode,
            out_of_range="reject",
        ),
        FeatureSpec("time_signature", 3, 7, "beats per bar, {range}", integer=True, unit="beats/bar"),
        FeatureSpec("tempo", 40.0, 240.0, "BPM, {range}", unit="BPM"),
    )
}

#: Field order of :class:`EmotionFeatures`, of its vector, of ``/e2m/features`` and of the JSON.
FEATURE_ORDER: tuple[str, ...] = tuple(FEATURES)
#: Inclusive range of every field.
RANGES: dict[str, tuple[float, float]] = {name: (spec.low, spec.high) for name, spec in FEATURES.items()}
#: Fields that hold whole numbers (pitch class, minor/major, beats per bar).
INTEGER_FIELDS: frozenset[str] = frozenset(name for name, spec in FEATURES.items() if spec.integer)


def _spec(field: str) -> FeatureSpec:
    spec = FEATURES.get(field)
    if spec is None:
        raise FeatureError(f"unknown feature {field!r}; features are {', '.join(FEATURE_ORDER)}")
    return spec


def _check_value(field: str, value: Any) -> int | float:
    """Validate one value and return it as ``int`` (integer fields) or ``float``."""
    spec = _spec(field)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FeatureError(f"{field} must be {spec.describe()}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise FeatureError(f"{field} must be {spec.describe()}, got {value!r}")
    if spec.integer:
        if number != round(number):
            raise FeatureError(f"{field} must be {spec.describe()}, got {value!r}")
        number = round(number)
    if not spec.low <= number <= spec.high:
        raise FeatureError(f"{field} must be {spec.describe()}, got {value!r}")
    return number


def clamp(field: str, value: float) -> tuple[int | float, bool]:
    """Clamp ``value`` into ``field``'s range; returns ``(value, was_clamped)``.

    Integer fields are rounded to the nearest whole number first (rounding alone does not
    count as clamping). Raises :class:`FeatureError` for an unknown field or a non-finite value.
    """
    spec = _spec(field)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FeatureError(f"{field} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise FeatureError(f"{field} must be a finite number, got {value!r}")
    if spec.integer:
        number = float(round(number))
    clamped = min(max(number, spec.low), spec.high)
    result: int | float = int(clamped) if spec.integer else clamped
    return result, clamped != number


def parse_names(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every name turned into its number (``{"key": "F#"}`` -> ``{"key": 6}``);
    features without names, and numbers, are left as they are (the dataclass checks them)."""
    parsed = dict(values)
    for name, value in values.items():
        spec = FEATURES.get(name)
        if isinstance(value, str) and spec is not None and spec.parse_name is not None:
            parsed[name] = spec.parse_name(value)
    return parsed


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
        fields: dict[str, Any] = {}
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
        return cls(**parse_names(data))

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
        return dataclasses.replace(self, **parse_names(changes))

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
_MOOD_TABLE: dict[str, tuple[float, float, float, float, float, float, int, int, int, float]] = {
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
