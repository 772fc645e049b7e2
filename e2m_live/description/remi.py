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
- Chord tokens carry no notes and are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pretty_midi

from e2m_live.description.vocab import (
    BAR_KEY,
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


def tokens_to_bars(tokens: Sequence[str]) -> list[Bar]:
    """Decode REMI+ tokens into bars of notes (times in quarters from each bar's start). Never raises."""
    bars: list[Bar] = []
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
            position, instrument, pending = None, None, []
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
            if len(pending) == 3 and index is not None and 0 <= index < len(DURATION_BINS):
                _add_note(bar, position, instrument, pending, int(DURATION_BINS[index]))
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
    return bars


def _add_note(bar: Bar, position, instrument, pending, duration_positions: int) -> None:
    pitch, drum_pitch, velocity = pending
    if position is None or instrument is None or position >= _positions_in(bar):
        return
    program, is_drum = instrument
    if drum_pitch and not is_drum:
        return
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


def bars_to_midi(bars: Sequence[Bar], *, default_tempo: float = DEFAULT_TEMPO) -> pretty_midi.PrettyMIDI:
    """Lay bars end to end in a PrettyMIDI (480 ticks per quarter), with tempo and time signature changes.

    A bar without a tempo keeps the one in force (``default_tempo`` at first).
    """
    res = RESOLUTION
    tempo = bars[0].tempo if bars and bars[0].tempo else default_tempo
    pm = pretty_midi.PrettyMIDI(resolution=res, initial_tempo=tempo)
    scales = [(0, 60.0 / (tempo * res))]
    sigs: list[tuple[int, int, int]] = []  # (tick, numerator, denominator)
    placed: list[tuple[int, int, Note]] = []  # (start tick, end tick, note)
    tick = 0
    for bar in bars:
        if bar.tempo and bar.tempo != tempo:
            tempo = bar.tempo
            if scales[-1][0] == tick:
                scales[-1] = (tick, 60.0 / (tempo * res))
            else:
                scales.append((tick, 60.0 / (tempo * res)))
        if not sigs or (sigs[-1][1], sigs[-1][2]) != (bar.numerator, bar.denominator):
            sigs.append((tick, bar.numerator, bar.denominator))
        for note in bar.notes:
            start = tick + round(note.start * res)
            placed.append((start, start + max(1, round(note.duration * res)), note))
        tick += round(bar.quarters * res)
    pm._tick_scales = scales  # pretty_midi writes its tempo map from this list
    last = max([tick] + [end for _, end, _ in placed])
    pm._update_tick_to_time(last + 1)
    for at, num, den in sigs:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den, pm.tick_to_time(at)))
    # MIDI cannot hold two overlapping notes of the same pitch on one channel (the first note-off
    # ends both), so such notes go to another layer: a further track with the same program.
    layers: dict[tuple[int, bool], list[tuple[pretty_midi.Instrument, dict[int, int]]]] = {}
    ordered: list[pretty_midi.Instrument] = []
    for start, end, note in placed:
        key = (0 if note.is_drum else note.program, note.is_drum)
        stack = layers.setdefault(key, [])
        free = next((layer for layer in stack if layer[1].get(note.pitch, -1) <= start), None)
        if free is not None:
            inst, busy_until = free
        else:
            name = DRUM_INSTRUMENT if note.is_drum else pretty_midi.program_to_instrument_name(key[0])
            inst, busy_until = pretty_midi.Instrument(program=key[0], is_drum=note.is_drum, name=name), {}
            stack.append((inst, busy_until))
            ordered.append(inst)
        busy_until[note.pitch] = end
        inst.notes.append(
            pretty_midi.Note(
                velocity=note.velocity,
                pitch=note.pitch,
                start=pm.tick_to_time(start),
                end=pm.tick_to_time(end),
            )
        )
    pm.instruments.extend(ordered)
    return pm


def tokens_to_midi(tokens: Sequence[str], *, default_tempo: float = DEFAULT_TEMPO) -> pretty_midi.PrettyMIDI:
    """Decode REMI+ tokens into a PrettyMIDI (see :func:`tokens_to_bars` for the rules). Never raises."""
    return bars_to_midi(tokens_to_bars(tokens), default_tempo=default_tempo)


def write_midi(
    tokens: Sequence[str], path: str | os.PathLike, *, default_tempo: float = DEFAULT_TEMPO
) -> None:
    """Decode REMI+ tokens and write a standard MIDI file."""
    tokens_to_midi(tokens, default_tempo=default_tempo).write(os.fspath(path))


__all__ = ["RESOLUTION", "bars_to_midi", "tokens_to_bars", "tokens_to_midi", "write_midi"]
