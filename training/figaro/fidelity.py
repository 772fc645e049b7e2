"""Description-fidelity metrics: how closely generated music follows the description it came from.

The metrics are those of FIGARO's evaluation (``src/evaluate.py`` of dvruette/figaro), computed bar by
bar between a reference bar (the validation segment) and the bar generated from its description, then
averaged over the bars of a segment and over segments:

* ``inst_prec/rec/f1``: the set of instruments (128 programs + drums) playing in the bar;
* ``chord_prec/rec/f1``: the set of chords the description of the bar names;
* ``time_sig_acc``: same time signature;
* ``pitch_oa``, ``velocity_oa``, ``duration_oa``: overlapping area of two normal distributions fitted to
  the pitches, velocities and durations (quarters) of the pitched notes of each bar;
* ``note_density_oa``: overlapping area of normal distributions fitted to the onset counts of each quarter
  of the bar (all notes, drums included); FIGARO only reports ``note_density_nrmse``, which is kept too;
* ``chroma_sim``: cosine similarity of the pitch-class histograms (pitched notes);
* ``groove_sim``: cosine similarity of the onset-position histograms, smoothed with ``[1, 4, 1]``.

Deliberate differences from FIGARO's script, so that agreeing silence scores as agreement:
two empty instrument/chord sets score 1 (FIGARO: 0), an empty chroma/groove histogram is the *unit*
uniform vector (FIGARO: uniform summing to 1), and a bar missing from the sample counts as an empty bar
(FIGARO ``zip``s the bars and silently drops the missing ones). Undefined values (a precision with
nothing predicted, an overlap where neither bar has pitched notes) are ``nan`` and skipped in averages.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from e2m_live.description.vocab import (
    CHORD_KEY,
    CHORD_QUALITIES,
    NO_CHORD,
    PITCH_CLASSES,
    POSITIONS_PER_QUARTER,
    TIME_SIGNATURE_KEY,
    split_bars,
)
from e2m_live.music import Bar, Note
from training.common import DRUM_SLOT, set_scores

#: Every chord label FIGARO knows, in its order ("C:maj" ... "B:None", "N:N").
CHORD_LABELS: tuple[str, ...] = (
    *(f"{root}:{quality}" for root in PITCH_CLASSES for quality in CHORD_QUALITIES),
    NO_CHORD,
)
_CHORD_INDEX = {label: i for i, label in enumerate(CHORD_LABELS)}

#: The metrics a summary reports, in table order.
SUMMARY_METRICS: tuple[str, ...] = (
    "inst_prec",
    "inst_rec",
    "inst_f1",
    "chord_prec",
    "chord_rec",
    "chord_f1",
    "time_sig_acc",
    "note_density_oa",
    "pitch_oa",
    "velocity_oa",
    "duration_oa",
    "chroma_sim",
    "groove_sim",
    "note_density_nrmse",
)

#: Targets of the shipped model (issue 5): metric -> minimum value.
TARGETS: Mapping[str, float] = {
    "inst_f1": 0.90,
    "chord_f1": 0.60,
    "time_sig_acc": 0.98,
    "note_density_oa": 0.70,
    "pitch_oa": 0.70,
    "velocity_oa": 0.70,
    "chroma_sim": 0.80,
    "groove_sim": 0.80,
}

_SIGMA_FLOOR = 0.01  # FIGARO's eps for degenerate (single-value) distributions


@dataclass(frozen=True, slots=True)
class BarFacts:
    """What the metrics look at in one bar: its notes, time signature and described chords."""

    notes: tuple[Note, ...]
    numerator: int = 4
    denominator: int = 4
    chords: tuple[str, ...] = ()

    @property
    def quarters(self) -> float:
        return self.numerator * 4.0 / self.denominator

    @classmethod
    def from_bar(cls, bar: Bar, chords: Iterable[str] = ()) -> BarFacts:
        return cls(tuple(bar.notes), bar.numerator, bar.denominator, tuple(chords))


EMPTY_BAR = BarFacts(notes=())


# --- reading descriptions -------------------------------------------------------------------


def chords_by_bar(description: Sequence[str]) -> list[tuple[str, ...]]:
    """The chord labels (``"C:maj"``) each bar of a description names, in order."""
    prefix = CHORD_KEY + "_"
    return [tuple(t[len(prefix) :] for t in bar if t.startswith(prefix)) for bar in split_bars(description)]


def time_signatures_by_bar(description: Sequence[str]) -> list[tuple[int, int] | None]:
    """The time signature each bar of a description states (``None`` where it states none)."""
    prefix = TIME_SIGNATURE_KEY + "_"
    out: list[tuple[int, int] | None] = []
    for bar in split_bars(description):
        sig = next((t[len(prefix) :] for t in bar if t.startswith(prefix)), None)
        if sig is None:
            out.append(None)
        else:
            num, den = sig.split("/")
            out.append((int(num), int(den)))
    return out


def bar_facts(bars: Sequence[Bar], description: Sequence[str]) -> list[BarFacts]:
    """Pair decoded bars with the chords of the matching description bars (by position)."""
    chords = chords_by_bar(description)
    return [BarFacts.from_bar(bar, chords[i] if i < len(chords) else ()) for i, bar in enumerate(bars)]


# --- per-bar features -----------------------------------------------------------------------


def instrument_vector(notes: Iterable[Note]) -> np.ndarray:
    """129 flags: which programs (0-127) and whether drums (128) play."""
    flags = np.zeros(129, dtype=bool)
    for note in notes:
        flags[DRUM_SLOT if note.is_drum else int(note.program)] = True
    return flags


def chord_vector(chords: Iterable[str]) -> np.ndarray:
    """Flags over :data:`CHORD_LABELS`; unknown labels are ignored."""
    flags = np.zeros(len(CHORD_LABELS), dtype=bool)
    for chord in chords:
        idx = _CHORD_INDEX.get(chord)
        if idx is not None:
            flags[idx] = True
    return flags


def overlapping_area(a: Sequence[float], b: Sequence[float]) -> float:
    """Overlap of normal distributions fitted to two samples (``nan`` if both are empty, 0 if one is)."""
    if len(a) == 0 and len(b) == 0:
        return math.nan
    if len(a) == 0 or len(b) == 0:
        return 0.0
    dist_a = NormalDist(float(np.mean(a)), max(_SIGMA_FLOOR, float(np.std(a))))
    dist_b = NormalDist(float(np.mean(b)), max(_SIGMA_FLOOR, float(np.std(b))))
    return dist_a.overlap(dist_b)


def onsets_per_quarter(bar: BarFacts) -> list[int]:
    """Onset counts in each quarter-note window of the bar (the last window may be partial)."""
    n_windows = max(1, math.ceil(bar.quarters - 1e-9))
    counts = [0] * n_windows
    for note in bar.notes:
        counts[min(n_windows - 1, max(0, int(note.start)))] += 1
    return counts


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.sqrt(np.sum(v**2)))
    if norm == 0.0:
        return np.full(len(v), 1.0 / math.sqrt(len(v)))
    return v / norm


def chroma(notes: Iterable[Note]) -> np.ndarray:
    """Unit-length pitch-class histogram of the pitched notes."""
    counts = np.zeros(12)
    for note in notes:
        if not note.is_drum:
            counts[note.pitch % 12] += 1
    return _unit(counts)


def groove(notes: Iterable[Note], positions_per_bar: int) -> np.ndarray:
    """Unit-length histogram of onset positions (12 per quarter), smoothed with ``[1, 4, 1]``."""
    counts = np.zeros(positions_per_bar)
    for note in notes:
        pos = round(note.start * POSITIONS_PER_QUARTER)
        counts[min(positions_per_bar - 1, max(0, pos))] += 1
    return _unit(np.convolve(counts, [1, 4, 1], "same"))


def note_density(bar: BarFacts) -> float:
    """Notes per quarter note (drums included, as in FIGARO)."""
    return len(bar.notes) / bar.quarters if bar.quarters > 0 else 0.0


def bar_metrics(reference: BarFacts, sample: BarFacts) -> dict[str, float]:
    """Every per-bar metric of ``sample`` against ``reference``."""
    row: dict[str, float] = {}
    row["inst_prec"], row["inst_rec"], row["inst_f1"] = set_scores(
        instrument_vector(reference.notes), instrument_vector(sample.notes)
    )
    row["chord_prec"], row["chord_rec"], row["chord_f1"] = set_scores(
        chord_vector(reference.chords), chord_vector(sample.chords)
    )
    row["time_sig_acc"] = float(
        (reference.numerator, reference.denominator) == (sample.numerator, sample.denominator)
    )

    ref_pitched = [n for n in reference.notes if not n.is_drum]
    sample_pitched = [n for n in sample.notes if not n.is_drum]
    row["pitch_oa"] = overlapping_area([n.pitch for n in ref_pitched], [n.pitch for n in sample_pitched])
    row["velocity_oa"] = overlapping_area(
        [n.velocity for n in ref_pitched], [n.velocity for n in sample_pitched]
    )
    row["duration_oa"] = overlapping_area(
        [n.duration for n in ref_pitched], [n.duration for n in sample_pitched]
    )
    row["note_density_oa"] = overlapping_area(onsets_per_quarter(reference), onsets_per_quarter(sample))
    row["note_density_abs_err"] = abs(note_density(reference) - note_density(sample))

    row["chroma_sim"] = float(np.dot(chroma(reference.notes), chroma(sample.notes)))
    positions = round(max(reference.quarters, sample.quarters) * POSITIONS_PER_QUARTER)
    row["groove_sim"] = float(np.dot(groove(reference.notes, positions), groove(sample.notes, positions)))
    return row


# --- segments and summaries -----------------------------------------------------------------


def nanmean(values: Iterable[float]) -> float:
    """Mean of the defined values (``nan`` if there are none)."""
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    return float(arr.mean()) if arr.size else math.nan


def segment_metrics(reference: Sequence[BarFacts], sample: Sequence[BarFacts]) -> dict[str, float]:
    """Per-bar metrics averaged over the reference's bars; a missing sample bar counts as empty."""
    if not reference:
        raise ValueError("reference segment has no bars")
    rows = [bar_metrics(ref, sample[i] if i < len(sample) else EMPTY_BAR) for i, ref in enumerate(reference)]
    out = {key: nanmean(row[key] for row in rows) for key in rows[0]}
    mean_density = float(np.mean([note_density(b) for b in reference]))
    sq_err = float(np.mean([row["note_density_abs_err"] ** 2 for row in rows]))
    out["note_density_nrmse"] = math.sqrt(sq_err) / mean_density if mean_density > 0 else math.nan
    out["n_bars"] = float(len(reference))
    out["n_sample_bars"] = float(len(sample))
    return out


def summarize(segments: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over segments (FIGARO averages by segment, then over segments)."""
    if not segments:
        raise ValueError("no segments to summarize")
    keys = [k for k in segments[0] if k not in ("n_bars", "n_sample_bars")]
    summary = {key: nanmean(seg[key] for seg in segments) for key in keys}
    summary["n_segments"] = float(len(segments))
    return summary


def meets_targets(summary: Mapping[str, float], targets: Mapping[str, float] = TARGETS) -> dict[str, bool]:
    """Metric -> whether the summary reaches its target."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {k: bool(summary.get(k, math.nan) >= t) for k, t in targets.items()}
