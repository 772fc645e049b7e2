"""Explicit conditioning: logit biases that make the faders dependable.

The LSTMs learn how features relate to descriptions from data whose labels are partly estimated
and weakly tied to single bars, so a learned model can follow a fader only faintly. On top of the
learned distributions the sampler adds, per requested feature, a bias proportional to how far the
feature is from its training mean:

* ordered classes: a linear tilt ``strength * (x - mean) * (bin - centre) / 4`` over the bins, which
  moves the distribution's mean up or down a few bins (energy -> note density and mean velocity,
  loudness -> mean velocity);
* chords: ``+/- strength * (x - mean)`` on major-like (``maj``, ``maj7``, ``dom7``, ``aug``) vs
  minor-like (``min``, ``min7``, ``dim``) qualities (valence, mode); and a constant bonus for chords
  whose root lies in the requested mode's scale (key);
* instruments: ``+/- strength * (x - mean)`` on acoustic vs electric programs (acousticness), and
  ``-strength * (x - mean)`` on voice-like programs (instrumentalness). These only act where the
  stream chooses instruments itself (``auto_ensemble`` off);
* danceability: a tilt up on note density and down on mean duration (denser, shorter notes), and
  above the training mean a bonus ``strength * (x - mean)`` on repeating the previous bar's note
  density bin (a steadier pulse);
* tonic and cadence (:meth:`SteeringBias.cadence`, scaled by the arrangement's ``key_lock``): on the
  tonic chord (I, or i in minor) as the first chord of a section, on V or IV (iv in minor) in the
  second-to-last bar, and on the tonic plus an early end of the chords in the last bar.

``auto_ensemble`` makes the planner draw an ``auto`` section's instruments from the features
(:mod:`e2m_live.planner.ensemble`) instead of letting the stream choose them.

Set every strength to 0 (``Steering.off()``) to sample the learned model alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from e2m_live.features import FEATURE_ORDER
from e2m_live.planner.classes import (
    ACOUSTIC_PROGRAMS,
    ELECTRIC_PROGRAMS,
    INSTRUMENT_NAMES,
    STREAM_VOCAB,
    VOICE_PROGRAMS,
    RelativeChord,
)

MAJOR_QUALITIES = frozenset({"maj", "maj7", "dom7", "aug"})
MINOR_QUALITIES = frozenset({"min", "min7", "dim"})
#: Scale degrees of major and (natural + harmonic) minor.
SCALE_DEGREES = {1: frozenset({0, 2, 4, 5, 7, 9, 11}), 0: frozenset({0, 2, 3, 5, 7, 8, 10, 11})}

_F = {name: i for i, name in enumerate(FEATURE_ORDER)}


@dataclass(frozen=True)
class Steering:
    """Strengths of the explicit conditioning (logit units per unit of normalised feature)."""

    energy_note_density: float = 0.0
    energy_mean_velocity: float = 0.0
    loudness_mean_velocity: float = 0.0
    valence_major_chords: float = 0.0
    mode_major_chords: float = 0.0
    key_scale_chords: float = 0.0
    acousticness_instruments: float = 0.0
    instrumentalness_voices: float = 0.0
    danceability_note_density: float = 0.0
    danceability_mean_duration: float = 0.0
    danceability_steady_density: float = 0.0
    tonic_opening: float = 0.0
    cadence: float = 0.0
    auto_ensemble: bool = False

    @classmethod
    def off(cls) -> Steering:
        return cls()

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float | bool]) -> Steering:
        kinds = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(kinds))
        if unknown:
            raise ValueError(f"unknown steering strength(s): {', '.join(unknown)}")
        values: dict[str, Any] = {
            k: bool(v) if kinds[k] in ("bool", bool) else float(v) for k, v in data.items()
        }
        return cls(**values)


#: Chords of the tonic opening and the cadence, by mode (1 major, 0 minor): the tonic triad or
#: seventh; the approach: V (major triad or dominant seventh, harmonic minor's V too) or IV (iv).
_CADENCE_CHORDS: dict[str, frozenset[RelativeChord]] = {
    "tonic_1": frozenset({RelativeChord(0, "maj"), RelativeChord(0, "maj7")}),
    "tonic_0": frozenset({RelativeChord(0, "min"), RelativeChord(0, "min7")}),
    "approach_1": frozenset(
        {RelativeChord(7, "maj"), RelativeChord(7, "dom7"), RelativeChord(5, "maj"), RelativeChord(5, "maj7")}
    ),
    "approach_0": frozenset(
        {RelativeChord(7, "maj"), RelativeChord(7, "dom7"), RelativeChord(5, "min"), RelativeChord(5, "min7")}
    ),
}


def _pad_to_stream(chord_values: np.ndarray) -> np.ndarray:
    """A per-chord vector placed at the chords' ids of the stream vocabulary."""
    out = np.zeros(STREAM_VOCAB.size, dtype=np.float32)
    out[STREAM_VOCAB.first_chord :] = chord_values
    return out


