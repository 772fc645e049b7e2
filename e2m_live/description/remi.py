"""REMI+ tokens -> notes, bars and MIDI.

A note is ``Position_p, Instrument_name, Pitch_x, Velocity_i, Duration_j`` as FIGARO writes it.
Decoding is tolerant, because model output can be anything: unknown or malformed tokens are
skipped, a note is emitted only when ``Pitch``, ``Velocity`` and ``Duration`` follow each other
with a position and instrument known in the current bar, and nothing here raises on a token
stream.

Rules (``docs/description.md``):

- ``Bar_*`` opens a bar; it keeps the previous bar's time signature until a ``Time Signature``
  token says otherwise (4/4 at first). Tokens before the first ``Bar_*`` open an implicit bar.
- The first ``Tempo_*`` of a bar sets :attr:`Bar.tempo` (applied from the bar's start; FIGARO's
  extraction only ever places tempo tokens at position 0). Tempo bin 0 (0 BPM) is ignored.
- Position and instrument last until the next one or the next bar.
- Notes at positions past the end of their bar are skipped (they cannot be played in that bar).
- Chord tokens carry no notes; :func:`tokens_to_midi` and :func:`write_midi` keep them as
  ``e2m-chord:LABEL`` marker events at their position, which extraction reads back.

MIDI output is by default what a DAW user opens: one track per instrument (program or drums),
named after it, no overlapping or repeated note of one pitch on one track, nothing sounding past
the last bar line (:func:`clean_notes`). ``write_midi(..., exact=True)`` (and
``tokens_to_midi(..., exact=True)``) lays the file out so that extraction gives back the same
tokens instead: every note as the tokens say (overlaps of one pitch on further tracks of the
instrument), chords as markers, and for a stream without ``Tempo`` tokens one empty bar in front,
so that the extractor's tempo at tick 0 falls outside the kept bars (FIGARO's extraction only
emits a tempo when the first kept bar starts at tick 0).
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import pretty_midi

from e2m_live.description.midi_reader import CHORD_MARKER_PREFIX, set_chord_markers
from e2m_live.description.vocab import (
    BAR_KEY,
    CHORD_KEY,
    DRUM_INSTRUMENT,
    DURATION_BINS,
    DURATION_KEY,
    INSTRUMENT_KEY,
    PITCH_KEY,
    POSITION_KEY,
    POSITIONS_PER_QUARTER,
    TEMPO_BINS,
    TEMPO_KEY,
    TIME_SIGNATURE_KEY,
    VELOCITY_BINS,
    VELOCITY_KEY,
)
from e2m_live.music import Bar, Note

#: Ticks per quarter of the MIDI we write: 40 ticks per position, so every position is exact.
RESOLUTION = 480
#: Tempo when the tokens carry none.
DEFAULT_TEMPO = 120.0
#: The extractor samples the tempo at multiples of 480 seconds; a file laid out without tempo
#: tokens ends before the first such sample (faster than its tempo if it must).
_TEMPO_FREE_SECONDS = 450.0
_VALID_DENOMINATORS = {1, 2, 4, 8, 16, 32, 64}

_PROGRAMS = {pretty_midi.program_to_instrument_name(p): p for p in range(128)}


def _split(tok: object) -> tuple[str, str] | None:
    if not isinstance(tok, str):
        return None
    key, sep, value = tok.partition("_")
    return (key, value) if sep else None


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _time_signature(value: str) -> tuple[int, int] | None:
    num, sep, den = value.partition("/")
    n, d = _int(num), _int(den)
    if not sep or n is None or d is None or n < 1 or n > 64 or d not in _VALID_DENOMINATORS:
        return None
    return n, d


def _positions_in(bar: Bar) -> int:
    return int(POSITIONS_PER_QUARTER * bar.quarters)


@dataclass
class _Decoded:
    bars: list[Bar]
    chords: list[tuple[int, int, str, bool]]  # (bar index, position, label, after a note there)
    has_tempo: bool  # a valid Tempo token was seen


def tokens_to_bars(tokens: Sequence[str]) -> list[Bar]:
    """Decode REMI+ tokens into bars of notes (times in quarters from each bar's start). Never raises."""
    return _decode(tokens).bars


# A parser's flat dispatch: one branch per REMI+ token kind (C901 counts them).
def _decode(tokens: Sequence[str]) -> _Decoded:  # noqa: C901
    bars: list[Bar] = []
    chords: list[tuple[int, int, str, bool]] = []
    note_position: int | None = None  # position of the last note decoded in this bar
    bar: Bar | None = None
    position: int | None = None
    instrument: tuple[int, bool] | None = None  # (program, is_drum)
    pending: list = []  # [pitch, is_drum_pitch, velocity?]

    def open_bar() -> Bar:
        prev = bars[-1] if bars else None
        new = Bar(
            notes=[],
            numerator=prev.numerator if prev else 4,
            denominator=prev.denominator if prev else 4,
            tempo=None,
            index=len(bars),
        )
        bars.append(new)
        return new

    for tok in tokens if tokens is not None else ():
        parsed = _split(tok)
        if parsed is None:
            pending = []
            continue
        key, value = parsed
        if key == BAR_KEY:
            bar = open_bar()
            position, instrument, pending, note_position = None, None, [], None
            continue
        if bar is None:
            bar = open_bar()
        if key == PITCH_KEY:
            drum = value.startswith("drum_")
            pitch = _int(value[5:] if drum else value)
            pending = [pitch, drum] if pitch is not None and 0 <= pitch < 128 else []
            continue
        if key == VELOCITY_KEY:
            index = _int(value)
            if len(pending) == 2 and index is not None and 0 <= index < len(VELOCITY_BINS):
                pending.append(max(1, min(127, int(VELOCITY_BINS[index]))))
            else:
                pending = []
            continue
        if key == DURATION_KEY:
            index = _int(value)
            valid = len(pending) == 3 and index is not None and 0 <= index < len(DURATION_BINS)
            if valid and _add_note(bar, position, instrument, pending, int(DURATION_BINS[index])):
                note_position = position
            pending = []
            continue
        pending = []
        if key == TIME_SIGNATURE_KEY:
            sig = _time_signature(value)
            if sig is not None:
                bar.numerator, bar.denominator = sig
        elif key == POSITION_KEY:
            pos = _int(value)
            position = pos if pos is not None and pos >= 0 else None
        elif key == INSTRUMENT_KEY:
            if value == DRUM_INSTRUMENT:
                instrument = (0, True)
            else:
                program = _PROGRAMS.get(value)
                instrument = (program, False) if program is not None else None
        elif key == TEMPO_KEY:
            index = _int(value)
            if bar.tempo is None and index is not None and 0 < index < len(TEMPO_BINS):
                bar.tempo = float(TEMPO_BINS[index])
        elif key == CHORD_KEY and position is not None and value:
            chords.append((bar.index, position, value, note_position == position))
    return _Decoded(bars, chords, any(b.tempo for b in bars))


def _add_note(
    bar: Bar,
    position: int | None,
    instrument: tuple[int, bool] | None,
    pending: list[int],
    duration_positions: int,
) -> bool:
    """Add the pending note to the bar if it is playable there; say whether it was."""
    pitch, drum_pitch, velocity = pending
    if position is None or instrument is None or position >= _positions_in(bar):
        return False
    program, is_drum = instrument
    if drum_pitch and not is_drum:
        return False
    bar.notes.append(
        Note(
            pitch=pitch,
            velocity=velocity,
            start=position / POSITIONS_PER_QUARTER,
            duration=duration_positions / POSITIONS_PER_QUARTER,
            program=program,
            is_drum=is_drum,
        )
    )
    return True


#: Track name of the drum track (melodic tracks are named after their General MIDI program).
DRUM_TRACK_NAME = "Drums"

Placed = tuple[int, int, int, int]  # start tick, end tick, pitch, velocity


def track_name(program: int, is_drum: bool) -> str:
    """The name of an instrument's track: its General MIDI program name, or ``"Drums"``."""
    return DRUM_TRACK_NAME if is_drum else pretty_midi.program_to_instrument_name(program)


@dataclass
class _Track:
    program: int
    is_drum: bool
    notes: list[Placed] = field(default_factory=list)
    layer: int = 1  # exact layout only: 2, 3, ... for further tracks of one instrument
    busy_until: dict[int, int] = field(default_factory=dict)  # pitch -> end tick of its last note

    @property
    def name(self) -> str:
        name = track_name(self.program, self.is_drum)
        return name if self.layer == 1 else f"{name} {self.layer}"


def clean_notes(notes: Sequence[tuple], end: int) -> list[tuple]:
    """One instrument's notes as one MIDI channel can play them, nothing sounding past ``end``.

    ``notes`` are ``(start, end, pitch, velocity, ...)`` in ticks; anything after the velocity rides
    along. Of notes with equal start and pitch the longest is kept (the louder on equal length); a
    note still sounding when the next note of its pitch starts ends there (one channel cannot hold
    both: the first note-off would end them); notes end at ``end`` at the latest, and those starting
    there or later are dropped. Every note lasts at least one tick. Sorted by start, then pitch.
    """
    out: list[tuple] = []
    last_pitch = last_start = -1
    for pitch, start, neg_stop, _, i in sorted((n[2], n[0], -n[1], -n[3], i) for i, n in enumerate(notes)):
        if start >= end or (pitch == last_pitch and start == last_start):
            continue
        if pitch == last_pitch and out[-1][1] > start:
            out[-1] = (out[-1][0], start, *out[-1][2:])
        out.append((start, max(start + 1, min(-neg_stop, end)), *notes[i][2:]))
        last_pitch, last_start = pitch, start
    out.sort(key=lambda n: (n[0], n[2]))
    return out


@dataclass
class _Layout:
    """Bars laid end to end in ticks: tempo map, time signatures, note tracks."""

    tempos: list[tuple[int, int]]  # (tick, microseconds per quarter), first at tick 0
    signatures: list[tuple[int, int, int]]  # (tick, numerator, denominator)
    tracks: list[_Track]
    end_tick: int
    markers: list[tuple[int, str]] = field(default_factory=list)  # (tick, chord label)


def _micros(bpm: float) -> int:
    """Microseconds per quarter as a MIDI tempo event holds them (truncated, as pretty_midi does)."""
    return min(0xFFFFFF, max(1, int(6e7 / bpm)))


def _layout(
    bars: Sequence[Bar],
    default_tempo: float,
    *,
    exact: bool = False,
    chords: Sequence[tuple[int, int, str, bool]] = (),
    lead_in: bool = False,
) -> _Layout:
    """Bars end to end; ``chords`` become markers; ``lead_in`` puts one empty bar in front.

    By default one track per instrument (drums first, then programs ascending), notes cleaned by
    :func:`clean_notes` and the file ending at the last bar line. ``exact`` places every note as
    given, so that extraction reads back the same notes: a note that overlaps an earlier note of
    its pitch on its instrument goes to a further track of that instrument, and notes may sound
    past the last bar line (the file then ends with them).
    """
    res = RESOLUTION
    tempo = bars[0].tempo if bars and bars[0].tempo and bars[0].tempo > 0 else default_tempo
    tempos = [(0, _micros(tempo))]
    sigs: list[tuple[int, int, int]] = []
    tracks: list[_Track] = []
    layers: dict[tuple[int, bool], list[_Track]] = {}  # exact layout
    by_instrument: dict[tuple[int, bool], list[Placed]] = {}
    tick = end_tick = round(bars[0].quarters * res) if lead_in and bars else 0
    bar_ticks: list[int] = []
    for bar in bars:
        bar_ticks.append(tick)
        if bar.tempo and bar.tempo > 0 and bar.tempo != tempo:
            tempo = bar.tempo
            if tempos[-1][0] == tick:
                tempos[-1] = (tick, _micros(tempo))
            else:
                tempos.append((tick, _micros(tempo)))
        if not sigs or (sigs[-1][1], sigs[-1][2]) != (bar.numerator, bar.denominator):
            sigs.append((tick, bar.numerator, bar.denominator))
        for note in bar.notes:
            start = tick + round(note.start * res)
            end = start + max(1, round(note.duration * res))
            key = (0 if note.is_drum else note.program, note.is_drum)
            if not exact:
                by_instrument.setdefault(key, []).append((start, end, note.pitch, note.velocity))
                continue
            end_tick = max(end_tick, end)
            stack = layers.setdefault(key, [])
            track = next((t for t in stack if t.busy_until.get(note.pitch, -1) <= start), None)
            if track is None:
                track = _Track(program=key[0], is_drum=note.is_drum, layer=len(stack) + 1)
                stack.append(track)
                tracks.append(track)
            track.busy_until[note.pitch] = end
            track.notes.append((start, end, note.pitch, note.velocity))
        tick += round(bar.quarters * res)
    end_tick = max(tick, end_tick)
    if not exact:
        for key in sorted(by_instrument, key=lambda k: (not k[1], k[0])):
            tracks.append(_Track(key[0], key[1], clean_notes(by_instrument[key], end_tick)))
    # A chord written after notes at its position lies one tick later, so that extraction (which
    # puts chords before notes at the same tick) keeps the token order.
    markers = [
        (bar_ticks[i] + position * res // POSITIONS_PER_QUARTER + after_note, label)
        for i, position, label, after_note in chords
        if 0 <= i < len(bars) and position < _positions_in(bars[i])
    ]
    if markers:  # extraction counts a marker as an event of the file, lasting one tick
        end_tick = max(end_tick, max(at for at, _ in markers) + 1)
    if lead_in and len(tempos) == 1 and end_tick * tempos[0][1] / (res * 1e6) >= _TEMPO_FREE_SECONDS:
        tempos = [(0, max(1, int(_TEMPO_FREE_SECONDS * res * 1e6 / end_tick)))]
    return _Layout(tempos, sigs, tracks, end_tick, markers)


def bars_to_midi(
    bars: Sequence[Bar], *, default_tempo: float = DEFAULT_TEMPO, exact: bool = False
) -> pretty_midi.PrettyMIDI:
    """Lay bars end to end in a PrettyMIDI (480 ticks per quarter), with tempo and time signature changes.

    A bar without a tempo keeps the one in force (``default_tempo`` at first). One instrument per
    program (and one for drums), named after it, drums first, then programs ascending; notes as
    :func:`clean_notes` leaves them: no overlapping or repeated note of one pitch on one instrument,
    nothing sounding past the last bar line. ``exact=True`` keeps every note as given (durations
    past the last bar line too; a note overlapping an earlier one of its pitch on a further
    instrument of the same program), so that extraction reads all of them back.
    """
    return _layout_to_midi(_layout(bars, default_tempo, exact=exact))


def _layout_to_midi(layout: _Layout) -> pretty_midi.PrettyMIDI:
    res = RESOLUTION
    pm = pretty_midi.PrettyMIDI(resolution=res, initial_tempo=6e7 / layout.tempos[0][1])
    # pretty_midi's tempo map, computed as pretty_midi does when it reads the written file, so that
    # this object and the file describe the same times to the last bit.
    pm._tick_scales = [(t, 60.0 / ((6e7 / micros) * res)) for t, micros in layout.tempos]
    pm._update_tick_to_time(layout.end_tick + 1)
    for at, num, den in layout.signatures:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den, pm.tick_to_time(at)))
    for track in layout.tracks:
        inst = pretty_midi.Instrument(program=track.program, is_drum=track.is_drum, name=track.name)
        inst.notes = [
            pretty_midi.Note(velocity=v, pitch=p, start=pm.tick_to_time(a), end=pm.tick_to_time(b))
            for a, b, p, v in track.notes
        ]
        pm.instruments.append(inst)
    if layout.markers:
        set_chord_markers(pm, layout.markers)
    return pm


