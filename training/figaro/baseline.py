"""A trivial generator to read fidelity numbers against: random notes from the described chords.

For each description bar it keeps the time signature, instruments and chords, and draws as many notes
as the ``Note Density`` token asks for (FIGARO: notes per position, 12 positions a quarter; every
described instrument at least once, see :func:`described_note_count`), at the
described mean velocity and around the described mean pitch, with pitches from the tones of the chord
in force at each onset (drums: kick, snare, hi-hat). Onsets fall uniformly on a 16th-note grid. No
model, no memory: whatever a trained model scores above this is learnt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from e2m_live.description.vocab import (
    BAR_KEY,
    CHORD_KEY,
    DRUM_INSTRUMENT,
    DURATION_BINS,
    DURATION_KEY,
    INSTRUMENT_KEY,
    MEAN_PITCH_BINS,
    MEAN_PITCH_KEY,
    MEAN_VELOCITY_BINS,
    MEAN_VELOCITY_KEY,
    NO_CHORD,
    NOTE_DENSITY_BINS,
    NOTE_DENSITY_KEY,
    PITCH_CLASSES,
    PITCH_KEY,
    POSITION_KEY,
    POSITIONS_PER_QUARTER,
    TIME_SIGNATURE_KEY,
    VELOCITY_BINS,
    VELOCITY_KEY,
    split_bars,
    token,
)
from e2m_live.figaro.constraints import CHORD_INTERVALS

DRUM_PITCHES = (36, 38, 42, 42)  # kick, snare, closed hi-hat twice as often
GRID = POSITIONS_PER_QUARTER // 4  # 16th notes
MAX_NOTES_PER_BAR = 256


@dataclass
class DescribedBar:
    """The facts one description bar states."""

    numerator: int = 4
    denominator: int = 4
    density_bin: int = 0
    velocity_bin: int = 16
    pitch_bin: int = 15
    instruments: list[str] = field(default_factory=list)
    chords: list[str] = field(default_factory=list)

    @property
    def positions(self) -> int:
        return round(self.numerator * 4 / self.denominator * POSITIONS_PER_QUARTER)


def parse_description(description: Sequence[str]) -> list[DescribedBar]:
    """Read the per-bar facts from description tokens; malformed values raise ``ValueError``."""
    bars: list[DescribedBar] = []
    for tokens in split_bars(description):
        bar = DescribedBar()
        for tok in tokens:
            key, _, value = tok.partition("_")
            if key == TIME_SIGNATURE_KEY:
                num, den = value.split("/")
                bar.numerator, bar.denominator = int(num), int(den)
            elif key == NOTE_DENSITY_KEY:
                bar.density_bin = int(value)
            elif key == MEAN_VELOCITY_KEY:
                bar.velocity_bin = int(value)
            elif key == MEAN_PITCH_KEY:
                bar.pitch_bin = int(value)
            elif key == INSTRUMENT_KEY:
                bar.instruments.append(value)
            elif key == CHORD_KEY:
                bar.chords.append(value)
        bars.append(bar)
    return bars


def chord_pitch_classes(label: str) -> tuple[int, ...]:
    """Pitch classes of a chord label such as ``"F#:min7"``; ``()`` for no chord or an unknown label."""
    if label == NO_CHORD or ":" not in label:
        return ()
    root, quality = label.split(":", 1)
    if root not in PITCH_CLASSES or quality not in CHORD_INTERVALS:
        return ()
    r = PITCH_CLASSES.index(root)
    return tuple((r + i) % 12 for i in CHORD_INTERVALS[quality])


def described_note_count(bar: DescribedBar) -> int:
    """Notes the ``Note Density`` bin stands for (FIGARO: notes per position), at least one per
    described instrument; bin 0 (fewer than 0.19 notes per position) counts as half a bin."""
    per_position = max(float(NOTE_DENSITY_BINS[bar.density_bin]), float(NOTE_DENSITY_BINS[1]) / 2)
    return min(MAX_NOTES_PER_BAR, max(len(bar.instruments), round(per_position * max(1, bar.positions))))


def _nearest(values: np.ndarray, x: float) -> int:
    return int(np.argmin(np.abs(values - x)))


def _pitch_near(pitch_classes: Sequence[int], centre: float, rng: np.random.Generator) -> int:
    """A pitch with one of ``pitch_classes`` within an octave of ``centre``."""
    pc = int(rng.choice(pitch_classes))
    low = int(centre) - 6
    pitch = low + (pc - low) % 12
    return int(np.clip(pitch, 0, 127))


def generate_bar(
    bar: DescribedBar, index: int, rng: np.random.Generator, last_chord: str | None
) -> list[str]:
    """REMI+ tokens of one bar drawn from its description (``index`` is the 1-based bar number)."""
    out = [token(BAR_KEY, index), token(TIME_SIGNATURE_KEY, f"{bar.numerator}/{bar.denominator}")]
    positions = max(1, bar.positions)
    chords = bar.chords or ([last_chord] if last_chord else [])
    chord_span = positions / max(1, len(chords))
    n_notes = described_note_count(bar) if bar.instruments else 0
    velocity = float(MEAN_VELOCITY_BINS[bar.velocity_bin])
    centre = float(MEAN_PITCH_BINS[bar.pitch_bin])
    grid = np.arange(0, positions, GRID)
    onsets = np.sort(rng.choice(grid, size=n_notes)) if n_notes else np.array([], dtype=int)

    events: list[tuple[int, int, list[str]]] = []  # (position, order, tokens)
    for i, chord in enumerate(chords):
        events.append((round(i * chord_span), 0, [token(CHORD_KEY, chord)]))
    # every described instrument plays at least once, the rest at random
    players = [*bar.instruments, *rng.choice(bar.instruments, size=max(0, n_notes - len(bar.instruments)))]
    rng.shuffle(players)
    for onset, instrument in zip(onsets, players, strict=True):
        instrument = str(instrument)
        chord = chords[min(len(chords) - 1, int(onset // chord_span))] if chords else NO_CHORD
        if instrument == DRUM_INSTRUMENT:
            pitch_tok = token(PITCH_KEY, f"drum_{rng.choice(DRUM_PITCHES)}")
            duration = 1
        else:
            pcs = chord_pitch_classes(chord) or tuple(range(12))
            pitch_tok = token(PITCH_KEY, _pitch_near(pcs, centre, rng))
            duration = POSITIONS_PER_QUARTER
        v = float(np.clip(rng.normal(velocity, 6.0), 1, 127))
        events.append(
            (
                int(onset),
                1,
                [
                    token(INSTRUMENT_KEY, instrument),
                    pitch_tok,
                    token(VELOCITY_KEY, _nearest(VELOCITY_BINS, v)),
                    token(DURATION_KEY, _nearest(DURATION_BINS, duration)),
                ],
            )
        )
    for position, _, toks in sorted(events, key=lambda e: (e[0], e[1])):
        out.append(token(POSITION_KEY, position))
        out.extend(toks)
    return out


def baseline_remi(description: Sequence[str], seed: int = 0) -> list[str]:
    """REMI+ tokens for every bar of ``description``, drawn with the given seed."""
    rng = np.random.default_rng(seed)
    tokens: list[str] = []
    last_chord: str | None = None
    for i, bar in enumerate(parse_description(description), start=1):
        tokens.extend(generate_bar(bar, i, rng, last_chord))
        if bar.chords:
            last_chord = bar.chords[-1]
    return tokens
