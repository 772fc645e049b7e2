"""Clocks: where beats fall on one monotonic timeline.

The player works in beats (quarter notes since start) and asks the clock when a beat falls
(:meth:`Clock.time_of`). Every deadline is computed from one anchor ``(beat, time, tempo)``, so
no relative sleep ever accumulates error. Tempo changes are requested for a bar line
(:meth:`Clock.set_tempo` with ``at_beat``) and move the anchor there.

External sync (MIDI clock in, Ableton Link) fits behind the same interface: such a clock moves
its anchor from outside (measured tempo and phase), ignores or forwards :meth:`set_tempo`, and
reports transport start/stop/continue through :meth:`Clock.on_transport`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

TransportListener = Callable[[str], None]  # "start" | "stop" | "continue"

#: The last stretch before a deadline is spun (with GIL-releasing sleep(0)) instead of slept:
#: the kernel's sleep overshoots by 50..100 µs when idle and by more under load.
SPIN_SECONDS = 0.0015


@dataclass(frozen=True, slots=True)
class Anchor:
    """Beat ``beat`` falls at monotonic time ``time``; from there on ``tempo`` BPM."""

    beat: float
    time: float
    tempo: float

    def time_of(self, beat: float) -> float:
        return self.time + (beat - self.beat) * 60.0 / self.tempo

    def beat_at(self, t: float) -> float:
        return self.beat + (t - self.time) * self.tempo / 60.0


class Clock(ABC):
    """Maps beats to times on the monotonic clock, and sleeps until deadlines."""

    def __init__(self) -> None:
        self._listeners: list[TransportListener] = []

    @staticmethod
    def now() -> float:
        """The one timeline: ``time.monotonic()`` seconds."""
        return time.monotonic()

    @abstractmethod
    def start(self, at_time: float | None = None) -> None:
        """Beat 0 falls at ``at_time`` (default: now)."""

    @abstractmethod
    def time_of(self, beat: float) -> float:
        """Monotonic time at which ``beat`` falls."""

    @abstractmethod
    def beat_at(self, t: float) -> float:
        """Beat position at monotonic time ``t``."""

    @property
    @abstractmethod
    def tempo(self) -> float:
        """Tempo in force now, BPM."""

    @abstractmethod
    def set_tempo(self, bpm: float, at_beat: float) -> None:
        """Request ``bpm`` from ``at_beat`` on (a bar line). External clocks may ignore it."""

    @property
    def follows_external_tempo(self) -> bool:
        """True when tempo and phase come from outside (then ``/e2m/tempo`` has no effect)."""
        return False

    @property
    def running(self) -> bool:
        """False while an external master's transport is stopped (the internal clock always runs)."""
        return True

    @property
    def source(self) -> str:
        """``internal``, ``midi`` or ``link``."""
        return "internal"

    def describe(self) -> str:
        """One line for ``/e2m/state/sync`` and the log."""
        return f"{self.source}, {self.tempo:.2f} BPM"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release ports and sessions (external clocks)."""

    def on_transport(self, listener: TransportListener) -> None:
        """Call ``listener("start"|"stop"|"continue")`` when an external transport changes."""
        self._listeners.append(listener)

    def _notify(self, event: str) -> None:
        for listener in list(self._listeners):
            listener(event)

    def sleep_until(self, deadline: float, wake: threading.Event | None = None) -> bool:
        """Sleep until monotonic time ``deadline``; returns False early if ``wake`` is set."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if wake is not None and wake.is_set():
                return False
            if remaining > SPIN_SECONDS:
                # Wake up early by SPIN_SECONDS, then spin; cap each nap so `wake` is noticed.
                nap = min(remaining - SPIN_SECONDS, 0.05)
                if wake is not None:
                    if wake.wait(nap):
                        return False
                else:
                    time.sleep(nap)
            else:
                time.sleep(0)


