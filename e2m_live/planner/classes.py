"""The planner's token classes: four ordered bins per bar, and one instruments + chords stream.

A FIGARO description bar is ``Bar, Time Signature, Note Density, Mean Velocity, Mean Pitch,
Mean Duration, Instrument*, Chord*``. The planner predicts the four meta tokens as bin indices
(ordered classes, 0..32) and the instruments and chords of each bar as a token stream::

    inst inst ... END_INSTRUMENTS chord chord ... END_BAR   (once per bar)

Instruments come in one canonical order (FIGARO vocabulary order: program 0..127, then drums),
so the set is a well-defined sequence. Chords are stored *relative to the key*
(scale degree + quality): ``Chord_A:min`` in C is degree 9 ``min``; the planner transposes
them to the requested key when it assembles the description.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pretty_midi

from e2m_live.description.vocab import (
    CHORD_QUALITIES,
    DRUM_INSTRUMENT,
    MEAN_DURATION_BINS,
    MEAN_PITCH_BINS,
    MEAN_VELOCITY_BINS,
    NO_CHORD,
    NOTE_DENSITY_BINS,
    PITCH_CLASSES,
)

#: The four ordered classes, in the order FIGARO writes them in a bar.
ORDERED_CLASSES: tuple[str, ...] = ("note_density", "mean_velocity", "mean_pitch", "mean_duration")

#: Number of bins (tokens ``<Key>_0 .. <Key>_{n-1}``) of each ordered class.
ORDERED_CLASS_SIZES: dict[str, int] = {
    "note_density": len(NOTE_DENSITY_BINS),
    "mean_velocity": len(MEAN_VELOCITY_BINS),
    "mean_pitch": len(MEAN_PITCH_BINS),
    "mean_duration": len(MEAN_DURATION_BINS),
}

#: Instrument names in FIGARO vocabulary order (program 0..127, then ``"drum"``).
INSTRUMENT_NAMES: tuple[str, ...] = (
    *(pretty_midi.program_to_instrument_name(p) for p in range(128)),
    DRUM_INSTRUMENT,
)
_INSTRUMENT_INDEX = {name: i for i, name in enumerate(INSTRUMENT_NAMES)}


@dataclass(frozen=True, slots=True)
class RelativeChord:
    """A chord as scale degree (semitones above the tonic, 0..11) and quality; ``degree is None``
    for FIGARO's no-chord symbol ``N:N``."""

    degree: int | None
    quality: str

    def absolute(self, key: int) -> str:
        """The chord's FIGARO value in ``key``, e.g. ``RelativeChord(9, "min").absolute(0) == "A:min"``."""
        if self.degree is None:
            return NO_CHORD
        return f"{PITCH_CLASSES[(self.degree + key) % 12]}:{self.quality}"


def relative_chord(chord: str, key: int) -> RelativeChord:
    """``"A:min"`` in key 0 -> ``RelativeChord(9, "min")``. Raises ``ValueError`` for other text."""
    if chord == NO_CHORD:
        return RelativeChord(None, "N")
    root, sep, quality = chord.partition(":")
    if not sep or root not in PITCH_CLASSES or quality not in CHORD_QUALITIES:
        raise ValueError(f"not a FIGARO chord: {chord!r}")
    return RelativeChord((PITCH_CLASSES.index(root) - key) % 12, quality)


