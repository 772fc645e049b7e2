"""Ramps: features moved step by step to a target, one step at each bar line.

:class:`Ramps` holds at most one ramp per feature. :meth:`Ramps.start` returns the first step (to
apply at once: it is heard from the next bar line), :meth:`Ramps.advance` (called once per bar
line) the next step of every ramp. Whole-number features (key, mode, time signature; only a
scene recall ramps them) keep their value until the last step. Thread-safe: controls start and
cancel ramps from the OSC threads, the bar lines advance them from the feedback thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from e2m_live.features import INTEGER_FIELDS


@dataclass(slots=True)
class Ramp:
    feature: str
    start: float
    target: float
    bars: int
    step: int = 0

    def value(self) -> float | int:
        if self.feature in INTEGER_FIELDS:
            return int(self.target if self.step >= self.bars else self.start)
        return self.start + (self.target - self.start) * self.step / self.bars

    @property
    def bars_left(self) -> int:
        return self.bars - self.step


class Ramps:
    """The ramps in progress."""

    def __init__(self) -> None:
        self._ramps: dict[str, Ramp] = {}
        self._lock = threading.Lock()

    def start(self, current: dict[str, float], targets: dict[str, float], bars: int) -> dict[str, float]:
        """Ramp each feature of ``targets`` from its ``current`` value over ``bars`` bars (replacing a
        ramp of the same feature); returns the first step's values. ``bars`` 0: the targets at once."""
        with self._lock:
            if bars <= 0:
                for name in targets:
                    self._ramps.pop(name, None)
                return dict(targets)
            first = {}
            for name, target in targets.items():
                ramp = Ramp(name, float(current[name]), float(target), bars, step=1)
                first[name] = ramp.value()
                if ramp.bars_left > 0:
                    self._ramps[name] = ramp
                else:
                    self._ramps.pop(name, None)
            return first

    def cancel(self, names: Iterable[str]) -> list[Ramp]:
        """Stop the ramps of ``names``; returns those stopped."""
        with self._lock:
            return [self._ramps.pop(name) for name in names if name in self._ramps]

    def advance(self) -> tuple[dict[str, float], list[Ramp]]:
        """One bar line: the next value of every ramp, and the ramps (their step taken)."""
        with self._lock:
            values, ramps = {}, []
            for name, ramp in list(self._ramps.items()):
                ramp.step += 1
                values[name] = ramp.value()
                ramps.append(Ramp(ramp.feature, ramp.start, ramp.target, ramp.bars, ramp.step))
                if ramp.bars_left <= 0:
                    del self._ramps[name]
            return values, ramps

    def active(self) -> list[Ramp]:
        with self._lock:
            return [Ramp(r.feature, r.start, r.target, r.bars, r.step) for r in self._ramps.values()]