def _stream_masks() -> dict[str, np.ndarray]:
    v = STREAM_VOCAB
    major = np.zeros(v.size, dtype=np.float32)
    minor = np.zeros(v.size, dtype=np.float32)
    degree = np.full(v.size, -1)
    for i, chord in enumerate(v.chords):
        token_id = v.first_chord + i
        if chord.quality in MAJOR_QUALITIES:
            major[token_id] = 1.0
        if chord.quality in MINOR_QUALITIES:
            minor[token_id] = 1.0
        if chord.degree is not None:
            degree[token_id] = chord.degree
    acoustic = np.zeros(v.size, dtype=np.float32)
    electric = np.zeros(v.size, dtype=np.float32)
    voice = np.zeros(v.size, dtype=np.float32)
    for program, _name in enumerate(INSTRUMENT_NAMES[:128]):
        token_id = v.FIRST_INSTRUMENT + program
        acoustic[token_id] = float(program in ACOUSTIC_PROGRAMS)
        electric[token_id] = float(program in ELECTRIC_PROGRAMS)
        voice[token_id] = float(program in VOICE_PROGRAMS)
    in_scale = {
        mode: np.array([float(d >= 0 and int(d) in degrees) for d in degree], dtype=np.float32)
        for mode, degrees in SCALE_DEGREES.items()
    }
    functions = {
        name: np.array([float(chord in group) for chord in v.chords], dtype=np.float32)
        for name, group in _CADENCE_CHORDS.items()
    }
    return {
        **{name: _pad_to_stream(values) for name, values in functions.items()},
        "major_minus_minor": major - minor,
        "acoustic_minus_electric": acoustic - electric,
        "voice": voice,
        "in_scale_major": in_scale[1],
        "in_scale_minor": in_scale[0],
    }


@dataclass(frozen=True)
class CadenceBias:
    """Stream biases ``[B, vocab]``: on the first chord of the first bar, on every chord of the
    second-to-last bar, on every chord and the bar end of the last bar."""

    first: np.ndarray
    approach: np.ndarray
    last: np.ndarray

    def select(self, rows: np.ndarray) -> CadenceBias:
        return CadenceBias(self.first[rows], self.approach[rows], self.last[rows])


class SteeringBias:
    """Precomputed bias tensors for one :class:`Steering` and the training feature means."""

    def __init__(self, steering: Steering, feature_means: np.ndarray) -> None:
        self.steering = steering
        self.means = np.asarray(feature_means, dtype=np.float32)
        self.masks = _stream_masks()

    def _delta(self, features: np.ndarray, name: str) -> np.ndarray:
        """``[B, 1]``: normalised feature minus its training mean."""
        i = _F[name]
        return (features[:, i] - self.means[i])[:, None]

    def ordered(self, name: str, features: np.ndarray, n_classes: int) -> np.ndarray | None:
        """Bias ``[B, n_classes]`` for ordered class ``name``, or ``None`` if not steered."""
        s = self.steering
        slope: np.ndarray = np.zeros((features.shape[0], 1), dtype=np.float32)
        if name == "note_density":
            if s.energy_note_density:
                slope = slope + s.energy_note_density * self._delta(features, "energy")
            if s.danceability_note_density:
                slope = slope + s.danceability_note_density * self._delta(features, "danceability")
        if name == "mean_duration" and s.danceability_mean_duration:
            slope = slope - s.danceability_mean_duration * self._delta(features, "danceability")
        if name == "mean_velocity":
            if s.energy_mean_velocity:
                slope = slope + s.energy_mean_velocity * self._delta(features, "energy")
            if s.loudness_mean_velocity:
                slope = slope + s.loudness_mean_velocity * self._delta(features, "loudness")
        if not np.any(slope):
            return None
        centred = (np.arange(n_classes, dtype=np.float32) - (n_classes - 1) / 2) / 4.0
        return slope * centred

    def steady(self, name: str, features: np.ndarray) -> np.ndarray | None:
        """Bonus ``[B]`` on repeating the previous bar's bin of ordered class ``name``, or ``None``."""
        strength = self.steering.danceability_steady_density
        if name != "note_density" or not strength:
            return None
        bonus = strength * np.clip(self._delta(features, "danceability")[:, 0], 0.0, None)
        return bonus if np.any(bonus) else None

    def cadence(self, features: np.ndarray, key_lock: float) -> CadenceBias | None:
        """Chord biases of the tonic opening and the closing cadence, scaled by ``key_lock``, or
        ``None`` when they are off (key lock 0 leaves the learned chords alone)."""
        opening = self.steering.tonic_opening * key_lock
        closing = self.steering.cadence * key_lock
        if not opening and not closing:
            return None
        major = features[:, _F["mode"], None] >= 0.5
        m = self.masks
        tonic = np.where(major, m["tonic_1"], m["tonic_0"])
        approach = np.where(major, m["approach_1"], m["approach_0"])
        end_early = np.zeros(STREAM_VOCAB.size, dtype=np.float32)
        end_early[STREAM_VOCAB.END_BAR] = 1.0
        return CadenceBias(
            first=opening * tonic, approach=closing * approach, last=closing * (tonic + end_early)
        )

    def stream(self, features: np.ndarray) -> np.ndarray | None:
        """Bias ``[B, vocab]`` for the instruments + chords stream, or ``None`` if not steered."""
        s = self.steering
        m = self.masks
        bias = np.zeros((features.shape[0], STREAM_VOCAB.size), dtype=np.float32)
        if s.valence_major_chords:
            bias += s.valence_major_chords * self._delta(features, "valence") * m["major_minus_minor"]
        if s.mode_major_chords:
            bias += s.mode_major_chords * self._delta(features, "mode") * m["major_minus_minor"]
        if s.key_scale_chords:
            major = features[:, _F["mode"], None] >= 0.5
            in_scale = np.where(major, m["in_scale_major"], m["in_scale_minor"])
            bias += s.key_scale_chords * in_scale
        if s.acousticness_instruments:
            bias += (
                s.acousticness_instruments
                * self._delta(features, "acousticness")
                * m["acoustic_minus_electric"]
            )
        if s.instrumentalness_voices:
            bias -= s.instrumentalness_voices * self._delta(features, "instrumentalness") * m["voice"]
        if not np.any(bias):
            return None
        return bias
