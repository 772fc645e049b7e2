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
  ``-strength * (x - mean)`` on voice-like programs (instrumentalness).

Set every strength to 0 (``Steering.off()``) to sample the learned model alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from e2m_live.features import FEATURE_ORDER
from e2m_live.planner.classes import (
    ACOUSTIC_PROGRAMS,
    ELECTRIC_PROGRAMS,
    INSTRUMENT_NAMES,
    STREAM_VOCAB,
    VOICE_PROGRAMS,
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

    @classmethod
    def off(cls) -> Steering:
        return cls()

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> Steering:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown steering strength(s): {', '.join(unknown)}")
        return cls(**{k: float(v) for k, v in data.items()})


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
    return {
        "major_minus_minor": major - minor,
        "acoustic_minus_electric": acoustic - electric,
        "voice": voice,
        "in_scale_major": in_scale[1],
        "in_scale_minor": in_scale[0],
    }


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
        slope = np.zeros((features.shape[0], 1), dtype=np.float32)
        if name == "note_density" and s.energy_note_density:
            slope = slope + s.energy_note_density * self._delta(features, "energy")
        if name == "mean_velocity":
            if s.energy_mean_velocity:
                slope = slope + s.energy_mean_velocity * self._delta(features, "energy")
            if s.loudness_mean_velocity:
                slope = slope + s.loudness_mean_velocity * self._delta(features, "loudness")
        if not np.any(slope):
            return None
        centred = (np.arange(n_classes, dtype=np.float32) - (n_classes - 1) / 2) / 4.0
        return slope * centred

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
