"""What a listener notices first, counted: repeated notes, hanging notes, track clutter, instrumentation.

Independent of the decoder and of :mod:`e2m_live.analysis`: the counters read a list of
:class:`~e2m_live.music.Bar` (times in quarters from each bar's start) and the ``.mid`` file the project's
writer makes of it, read back with ``mido``.

* **repeated notes**: notes that share instrument, onset (on FIGARO's 12-per-quarter grid) and pitch with an
  earlier note; one MIDI channel cannot play them apart, and they are what made one file hold 91 tracks;
* **longest note** (bars of the bar it starts in) and **overhang** (how far the last note sounds past the
  last bar line, in bars of the last bar);
* **tracks per instrument** in the written ``.mid`` (a DAW user wants one);
* **instruments** (programs 0..127, drums 128), from which the evaluation takes solo, drum and bass shares;
* **in-scale share**: pitched note time whose pitch class lies in the requested key's scale (major, or
  natural minor with its raised 7th).

Own code rather than a library: muspy 0.5 (the one maintained metric library on PyPI) measures pitch and
rhythm statistics (``pitch_in_scale_rate``, ``polyphony``, ``empty_beat_rate`` ...) but none of the counts
above, and would bring music21, pypianoroll and miditoolkit for one ten-line metric; ``mido`` is already a
dependency and reads back exactly what the writer wrote.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import mido
import numpy as np

from e2m_live.arrangement import instrument_name
from e2m_live.description.vocab import DRUM_INSTRUMENT, POSITIONS_PER_QUARTER
from e2m_live.music import DRUM_CHANNEL, Bar, Note
from training.common import DRUM_SLOT

__all__ = [
    "BASS_PROGRAMS",
    "PieceCounts",
    "count_piece",
    "drum_hits_per_bar",
    "in_scale_share",
    "instruments",
    "longest_note_bars",
    "midi_readback",
    "overhang_bars",
    "repeated_notes",
    "scale_pitch_classes",
    "slot",
    "slot_name",
    "summarise",
]

#: GM bass family (Acoustic Bass .. Synth Bass 2) and Contrabass: what plays a bass line.
BASS_PROGRAMS = frozenset({*range(32, 40), 43})
MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
#: Minor: natural minor plus the raised 7th of harmonic minor (the leading tone of the V chord), the
#: scale the key lock of :mod:`e2m_live.figaro.constraints` keeps to.
MINOR_STEPS = (0, 2, 3, 5, 7, 8, 10, 11)


def slot(note: Note) -> int:
    """The instrument of a note: its program, or :data:`DRUM_SLOT`."""
    return DRUM_SLOT if note.is_drum else int(note.program)


def slot_name(slot: int) -> str:
    """FIGARO's name of an instrument slot (a GM program name, or ``"drum"``)."""
    return DRUM_INSTRUMENT if slot == DRUM_SLOT else instrument_name(slot)


def _onset(note: Note) -> int:
    return round(note.start * POSITIONS_PER_QUARTER)


def repeated_notes(bars: Sequence[Bar]) -> int:
    """Notes that repeat an earlier one: same instrument, same onset, same pitch."""
    total = 0
    for bar in bars:
        seen = Counter((slot(n), _onset(n), n.pitch) for n in bar.notes)
        total += sum(k - 1 for k in seen.values())
    return total


def longest_note_bars(bars: Sequence[Bar]) -> float:
    """Length of the longest note, in bars of the bar where it starts (0 without notes)."""
    return max((n.duration / b.quarters for b in bars for n in b.notes if b.quarters > 0), default=0.0)


def overhang_bars(bars: Sequence[Bar]) -> float:
    """How far the last note sounds past the last bar line, in bars of the last bar (0 if none does)."""
    if not bars:
        return 0.0
    starts = np.cumsum([0.0, *(b.quarters for b in bars)])
    end = max((starts[i] + n.end for i, b in enumerate(bars) for n in b.notes), default=0.0)
    return max(0.0, float(end - starts[-1]) / bars[-1].quarters)


def instruments(bars: Iterable[Bar]) -> frozenset[int]:
    """The instruments that play (programs 0..127, :data:`DRUM_SLOT` for drums)."""
    return frozenset(slot(n) for b in bars for n in b.notes)


def scale_pitch_classes(key: int, mode: int) -> frozenset[int]:
    """Pitch classes of ``key`` (0 = C) major (``mode`` 1) or minor (``mode`` 0, with the raised 7th)."""
    return frozenset((key + step) % 12 for step in (MAJOR_STEPS if mode else MINOR_STEPS))


def in_scale_share(bars: Iterable[Bar], key: int, mode: int) -> float:
    """Share of pitched note time in the scale of ``key``/``mode`` (``nan`` without pitched notes)."""
    scale = scale_pitch_classes(key, mode)
    inside = total = 0.0
    for bar in bars:
        for note in bar.notes:
            if not note.is_drum:
                total += note.duration
                inside += note.duration * (note.pitch % 12 in scale)
    return inside / total if total else math.nan


@dataclass(frozen=True, slots=True)
class MidiReadback:
    """What a DAW sees in the written file."""

    tracks: dict[int, int]  # instrument slot -> tracks holding its notes
    names: tuple[str, ...]  # track names of the tracks holding notes
    overhang_quarters: float  # last note-off past the end of the bars (0 if none)