class StreamVocab:
    """Ids of the instruments + chords stream.

    ``0`` padding, ``1`` start of the plan, ``2`` end of the instruments of a bar, ``3`` end of the
    bar, then the 129 instruments, then 12 x 8 relative chords and ``N:N``.
    """

    PAD = 0
    START = 1
    END_INSTRUMENTS = 2
    END_BAR = 3
    FIRST_INSTRUMENT = 4

    def __init__(self) -> None:
        self.n_instruments = len(INSTRUMENT_NAMES)
        self.first_chord = self.FIRST_INSTRUMENT + self.n_instruments
        self.chords: tuple[RelativeChord, ...] = (
            *(RelativeChord(d, q) for d in range(12) for q in CHORD_QUALITIES),
            RelativeChord(None, "N"),
        )
        self._chord_index = {c: i for i, c in enumerate(self.chords)}
        self.size = self.first_chord + len(self.chords)

    def __len__(self) -> int:
        return self.size

    # -- instruments -----------------------------------------------------------------------
    def instrument_id(self, name: str) -> int:
        try:
            return self.FIRST_INSTRUMENT + _INSTRUMENT_INDEX[name]
        except KeyError:
            raise ValueError(f"unknown instrument {name!r}") from None

    def instrument_name(self, token_id: int) -> str:
        return INSTRUMENT_NAMES[token_id - self.FIRST_INSTRUMENT]

    def is_instrument(self, token_id: int) -> bool:
        return self.FIRST_INSTRUMENT <= token_id < self.first_chord

    # -- chords ----------------------------------------------------------------------------
    def chord_id(self, chord: RelativeChord) -> int:
        return self.first_chord + self._chord_index[chord]

    def chord(self, token_id: int) -> RelativeChord:
        return self.chords[token_id - self.first_chord]

    def is_chord(self, token_id: int) -> bool:
        return self.first_chord <= token_id < self.size

    # -- whole bars ------------------------------------------------------------------------
    def encode_bar(self, instruments: Sequence[str], chords: Sequence[str], key: int) -> list[int]:
        """One bar's stream: canonical-order instruments (duplicates dropped), ``END_INSTRUMENTS``,
        the chords relative to ``key`` in their order, ``END_BAR``."""
        inst_ids = sorted({self.instrument_id(name) for name in instruments})
        chord_ids = [self.chord_id(relative_chord(c, key)) for c in chords]
        return [*inst_ids, self.END_INSTRUMENTS, *chord_ids, self.END_BAR]

    def decode_bar(self, ids: Sequence[int], key: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Inverse of :meth:`encode_bar` (``END_BAR`` optional): ``(instruments, chords)`` in ``key``."""
        instruments: list[str] = []
        chords: list[str] = []
        for token_id in ids:
            if self.is_instrument(token_id):
                instruments.append(self.instrument_name(token_id))
            elif self.is_chord(token_id):
                chords.append(self.chord(token_id).absolute(key))
            elif token_id == self.END_BAR:
                break
        return tuple(instruments), tuple(chords)


STREAM_VOCAB = StreamVocab()

#: Upper limits the sampler enforces per bar (the largest counts in FIGARO's reference outputs
#: of the shared corpora are 10 instruments and 4 chords).
MAX_INSTRUMENTS_PER_BAR = 10
MAX_CHORDS_PER_BAR = 4


# -- instrument families (for the acousticness / instrumentalness controls) ------------------


def _programs(*ranges: range | int) -> frozenset[int]:
    out: set[int] = set()
    for r in ranges:
        out.update(r if isinstance(r, range) else (r,))
    return frozenset(out)


#: Acoustic sound sources: acoustic pianos, harpsichord, chromatic percussion, church/reed organs,
#: accordions, harmonica, nylon/steel guitars, acoustic bass, orchestral strings and string
#: ensembles, choirs, brass, reeds, pipes, ethnic instruments, acoustic percussion.
ACOUSTIC_PROGRAMS: frozenset[int] = _programs(
    0,
    1,
    3,
    6,
    range(8, 16),
    range(19, 26),
    32,
    range(40, 50),
    52,
    53,
    range(56, 62),
    range(64, 80),
    range(104, 118),
)
#: Electric and electronic sound sources: electric pianos, clavinet and organs, electric guitars
#: and basses, synth bass, strings, voice and brass, synth leads, pads and effects, synth drums,
#: sound effects.
ELECTRIC_PROGRAMS: frozenset[int] = _programs(
    2,
    4,
    5,
    7,
    range(16, 19),
    range(26, 32),
    range(33, 40),
    50,
    51,
    54,
    62,
    63,
    range(80, 104),
    range(118, 128),
)
#: Voice-like programs (choir, voice oohs, synth voice, voice lead): the sung part of a song.
VOICE_PROGRAMS: frozenset[int] = frozenset({52, 53, 54, 85})
#: Programs that carry an ensemble's bass line: the basses (acoustic, electric, synth), cello,
#: contrabass, tuba. With drums they are the core an arrangement keeps in every bar.
BASS_PROGRAMS: frozenset[int] = _programs(range(32, 40), 42, 43, 58)


def instrument_program(name: str) -> int | None:
    """GM program of an instrument name (``None`` for drums)."""
    index = _INSTRUMENT_INDEX.get(name)
    if index is None:
        raise ValueError(f"unknown instrument {name!r}")
    return None if index == 128 else index
