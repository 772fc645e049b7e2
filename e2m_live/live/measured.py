""" "What is playing": the features re-estimated from the notes the player actually scheduled.

The player hands every bar it schedules (after the immediate answers) with the loudness gain in
force; :class:`MeasuredFeatures` keeps the last ``window`` bars and, at each bar, sends them to
the generation worker *process* (:meth:`e2m_live.live.engine.Engine.measure`), where a thread
estimates the ten features with :func:`e2m_live.analysis.estimate_features` (:func:`estimate`)
and the answer comes back as ``/e2m/state/measured`` and ``/e2m/state/measured/<feature>``.

Not a thread of the daemon: the estimate (about 7 ms of numpy and Python for 4 bars) would hold
the daemon's GIL, and the player waits for the GIL when it wakes. Measured with
``benchmarks/live_timing.py`` (60 s, rules+load, two rounds each): estimating on a daemon thread
took the sender's p99 from 0.20-0.24 ms to 0.65-0.73 ms; in the worker it costs the player nothing
but pickling the window (a few hundred notes) once a bar.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence

from e2m_live.features import FEATURE_ORDER, INTEGER_FIELDS, EmotionFeatures
from e2m_live.live.addresses import STATE
from e2m_live.live.osc import Reply
from e2m_live.live.transform import Adaptation
from e2m_live.music import Bar

#: Bars the estimate looks back over.
WINDOW_BARS = 4
#: One bar of the window: the bar as decoded, the loudness gain its notes went out with, its tempo,
#: and the immediate answers it was played with.
Played = tuple[Bar, float, float, Adaptation | None]


def measured_messages(features: EmotionFeatures) -> list[Reply]:
    """``/e2m/state/measured`` (all ten) and one ``/e2m/state/measured/<feature>`` each."""
    values = [
        int(getattr(features, n)) if n in INTEGER_FIELDS else float(getattr(features, n))
        for n in FEATURE_ORDER
    ]
    return [
        (STATE["measured"], values),
        *((STATE[f"measured/{n}"], [v]) for n, v in zip(FEATURE_ORDER, values, strict=True)),
    ]


def estimate(window: Sequence[Played]) -> EmotionFeatures | None:
    """The features of the bars played (velocities times their gain); None without notes."""
    import numpy as np

    from e2m_live.analysis import estimate_features
    from e2m_live.loudness import scale_velocities

    played = [bar if change is None else change.apply(bar) for bar, _, _, change in window]
    bars = [
        Bar(scale_velocities(bar.notes, gain), bar.numerator, bar.denominator, tempo, bar.index)
        for bar, (_, gain, tempo, _) in zip(played, window, strict=True)
    ]
    if not any(bar.notes for bar in bars):
        return None
    with np.errstate(all="ignore"):  # e.g. log2(0) of a window with no beat to fit
        return estimate_features(bars)


class MeasuredFeatures:
    """Keeps the last ``window`` bars played and submits them, once a bar, to ``submit`` (the
    engine's worker); :meth:`receive` publishes the answer."""

    def __init__(
        self,
        submit: Callable[[list[Played]], None],
        publish: Callable[[list[Reply]], None],
        window: int = WINDOW_BARS,
    ) -> None:
        self.submit = submit
        self.publish = publish
        self.latest: EmotionFeatures | None = None
        self.estimates = 0
        self._bars: collections.deque[Played] = collections.deque(maxlen=window)

    def add_bar(self, bar: Bar, gain: float, tempo: float, adaptation: Adaptation | None = None) -> None:
        """A bar the player scheduled: as decoded, the loudness gain its notes go out with, its
        tempo and the immediate answers it is played with (applied in the worker)."""
        self._bars.append((bar, gain, tempo, adaptation))
        self.submit(list(self._bars))

    def receive(self, features: EmotionFeatures) -> None:
        self.latest = features
        self.estimates += 1
        self.publish(measured_messages(features))

    def reset(self) -> None:
        """Forget the bars played (playback stopped)."""
        self._bars.clear()