class InternalClock(Clock):
    """The daemon's own clock: tempo set by the performer, changed at bar lines."""

    def __init__(self, tempo: float = 120.0) -> None:
        super().__init__()
        if not tempo > 0:
            raise ValueError(f"tempo must be positive, got {tempo}")
        self._lock = threading.Lock()
        self._anchors: list[Anchor] = [Anchor(0.0, time.monotonic(), float(tempo))]

    def start(self, at_time: float | None = None) -> None:
        with self._lock:
            t = time.monotonic() if at_time is None else at_time
            self._anchors = [Anchor(0.0, t, self._anchors[-1].tempo)]

    def _anchor_for_beat(self, beat: float) -> Anchor:
        anchors = self._anchors
        for anchor in reversed(anchors):
            if beat >= anchor.beat:
                return anchor
        return anchors[0]

    def time_of(self, beat: float) -> float:
        with self._lock:
            return self._anchor_for_beat(beat).time_of(beat)

    def beat_at(self, t: float) -> float:
        with self._lock:
            for anchor in reversed(self._anchors):
                if t >= anchor.time:
                    return anchor.beat_at(t)
            return self._anchors[0].beat_at(t)

    @property
    def tempo(self) -> float:
        with self._lock:
            return self._anchor_for_beat(self.beat_at_unlocked(time.monotonic())).tempo

    def beat_at_unlocked(self, t: float) -> float:
        for anchor in reversed(self._anchors):
            if t >= anchor.time:
                return anchor.beat_at(t)
        return self._anchors[0].beat_at(t)

    def set_tempo(self, bpm: float, at_beat: float) -> None:
        if not bpm > 0:
            raise ValueError(f"tempo must be positive, got {bpm}")
        with self._lock:
            current = self._anchor_for_beat(at_beat)
            if current.tempo == bpm:
                return
            anchor = Anchor(at_beat, current.time_of(at_beat), float(bpm))
            # Keep anchors ordered and short: drop any later ones (superseded), keep the last few.
            kept = [a for a in self._anchors if a.beat < at_beat]
            self._anchors = [*kept[-3:], anchor]

    def restart_at(self, beat: float, at_time: float) -> None:
        """``beat`` falls at ``at_time`` from now on (``/e2m/continue``: resume at a bar line)."""
        with self._lock:
            self._anchors = [Anchor(beat, at_time, self._anchors[-1].tempo)]


class ExternalClock(Clock):
    """A clock whose tempo and phase come from a master (MIDI clock, Ableton Link).

    Subclasses call :meth:`_set_line` whenever they learn more about the master: beat ``beat``
    falls at monotonic time ``time`` and beats advance at ``tempo`` BPM. Beats are the master's
    own (beat 0 = its song start or session origin), so bar lines fall on multiples of the bar
    length. :meth:`set_tempo` is ignored: the master decides.
    """

    def __init__(self, tempo: float = 120.0) -> None:
        super().__init__()
        self._line_lock = threading.Lock()
        self._line = Anchor(0.0, time.monotonic(), float(tempo))
        self._running = False

    def _set_line(self, beat: float, at_time: float, tempo: float) -> None:
        with self._line_lock:
            self._line = Anchor(beat, at_time, tempo)

    @property
    def line(self) -> Anchor:
        with self._line_lock:
            return self._line

    def start(self, at_time: float | None = None) -> None:
        """Nothing to do: the master places beat 0."""

    def time_of(self, beat: float) -> float:
        return self.line.time_of(beat)

    def beat_at(self, t: float) -> float:
        return self.line.beat_at(t)

    @property
    def tempo(self) -> float:
        return self.line.tempo

    def set_tempo(self, bpm: float, at_beat: float) -> None:
        """Ignored: the master sets the tempo."""

    @property
    def follows_external_tempo(self) -> bool:
        return True

    @property
    def running(self) -> bool:
        return self._running

    def describe(self) -> str:
        state = "running" if self.running else "stopped"
        return f"{self.source}, {self.tempo:.2f} BPM, {state}"
