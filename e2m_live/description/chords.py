"""FIGARO's chord recognition: one chord per span of 1 to 4 beats, chosen by dynamic programming.

The recogniser follows FIGARO's ``src/chord_recognition.py`` (itself after the REMI paper):
a beat-synchronous chromagram of the pitched notes (sustain pedal and pitch bends included, as in
pretty_midi's piano roll at 100 frames per second) is thresholded per candidate span of 1 to 4
beats; each span gets a root, one of 8 qualities and a score from the chord templates below; the
best-scoring segmentation wins. Here the chromagram is built with array operations and the
template scoring is memoised on the 12-bit pitch-class set, so the result is the same at a
fraction of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pretty_midi

from e2m_live.description.vocab import NO_CHORD, PITCH_CLASSES

#: Frames per second of the piano roll the chromagram is integrated from.
FRAMES_PER_SECOND = 100
#: A pitch class counts as present in a span when its summed chroma exceeds this.
PRESENCE_THRESHOLD = 10
#: Candidate span lengths, in beats.
SPAN_BEATS = (1, 2, 3, 4)

# Intervals above the root that define each quality (required), reward it, or count against it.
_REQUIRED = {
    "maj": (0, 4), "min": (0, 3), "dim": (0, 3, 6), "aug": (0, 4, 8),
    "dom7": (0, 4, 10), "maj7": (0, 4, 11), "min7": (0, 3, 10),
}  # fmt: skip
_BONUS_10 = {"maj": (7,), "min": (7,), "dim": (9,), "aug": (), "dom7": (7,), "maj7": (7,), "min7": (7,)}
_PENALTY_1 = {
    "maj": (2, 5, 9), "min": (2, 5, 8), "dim": (2, 5, 10), "aug": (2, 5, 9),
    "dom7": (2, 5, 9), "maj7": (2, 5, 9), "min7": (2, 5, 8),
}  # fmt: skip
_PENALTY_2 = {
    "maj": (1, 3, 6, 8, 10, 11), "min": (1, 4, 6, 9, 11), "dim": (1, 4, 7, 8, 11),
    "aug": (1, 3, 6, 7, 10), "dom7": (1, 3, 6, 8, 11), "maj7": (1, 3, 6, 8, 10),
    "min7": (1, 4, 6, 9, 11),
}  # fmt: skip

_NO_CHORD_RESULT = ("N", "N", "N", 10)


def _quality(intervals: frozenset[int]) -> str:
    if (3 in intervals) == (4 in intervals):
        return "None"
    if 3 in intervals:
        if 6 in intervals:
            return "dim"
        return "min7" if 10 in intervals else "min"
    if 8 in intervals:
        return "aug"
    if 10 in intervals:
        return "dom7"
    return "maj7" if 11 in intervals else "maj"


def _score(quality: str, intervals: frozenset[int]) -> int:
    if quality == "None":
        return -100
    score = 0
    for n in intervals:
        if n in _REQUIRED[quality]:
            continue
        if n in _PENALTY_1[quality]:
            score -= 1
        elif n in _PENALTY_2[quality]:
            score -= 2
        elif n in _BONUS_10[quality]:
            score += 10
    return score


@lru_cache(maxsize=4096)
def chord_of_mask(mask: int) -> tuple[str, str, str, int]:
    """(root, quality, bass, score) for a set of pitch classes given as a 12-bit mask (bit i = class i).

    Ties between roots go to the lowest pitch class; the "bass" is the lowest pitch class present
    (FIGARO does not look at octaves). An empty set is ``("N", "N", "N", 10)``.
    """
    present = [pc for pc in range(12) if mask >> pc & 1]
    if not present:
        return _NO_CHORD_RESULT
    best_root, best_quality, best_score = -1, "None", None
    for root in present:
        intervals = frozenset((pc - root) % 12 for pc in present)
        quality = _quality(intervals)
        score = _score(quality, intervals)
        if best_score is None or score > best_score:
            best_root, best_quality, best_score = root, quality, score
    assert best_score is not None
    return PITCH_CLASSES[best_root], best_quality, PITCH_CLASSES[present[0]], best_score


def chord_label(root: str, quality: str, bass: str) -> str:
    """FIGARO's chord string: ``root:quality`` or ``root:quality/bass`` when the bass differs."""
    return f"{root}:{quality}" if root == bass else f"{root}:{quality}/{bass}"


