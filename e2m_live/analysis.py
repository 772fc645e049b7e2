"""Estimate the ten emotion features from symbolic music.

Used to label training segments that have no Spotify features and to check how well generated
music follows the requested features. Two steps:

1. :func:`describe_segment` measures musically grounded raw descriptors of a segment (note
   density, velocities, drums and beat regularity, instrument families, register, key and mode
   by Krumhansl-Kessler key finding, consonance, tempo, metre).
2. :func:`estimate_features` combines a few descriptors per feature (weights in
   :data:`COMPOSITES`) and maps each continuous composite onto Spotify's scale by quantile
   matching against ``e2m_live/data/feature_calibration.json`` (made by
   ``python -m training.data.calibrate_features``), so estimated marginals follow Spotify's.

Tempo, time signature, key and mode are measured directly. See ``docs/features.md``.
"""

from __future__ import annotations

import json
import math
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi

from e2m_live.features import RANGES, EmotionFeatures, FeatureError
from e2m_live.key_profiles import KK_MAJOR, KK_MINOR
from e2m_live.music import Bar

__all__ = [
    "COMPOSITES",
    "DESCRIPTOR_NAMES",
    "Calibration",
    "composite_scores",
    "describe_segment",
    "estimate_features",
    "find_key",
    "load_calibration",
]

Source = pretty_midi.PrettyMIDI | str | PathLike | Sequence[Bar]

# Roughness of each interval class 0..6 (unison..tritone) in a simultaneity: minor second /
# major seventh and tritone are dissonant, major second / minor seventh mildly so
# (after the interval ranking of Malmberg 1918 and Huron's 1994 interval-class consonance).
_INTERVAL_CLASS_DISSONANCE = np.array([0.0, 1.0, 0.5, 0.1, 0.0, 0.0, 0.8])

# GM programs (0-based) played on acoustic instruments: 1.0 acoustic, 0.0 electric/synthetic.
_ACOUSTIC = np.ones(128)
_ACOUSTIC[[2, 4, 5, 7, 16, 17, 18]] = 0.0  # electric grand/pianos, clavinet, electric organs
_ACOUSTIC[26:32] = 0.0  # electric guitars
_ACOUSTIC[33:40] = 0.0  # electric and synth basses
_ACOUSTIC[[50, 51, 54, 55, 62, 63, 118]] = 0.0  # synth strings/voice/brass, orchestra hit, synth drum
_ACOUSTIC[80:104] = 0.0  # synth leads, pads and effects
_ACOUSTIC[120:128] = 0.5  # sound effects: neither
_DRUM_ACOUSTIC = 0.3  # a drum kit is acoustic, but drum-driven mixes are heard as produced music

# Programs that sing or imitate singing: choir aahs, voice oohs, synth voice.
_VOICE_PROGRAMS = frozenset({52, 53, 54})
_VOCAL_NAME = re.compile(r"vocal|voice|vox|sing|lyric|melody|lead|chorus|choir|canto|voz", re.I)
_VOCAL_RANGE = (48, 84)  # C3..C6 covers bass to soprano melodies

_GRID_TOLERANCE = 0.08  # beats; onsets closer than this to a grid point count as on it


# --------------------------------------------------------------------------------------------
# Note tables
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _NoteTable:
    """All notes of a piece as parallel arrays, times in seconds, sorted by start."""

    start: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    program: np.ndarray
    is_drum: np.ndarray
    track: np.ndarray
    track_names: tuple[str, ...]
    tempo_times: np.ndarray  # tempo in force from each time on
    tempi: np.ndarray
    meter_times: np.ndarray
    meter_beats: np.ndarray  # beats per bar, folded into 3..7
    beats: np.ndarray  # beat times in seconds
    end_time: float


_TABLE_CACHE: weakref.WeakKeyDictionary[Any, _NoteTable] = weakref.WeakKeyDictionary()


def beats_per_bar(numerator: int, denominator: int) -> int:
    """Spotify-style beats per bar (3..7) of a time signature.

    Simple metres keep their numerator (3/4 -> 3, 5/4 -> 5, 6/8 -> 6, 7/8 -> 7); 2/4 and 2/2 are
    counted as 4 (two bars make one 4/4 bar), 9/8 as 3 and 12/8 as 4 (compound beats), other
    numerators above 7 are halved or thirded until they fit; anything else defaults to 4.
    """
    del denominator  # the numerator carries the beat count; kept for a clear signature
    if 3 <= numerator <= 7:
        return int(numerator)
    if numerator in (1, 2):
        return 4
    for divisor in (3, 2):
        if numerator % divisor == 0 and 3 <= numerator // divisor <= 7:
            return numerator // divisor
    return 4


