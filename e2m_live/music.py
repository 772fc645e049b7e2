"""Plain musical data shared by the decoder, the player and the outputs.

Times inside a :class:`Bar` are in quarter notes from the bar's start, so a bar can be
played at whatever tempo is in force when it starts (tempo changes land on bar lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DRUM_CHANNEL = 9  # MIDI channel 10, zero-based


@dataclass(frozen=True, slots=True)
class Note:
    """One note. ``start``/``duration`` in quarter notes from the start of its bar."""

    pitch: int
    velocity: int
    start: float
    duration: float
    program: int = 0
    is_drum: bool = False

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(slots=True)
class Bar:
    """One bar of music, ready to play.

    ``numerator``/``denominator`` is the time signature; the bar lasts
    ``numerator * 4 / denominator`` quarter notes. ``tempo`` is in BPM (quarters per minute),
    or ``None`` to keep the tempo in force.
    """

    notes: list[Note] = field(default_factory=list)
    numerator: int = 4
    denominator: int = 4
    tempo: float | None = None
    index: int = 0

    @property
    def quarters(self) -> float:
        """Length of the bar in quarter notes."""
        return self.numerator * 4.0 / self.denominator