# --- beat-synchronous chromagram ---------------------------------------------------------------


def _instrument_end_time(inst: pretty_midi.Instrument) -> float:
    ends = (
        [n.end for n in inst.notes]
        + [b.time for b in inst.pitch_bends]
        + [c.time for c in inst.control_changes]
    )
    return max(ends) if ends else 0.0


def _apply_bends(roll: np.ndarray, inst: pretty_midi.Instrument, end_time: float, fs: int) -> None:
    """Shift the roll by the instrument's pitch bends with linear interpolation (pretty_midi's rule).

    Each bend acts on its frames in place through a slice (a view), not a fancy-indexed copy: the
    same arithmetic on the same values, at a fraction of the cost for the dense bend streams of
    band files (this loop was 18 % of a file's extraction)."""
    bends = sorted(inst.pitch_bends, key=lambda b: b.time)
    stops = [b.time for b in bends[1:]] + [end_time]
    width = roll.shape[1]
    for bend, stop in zip(bends, stops, strict=True):
        if abs(bend.pitch) < 1:
            continue
        first, last = int(bend.time * fs), int(stop * fs)
        if first >= last:
            continue  # no frame: nothing to shift
        if first < 0 or last > width:
            raise IndexError(f"pitch bend frames {first}..{last} outside the roll's {width}")
        semitones = pretty_midi.pitch_bend_to_semitones(bend.pitch)
        whole = math.trunc(semitones)
        frac = abs(semitones - whole)
        frames = roll[:, first:last]
        if bend.pitch >= 0:
            if whole != 0:
                bent = np.zeros(frames.shape)
                bent[whole:] = frames[:-whole]
            else:
                bent = frames
            bent[1:] = (1 - frac) * bent[1:] + frac * bent[:-1]
        else:
            if whole != 0:
                bent = np.zeros(frames.shape)
                bent[:whole] = frames[-whole:]
            else:
                bent = frames
            bent[:-1] = (1 - frac) * bent[:-1] + frac * bent[1:]
        if bent is not frames:
            frames[...] = bent


def _pedal_spans(inst: pretty_midi.Instrument, fs: int) -> list[tuple[int, int]]:
    """Frame spans [on, off) during which the sustain pedal (CC64 >= 64) is down."""
    spans = []
    on_at, down_now = 0, False
    for cc in inst.control_changes:
        if cc.number != 64:
            continue
        frame, down = int(cc.time * fs), cc.value >= 64
        if down and not down_now:
            on_at, down_now = frame, True
        elif down_now and not down:
            spans.append((on_at, frame))
            down_now = False
    return spans


