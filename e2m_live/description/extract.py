"""MIDI -> REMI+ events and FIGARO description, with the semantics of FIGARO's input representation (v4).

What happens, in FIGARO's order:

1. Notes of every instrument are read; a note that overlaps a sustain-pedal span (CC64 >= 64)
   lasts until the end of the last such span.
2. Note starts are moved back to the grid of 12 positions per quarter (the end moves with the
   start, so durations are kept).
3. Chords are recognised on the beat grid (:mod:`e2m_live.description.chords`), or, in a file
   written by :mod:`e2m_live.description.remi`, read from its ``e2m-chord:`` marker events.
4. Bars run from one downbeat to the next (pretty_midi's downbeats from the time signatures and
   tempo map, or the ``downbeats`` given); leading and trailing bars without notes are dropped.
5. Each bar becomes REMI+ events (bar, time signature, then chords, tempo and notes by position)
   and description tokens (bar, time signature, note density, mean velocity, mean pitch, mean
   duration, instruments, chords).

Two quirks of the reference are kept on purpose because FIGARO's models were trained with them
(see ``docs/description.md``): the tempo map is reduced to the tempo at time 0, placed at tick 0,
so a ``Tempo`` token appears only when the first kept bar starts at tick 0; and the mean duration
is measured in MIDI ticks, not positions. Instruments in a description bar come in one fixed
order (drums first, then General MIDI programs ascending) where FIGARO's order was arbitrary.
"""

from __future__ import annotations

import io
import itertools
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pretty_midi

from e2m_live.description import chords as chord_recognition
from e2m_live.description import midi_reader
from e2m_live.description.vocab import (
    BAR_KEY,
    CHORD_KEY,
    DRUM_INSTRUMENT,
    DURATION_BINS,
    DURATION_KEY,
    INSTRUMENT_KEY,
    MEAN_DURATION_BINS,
    MEAN_DURATION_KEY,
    MEAN_PITCH_BINS,
    MEAN_PITCH_KEY,
    MEAN_VELOCITY_BINS,
    MEAN_VELOCITY_KEY,
    NO_CHORD,
    NOTE_DENSITY_BINS,
    NOTE_DENSITY_KEY,
    PITCH_KEY,
    POSITION_KEY,
    POSITIONS_PER_QUARTER,
    TEMPO_BINS,
    TEMPO_KEY,
    TIME_SIGNATURE_KEY,
    VELOCITY_BINS,
    VELOCITY_KEY,
    split_bars,
)

#: Instrument key of drum notes in the arrays below (sorts before every program).
DRUM_KEY = -1
#: Ticks between the (buggy) tempo samples of the reference.
_TEMPO_SAMPLE_TICKS = 480


class MidiError(ValueError):
    """A MIDI file that cannot be described: corrupt, empty, or unsupported."""


# --- loading ---------------------------------------------------------------------------------


