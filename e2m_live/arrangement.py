"""How the music is arranged, beside the ten emotion features: key lock, ensemble, instruments.

:class:`Arrangement` is what a performer sets next to the emotion faders. It is not a model input
(the planner is trained on the ten features only); it constrains what the models may choose:

* ``key_lock`` (0..1): how strictly pitched instruments keep to the requested scale. 1 allows
  scale tones only; lower values admit chromatic notes with a logit penalty that grows with the
  lock; 0 leaves the decoder alone. The decoder applies it (:mod:`e2m_live.figaro.constraints`).
* ``ensemble``: ``"auto"`` (the features steer the instruments) or a preset of :data:`ENSEMBLES`.
* ``instruments``: an explicit instrument list (GM names, program numbers or ``drums``); when set
  it replaces the ensemble.
* ``muted``: instruments left out of whatever the ensemble or list would give.

Instrument names are FIGARO's: pretty_midi's General MIDI program names and ``"drum"``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pretty_midi

from e2m_live.description.vocab import DRUM_INSTRUMENT

__all__ = [
    "ALIASES",
    "AUTO",
    "DEFAULT_KEY_LOCK",
    "ENSEMBLES",
    "Arrangement",
    "ArrangementError",
    "instrument_name",
    "parse_instruments",
    "split_names",
]


class ArrangementError(ValueError):
    """A bad arrangement value: unknown ensemble or instrument, key lock out of range."""


AUTO = "auto"
#: Default key lock (see ``docs/generate.md`` for the measurement behind the choice).
DEFAULT_KEY_LOCK = 0.9

_GM = tuple(pretty_midi.program_to_instrument_name(p) for p in range(128))
_BY_LOWER = {name.lower(): name for name in _GM}
_DRUM_ALIASES = frozenset({"drum", "drums", "drum kit", "drumkit", "kit", "percussion"})
#: Everyday words a performer types, which match several GM names, mapped to the usual choice.
ALIASES: dict[str, str] = {
    "piano": "Acoustic Grand Piano",
    "bass": "Electric Bass (finger)",
    "guitar": "Acoustic Guitar (steel)",
    "strings": "String Ensemble 1",
    "sax": "Tenor Sax",
    "organ": "Drawbar Organ",
    "synth": "Lead 2 (sawtooth)",
    "pad": "Pad 2 (warm)",
    "voice": "Voice Oohs",
    "choir": "Choir Aahs",
}

#: Ensemble presets: the instruments each one plays (FIGARO names). ``auto`` is not listed: there
#: the features choose (see :mod:`e2m_live.planner.steering`).
ENSEMBLES: dict[str, tuple[str, ...]] = {
    "piano": ("Acoustic Grand Piano",),
    "band": ("Acoustic Grand Piano", "Electric Guitar (clean)", "Electric Bass (finger)", DRUM_INSTRUMENT),
    "rock": ("Overdriven Guitar", "Distortion Guitar", "Electric Bass (pick)", DRUM_INSTRUMENT),
    "electronic": ("Synth Bass 1", "Lead 2 (sawtooth)", "Pad 2 (warm)", DRUM_INSTRUMENT),
    "strings": ("Violin", "Viola", "Cello", "String Ensemble 1"),
    "orchestra": ("String Ensemble 1", "Contrabass", "Flute", "French Horn", "Trumpet", "Timpani"),
    "jazz": ("Acoustic Grand Piano", "Acoustic Bass", "Tenor Sax", DRUM_INSTRUMENT),
}
ENSEMBLE_NAMES: tuple[str, ...] = (AUTO, *ENSEMBLES)


def instrument_name(value: str | int) -> str:
    """The FIGARO name of an instrument given as a GM name (any case), a unique part of one, an
    everyday word of :data:`ALIASES` (``piano``, ``bass``...), a program number 0..127 (int or
    digits) or ``drums``. Raises :class:`ArrangementError` for anything else."""
    if isinstance(value, bool):
        raise ArrangementError(f"not an instrument: {value!r}")
    if isinstance(value, int):
        if 0 <= value <= 127:
            return _GM[value]
        raise ArrangementError(f"program number must be 0..127, got {value}")
    if not isinstance(value, str):
        raise ArrangementError(f"not an instrument: {value!r}")
    text = value.strip()
    if text.isdigit():
        return instrument_name(int(text))
    lower = text.lower()
    if lower in _DRUM_ALIASES:
        return DRUM_INSTRUMENT
    if lower in _BY_LOWER:
        return _BY_LOWER[lower]
    if lower in ALIASES:
        return ALIASES[lower]
    hits = [name for name in _GM if lower and lower in name.lower()]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ArrangementError(f"instrument {value!r} is ambiguous: {', '.join(hits[:6])}")
    raise ArrangementError(f"unknown instrument {value!r} (a GM program name, 0..127 or 'drums')")


def split_names(text: str) -> list[str]:
    """A comma-separated instrument list as typed (flag, TOML string, OSC text field):
    ``"piano, 33,drums"`` -> ``["piano", "33", "drums"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_instruments(values: Iterable[str | int]) -> tuple[str, ...]:
    """Instrument names in FIGARO vocabulary order (programs ascending, drums last), no duplicates."""
    names = {instrument_name(v) for v in values}
    return tuple(sorted(names, key=_vocab_order))


def _vocab_order(name: str) -> int:
    return 128 if name == DRUM_INSTRUMENT else _GM.index(name)


@dataclass(frozen=True, slots=True)
class Arrangement:
    """Key lock, ensemble, explicit instruments and muted instruments (see the module doc)."""

    key_lock: float = DEFAULT_KEY_LOCK
    ensemble: str = AUTO
    instruments: tuple[str, ...] | None = None
    muted: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        lock = self.key_lock
        if isinstance(lock, bool) or not isinstance(lock, int | float) or not math.isfinite(lock):
            raise ArrangementError(f"key_lock must be a number in 0..1, got {lock!r}")
        if not 0.0 <= float(lock) <= 1.0:
            raise ArrangementError(f"key_lock must be a number in 0..1, got {lock!r}")
        object.__setattr__(self, "key_lock", float(lock))
        if self.ensemble not in ENSEMBLE_NAMES:
            known = ", ".join(ENSEMBLE_NAMES)
            raise ArrangementError(f"unknown ensemble {self.ensemble!r}; ensembles are {known}")
        if self.instruments is not None:
            parsed = parse_instruments(self.instruments)
            if not parsed:
                raise ArrangementError("an instrument list needs at least one instrument")
            object.__setattr__(self, "instruments", parsed)
        object.__setattr__(self, "muted", frozenset(parse_instruments(self.muted)))

    def palette(self) -> tuple[str, ...] | None:
        """The instruments the planner must keep to (vocabulary order, muted ones removed), or
        ``None`` in ``auto`` without a list (the features choose; muted ones are still left out,
        see :meth:`excluded`). Never empty: muting every instrument of a palette raises."""
        base = self.instruments if self.instruments is not None else ENSEMBLES.get(self.ensemble)
        if base is None:
            return None
        kept = tuple(name for name in base if name not in self.muted)
        if not kept:
            raise ArrangementError("every instrument of the ensemble is muted")
        return kept

    def excluded(self) -> frozenset[str]:
        """Instruments the planner must never choose (the muted ones)."""
        return self.muted

    def replace(self, **changes: Any) -> Arrangement:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_lock": self.key_lock,
            "ensemble": self.ensemble,
            "instruments": list(self.instruments) if self.instruments is not None else None,
            "muted": sorted(self.muted, key=_vocab_order),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Arrangement:
        unknown = sorted(set(data) - {"key_lock", "ensemble", "instruments", "muted"})
        if unknown:
            raise ArrangementError(f"unknown arrangement field(s): {', '.join(unknown)}")
        instruments = data.get("instruments")
        return cls(
            key_lock=data.get("key_lock", DEFAULT_KEY_LOCK),
            ensemble=data.get("ensemble", AUTO),
            instruments=tuple(instruments) if instruments is not None else None,
            muted=frozenset(data.get("muted", ())),
        )
