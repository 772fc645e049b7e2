"""What each bar of the section being played holds, for the page's bar strip: a chord name and
the instruments, read from the decoded notes (the page gets them, the player is not involved)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from e2m_live.arrangement import instrument_name
from e2m_live.description.chords import chord_of_mask
from e2m_live.description.vocab import PITCH_CLASSES
from e2m_live.music import Bar

#: A pitch class counts in a bar's chord when it sounds at least this share of the strongest one.
PRESENCE = 0.3
_SHORT = {"maj": "", "min": "m", "dim": "dim", "aug": "+", "dom7": "7", "maj7": "maj7", "min7": "m7"}


def bar_chord(bar: Bar) -> str:
    """The bar's chord, named as a lead sheet would (``Am``, ``G7``, ``C/E``), or ``-`` for none.

    Pitch classes are weighted by duration x velocity over the pitched notes; FIGARO's chord
    templates (:func:`~e2m_live.description.chords.chord_of_mask`) name the set that remains."""
    weights = [0.0] * 12
    for note in bar.notes:
        if not note.is_drum:
            weights[note.pitch % 12] += note.duration * note.velocity
    top = max(weights)
    if top <= 0:
        return "-"
    present = {pc for pc, w in enumerate(weights) if w >= PRESENCE * top}
    root, quality, _, _ = chord_of_mask(sum(1 << pc for pc in present))
    if quality not in _SHORT:
        return root
    name = root + _SHORT[quality]
    lowest = min(n.pitch for n in bar.notes if not n.is_drum and n.pitch % 12 in present)
    bass = PITCH_CLASSES[lowest % 12]  # the lowest note sounding (FIGARO's bass ignores octaves)
    return name if bass == root else f"{name}/{bass}"


def bar_instruments(bar: Bar) -> list[str]:
    """The instruments that play in the bar, in program order, drums last."""
    programs = sorted({n.program for n in bar.notes if not n.is_drum})
    names = [instrument_name(p) for p in programs]
    return [*names, "drums"] if any(n.is_drum for n in bar.notes) else names


def summarise(bars: Iterable[Bar]) -> list[dict[str, Any]]:
    """``[{"index", "chord", "instruments"}]`` for the page's bar strip."""
    return [
        {"index": bar.index, "chord": bar_chord(bar), "instruments": bar_instruments(bar)} for bar in bars
    ]
