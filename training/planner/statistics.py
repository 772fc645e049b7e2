"""Plan statistics: the numbers each fader should move, measured on a description.

Used by ``training/planner/evaluate.py`` (controllability table) and the tests.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from e2m_live.description.grammar import Description
from e2m_live.description.vocab import PITCH_CLASSES
from e2m_live.planner.classes import ACOUSTIC_PROGRAMS, ELECTRIC_PROGRAMS, VOICE_PROGRAMS, instrument_program
from e2m_live.planner.steering import MAJOR_QUALITIES, MINOR_QUALITIES, SCALE_DEGREES

#: Statistic names, in report order, and the feature each one follows.
STATISTIC_FOR_FEATURE: tuple[tuple[str, str], ...] = (
    ("energy", "note_density"),
    ("energy", "mean_velocity"),
    ("loudness", "mean_velocity"),
    ("valence", "major_share"),
    ("mode", "major_share"),
    ("key", "chord_key"),
    ("acousticness", "acoustic_share"),
    ("instrumentalness", "non_voice_share"),
)


def chord_root(chord: str) -> int | None:
    """Pitch class of a chord's root (``None`` for ``N:N``)."""
    root = chord.partition(":")[0]
    return PITCH_CLASSES.index(root) if root in PITCH_CLASSES else None


def plan_statistics(description: Description, key: int, mode: int) -> dict[str, float]:
    """Statistics of one plan. ``key``/``mode`` are the requested ones (for the in-scale share).

    * ``note_density``, ``mean_velocity``, ``mean_pitch``, ``mean_duration``: mean bin over bars;
    * ``major_share``: major-like chords / (major-like + minor-like chords);
    * ``tonic_root``: the most frequent chord root (0..11);
    * ``chord_key``: the key (0..11) the chords fit best: most roots in its scale (of the requested
      mode), ties broken by how often its tonic is a root;
    * ``in_scale_share``: chords whose root is in the requested key's scale;
    * ``acoustic_share``: acoustic / (acoustic + electric) instrument slots;
    * ``non_voice_share``: 1 - share of instrument slots that are voice-like programs;
    * ``instruments``: mean number of instruments per bar.
    """
    bars = description.bars
    stats: dict[str, float] = {
        name: float(np.mean([getattr(b, name) for b in bars]))
        for name in ("note_density", "mean_velocity", "mean_pitch", "mean_duration")
    }
    chords = [c for b in bars for c in b.chords]
    qualities = [c.partition(":")[2] for c in chords]
    major = sum(q in MAJOR_QUALITIES for q in qualities)
    minor = sum(q in MINOR_QUALITIES for q in qualities)
    stats["major_share"] = major / (major + minor) if major + minor else 0.5
    roots = [r for r in (chord_root(c) for c in chords) if r is not None]
    stats["tonic_root"] = float(Counter(roots).most_common(1)[0][0]) if roots else float("nan")
    scale = SCALE_DEGREES[1 if mode else 0]
    if roots:
        histogram = np.bincount(roots, minlength=12)
        fit = [sum(histogram[(k + d) % 12] for d in scale) + 0.5 * histogram[k] for k in range(12)]
        stats["chord_key"] = float(int(np.argmax(fit)))
    else:
        stats["chord_key"] = float("nan")
    stats["in_scale_share"] = (
        float(np.mean([(r - key) % 12 in scale for r in roots])) if roots else float("nan")
    )
    programs = [instrument_program(name) for b in bars for name in b.instruments]
    acoustic = sum(p in ACOUSTIC_PROGRAMS for p in programs if p is not None)
    electric = sum(p in ELECTRIC_PROGRAMS for p in programs if p is not None)
    stats["acoustic_share"] = acoustic / (acoustic + electric) if acoustic + electric else 0.5
    voices = sum(p in VOICE_PROGRAMS for p in programs if p is not None)
    stats["non_voice_share"] = 1.0 - voices / len(programs) if programs else 1.0
    stats["instruments"] = len(programs) / len(bars)
    return stats