def _table_from_pretty_midi(midi: pretty_midi.PrettyMIDI) -> _NoteTable:
    cached = _TABLE_CACHE.get(midi)
    if cached is not None:
        return cached
    columns: list[np.ndarray] = []
    names: list[str] = []
    for index, instrument in enumerate(midi.instruments):
        names.append(instrument.name or "")
        if not instrument.notes:
            continue
        notes = np.array([(n.start, n.end, n.pitch, n.velocity) for n in instrument.notes], dtype=np.float64)
        extra = np.empty((len(notes), 3))
        extra[:, 0] = int(instrument.program)
        extra[:, 1] = 1.0 if instrument.is_drum else 0.0
        extra[:, 2] = index
        columns.append(np.hstack([notes, extra]))
    data = np.vstack(columns) if columns else np.zeros((0, 7))
    data = data[np.argsort(data[:, 0], kind="stable")]
    tempo_times, tempi = midi.get_tempo_changes()
    if len(tempi) == 0:
        tempo_times, tempi = np.zeros(1), np.array([120.0])
    changes = sorted(midi.time_signature_changes, key=lambda change: change.time)
    if changes:
        meter_times = np.array([change.time for change in changes], dtype=np.float64)
        meter_beats = np.array([beats_per_bar(c.numerator, c.denominator) for c in changes], dtype=np.float64)
    else:
        meter_times, meter_beats = np.zeros(1), np.array([4.0])
    end_time = float(max(midi.get_end_time(), data[:, 1].max() if len(data) else 0.0))
    try:
        beats = np.asarray(midi.get_beats(), dtype=np.float64)
    except (ValueError, IndexError):  # malformed tempo maps: fall back to a 120 BPM grid
        beats = np.arange(0.0, end_time + 0.5, 0.5)
    table = _NoteTable(
        start=data[:, 0],
        end=np.maximum(data[:, 1], data[:, 0]),
        pitch=data[:, 2],
        velocity=data[:, 3],
        program=data[:, 4].astype(np.int64),
        is_drum=data[:, 5] > 0.5,
        track=data[:, 6].astype(np.int64),
        track_names=tuple(names),
        tempo_times=np.asarray(tempo_times, dtype=np.float64),
        tempi=np.asarray(tempi, dtype=np.float64),
        meter_times=meter_times,
        meter_beats=meter_beats,
        beats=beats,
        end_time=end_time,
    )
    _TABLE_CACHE[midi] = table
    return table


def _table_from_bars(bars: Sequence[Bar]) -> _NoteTable:
    rows: list[tuple[float, ...]] = []
    beats: list[float] = []
    tempo_times: list[float] = []
    tempi: list[float] = []
    meter_times: list[float] = []
    meter_beats: list[float] = []
    tracks: dict[tuple[int, bool], int] = {}
    tempo, bar_start = 120.0, 0.0
    for bar in bars:
        if not isinstance(bar, Bar):
            raise TypeError(f"expected a list of e2m_live.music.Bar, got a {type(bar).__name__} in it")
        if bar.tempo is not None:
            if not (isinstance(bar.tempo, int | float) and math.isfinite(bar.tempo) and bar.tempo > 0):
                raise ValueError(f"bar {bar.index}: tempo must be a positive BPM, got {bar.tempo!r}")
            tempo = float(bar.tempo)
        if bar.numerator <= 0 or bar.denominator <= 0:
            raise ValueError(f"bar {bar.index}: bad time signature {bar.numerator}/{bar.denominator}")
        seconds_per_quarter = 60.0 / tempo
        tempo_times.append(bar_start)
        tempi.append(tempo)
        meter_times.append(bar_start)
        meter_beats.append(beats_per_bar(bar.numerator, bar.denominator))
        beat_quarters = 4.0 / bar.denominator
        beats.extend(bar_start + np.arange(bar.numerator) * beat_quarters * seconds_per_quarter)
        for note in bar.notes:
            track = tracks.setdefault((note.program, note.is_drum), len(tracks))
            start = bar_start + note.start * seconds_per_quarter
            rows.append(
                (
                    start,
                    start + max(note.duration, 0.0) * seconds_per_quarter,
                    note.pitch,
                    note.velocity,
                    note.program,
                    float(note.is_drum),
                    track,
                )
            )
        bar_start += bar.quarters * seconds_per_quarter
    data = np.array(rows, dtype=np.float64).reshape(-1, 7)
    data = data[np.argsort(data[:, 0], kind="stable")]
    return _NoteTable(
        start=data[:, 0],
        end=data[:, 1],
        pitch=data[:, 2],
        velocity=data[:, 3],
        program=data[:, 4].astype(np.int64),
        is_drum=data[:, 5] > 0.5,
        track=data[:, 6].astype(np.int64),
        track_names=("",) * len(tracks),
        tempo_times=np.array(tempo_times or [0.0]),
        tempi=np.array(tempi or [120.0]),
        meter_times=np.array(meter_times or [0.0]),
        meter_beats=np.array(meter_beats or [4.0]),
        beats=np.array(beats or [0.0]),
        end_time=max(bar_start, float(data[:, 1].max()) if len(data) else 0.0),
    )


def _note_table(source: Source) -> _NoteTable:
    if isinstance(source, pretty_midi.PrettyMIDI):
        return _table_from_pretty_midi(source)
    if isinstance(source, str | PathLike):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no MIDI file at {path}")
        try:
            midi = pretty_midi.PrettyMIDI(str(path))
        except Exception as error:  # mido/pretty_midi raise many types for corrupt files
            raise ValueError(f"cannot read MIDI file {path}: {error}") from error
        return _table_from_pretty_midi(midi)
    if isinstance(source, Sequence) and not isinstance(source, bytes):
        # mypy keeps ``str`` here (a str is a Sequence) though the branch above returned for it
        return _table_from_bars(source)  # type: ignore[arg-type]
    raise TypeError(f"source must be a PrettyMIDI, a path or a list of Bar, got {type(source).__name__}")


