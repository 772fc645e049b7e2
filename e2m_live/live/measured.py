""""What is playing": the features re-estimated from the notes the player actually scheduled.

The player hands every bar it schedules (after the immediate answers) with the loudness gain in
force; :class:`MeasuredFeatures` keeps the last ``window`` bars and, on its own thread (never the
player's), estimates the ten features from them with :func:`e2m_live.analysis.estimate_features`
and publishes ``/e2m/state/measured`` and ``/e2m/state/measured/<feature>``. Bars arriving while
an estimate runs are queued in the window; only the newest window is estimated (latest wins).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

from e2m_live.features import FEATURE_ORDER, INTEGER_FIELDS, EmotionFeatures
from e2m_live.loudness import scale_velocities
from e2m_live.music import Bar

log = logging.getLogger(__name__)

Reply = tuple[str, list[Any]]
#: Bars the estimate looks back over.
WINDOW_BARS = 4


def measured_messages(features: EmotionFeatures) -> list[Reply]:
    """``/e2m/state/measured`` (all ten) and one ``/e2m/state/measured/<feature>`` each."""
    values = [int(getattr(features, n)) if n in INTEGER_FIELDS else float(getattr(features, n))
              for n in FEATURE_ORDER]
    return [("/e2m/state/measured", values),
            *((f"/e2m/state/measured/{n}", [v]) for n, v in zip(FEATURE_ORDER, values, strict=True))]


class MeasuredFeatures:
    """Estimates the features of the last ``window`` bars played, each time a bar is added."""

    def __init__(self, publish: Callable[[list[Reply]], None], window: int = WINDOW_BARS) -> None:
        self.publish = publish
        self.latest: EmotionFeatures | None = None
        self.estimates = 0
        self._bars: collections.deque[Bar] = collections.deque(maxlen=window)
        self._gains: collections.deque[float] = collections.deque(maxlen=window)
        self._new = threading.Condition()
        self._added = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="e2m-measure", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add_bar(self, bar: Bar, gain: float, tempo: float) -> None:
        """A bar the player scheduled: its notes, the loudness gain they go out with, its tempo."""
        with self._new:
            self._bars.append(Bar(bar.notes, bar.numerator, bar.denominator, tempo, bar.index))
            self._gains.append(gain)
            self._added += 1
            self._new.notify()

    def reset(self) -> None:
        """Forget the bars played (playback stopped)."""
        with self._new:
            self._bars.clear()
            self._gains.clear()

    def close(self) -> None:
        with self._new:
            self._closed = True
            self._new.notify()
        if self._thread.is_alive():
            self._thread.join(2)

    def _run(self) -> None:
        import numpy as np

        from e2m_live.analysis import estimate_features  # numpy + pretty_midi: off the startup path

        seen = 0
        while True:
            with self._new:
                while self._added == seen and not self._closed:
                    self._new.wait()
                if self._closed:
                    return
                seen = self._added
                window = [Bar(scale_velocities(bar.notes, gain), bar.numerator, bar.denominator, bar.tempo,
                              bar.index) for bar, gain in zip(self._bars, self._gains, strict=True)]
            if not any(bar.notes for bar in window):
                continue
            try:
                with np.errstate(all="ignore"):  # e.g. log2(0) of a bar with no beat to fit
                    features = estimate_features(window)
            except Exception as error:  # odd material must not end the feedback
                log.debug("measuring the features played failed: %s", error)
                continue
            self.latest = features
            self.estimates += 1
            self.publish(measured_messages(features))