def _beat_columns(times: np.ndarray, width: int, fs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, first frame, end frame) of the beat intervals that start inside the roll."""
    cols = np.array(np.round(times * fs), dtype=int)
    lo, hi = cols[:-1], cols[1:]
    hi = np.minimum(np.where(hi == lo, lo + 1, hi), width)
    idx = np.flatnonzero(lo < width)
    return idx, lo[idx], hi[idx]


def _dense_beat_roll(
    inst: pretty_midi.Instrument,
    times: np.ndarray,
    fs: int,
    end_time: float,
    width: int,
    pedals: list[tuple[int, int]],
) -> np.ndarray:
    """Frame-by-frame piano roll (needed when pitch bends mix neighbouring pitches)."""
    roll = np.zeros((128, width))
    for n in inst.notes:
        roll[n.pitch, int(n.start * fs) : int(n.end * fs)] += n.velocity
    for on, off in pedals:
        roll[:, on:off] = np.maximum.accumulate(roll[:, on:off], axis=1)
    _apply_bends(roll, inst, end_time, fs)
    out = np.zeros((128, times.shape[0]))
    if times.shape[0] < 2:
        return out
    idx, lo, hi = _beat_columns(times, width, fs)
    # np.add.reduce and a division are what np.mean does, bit for bit, without its per-call
    # overhead (a third of this function's time over a song's thousands of beats).
    for n, a, b in zip(idx.tolist(), lo.tolist(), hi.tolist(), strict=True):
        out[:, n] = np.add.reduce(roll[:, a:b], axis=1) / (b - a)
    return out


def _instrument_beat_roll(inst: pretty_midi.Instrument, times: np.ndarray, fs: int) -> np.ndarray:
    """128 x len(times) mean piano roll of one instrument over each interval between ``times``.

    The roll is piecewise constant between note, pedal and beat boundaries, so it is kept as one
    column per such segment (weighted by its length) rather than one per frame; the velocity sums
    are integers, which makes the segment arithmetic exact.
    """
    if not inst.notes:
        return np.zeros((128, 0))
    if inst.is_drum:
        return np.zeros((128, times.shape[0]))
    end_time = _instrument_end_time(inst)
    if times.shape[0] and times[-1] > end_time:
        end_time = times[-1]
    width = int(fs * end_time)
    pedals = _pedal_spans(inst, fs)
    if any(abs(b.pitch) >= 1 for b in inst.pitch_bends):
        return _dense_beat_roll(inst, times, fs, end_time, width, pedals)
    out = np.zeros((128, times.shape[0]))
    if times.shape[0] < 2:
        return out
    data = np.array(
        [(n.pitch, int(n.start * fs), int(n.end * fs), n.velocity) for n in inst.notes], dtype=np.int64
    )
    pitch, lo, hi, vel = data.T
    hi = np.minimum(hi, width)
    keep = lo < hi
    pitch, lo, hi, vel = pitch[keep], lo[keep], hi[keep], vel[keep]
    beat_idx, beat_lo, beat_hi = _beat_columns(times, width, fs)
    if not beat_idx.size:
        return out
    pedal_arr = np.array([(a, b) for a, b in pedals if a < b], dtype=np.int64).reshape(-1, 2)
    pedal_arr = np.minimum(pedal_arr, width)
    bounds = np.unique(np.concatenate([[0, width], lo, hi, pedal_arr.ravel(), beat_lo, beat_hi]))
    rows, row_of = np.unique(pitch, return_inverse=True)
    seg = np.zeros((rows.size, bounds.size), dtype=np.int64)
    np.add.at(seg, (row_of, np.searchsorted(bounds, lo)), vel)
    np.add.at(seg, (row_of, np.searchsorted(bounds, hi)), -vel)
    seg = np.cumsum(seg, axis=1)[:, :-1]  # value of segment [bounds[j], bounds[j+1])
    for on, off in pedal_arr:
        j0, j1 = np.searchsorted(bounds, on), np.searchsorted(bounds, off)
        seg[:, j0:j1] = np.maximum.accumulate(seg[:, j0:j1], axis=1)
    prefix = np.zeros((rows.size, bounds.size), dtype=np.int64)
    np.cumsum(seg * np.diff(bounds), axis=1, out=prefix[:, 1:])
    j_lo, j_hi = np.searchsorted(bounds, beat_lo), np.searchsorted(bounds, beat_hi)
    out[np.ix_(rows, beat_idx)] = (prefix[:, j_hi] - prefix[:, j_lo]) / (beat_hi - beat_lo)
    return out


def beat_chroma(pm: pretty_midi.PrettyMIDI, beats: np.ndarray, fs: int = FRAMES_PER_SECOND) -> np.ndarray:
    """12 x len(beats) chromagram: mean piano roll between consecutive beats, folded to pitch classes.

    Equal to ``pm.get_chroma(fs, times=beats)`` (the last column is zero, as there).
    """
    if not pm.instruments:
        return np.zeros((12, 0))
    rolls = [_instrument_beat_roll(inst, beats, fs) for inst in pm.instruments]
    total = np.zeros((128, max(r.shape[1] for r in rolls)))
    for r in rolls:
        total[:, : r.shape[1]] += r
    chroma = np.zeros((12, total.shape[1]))
    for pc in range(12):
        chroma[pc, :] = np.sum(total[pc::12], axis=0)
    return chroma


# --- segmentation ---------------------------------------------------------------------------


def _span_masks(chroma: np.ndarray, n_beats: int) -> np.ndarray:
    """masks[s, k-1]: pitch-class set (12-bit) of the span of k beats from beat s (clipped at the end)."""
    width = chroma.shape[1]
    padded = np.zeros((12, n_beats + max(SPAN_BEATS)))
    padded[:, : min(width, n_beats)] = chroma[:, :n_beats]
    weights = 1 << np.arange(12, dtype=np.int64)
    masks = np.zeros((n_beats, len(SPAN_BEATS)), dtype=np.int64)
    running = np.zeros((12, n_beats))
    for k in range(max(SPAN_BEATS)):
        running = running + padded[:, k : k + n_beats]  # left-to-right sum, as np.sum over <8 columns
        masks[:, k] = weights @ (running > PRESENCE_THRESHOLD)
    return masks


def segment(chroma: np.ndarray, n_beats: int) -> list[tuple[int, int, str]]:
    """Best chord segmentation of beats ``0..n_beats``: ``[(start_beat, end_beat, label), ...]`` deduped."""
    if n_beats <= 0:
        return []
    masks = _span_masks(chroma, n_beats)
    scores = np.full(n_beats + 1, -np.inf)
    scores[0] = 0.0
    back: list[tuple[int, int, int] | None] = [None] * (n_beats + 1)
    for start in range(n_beats):
        seen_ends = set()
        for k, span in enumerate(SPAN_BEATS):
            end = min(start + span, n_beats)
            if end in seen_ends:
                continue
            seen_ends.add(end)
            mask = int(masks[start, k])
            total = scores[start] + chord_of_mask(mask)[3]
            if scores[end] < total:
                scores[end] = total
                back[end] = (start, end, mask)
    path: list[tuple[int, int, str]] = []
    at = n_beats
    while at > 0:
        entry = back[at]
        assert entry is not None
        start, end, mask = entry
        root, quality, bass, _ = chord_of_mask(mask)
        path.append((start, end, chord_label(root, quality, bass)))
        at = start
    path.reverse()
    deduped: list[tuple[int, int, str]] = []
    for start, end, label in path:
        if deduped and deduped[-1][2] == label:
            deduped[-1] = (deduped[-1][0], end, label)
        else:
            deduped.append((start, end, label))
    return deduped


def recognize(pm: pretty_midi.PrettyMIDI, beats: np.ndarray | None = None) -> list[tuple[float, float, str]]:
    """FIGARO's chords of a MIDI: ``[(start_s, end_s, "C:maj/E"), ...]`` on the MIDI's beat grid.

    Labels keep the bass (``/E``); :func:`simple_label` drops it as FIGARO's tokens do.
    """
    if beats is None:
        beats = pm.get_beats()
    beats = np.asarray(beats, dtype=float)
    chroma = beat_chroma(pm, beats)
    end_time = None
    out = []
    for s, e, label in segment(chroma, len(beats)):
        if e >= len(beats):
            if end_time is None:
                end_time = pm.get_end_time()
            stop = end_time
        else:
            stop = float(beats[e])
        out.append((float(beats[s]), stop, label))
    return out


def simple_label(label: str) -> str:
    """``"C:maj/E"`` -> ``"C:maj"`` (FIGARO's chord token value); ``"N:N"`` stays."""
    return label.split("/")[0]


def root_and_quality(label: str) -> tuple[str, str]:
    """Split a FIGARO chord value into root and quality: ``"C:maj" -> ("C", "maj")``."""
    root, _, quality = simple_label(label).partition(":")
    return root, quality


__all__: Sequence[str] = [
    "FRAMES_PER_SECOND",
    "NO_CHORD",
    "beat_chroma",
    "chord_label",
    "chord_of_mask",
    "recognize",
    "root_and_quality",
    "segment",
    "simple_label",
]
