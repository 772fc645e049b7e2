"""Immediate answers: decoded bars adapted to the features requested since they were planned.

A control change re-plans a section, and the model needs one to two bars to decode its first
bar. Until it is ready the engine plays the bars it already has, with an :class:`Adaptation`
(the player applies it note by note as it schedules the bar; :func:`adapt` builds the bar),
so key, mode and energy are heard from the next bar line (loudness from the next beat, as a gain
the player applies when it sends a note-on: :func:`loudness_gain`). All functions are pure: a new
bar out, the decoded one untouched (it may be played again, or primed from).

* key and mode: exact transposition by the shortest interval (-6..+5 semitones), and a change of
  mode maps scale degree to scale degree of the parallel scale (major 3rd, 6th, 7th <-> minor
  3rd, 6th, 7th); chromatic notes keep their interval from the tonic; drums are untouched;
* energy: velocities scaled by ``10 ** (0.35 * delta)`` (0.6 up: x1.6); when energy falls the
  weakest off-beat notes are dropped too (a fraction ``1.2 * |delta|``, at most 3/4), so the
  music thins; notes on a beat always stay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from e2m_live.features import EmotionFeatures
from e2m_live.loudness import DB_PER_VELOCITY_DECADE
from e2m_live.music import Bar, Note

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)  # natural minor: the parallel of MAJOR degree by degree
#: Velocity factor per unit of energy, as a power of ten (0.6 up: x1.62, 0.6 down: x0.62).
ENERGY_VELOCITY = 0.35
#: Fraction of off-beat notes dropped per unit of energy fall, and the most ever dropped.
ENERGY_THINNING, MAX_THINNING = 1.2, 0.75
_ON_BEAT = 1e-3  # quarters: a note this close to a beat counts as on it


def _shift(from_key: int, to_key: int) -> int:
    """The shortest transposition from one tonic to another, -6..+5 semitones."""
    return (to_key - from_key + 6) % 12 - 6


def pitch_map(from_key: int, from_mode: int, to_key: int, to_mode: int) -> tuple[int, ...]:
    """The semitone offset to add to each of the 12 pitch classes (index: pitch class)."""
    source, target = (MAJOR if from_mode else MINOR), (MAJOR if to_mode else MINOR)
    shift = _shift(from_key, to_key)
    offsets = []
    for pitch_class in range(12):
        relative = (pitch_class - from_key) % 12
        mapped = target[source.index(relative)] if relative in source else relative
        offsets.append(mapped - relative + shift)
    return tuple(offsets)


def transpose_notes(
    notes: list[Note], from_key: int, from_mode: int, to_key: int, to_mode: int
) -> list[Note]:
    """Pitched notes moved into ``to_key``/``to_mode`` (see the module doc); drums untouched."""
    if from_key == to_key and from_mode == to_mode:
        return list(notes)
    offsets = pitch_map(from_key, from_mode, to_key, to_mode)
    return [
        note
        if note.is_drum
        else dataclasses.replace(note, pitch=_in_range(note.pitch + offsets[note.pitch % 12]))
        for note in notes
    ]


def energy_notes(notes: list[Note], from_energy: float, to_energy: float, beat: float = 1.0) -> list[Note]:
    """Velocities scaled by the energy change; on a fall the weakest off-beat notes are dropped.
    ``beat``: the beat length in quarters (1 for x/4)."""
    delta = float(to_energy) - float(from_energy)
    if abs(delta) < 1e-6:
        return list(notes)
    kept = list(notes)
    if delta < 0:
        dropped = _thinned(kept, -delta, beat)
        kept = [n for i, n in enumerate(kept) if i not in dropped]
    factor = 10.0 ** (ENERGY_VELOCITY * delta)
    return [dataclasses.replace(n, velocity=min(127, max(1, round(n.velocity * factor)))) for n in kept]


def _in_range(pitch: int) -> int:
    while pitch > 127:
        pitch -= 12
    while pitch < 0:
        pitch += 12
    return pitch


@dataclass(frozen=True, slots=True)
class Adaptation:
    """What the immediate answers do to one decoded bar, as plain numbers: cheap to make, and
    applied note by note where the bar is scheduled (the player), so no note objects are built
    on the player thread. :meth:`apply` builds the adapted bar (priming, measuring)."""

    offsets: tuple[int, ...] | None = None  # semitones to add, per pitch class; None: pitches kept
    factor: float = 1.0  # velocity factor (energy)
    dropped: frozenset[int] = frozenset()  # indices of the notes left out (energy fell)

    def pitch(self, note: Note) -> int:
        if self.offsets is None or note.is_drum:
            return note.pitch
        return _in_range(note.pitch + self.offsets[note.pitch % 12])

    def velocity(self, note: Note) -> int:
        return note.velocity if self.factor == 1.0 else min(127, max(1, round(note.velocity * self.factor)))

    def apply(self, bar: Bar) -> Bar:
        notes = [
            Note(self.pitch(n), self.velocity(n), n.start, n.duration, n.program, n.is_drum)
            for i, n in enumerate(bar.notes)
            if i not in self.dropped
        ]
        return Bar(notes, bar.numerator, bar.denominator, bar.tempo, bar.index)


def _thinned(notes: list[Note], fall: float, beat: float) -> frozenset[int]:
    """Indices of the weakest off-beat notes: a share ``ENERGY_THINNING * fall``, at most 3/4."""
    off_beat = [i for i, n in enumerate(notes) if abs(n.start / beat - round(n.start / beat)) > _ON_BEAT]
    count = round(len(off_beat) * min(MAX_THINNING, fall * ENERGY_THINNING))
    return frozenset(sorted(off_beat, key=lambda i: (notes[i].velocity, -notes[i].start))[:count])


def adaptation(bar: Bar, planned: EmotionFeatures, requested: EmotionFeatures) -> Adaptation | None:
    """How ``bar`` (decoded under ``planned``) should sound under ``requested`` (key, mode,
    energy); None when nothing differs."""
    key_changed = (planned.key, planned.mode) != (requested.key, requested.mode)
    delta = float(requested.energy) - float(planned.energy)
    if not key_changed and abs(delta) < 1e-6:
        return None
    offsets = pitch_map(planned.key, planned.mode, requested.key, requested.mode) if key_changed else None
    if abs(delta) < 1e-6:
        return Adaptation(offsets)
    dropped = _thinned(bar.notes, -delta, 4.0 / bar.denominator) if delta < 0 else frozenset()
    return Adaptation(offsets, 10.0 ** (ENERGY_VELOCITY * delta), dropped)


def adapt(bar: Bar, planned: EmotionFeatures, requested: EmotionFeatures) -> Bar:
    """``bar`` (decoded under ``planned``) as it should sound under ``requested``: key, mode and
    energy. Returns ``bar`` itself when nothing differs."""
    change = adaptation(bar, planned, requested)
    return bar if change is None else change.apply(bar)


def loudness_gain(planned_db: float, requested_db: float) -> float:
    """The velocity factor that turns material made for ``planned_db`` into ``requested_db``
    (General MIDI's curve, as :func:`e2m_live.loudness.velocity_gain`)."""
    return float(10.0 ** ((float(requested_db) - float(planned_db)) / DB_PER_VELOCITY_DECADE))