def _value_in_force(times: np.ndarray, values: np.ndarray, start: float, end: float) -> np.ndarray:
    """Seconds each value of a step function (changes at ``times``) is in force in [start, end)."""
    bounds = np.append(times, np.inf)
    lo = np.clip(bounds[:-1], start, end)
    hi = np.clip(bounds[1:], start, end)
    weights = hi - lo
    if weights.sum() <= 0:  # the segment starts after the last change
        weights = np.zeros(len(values))
        # max() of a NumPy integer and 0 is an int at run time; the stubs only promise a comparable
        weights[max(np.searchsorted(times, start, side="right") - 1, 0)] = 1.0  # type: ignore[call-overload]
    return weights


# --------------------------------------------------------------------------------------------
# Key finding
# --------------------------------------------------------------------------------------------
def _profiles() -> np.ndarray:
    """24 x 12 z-scored key profiles: rows 0..11 major on C..B, 12..23 minor on C..B."""
    profiles = np.array([np.roll(profile, tonic) for profile in (KK_MAJOR, KK_MINOR) for tonic in range(12)])
    profiles -= profiles.mean(axis=1, keepdims=True)
    return profiles / np.linalg.norm(profiles, axis=1, keepdims=True)


_KEY_PROFILES = _profiles()


def find_key(pitch_class_weights: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Krumhansl-Schmuckler key finding on a 12-bin (duration-weighted) pitch-class histogram.

    Returns ``(key, mode, correlations)``: key 0..11, mode 1 major / 0 minor, and the Pearson
    correlation with each of the 24 keys (0..11 major, 12..23 minor).
    """
    weights = np.asarray(pitch_class_weights, dtype=np.float64)
    if weights.shape != (12,):
        raise ValueError(f"pitch-class histogram must have 12 bins, got shape {weights.shape}")
    centred = weights - weights.mean()
    norm = np.linalg.norm(centred)
    if norm == 0:
        return 0, 1, np.zeros(24)
    correlations = _KEY_PROFILES @ (centred / norm)
    best = int(np.argmax(correlations))
    return best % 12, 1 if best < 12 else 0, correlations


# --------------------------------------------------------------------------------------------
# Descriptors
# --------------------------------------------------------------------------------------------
DESCRIPTOR_NAMES: tuple[str, ...] = (
    "duration",  # seconds analysed
    "onset_rate",  # note onsets per second, drums included
    "pitched_onset_rate",  # non-drum onsets per second
    "drum_onset_rate",  # drum onsets per second
    "polyphony",  # mean number of sounding pitched notes while any sounds
    "velocity_mean",  # MIDI velocity, all notes
    "velocity_std",
    "level_db",  # summed note power, velocity -> amplitude as (v/127)^2 (40 log10 law)
    "pitch_mean",  # duration-weighted mean pitch of pitched notes
    "pitch_std",
    "articulation",  # mean pitched note length over the time to the next onset in its track (0..1)
    "key",
    "mode",
    "key_clarity",  # correlation with the best key
    "majorness",  # best major minus best minor key correlation
    "dissonance",  # mean interval-class roughness of the sounding pitch classes (0..1)
    "triad_balance",  # time share of major triads minus minor triads (-1..1)
    "tempo",  # BPM, time-weighted mean (in log tempo)
    "time_signature",  # beats per bar in force longest
    "beat_onset_fraction",  # onsets within 0.08 beat of a beat
    "grid_onset_fraction",  # onsets within 0.08 beat of the sixteenth grid
    "drum_beat_fraction",  # drum onsets on the beat, 0 without drums
    "acoustic_share",  # note-time share of acoustic instruments (drums count 0.3)
    "vocal_likeness",  # 0..1: how much the most song-like track resembles a sung line
)


def _segment_mask(table: _NoteTable, start: float, end: float) -> np.ndarray:
    return (table.start >= start) & (table.start < end)


def _beat_phase(table: _NoteTable, times: np.ndarray) -> np.ndarray:
    """Position of ``times`` in beats (fractional), by interpolation between beat times."""
    beats = table.beats
    if len(beats) < 2:
        return times / 0.5
    beat_index = np.arange(len(beats), dtype=np.float64)
    position = np.interp(times, beats, beat_index)
    # Beyond the last beat: extrapolate with the last beat length.
    last = beats[-1]
    step = beats[-1] - beats[-2]
    after = times > last
    if step > 0:
        position[after] = beat_index[-1] + (times[after] - last) / step
    return position


def _on_grid(positions: np.ndarray, subdivision: int) -> np.ndarray:
    scaled = positions * subdivision
    return np.abs(scaled - np.round(scaled)) < _GRID_TOLERANCE * subdivision


def _vocal_likeness(table: _NoteTable, mask: np.ndarray) -> float:
    """How much the most song-like pitched track resembles a sung line (0..1).

    A sung line is monophonic, in the vocal range, and often named or voiced as such.
    """
    best = 0.0
    tracks = np.unique(table.track[mask & ~table.is_drum])
    for track in tracks:
        selected = mask & (table.track == track) & ~table.is_drum
        if selected.sum() < 4:
            continue
        starts, ends, pitches = table.start[selected], table.end[selected], table.pitch[selected]
        monophony = float(np.mean(starts[1:] >= ends[:-1] - 0.05))
        in_range = float(np.mean((pitches >= _VOCAL_RANGE[0]) & (pitches <= _VOCAL_RANGE[1])))
        program = int(table.program[selected][0])
        name = table.track_names[track] if track < len(table.track_names) else ""
        voiced = program in _VOICE_PROGRAMS or bool(_VOCAL_NAME.search(name))
        best = max(best, monophony * in_range * (1.0 if voiced else 0.6))
    return best


def _chroma_frames(table: _NoteTable, mask: np.ndarray, start: float, end: float) -> np.ndarray:
    """Which pitch classes sound (12 x frames, 0/1), sampled every 0.125 s from ``start``."""
    pitched = mask & ~table.is_drum
    step = 0.125
    frames = max(math.ceil((end - start) / step), 1)
    # Frame f samples time start + (f + 0.5) * step; a note sounds in frames [first, last).
    first = np.ceil((table.start[pitched] - start) / step - 0.5).astype(np.int64)
    last = np.ceil((np.minimum(table.end[pitched], end) - start) / step - 0.5).astype(np.int64)
    first, last = np.clip(first, 0, frames), np.clip(last, 0, frames)
    keep = last > first
    classes = table.pitch[pitched][keep].astype(np.int64) % 12
    change = np.zeros((12, frames + 1))
    np.add.at(change, (classes, first[keep]), 1.0)
    np.add.at(change, (classes, last[keep]), -1.0)
    return (np.cumsum(change[:, :-1], axis=1) > 0.5).astype(np.float64)


def _dissonance(chroma: np.ndarray) -> float:
    """Mean roughness of the pitch classes sounding together (frames with two or more)."""
    counts = chroma.sum(axis=0)
    several = counts >= 2
    if not several.any():
        return 0.0
    chroma = chroma[:, several]
    pairs = counts[several] * (counts[several] - 1) / 2
    rough = np.einsum("if,ij,jf->f", chroma, _ROUGHNESS, chroma) / 2
    return float(np.mean(rough / pairs))


def _triad_balance(chroma: np.ndarray) -> float:
    """Share of time a major triad sounds minus share a minor triad sounds (-1..1).

    A frame counts for the quality whose complete triad (root, third, fifth) it contains; when
    both are complete (e.g. C E G A) it counts as major, the more common reading in pop.
    """
    major = (_MAJOR_TRIADS @ chroma).max(axis=0) >= 3
    minor = (_MINOR_TRIADS @ chroma).max(axis=0) >= 3
    return float(np.mean(major) - np.mean(minor & ~major))


def _roughness_matrix() -> np.ndarray:
    classes = np.arange(12)
    interval = np.abs(classes[:, None] - classes[None, :]) % 12
    interval_class = np.minimum(interval, 12 - interval)
    return _INTERVAL_CLASS_DISSONANCE[interval_class]


def _triad_templates(third: int) -> np.ndarray:
    templates = np.zeros((12, 12))
    for root in range(12):
        templates[root, [root, (root + third) % 12, (root + 7) % 12]] = 1.0
    return templates


_ROUGHNESS = _roughness_matrix()
_MAJOR_TRIADS = _triad_templates(4)
_MINOR_TRIADS = _triad_templates(3)


def _segment_bounds(table: _NoteTable, start: float | None, end: float | None) -> tuple[float, float]:
    lo = 0.0 if start is None else float(start)
    hi = table.end_time if end is None else float(end)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"segment bounds must be finite seconds, got start={start!r}, end={end!r}")
    if lo < 0 or hi <= lo:
        raise ValueError(f"segment must satisfy 0 <= start < end, got start={lo:g}, end={hi:g}")
    return lo, hi


def describe_segment(
    source: Source, *, start: float | None = None, end: float | None = None
) -> dict[str, float]:
    """Raw descriptors (:data:`DESCRIPTOR_NAMES`) of the notes starting in ``[start, end)`` seconds.

    ``source`` is a ``pretty_midi.PrettyMIDI`` (its note table is cached, so slicing one file
    into many segments is cheap), a path to a MIDI file, or a list of :class:`~e2m_live.music.Bar`.
    Raises ``ValueError`` when the segment holds no notes.
    """
    table = _note_table(source)
    if len(table.start) == 0:
        raise ValueError("no notes in the music to describe")
    lo, hi = _segment_bounds(table, start, end)
    return _describe(table, lo, hi)


def _window(table: _NoteTable, lo: float, hi: float) -> _NoteTable:
    """The notes starting in ``[lo, hi)`` as a table of their own (same order, so every descriptor
    of the window is bit-identical to masking the whole table, at the window's cost rather than the
    piece's: a 12-bar window at stride 4 would otherwise scan the whole song each time)."""
    first, last = np.searchsorted(table.start, [lo, hi], side="left")
    rows = slice(int(first), int(last))
    return replace(
        table,
        start=table.start[rows],
        end=table.end[rows],
        pitch=table.pitch[rows],
        velocity=table.velocity[rows],
        program=table.program[rows],
        is_drum=table.is_drum[rows],
        track=table.track[rows],
    )


def _describe(table: _NoteTable, lo: float, hi: float) -> dict[str, float]:
    table = _window(table, lo, hi)
    mask = _segment_mask(table, lo, hi)
    if not mask.any():
        raise ValueError(f"no notes start between {lo:g} s and {hi:g} s")
    # Rates are per second of the segment: silence inside it counts (a half-empty segment is calmer).
    span = hi - lo
    drum = mask & table.is_drum
    pitched = mask & ~table.is_drum
    n_drum, n_pitched = int(drum.sum()), int(pitched.sum())
    velocity = table.velocity[mask]

    durations = np.clip(np.minimum(table.end, hi) - table.start, 0.0, None)
    # Drums are often written as very short notes: give each at least 0.1 s of sound.
    sound = np.where(table.is_drum, np.maximum(durations, 0.1), durations)
    power = (velocity / 127.0) ** 4  # amplitude (v/127)^2, power its square
    level_db = 10.0 * math.log10(max(float(np.sum(power * sound[mask])) / span, 1e-6))

    descriptors: dict[str, float] = {
        "duration": span,
        "onset_rate": int(mask.sum()) / span,
        "pitched_onset_rate": n_pitched / span,
        "drum_onset_rate": n_drum / span,
        "velocity_mean": float(velocity.mean()),
        "velocity_std": float(velocity.std()),
        "level_db": level_db,
    }

    if n_pitched:
        pitch = table.pitch[pitched]
        weight = np.maximum(durations[pitched], 1e-3)
        mean_pitch = float(np.average(pitch, weights=weight))
        chroma = np.bincount(pitch.astype(np.int64) % 12, weights=weight, minlength=12)
        key, mode, correlations = find_key(chroma)
        chroma_frames = _chroma_frames(table, mask, lo, hi)
        # Polyphony: summed note time over the time in which something sounds.
        union = _union_length(table.start[pitched], np.minimum(table.end[pitched], hi))
        descriptors.update(
            polyphony=float(durations[pitched].sum() / max(union, 1e-3)),
            pitch_mean=mean_pitch,
            pitch_std=float(math.sqrt(np.average((pitch - mean_pitch) ** 2, weights=weight))),
            articulation=_articulation(table, pitched),
            key=float(key),
            mode=float(mode),
            key_clarity=float(correlations.max()),
            majorness=float(correlations[:12].max() - correlations[12:].max()),
            dissonance=_dissonance(chroma_frames),
            triad_balance=_triad_balance(chroma_frames),
        )
    else:
        descriptors.update(
            polyphony=0.0,
            pitch_mean=60.0,
            pitch_std=0.0,
            articulation=0.5,
            key=0.0,
            mode=1.0,
            key_clarity=0.0,
            majorness=0.0,
            dissonance=0.0,
            triad_balance=0.0,
        )

    tempo_weights = _value_in_force(table.tempo_times, table.tempi, lo, hi)
    descriptors["tempo"] = float(np.exp(np.average(np.log(table.tempi), weights=tempo_weights)))
    meter_weights = _value_in_force(table.meter_times, table.meter_beats, lo, hi)
    descriptors["time_signature"] = float(table.meter_beats[int(np.argmax(meter_weights))])

    positions = _beat_phase(table, table.start[mask])
    descriptors["beat_onset_fraction"] = float(np.mean(_on_grid(positions, 1)))
    descriptors["grid_onset_fraction"] = float(np.mean(_on_grid(positions, 4)))
    if n_drum:
        descriptors["drum_beat_fraction"] = float(np.mean(_on_grid(_beat_phase(table, table.start[drum]), 1)))
    else:
        descriptors["drum_beat_fraction"] = 0.0

    acoustic = np.where(table.is_drum[mask], _DRUM_ACOUSTIC, _ACOUSTIC[table.program[mask]])
    descriptors["acoustic_share"] = float(np.average(acoustic, weights=sound[mask] + 1e-6))
    descriptors["vocal_likeness"] = _vocal_likeness(table, mask)
    return {name: descriptors[name] for name in DESCRIPTOR_NAMES}


def _union_length(starts: np.ndarray, ends: np.ndarray) -> float:
    """Total length covered by the intervals ``[starts, ends)`` (starts sorted)."""
    if len(starts) == 0:
        return 0.0
    running_end = np.maximum.accumulate(ends)
    gaps = np.clip(starts[1:] - running_end[:-1], 0.0, None)
    return float(running_end[-1] - starts[0] - gaps.sum())


def _articulation(table: _NoteTable, pitched: np.ndarray) -> float:
    """Mean ratio of note length to the time until the next onset in the same track (0..1)."""
    order = np.lexsort((table.start[pitched], table.track[pitched]))
    starts = table.start[pitched][order]
    ends = table.end[pitched][order]
    tracks = table.track[pitched][order]
    same = tracks[1:] == tracks[:-1]
    gap = starts[1:] - starts[:-1]
    valid = same & (gap > 0.02)
    if not valid.any():
        return 0.5
    ratio = np.clip((ends[:-1] - starts[:-1])[valid] / gap[valid], 0.0, 1.0)
    return float(ratio.mean())


# --------------------------------------------------------------------------------------------
# Composites: a few standardised descriptors per feature
# --------------------------------------------------------------------------------------------
#: Weights of the standardised terms of each continuous feature's raw composite. Terms are
#: descriptors (see :func:`_terms` for the transforms) standardised by the corpus median and
#: inter-quartile range stored in the calibration. Chosen a priori from the music-emotion
#: literature (Gabrielsson & Lindström 2010; Eerola et al. 2013) and Spotify's definitions;
#: EMOPIA half A only chose between the candidate sets listed in docs/features.md.
COMPOSITES: dict[str, dict[str, float]] = {
    # Arousal: how many events and how hard they are played.
    "energy": {"log_onset_rate": 1.0, "expressive_velocity": 1.0},
    # Pleasantness: major mode and major chords, tonal clarity, high register.
    "valence": {"majorness": 1.0, "triad_balance": 1.0, "key_clarity": 0.5, "pitch_mean": 0.25},
    # Rhythmic regularity and beat strength, a steady drum beat, tempo near 115 BPM.
    "danceability": {
        "grid_onset_fraction": 1.0,
        "beat_onset_fraction": 0.5,
        "drum_beat_fraction": 1.0,
        "tempo_fit": 0.5,
    },
    # Level from velocities and density (quantile-matched to Spotify's dB).
    "loudness": {"level_db": 1.0},
}
#: Acousticness is the acoustic-instrument share (absolute 0..1 scale) plus a small tie-breaker,
#: which orders the many all-acoustic segments (solo piano): less energy (Spotify's acousticness
#: and energy correlate at -0.68) and freer, performed timing (off the sixteenth grid) are heard
#: as acoustic recordings rather than produced, sequenced music.
ACOUSTICNESS_TIE_BREAK: dict[str, float] = {"energy": -0.05, "grid_onset_fraction": -0.05}
#: Terms a refitted composite (``Calibration.composites``, ``training.data.refit_estimator``) may use besides
#: those of :data:`COMPOSITES`: rhythm, texture and tempo descriptors that carry Spotify's valence and
#: energy on band music (docs/dataset.md).
EXTRA_TERMS: tuple[str, ...] = (
    "log_drum_onset_rate",
    "log_pitched_onset_rate",
    "articulation",
    "polyphony",
    "dissonance",
    "pitch_std",
    "log_tempo",
)
_TEMPO_PEAK_BPM = 115.0  # most danceable tempo (Moelants 2002: preferred tempo ~120 BPM)
_TEMPO_WIDTH = 0.5  # octaves of tempo


def _terms(descriptors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Transformed descriptors used by :data:`COMPOSITES` (works on scalars or arrays)."""
    as_array = {name: np.asarray(descriptors[name], dtype=np.float64) for name in DESCRIPTOR_NAMES}
    # A file with one velocity for every note carries no dynamics: treat it as average.
    flat = as_array["velocity_std"] < 1.0
    return {
        "log_onset_rate": np.log(as_array["onset_rate"] + 0.1),
        "expressive_velocity": np.where(flat, np.nan, as_array["velocity_mean"]),
        "majorness": as_array["majorness"],
        "triad_balance": as_array["triad_balance"],
        "key_clarity": as_array["key_clarity"],
        "pitch_mean": as_array["pitch_mean"],
        "grid_onset_fraction": as_array["grid_onset_fraction"],
        "beat_onset_fraction": as_array["beat_onset_fraction"],
        "drum_beat_fraction": as_array["drum_beat_fraction"],
        # a tempo of 0 (broken tempo map) is as far from danceable as 1 BPM: fit 0 either way
        "tempo_fit": np.exp(
            -0.5 * (np.log2(np.maximum(as_array["tempo"], 1.0) / _TEMPO_PEAK_BPM) / _TEMPO_WIDTH) ** 2
        ),
        "level_db": as_array["level_db"],
        "acoustic_share": as_array["acoustic_share"],
        "vocal_likeness": as_array["vocal_likeness"],
        "log_drum_onset_rate": np.log(as_array["drum_onset_rate"] + 0.1),
        "log_pitched_onset_rate": np.log(as_array["pitched_onset_rate"] + 0.1),
        "articulation": as_array["articulation"],
        "polyphony": as_array["polyphony"],
        "dissonance": as_array["dissonance"],
        "pitch_std": as_array["pitch_std"],
        "log_tempo": np.log(np.maximum(as_array["tempo"], 1.0)),
    }


def weighted_quantiles(values: np.ndarray, weights: np.ndarray | None, levels: np.ndarray) -> np.ndarray:
    """Quantiles at ``levels`` (0..1) of a weighted sample (midpoint rule on the weighted CDF)."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    cdf = (np.cumsum(weights) - 0.5 * weights) / weights.sum()
    return np.interp(levels, cdf, values)


def term_statistics(
    descriptors: Mapping[str, Any], weights: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """Median and inter-quartile range of every composite term over a corpus (dict of arrays)."""
    stats = {}
    for name, values in _terms(descriptors).items():
        finite = np.isfinite(values)
        if not finite.any():
            stats[name] = {"median": 0.0, "scale": 1.0}
            continue
        kept = values[finite]
        chosen = np.ones_like(kept) if weights is None else np.asarray(weights, dtype=np.float64)[finite]
        q1, median, q3 = weighted_quantiles(kept, chosen, np.array([0.25, 0.5, 0.75]))
        scale = q3 - q1
        if scale <= 1e-9:  # most of the corpus shares one value (e.g. no drums): use the spread
            scale = math.sqrt(np.average((kept - np.average(kept, weights=chosen)) ** 2, weights=chosen))
        stats[name] = {"median": float(median), "scale": float(max(scale, 1e-6))}
    return stats


def composite_scores(
    descriptors: Mapping[str, Any],
    stats: Mapping[str, Mapping[str, float]],
    composites: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, np.ndarray]:
    """Raw (uncalibrated) score of each continuous feature; higher means more of it.

    ``descriptors`` maps :data:`DESCRIPTOR_NAMES` to scalars or equal-length arrays; ``stats``
    comes from :func:`term_statistics` (stored in the calibration); ``composites`` replaces the
    weights of :data:`COMPOSITES` for the features it names (a refit stored in the calibration).
    """
    terms = _terms(descriptors)
    weights_of = {**COMPOSITES, **(composites or {})}

    def standard(name: str) -> np.ndarray:
        z = (terms[name] - stats[name]["median"]) / stats[name]["scale"]
        return np.where(np.isfinite(z), z, 0.0)  # missing information counts as the median

    scores = {
        feature: sum(weight * standard(term) for term, weight in weights.items())
        for feature, weights in weights_of.items()
    }
    scores["loudness"] = terms["level_db"]  # already a dB scale: no need to standardise
    # the tie-break keeps the a-priori energy, so a refitted energy moves no other feature
    prior_energy = sum(weight * standard(term) for term, weight in COMPOSITES["energy"].items())
    scores["acousticness"] = (
        terms["acoustic_share"]
        + ACOUSTICNESS_TIE_BREAK["energy"] * prior_energy
        + ACOUSTICNESS_TIE_BREAK["grid_onset_fraction"] * standard("grid_onset_fraction")
    )
    scores["instrumentalness"] = 1.0 - terms["vocal_likeness"]
    return {name: np.asarray(value, dtype=np.float64) for name, value in scores.items()}


CALIBRATED_FEATURES: tuple[str, ...] = (
    "energy",
    "valence",
    "loudness",
    "instrumentalness",
    "danceability",
    "acousticness",
)


# --------------------------------------------------------------------------------------------
# Calibration: quantile matching onto Spotify's marginals
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """Term statistics plus, per continuous feature, raw-score quantiles matched to Spotify's."""

    stats: dict[str, dict[str, float]]
    raw_quantiles: dict[str, np.ndarray]
    spotify_quantiles: dict[str, np.ndarray]
    info: dict[str, Any]
    #: Refitted term weights of some features (replacing :data:`COMPOSITES`'), e.g. valence and energy
    #: fitted to Spotify's labels by ``training.data.refit_estimator``; ``None``: the a-priori weights.
    composites: Mapping[str, Mapping[str, float]] | None = None

    def __post_init__(self) -> None:
        known = set(_terms({name: 0.0 for name in DESCRIPTOR_NAMES}))
        for feature, weights in (self.composites or {}).items():
            if feature not in COMPOSITES:
                raise ValueError(f"calibration composites: {feature!r} has no composite")
            unknown = sorted(set(weights) - known)
            missing = sorted(set(weights) - set(self.stats))
            if unknown or missing or not weights:
                raise ValueError(f"calibration composites of {feature}: bad terms {unknown + missing}")
        for name, raw in self.raw_quantiles.items():
            target = self.spotify_quantiles.get(name)
            if target is None or raw.shape != target.shape or raw.ndim != 1 or len(raw) < 2:
                raise ValueError(f"calibration of {name}: need two equal-length quantile lists")
            if np.any(np.diff(raw) < 0) or np.any(np.diff(target) < 0) or not np.all(np.isfinite(raw)):
                raise ValueError(f"calibration of {name}: quantiles must be finite and non-decreasing")
        # Raw quantiles that tie (many segments with the same score) map to the mean of the
        # Spotify quantiles they span, so ties land in the middle of their probability mass.
        tables = {}
        for name, raw in self.raw_quantiles.items():
            xs, inverse = np.unique(raw, return_inverse=True)
            ys = np.bincount(inverse, weights=self.spotify_quantiles[name]) / np.bincount(inverse)
            tables[name] = (xs, ys)
        object.__setattr__(self, "_tables", tables)

    def map(self, feature: str, raw: np.ndarray | float) -> np.ndarray:
        """Spotify-scale value of a raw score: the Spotify quantile at the raw score's quantile."""
        xs, ys = self._tables[feature]  # type: ignore[attr-defined]
        return np.interp(raw, xs, ys)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        try:
            features = data["features"]
            missing = [name for name in CALIBRATED_FEATURES if name not in features]
            composites = {
                str(feature): {str(term): float(w) for term, w in weights.items()}
                for feature, weights in data.get("composites", {}).items()
            }
            chosen = {**COMPOSITES, **composites}
            needed = {term for weights in chosen.values() for term in weights} | {"grid_onset_fraction"}
            missing += sorted(f"term_stats.{term}" for term in needed - set(data["term_stats"]))
            if missing:
                raise KeyError(", ".join(missing) + "; rerun python -m training.data.calibrate_features")
            return cls(
                stats={
                    k: {"median": float(v["median"]), "scale": float(v["scale"])}
                    for k, v in data["term_stats"].items()
                },
                raw_quantiles={k: np.asarray(v["raw"], dtype=float) for k, v in features.items()},
                spotify_quantiles={k: np.asarray(v["spotify"], dtype=float) for k, v in features.items()},
                info={k: v for k, v in data.items() if k not in ("features", "term_stats", "composites")},
                composites=composites or None,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"malformed feature calibration (missing or bad {error})") from None

    def to_dict(self) -> dict[str, Any]:
        composites = {k: dict(v) for k, v in (self.composites or {}).items()}
        return {
            **self.info,
            **({"composites": composites} if composites else {}),
            "term_stats": self.stats,
            "features": {
                name: {"raw": raw.tolist(), "spotify": self.spotify_quantiles[name].tolist()}
                for name, raw in self.raw_quantiles.items()
            },
        }


CALIBRATION_FILE = "feature_calibration.json"


@lru_cache(maxsize=4)
def load_calibration(path: str | None = None) -> Calibration:
    """The calibration shipped in ``e2m_live/data/`` (or the JSON at ``path``)."""
    if path is None:
        text = resources.files("e2m_live.data").joinpath(CALIBRATION_FILE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return Calibration.from_dict(json.loads(text))


_DEFAULT_TEMPO = 120.0


def _fold_tempo(tempo: float) -> float:
    """Tempo folded by octaves into the allowed range (MIDI files sometimes notate half/double); a
    tempo that is not a positive number reads as MIDI's default, 120 BPM."""
    low, high = RANGES["tempo"]
    if not (math.isfinite(tempo) and tempo > 0):
        return _DEFAULT_TEMPO
    while tempo < low:
        tempo *= 2.0
    while tempo > high:
        tempo /= 2.0
    return tempo


def features_from_descriptors(
    descriptors: Mapping[str, float], calibration: Calibration | None = None
) -> EmotionFeatures:
    """The ten features from :func:`describe_segment`'s output."""
    calibration = calibration or load_calibration()
    raw = composite_scores(descriptors, calibration.stats, calibration.composites)
    values: dict[str, Any] = {}
    for name in CALIBRATED_FEATURES:
        low, high = RANGES[name]
        values[name] = float(np.clip(calibration.map(name, raw[name]), low, high))
    values["key"] = int(descriptors["key"])
    values["mode"] = int(descriptors["mode"])
    values["time_signature"] = int(descriptors["time_signature"])
    values["tempo"] = _fold_tempo(float(descriptors["tempo"]))
    try:
        return EmotionFeatures(**values)
    except FeatureError as error:  # only reachable through a corrupt calibration
        raise ValueError(f"estimated features out of range: {error}") from error


def estimate_features(
    source: Source,
    *,
    start: float | None = None,
    end: float | None = None,
    calibration: Calibration | None = None,
) -> EmotionFeatures:
    """Estimate the ten features of a piece or of its segment ``[start, end)`` (seconds).

    ``source``: a ``pretty_midi.PrettyMIDI`` (cached note table: many segments of one file are
    cheap), a path to a MIDI file, or a list of :class:`~e2m_live.music.Bar` (times in quarters,
    tempo from the bars). Continuous features are quantile-matched to Spotify's marginals;
    key/mode come from key finding, tempo and time signature from the MIDI.
    """
    return features_from_descriptors(describe_segment(source, start=start, end=end), calibration)


def feature_matrix(descriptors: np.ndarray, calibration: Calibration | None = None) -> np.ndarray:
    """The ten features (``FEATURE_ORDER`` columns, Spotify's units) of many descriptor rows at once
    (``[n, len(DESCRIPTOR_NAMES)]``): the same values as :func:`features_from_descriptors` per row."""
    from e2m_live.features import FEATURE_ORDER

    calibration = calibration or load_calibration()
    rows = np.asarray(descriptors, dtype=np.float64).reshape(-1, len(DESCRIPTOR_NAMES))
    columns = {name: rows[:, i] for i, name in enumerate(DESCRIPTOR_NAMES)}
    raw = composite_scores(columns, calibration.stats, calibration.composites)
    values: dict[str, np.ndarray] = {}
    for name in CALIBRATED_FEATURES:
        low, high = RANGES[name]
        values[name] = np.clip(calibration.map(name, raw[name]), low, high)
    values["key"] = np.trunc(columns["key"])
    values["mode"] = np.trunc(columns["mode"])
    values["time_signature"] = np.trunc(columns["time_signature"])
    values["tempo"] = np.array([_fold_tempo(float(t)) for t in columns["tempo"]])
    return np.column_stack([values[name] for name in FEATURE_ORDER]).astype(np.float32)