def midi_readback(data: bytes | str | Path, length_quarters: float | None = None) -> MidiReadback:
    """Read a ``.mid`` (bytes or path) back with ``mido``: tracks per instrument, names, overhang past
    ``length_quarters`` (default: no overhang measured)."""
    midi = mido.MidiFile(file=io.BytesIO(data)) if isinstance(data, bytes) else mido.MidiFile(str(data))
    per_slot: Counter[int] = Counter()
    names = []
    last_off = 0
    for track in midi.tracks:
        program, channel, name, now, has_notes = 0, None, "", 0, False
        for message in track:
            now += message.time
            if message.type == "track_name":
                name = message.name
            elif message.type == "program_change":
                program = message.program
            elif message.type in ("note_on", "note_off"):
                channel = message.channel
                has_notes = True
                if message.type == "note_off" or message.velocity == 0:
                    last_off = max(last_off, now)
        if has_notes:
            per_slot[DRUM_SLOT if channel == DRUM_CHANNEL else program] += 1
            names.append(name)
    overhang = 0.0
    if length_quarters is not None:
        overhang = max(0.0, last_off / midi.ticks_per_beat - length_quarters)
    return MidiReadback(dict(per_slot), tuple(names), overhang)


@dataclass(frozen=True, slots=True)
class PieceCounts:
    """The counters of one generated piece (a section)."""

    notes: int
    repeated_notes: int
    longest_note_bars: float
    overhang_bars: float
    midi_overhang_bars: float
    instruments: tuple[int, ...]  # slots, ascending
    max_tracks_per_instrument: int  # in the written .mid; 0 without notes
    in_scale_share: float  # nan without pitched notes or without a requested key
    drum_notes: int = 0  # drum hits: a section "with drums" may hold only a handful
    bars: int = 0

    @property
    def solo(self) -> bool:
        return len(self.instruments) == 1

    @property
    def drums(self) -> bool:
        return DRUM_SLOT in self.instruments

    @property
    def bass(self) -> bool:
        return any(i in BASS_PROGRAMS for i in self.instruments)

    def to_dict(self) -> dict:
        return asdict(self)


def count_piece(bars: Sequence[Bar], key: int | None = None, mode: int | None = None) -> PieceCounts:
    """Every counter of one piece; the ``.mid`` is written with the project's writer and read back."""
    from e2m_live.description.remi import bars_to_smf

    length = float(sum(b.quarters for b in bars))
    notes = sum(len(b.notes) for b in bars)
    readback = midi_readback(bars_to_smf(bars), length) if notes else MidiReadback({}, (), 0.0)
    last = bars[-1].quarters if bars else 4.0
    return PieceCounts(
        notes=notes,
        repeated_notes=repeated_notes(bars),
        longest_note_bars=longest_note_bars(bars),
        overhang_bars=overhang_bars(bars),
        midi_overhang_bars=readback.overhang_quarters / last,
        instruments=tuple(sorted(instruments(bars))),
        max_tracks_per_instrument=max(readback.tracks.values(), default=0),
        in_scale_share=in_scale_share(bars, key, mode) if key is not None and mode is not None else math.nan,
        drum_notes=sum(n.is_drum for b in bars for n in b.notes),
        bars=len(bars),
    )


def _share(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else math.nan


def drum_hits_per_bar(pieces: Sequence[PieceCounts]) -> float:
    """Median drum hits per bar over the pieces that have drums (``nan`` if none has)."""
    rates = [p.drum_notes / p.bars for p in pieces if p.drums and p.bars]
    return float(np.median(rates)) if rates else math.nan


def summarise(pieces: Sequence[PieceCounts]) -> dict[str, float]:
    """Figures over many pieces (``nan`` where there are none)."""
    played = [p for p in pieces if p.notes]
    longest = np.array([p.longest_note_bars for p in played]) if played else np.array([math.nan])
    scale = np.array([p.in_scale_share for p in played], dtype=float)
    scale = scale[~np.isnan(scale)]
    return {
        "pieces": len(pieces),
        "silent_pieces": len(pieces) - len(played),
        "repeated_per_piece": float(np.mean([p.repeated_notes for p in played])) if played else math.nan,
        "pieces_with_repeats": _share([p.repeated_notes > 0 for p in played]),
        "longest_p50": float(np.percentile(longest, 50)),
        "longest_p90": float(np.percentile(longest, 90)),
        "longest_max": float(np.max(longest)),
        "overhang_max": max((p.overhang_bars for p in played), default=math.nan),
        "pieces_with_overhang": _share([p.overhang_bars > 1e-9 for p in played]),
        "midi_overhang_max": max((p.midi_overhang_bars for p in played), default=math.nan),
        "tracks_per_instrument_max": max((p.max_tracks_per_instrument for p in played), default=0),
        "pieces_with_extra_tracks": _share([p.max_tracks_per_instrument > 1 for p in played]),
        "solo_share": _share([p.solo for p in played]),
        "drum_share": _share([p.drums for p in played]),
        "drum_hits_per_bar": drum_hits_per_bar(played),
        "bass_share": _share([p.bass for p in played]),
        "in_scale_share": float(scale.mean()) if len(scale) else math.nan,
        "in_scale_min": float(scale.min()) if len(scale) else math.nan,
    }
