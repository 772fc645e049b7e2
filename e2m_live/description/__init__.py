"""FIGARO's two languages: REMI+ events and bar-level descriptions.

Extraction from MIDI (:mod:`.extract`), chord recognition (:mod:`.chords`), decoding of REMI+
tokens to notes and MIDI (:mod:`.remi`), vocabularies (:mod:`.vocab`).
"""

from e2m_live.description.extract import Extraction, MidiError, extract, load_midi
from e2m_live.description.remi import tokens_to_bars, tokens_to_midi, write_midi

__all__ = [
    "Extraction",
    "MidiError",
    "extract",
    "load_midi",
    "tokens_to_bars",
    "tokens_to_midi",
    "write_midi",
]