def load_midi(source: str | os.PathLike | bytes | pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    """Read MIDI from a path, raw bytes or an existing PrettyMIDI; raise :class:`MidiError` if unreadable.

    Well-formed files go through our fast reader (:mod:`.midi_reader`), anything else through
    pretty_midi's own; both give the same PrettyMIDI.
    """
    if isinstance(source, pretty_midi.PrettyMIDI):
        return source
    where = ""
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            if not data:
                raise MidiError("empty MIDI data")
        else:
            path = os.fspath(source)
            where = f"{path}: "
            if not os.path.exists(path):
                raise MidiError(f"{path}: no such file")
            if os.path.isdir(path):
                raise MidiError(f"{path}: is a directory, not a MIDI file")
            with open(path, "rb") as fh:
                data = fh.read()
            if not data:
                raise MidiError(f"{path}: empty file")
        with warnings.catch_warnings():
            # pretty_midi warns about meta events outside track 0; they are read all the same.
            warnings.simplefilter("ignore", RuntimeWarning)
            pm = midi_reader.read(data)
            if pm is None:
                pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
        return pm
    except MidiError:
        raise
    except TypeError as exc:
        raise MidiError(f"cannot read MIDI from {type(source).__name__}") from exc
    except Exception as exc:  # mido/pretty_midi raise many types (OSError, EOFError, KeyError, ...)
        detail = str(exc) or ("the data ends too early" if isinstance(exc, EOFError) else "")
        raise MidiError(f"{where}not a readable MIDI file ({type(exc).__name__}: {detail})") from exc


# --- result ------------------------------------------------------------------------------------


@dataclass
class Extraction:
    """REMI+ events and FIGARO description of one MIDI file."""

    remi: list[str]
    description: list[str]
    midi: pretty_midi.PrettyMIDI

    def remi_bars(self) -> list[list[str]]:
        """REMI+ events split per bar; each list starts with its ``Bar_`` token."""
        return split_bars(self.remi)

    def description_bars(self) -> list[list[str]]:
        """Description tokens split per bar; each list starts with its ``Bar_`` token."""
        return split_bars(self.description)

    @property
    def n_bars(self) -> int:
        return sum(1 for t in self.description if t.startswith(BAR_KEY + "_"))


# --- token tables ----------------------------------------------------------------------------


@cache
def _instrument_names() -> dict[int, str]:
    names = {p: pretty_midi.program_to_instrument_name(p) for p in range(128)}
    names[DRUM_KEY] = DRUM_INSTRUMENT
    return names


def _nearest_bin(bins: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest bin (first one on ties; NaN -> 0), like ``np.argmin(abs(bins - v))``."""
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(values.shape, dtype=np.int64)
    return np.abs(bins[None, :] - values.reshape(-1, 1)).argmin(axis=1).reshape(values.shape)


@cache
def _velocity_tokens() -> list[str]:
    idx = _nearest_bin(VELOCITY_BINS, np.arange(128))
    return [f"{VELOCITY_KEY}_{i}" for i in idx]


# --- time conversion -------------------------------------------------------------------------


class _TickMap:
    """Vectorised ``PrettyMIDI.time_to_tick`` (same rounding, same extrapolation past the end)."""

    def __init__(self, pm: pretty_midi.PrettyMIDI) -> None:
        # pretty_midi's own map (private: name-mangled, so no type checker sees it)
        self.table = np.asarray(pm._PrettyMIDI__tick_to_time, dtype=float)  # type: ignore[attr-defined, type-var]
        self.final_scale = pm._tick_scales[-1][1]

    def ticks(self, times: np.ndarray | Sequence[float]) -> np.ndarray:
        t = np.asarray(times, dtype=float)
        table = self.table
        n = table.shape[0]
        idx = np.searchsorted(table, t, side="left")
        out = idx.astype(np.int64)
        past = idx == n
        if past.any():
            extra = (n - 1) + (t[past] - table[n - 1]) / self.final_scale
            out[past] = np.rint(extra).astype(np.int64)
        inside = ~past & (idx > 0)
        if inside.any():
            i = idx[inside]
            closer_left = np.abs(t[inside] - table[i - 1]) < np.abs(t[inside] - table[i])
            out[inside] = np.where(closer_left, i - 1, i)
        return out

    def tick(self, time: float) -> int:
        return int(self.ticks([time])[0])


# --- reading notes -----------------------------------------------------------------------------


@dataclass
class _Notes:
    """All notes as parallel arrays, already sorted in the reference's item order."""

    start: np.ndarray  # quantised start tick
    end: np.ndarray  # end tick (pedal-extended, shifted with the start)
    pitch: np.ndarray
    velocity: np.ndarray
    instrument: np.ndarray  # program, or DRUM_KEY


def _pedal_end(inst: pretty_midi.Instrument, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Note ends extended to the end of the last sustain-pedal span each note overlaps."""
    events = [(c.time, c.value) for c in inst.control_changes if c.number == 64]
    if not events:
        return ends
    spans = []
    down_since = None
    for time, value in events:
        if value >= 64 and down_since is None:
            down_since = time
        elif value < 64 and down_since is not None:
            spans.append((down_since, time))
            down_since = None
    if not spans:
        return ends
    span_arr = np.array(spans, dtype=float)
    on, off = span_arr[:, 0], span_arr[:, 1]
    if np.all(np.diff(on) >= 0) and np.all(np.diff(off) >= 0):
        # Spans are in time order: the last span starting at or before the note's end is the last
        # overlapping one, if it has not ended by the note's start.
        j = np.searchsorted(on, ends, side="right") - 1
        ok = j >= 0
        ok[ok] = off[j[ok]] > starts[ok]
        pedal_off = np.where(ok, off[np.maximum(j, 0)], 0.0)
        return np.maximum(ends, pedal_off)
    # Unordered control changes: check every span, keep the last overlapping one in list order.
    out = ends.copy()
    for k in range(len(ends)):
        last = 0.0
        for a, b in spans:
            if ends[k] >= a and starts[k] < b:
                last = b
        out[k] = max(ends[k], last)
    return out


def _read_notes(pm: pretty_midi.PrettyMIDI, ticks: _TickMap, end_tick: int) -> _Notes:
    parts = []
    order: int | np.ndarray  # the instrument's order in the file, later the notes' sort order
    for order, inst in enumerate(pm.instruments):
        if not inst.notes:
            continue
        arr = np.array([(n.start, n.end, n.pitch, n.velocity) for n in inst.notes], dtype=float)
        start_s, end_s = arr[:, 0], arr[:, 1]
        end_s = _pedal_end(inst, start_s, end_s)
        key = DRUM_KEY if inst.is_drum else int(inst.program)
        parts.append((order, start_s, end_s, arr[:, 2], arr[:, 3], key))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return _Notes(empty, empty, empty, empty, empty)
    start_s = np.concatenate([p[1] for p in parts])
    end_s = np.concatenate([p[2] for p in parts])
    pitch = np.concatenate([p[3] for p in parts]).astype(np.int64)
    velocity = np.concatenate([p[4] for p in parts]).astype(np.int64)
    instrument = np.concatenate([np.full(len(p[1]), p[5], dtype=np.int64) for p in parts])
    track = np.concatenate([np.full(len(p[1]), p[0], dtype=np.int64) for p in parts])
    original = np.concatenate([np.arange(len(p[1])) for p in parts])

    start_t = ticks.ticks(start_s)
    end_t = ticks.ticks(end_s)
    # Quantise: move each start back to the nearest grid point at or before it (FIGARO's grid).
    res = pm.resolution
    grid = np.arange(0, max(res, end_tick), res / POSITIONS_PER_QUARTER)
    g: np.ndarray = np.searchsorted(grid, start_t, side="right")
    g = np.where(g > 0, g - 1, g)
    shift = np.rint(grid[g]).astype(np.int64) - start_t
    q_start, q_end = start_t + shift, end_t + shift
    # The reference's order: (quantised start, instrument, pitch), ties by original start tick, then
    # by instrument order in the file, original start time and order within the instrument.
    order = np.lexsort((original, start_s, track, start_t, pitch, instrument, q_start))
    return _Notes(q_start[order], q_end[order], pitch[order], velocity[order], instrument[order])


def _end_time(pm: pretty_midi.PrettyMIDI) -> float:
    return pm.get_end_time()


# --- bars ----------------------------------------------------------------------------------------


def _downbeats(pm: pretty_midi.PrettyMIDI, beats: np.ndarray) -> np.ndarray:
    """pretty_midi's ``get_downbeats()``, reusing already computed beats."""
    sigs = sorted(pm.time_signature_changes, key=lambda ts: ts.time)
    if not sigs or sigs[0].time > 0:
        sigs.insert(0, pretty_midi.TimeSignature(4, 4, 0.0))

    def first_index(value: float, default: int) -> int:
        hits = np.flatnonzero(np.isclose(beats, value))
        return int(hits[0]) if hits.size else default

    def step(ts: pretty_midi.TimeSignature) -> int:
        return ts.numerator // 3 if ts.numerator % 3 == 0 and ts.numerator != 3 else ts.numerator

    parts = []
    end_idx = 0
    for cur, nxt in itertools.pairwise(sigs):
        start_idx = first_index(cur.time, 0)
        end_idx = first_index(nxt.time, start_idx)
        parts.append(beats[start_idx : end_idx : step(cur)])
    start_idx = first_index(sigs[-1].time, end_idx)
    parts.append(beats[start_idx :: step(sigs[-1])])
    downbeats = np.concatenate(parts) if parts else np.zeros(0)
    return downbeats[downbeats >= 0]


def _time_signature_at(
    sig_ticks: list[int], sigs: list[pretty_midi.TimeSignature], tick: int
) -> pretty_midi.TimeSignature:
    """The reference's lookup: the change whose span [tick_i, tick_i+1) holds ``tick``, else the last."""
    for i in range(len(sigs) - 1):
        if sig_ticks[i] <= tick < sig_ticks[i + 1]:
            return sigs[i]
    return sigs[-1]


# --- extraction ----------------------------------------------------------------------------------


def _tempo_items(pm: pretty_midi.PrettyMIDI, ticks: _TickMap, max_tick: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference's tempo items: one per 480 ticks, at ``time_to_tick(k * 480 seconds)``.

    Its resampling looks tick values up among tempo-change *times*, so in practice every item
    carries the tempo in force at time 0 (a known FIGARO quirk we keep for compatibility).
    """
    times, tempi = pm.get_tempo_changes()
    by_time = {float(t): int(q) for t, q in zip(times, tempi, strict=True)}
    wanted = np.arange(0, max_tick + 1, _TEMPO_SAMPLE_TICKS)
    values: np.ndarray = np.empty(len(wanted), dtype=np.int64)
    current = None
    for i, w in enumerate(wanted):
        current = by_time.get(float(w), current)
        values[i] = current
    return ticks.ticks(wanted.astype(float)), values


def _chord_items(
    pm: pretty_midi.PrettyMIDI, beats: np.ndarray, ticks: _TickMap, end_tick: int
) -> tuple[list[int], list[str]] | None:
    """(start tick, value) of each recognised chord, in the reference's order (``N:N`` fill-in last).

    A file written by :mod:`.remi` carries its chords as ``e2m-chord:`` markers; they are taken
    as they are (no recognition, no fill-in). An empty label only says that there are no chords.
    """
    markers = midi_reader.chord_markers(pm)
    if markers:
        return [tick for tick, label in markers if label], [label for _, label in markers if label]
    if end_tick < pm.resolution:
        return None
    found = chord_recognition.recognize(pm, beats)
    starts = list(ticks.ticks([c[0] for c in found])) if found else []
    values = [chord_recognition.simple_label(c[2]) for c in found]
    if not found or starts[0] > 0:
        starts.append(0)
        values.append(NO_CHORD)
    return starts, values


def extract(
    source: str | os.PathLike | bytes | pretty_midi.PrettyMIDI,
    *,
    downbeats: Sequence[float] | None = None,
) -> Extraction:
    """REMI+ events and FIGARO description of a MIDI file (path, bytes or PrettyMIDI).

    ``downbeats`` (seconds, ascending) replaces the bar lines derived from the file's time
    signatures; time signature tokens still come from the file (4/4 if it has none).
    Raises :class:`MidiError` for unreadable files, files without time signature (unless
    ``downbeats`` is given) and files without notes.
    """
    pm = load_midi(source)
    sigs = sorted(pm.time_signature_changes, key=lambda ts: ts.time)
    if not sigs:
        if downbeats is None:
            raise MidiError("no time signature in the MIDI file (FIGARO needs one to find bars)")
        sigs = [pretty_midi.TimeSignature(4, 4, 0.0)]
    if not any(inst.notes for inst in pm.instruments):
        raise MidiError("no notes in the MIDI file")

    end_time = _end_time(pm)
    markers = midi_reader.chord_markers(pm)
    if markers:  # pretty_midi does not see markers: the file lasts until just after the last one
        end_time = max(end_time, pm.tick_to_time(markers[-1][0] + 1))
    ticks = _TickMap(pm)
    end_tick = ticks.tick(end_time)
    notes = _read_notes(pm, ticks, end_tick)

    beats = pm.get_beats()
    chord_items = _chord_items(pm, beats, ticks, end_tick)
    tempo_start, tempo_value = _tempo_items(pm, ticks, end_tick)

    # Non-note items sorted with the reference's key: (start, chords before tempo, value); chords
    # from markers keep their file order at equal start (the order of the tokens they came from).
    others: list[tuple[int, int, object, int]] = []  # (start, kind, value, index)
    if chord_items is not None:
        others += [(int(s), 0, v, i) for i, (s, v) in enumerate(zip(*chord_items, strict=True))]
    others += [(int(s), 1, int(v), i) for i, (s, v) in enumerate(zip(tempo_start, tempo_value, strict=True))]
    if markers:
        others.sort(key=lambda it: (it[0], it[1], it[3] if it[1] == 0 else it[2]))
    else:
        others.sort(key=lambda it: (it[0], it[1], it[2]))
    other_start = np.array([o[0] for o in others], dtype=np.int64)

    bar_times = _downbeats(pm, beats) if downbeats is None else _checked_downbeats(downbeats)
    bar_ticks = ticks.ticks(np.concatenate([bar_times, [end_time]]))
    bar_lo, bar_hi = bar_ticks[:-1], bar_ticks[1:]
    # Items of bar i: start in [bar_lo, bar_hi). Starts are sorted, so each bar is a slice.
    n_lo = np.searchsorted(notes.start, bar_lo, side="left")
    n_hi = np.maximum(np.searchsorted(notes.start, bar_hi, side="left"), n_lo)
    o_lo = np.searchsorted(other_start, bar_lo, side="left")
    o_hi = np.maximum(np.searchsorted(other_start, bar_hi, side="left"), o_lo)
    has_notes = np.flatnonzero(n_hi > n_lo)
    if not has_notes.size:
        raise MidiError("no notes inside the bars of the MIDI file")
    kept = range(int(has_notes[0]), int(has_notes[-1]) + 1)

    sig_ticks = [int(t) for t in ticks.ticks([ts.time for ts in sigs])]
    return _Builder(pm, notes, others, sigs, sig_ticks).build(kept, bar_lo, n_lo, n_hi, o_lo, o_hi)


def _checked_downbeats(downbeats: Sequence[float]) -> np.ndarray:
    try:
        times = np.asarray(downbeats, dtype=float)
    except (TypeError, ValueError):
        times = np.zeros((0, 0))
    if times.ndim != 1 or not times.size or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise ValueError("downbeats must be a non-empty, strictly increasing sequence of times in seconds")
    return times


class _Builder:
    """Turns grouped items into REMI+ events and description tokens, bar by bar."""

    def __init__(
        self,
        pm: pretty_midi.PrettyMIDI,
        notes: _Notes,
        others: list[tuple[int, int, object, int]],
        sigs: list[pretty_midi.TimeSignature],
        sig_ticks: list[int],
    ) -> None:
        self.pm = pm
        self.notes = notes
        self.others = others
        self.sigs = sigs
        self.sig_ticks = sig_ticks

    def build(
        self,
        kept: range,
        bar_lo: np.ndarray,
        n_lo: np.ndarray,
        n_hi: np.ndarray,
        o_lo: np.ndarray,
        o_hi: np.ndarray,
    ) -> Extraction:
        pm, notes = self.pm, self.notes
        res = pm.resolution
        names = _instrument_names()
        vel_tok = _velocity_tokens()
        # Per-note tokens that do not depend on the bar.
        ins_tok = [f"{INSTRUMENT_KEY}_{names[k]}" for k in notes.instrument.tolist()]
        pitch_tok = [
            f"{PITCH_KEY}_drum_{p}" if k == DRUM_KEY else f"{PITCH_KEY}_{p}"
            for p, k in zip(notes.pitch.tolist(), notes.instrument.tolist(), strict=True)
        ]
        dur_pos = np.rint((notes.end - notes.start) / res * POSITIONS_PER_QUARTER)
        dur_tok = [f"{DURATION_KEY}_{i}" for i in _nearest_bin(DURATION_BINS, dur_pos).tolist()]
        velocities = notes.velocity.tolist()

        remi: list[str] = []
        desc: list[str] = []
        remi_chord: str | None = None  # current chord value (REMI)
        remi_tempo: int | None = None  # current tempo value (REMI)
        desc_chord: str | None = None  # current chord value (description)
        bar_rows = []  # (n_notes, positions_per_bar, velocity sum, pitch sum, duration sum)
        bar_desc_tail: list[list[str]] = []
        bar_desc_head: list[list[str]] = []
        for number, b in enumerate(kept, start=1):
            bar_st = int(bar_lo[b])
            ts = _time_signature_at(self.sig_ticks, self.sigs, bar_st)
            quarters = 4 * ts.numerator / ts.denominator
            ppb = int(POSITIONS_PER_QUARTER * quarters)
            if ppb <= 0:
                raise MidiError(f"unsupported time signature {ts.numerator}/{ts.denominator}")
            head = [f"{BAR_KEY}_{number}", f"{TIME_SIGNATURE_KEY}_{ts.numerator}/{ts.denominator}"]
            remi += head
            if remi_chord is not None:
                remi += [f"{POSITION_KEY}_0", f"{CHORD_KEY}_{remi_chord}"]
            if remi_tempo is not None:
                remi += [f"{POSITION_KEY}_0", f"{TEMPO_KEY}_{_tempo_bin(remi_tempo)}"]

            flags = np.linspace(bar_st, bar_st + res * quarters, ppb, endpoint=False)
            i0, i1 = int(n_lo[b]), int(n_hi[b])
            j0, j1 = int(o_lo[b]), int(o_hi[b])
            note_pos = _positions(flags, notes.start[i0:i1])
            other_items = self.others[j0:j1]
            other_pos = _positions(flags, np.array([o[0] for o in other_items], dtype=np.int64))
            # Merge: at equal start, chords and tempos come before notes.
            oi = 0
            n_other = len(other_items)
            bar_chords: list[str] = []
            for ni in range(i0, i1 + 1):
                limit = int(notes.start[ni]) if ni < i1 else None
                while oi < n_other and (limit is None or other_items[oi][0] <= limit):
                    # value: a chord label (str) for kind 0, else a tempo (int); the ignores below say so
                    _, kind, value, _ = other_items[oi]
                    pos = f"{POSITION_KEY}_{other_pos[oi]}"
                    if kind == 0:
                        bar_chords.append(value)  # type: ignore[arg-type]
                        if value != remi_chord:
                            remi += [pos, f"{CHORD_KEY}_{value}"]
                            remi_chord = value  # type: ignore[assignment]
                    elif value != remi_tempo:
                        remi += [pos, f"{TEMPO_KEY}_{_tempo_bin(value)}"]  # type: ignore[arg-type]
                        remi_tempo = value  # type: ignore[assignment]
                    oi += 1
                if ni < i1:
                    remi += [
                        f"{POSITION_KEY}_{note_pos[ni - i0]}",
                        ins_tok[ni],
                        pitch_tok[ni],
                        vel_tok[velocities[ni]],
                        dur_tok[ni],
                    ]

            # Description (meta bins are computed for all bars at once below).
            bar_desc_head.append(head)
            bar_rows.append((i1 - i0, ppb, i0, i1))
            present = set(notes.instrument[i0:i1].tolist())
            tail = [f"{INSTRUMENT_KEY}_{names[k]}" for k in sorted(present)]
            if not bar_chords and desc_chord is not None:
                shown = [desc_chord]
            else:
                shown = list(bar_chords)
                if bar_chords:
                    first_start = next(o[0] for o in other_items if o[1] == 0)
                    if first_start > bar_st and desc_chord is not None:
                        shown.insert(0, desc_chord)
                    desc_chord = bar_chords[-1]
            tail += [f"{CHORD_KEY}_{c}" for c in shown]
            bar_desc_tail.append(tail)

        meta = self._meta_tokens(bar_rows)
        for head, m, tail in zip(bar_desc_head, meta, bar_desc_tail, strict=True):
            desc += head
            desc += m
            desc += tail
        return Extraction(remi=remi, description=desc, midi=pm)

    def _meta_tokens(self, rows: list[tuple[int, int, int, int]]) -> list[list[str]]:
        """Note density and mean velocity/pitch/duration bins of every bar at once."""
        notes = self.notes
        n = np.array([r[0] for r in rows], dtype=np.int64)
        ppb = np.array([r[1] for r in rows], dtype=np.int64)
        lo = np.array([r[2] for r in rows], dtype=np.int64)
        hi = np.array([r[3] for r in rows], dtype=np.int64)

        def per_bar_mean(values: np.ndarray) -> np.ndarray:
            # Integer prefix sums: exact, so sum / count equals the reference's np.mean.
            prefix = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
            sums = prefix[hi] - prefix[lo]
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(n > 0, sums / np.maximum(n, 1), np.nan)

        vel, pitch, dur = notes.velocity, notes.pitch, notes.end - notes.start
        density = _nearest_bin(NOTE_DENSITY_BINS, n / ppb)
        mvel = _nearest_bin(MEAN_VELOCITY_BINS, per_bar_mean(vel))
        mpitch = _nearest_bin(MEAN_PITCH_BINS, per_bar_mean(pitch))
        mdur = _nearest_bin(MEAN_DURATION_BINS, per_bar_mean(dur))
        return [
            [
                f"{NOTE_DENSITY_KEY}_{a}",
                f"{MEAN_VELOCITY_KEY}_{b}",
                f"{MEAN_PITCH_KEY}_{c}",
                f"{MEAN_DURATION_KEY}_{d}",
            ]
            for a, b, c, d in zip(
                density.tolist(), mvel.tolist(), mpitch.tolist(), mdur.tolist(), strict=True
            )
        ]


def _positions(flags: np.ndarray, starts: np.ndarray) -> list[int]:
    """Nearest grid position of each start (first one on ties), as the reference's argmin."""
    if not starts.size:
        return []
    return np.abs(flags[None, :] - starts[:, None]).argmin(axis=1).tolist()


def _tempo_bin(bpm: int) -> int:
    return int(np.argmin(np.abs(TEMPO_BINS - bpm)))


__all__ = ["Extraction", "MidiError", "extract", "load_midi"]