@functools.lru_cache(maxsize=8192)  # deltas repeat (40 ticks per position): most calls are hits
def _varint(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _chunk(events: list[tuple[int, int, bytes]], end: int) -> bytes:
    """An MTrk chunk from (tick, order, message bytes), sorted by tick then order, ending at ``end``."""
    body = bytearray()
    now = 0
    for tick, _, message in sorted(events):  # equal tick and order: by bytes, still deterministic
        body += _varint(tick - now) + message
        now = tick
    body += _varint(max(0, end - now)) + b"\xff\x2f\x00"
    return b"MTrk" + struct.pack(">L", len(body)) + bytes(body)


def bars_to_smf(bars: Sequence[Bar], *, default_tempo: float = DEFAULT_TEMPO, exact: bool = False) -> bytes:
    """The bars as a standard MIDI file (type 1, 480 ticks per quarter): the same music as
    :func:`bars_to_midi`, written directly rather than through pretty_midi's slower writer.

    Track 0 holds the tempo map and time signatures, then one track per instrument, named after it
    (drums on channel 10, programs on the other channels in turn); every track ends at the last bar
    line (``exact``: as :func:`bars_to_midi`).
    """
    return _layout_to_smf(_layout(bars, default_tempo, exact=exact))


def _layout_to_smf(layout: _Layout) -> bytes:
    meta: list[tuple[int, int, bytes]] = []
    for at, num, den in layout.signatures:
        meta.append((at, 0, bytes([0xFF, 0x58, 4, num, den.bit_length() - 1, 24, 8])))
    for at, micros in layout.tempos:
        meta.append((at, 1, b"\xff\x51\x03" + micros.to_bytes(3, "big")))
    for i, (at, label) in enumerate(layout.markers):  # markers at one tick keep token order
        text = (CHORD_MARKER_PREFIX + label).encode("latin1", "replace")
        meta.append((at, 2 + i, b"\xff\x06" + _varint(len(text)) + text))
    chunks = [_chunk(meta, layout.end_tick)]
    melodic_channels = [c for c in range(16) if c != 9]
    n_melodic = 0
    for track in layout.tracks:
        if track.is_drum:
            channel = 9
        else:
            channel = melodic_channels[n_melodic % len(melodic_channels)]
            n_melodic += 1
        name = track.name.encode("latin1", "replace")
        events = [
            (0, 0, b"\xff\x03" + _varint(len(name)) + name),
            (0, 1, bytes([0xC0 | channel, track.program])),
        ]
        for start, end, pitch, velocity in track.notes:
            events.append((end, 2, bytes([0x80 | channel, pitch, 0])))  # note-offs before note-ons
            events.append((start, 3, bytes([0x90 | channel, pitch, velocity])))
        chunks.append(_chunk(events, layout.end_tick))
    header = b"MThd" + struct.pack(">LHHH", 6, 1, len(chunks), RESOLUTION)
    return header + b"".join(chunks)


def _token_layout(tokens: Sequence[str], default_tempo: float, exact: bool) -> _Layout:
    decoded = _decode(tokens)
    if not exact:
        return _layout(decoded.bars, default_tempo)
    # Without chord tokens, one empty marker says so (extraction would otherwise recognise chords).
    chords = decoded.chords or [(0, 0, "", False)]
    return _layout(decoded.bars, default_tempo, exact=True, chords=chords, lead_in=not decoded.has_tempo)


def tokens_to_midi(
    tokens: Sequence[str], *, default_tempo: float = DEFAULT_TEMPO, exact: bool = False
) -> pretty_midi.PrettyMIDI:
    """Decode REMI+ tokens into a PrettyMIDI (see :func:`tokens_to_bars` for the rules). Never raises.

    By default this is the music only, as :func:`bars_to_midi` lays it out: what is played,
    rendered, or measured (one instrument per program, cleaned notes; extraction recognises its
    chords from the notes). With ``exact=True`` extracting the result gives back the tokens, as for
    :func:`write_midi`: every note as the tokens say (overlapping notes of one pitch on further
    instruments of the same program), the chords ride along as markers (kept on the object;
    pretty_midi cannot store markers, so ``PrettyMIDI.write`` drops them) and a stream without
    ``Tempo`` tokens gets one empty bar in front.
    """
    return _layout_to_midi(_token_layout(tokens, default_tempo, exact))


def write_midi(
    tokens: Sequence[str],
    path: str | os.PathLike,
    *,
    default_tempo: float = DEFAULT_TEMPO,
    exact: bool = False,
) -> None:
    """Decode REMI+ tokens and write a standard MIDI file.

    By default the music as a DAW user wants it (:func:`bars_to_smf`): one track per instrument,
    named after it, no overlapping or repeated note of one pitch on one track, nothing sounding
    past the last bar line. With ``exact=True`` extracting the file gives back the tokens: every
    note as the tokens say it (a note overlapping an earlier one of its pitch goes to a further
    track of its instrument, named ``"<name> 2"``, ...; notes may sound past the last bar line),
    each ``Chord`` token becomes an ``e2m-chord:LABEL`` marker at its position (one empty
    ``e2m-chord:`` marker when there are none), and a stream without ``Tempo`` tokens gets one
    empty bar in front.
    """
    data = _layout_to_smf(_token_layout(tokens, default_tempo, exact))
    with open(os.fspath(path), "wb") as fh:
        fh.write(data)


__all__ = [
    "DRUM_TRACK_NAME",
    "RESOLUTION",
    "bars_to_midi",
    "bars_to_smf",
    "clean_notes",
    "tokens_to_bars",
    "tokens_to_midi",
    "track_name",
    "write_midi",
]
