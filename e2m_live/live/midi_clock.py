"""MIDI clock: follow a master's 24 ppqn clock (in), and the messages the daemon sends (out).

In: :class:`MidiClockFollower` is an :class:`~e2m_live.live.clock.ExternalClock` fed with raw
MIDI real-time messages and their arrival times; :class:`MidiClockInput` opens a MIDI input port
(the daemon's own virtual ``clock_in`` port, or an existing port by name) and feeds it.

* Tempo and phase: a straight line through the latest beat's worth of pulses (pulse number ->
  time, least squares). It settles within one beat of a tempo change, sooner when three pulses
  in a row leave the line on the same side (then the older pulses are dropped); a single late
  or early pulse is left out of the fit.
* Transport: Start (the next pulse is beat 0), Stop, Continue (from the song position),
  Song Position Pointer (sixteenths). Listeners hear ``start``, ``stop`` and ``continue``.

Out: :func:`song_position` and the status bytes; the player sends the pulses from its own
deadline heap, so they share the notes' absolute deadlines.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from e2m_live.live.clock import ExternalClock

log = logging.getLogger(__name__)

PPQN = 24
CLOCK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
#: How often the input thread drains the driver's queue (the timing comes from the driver's
#: timestamps; this only bounds how late a Stop is acted on).
POLL_SECONDS = 0.001
#: Tempi a master can plausibly send (BPM). A fitted line outside is a burst of pulses (a master
#: catching up, a driver that delivered several cycles at once), not a tempo: followed, 6 million
#: BPM made the player race through a section in milliseconds.
FOLLOW_TEMPO_RANGE = (20.0, 480.0)
#: No pulse for this long (or four pulse intervals, if shorter): the master's clock paused; the
#: next pulse starts a fresh fit (keeping the last tempo as a first guess).
PULSE_GAP_SECONDS = 0.5


def song_position(beat: float) -> tuple[int, int, int]:
    """Song Position Pointer for ``beat`` quarters (MIDI counts sixteenths, 0..16383)."""
    sixteenths = min(16383, max(0, round(beat * 4)))
    return (SONG_POSITION, sixteenths & 0x7F, sixteenths >> 7)


@dataclass(frozen=True, slots=True)
class PulseLine:
    """Pulse ``index`` falls at ``time + (index - origin) * interval`` (monotonic seconds)."""

    origin: int
    time: float
    interval: float

    def time_of(self, index: float) -> float:
        return self.time + (index - self.origin) * self.interval


class PulseTempoEstimator:
    """Fits the line through the latest ``window`` pulses, robust to single outliers.

    ``add(index, t)`` takes the running pulse number (consecutive integers) and its arrival time.
    """

    def __init__(self, window: int = PPQN, min_tolerance: float = 0.001, change_run: int = 3) -> None:
        if window < 4:
            raise ValueError("window must hold at least 4 pulses")
        self.window = window
        self.min_tolerance = min_tolerance
        self.change_run = change_run
        self._points: collections.deque[tuple[int, float]] = collections.deque(maxlen=window)
        self._suspect: collections.deque[int] = collections.deque()  # indices left out of the fit
        self._run_sign = 0
        self._run: list[int] = []
        self.line: PulseLine | None = None

    def paused(self, gap: float) -> bool:
        """True if ``gap`` seconds without a pulse means the clock paused (not a late pulse)."""
        interval = self.line.interval if self.line is not None else 0.0
        return gap > min(PULSE_GAP_SECONDS, max(4 * interval, 0.05))

    def reset(self) -> None:
        """Forget the pulses (a gap); the slope is kept as a first guess."""
        self._points.clear()
        self._suspect.clear()
        self._run, self._run_sign = [], 0

    def add(self, index: int, t: float) -> PulseLine:
        points = self._points
        if points and (index <= points[-1][0] or self.paused(t - points[-1][1])):
            self.reset()
        points.append((index, t))
        while self._suspect and self._suspect[0] < points[0][0]:
            self._suspect.popleft()
        if len(points) >= 4 and self.line is not None:
            self._judge_newest(index, t)
        self.line = self._fit()
        return self.line

    def _judge_newest(self, index: int, t: float) -> None:
        suspect = set(self._suspect)
        older = [(i, x) for i, x in list(self._points)[:-1] if i not in suspect]
        if len(older) < 3:
            return
        line = _least_squares(older)
        residuals = sorted(abs(x - line.time_of(i)) for i, x in older)
        spread = 1.4826 * residuals[len(residuals) // 2]
        tolerance = max(self.min_tolerance, 4.0 * spread)
        residual = t - line.time_of(index)
        if abs(residual) <= tolerance:
            self._run, self._run_sign = [], 0
            return
        sign = 1 if residual > 0 else -1
        if sign != self._run_sign:
            self._run, self._run_sign = [], sign
        self._run.append(index)
        self._suspect.append(index)
        if len(self._run) >= self.change_run:
            # The master changed tempo: keep the last pulse before the change and those after.
            first = self._run[0]
            keep = [(i, x) for i, x in self._points if i >= first - 1]
            self._points.clear()
            self._points.extend(keep)
            self._suspect.clear()
            self._run, self._run_sign = [], 0

    def _fit(self) -> PulseLine:
        suspect = set(self._suspect)
        used = [(i, x) for i, x in self._points if i not in suspect] or [self._points[-1]]
        if len(used) >= 2:
            line = _least_squares(used)
            if _plausible(line.interval):
                return line
            # A burst: keep the tempo in force, on the newest pulse, until the pulses space out.
            self._points.clear()
            self._points.append(used[-1])
            self._suspect.clear()
        index, t = used[-1]
        interval = self.line.interval if self.line is not None else 60.0 / (120.0 * PPQN)
        return PulseLine(index, t, interval if _plausible(interval) else 60.0 / (120.0 * PPQN))


def _plausible(interval: float) -> bool:
    """Whether a pulse interval (seconds) is a tempo inside :data:`FOLLOW_TEMPO_RANGE`."""
    low, high = FOLLOW_TEMPO_RANGE
    return 60.0 / (high * PPQN) <= interval <= 60.0 / (low * PPQN)


def _least_squares(points: Sequence[tuple[int, float]]) -> PulseLine:
    """Line through (index, time) points, centred on the newest for precision (its interval may
    be 0 or implausible: pulses stamped at one time; :meth:`PulseTempoEstimator._fit` checks)."""
    origin, t0 = points[-1]
    n = len(points)
    xs = [i - origin for i, _ in points]
    ys = [x - t0 for _, x in points]
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx > 0 else 0.0
    if not slope > 0:
        slope = (ys[-1] - ys[0]) / (xs[-1] - xs[0]) if xs[-1] != xs[0] else 0.0
    return PulseLine(origin, t0 + mean_y - slope * mean_x, slope)


class MidiClockFollower(ExternalClock):
    """Tempo, phase and transport from MIDI clock messages (see the module docstring).

    ``feed(message, t)`` takes one raw message and its arrival time (monotonic seconds); it is
    cheap and may run on a MIDI driver's thread. Listeners are called from that thread.
    """

    def __init__(self, tempo: float = 120.0, window: int = PPQN, offset: float = 0.0) -> None:
        super().__init__(tempo)
        self.offset = offset
        self._estimator = PulseTempoEstimator(window)
        self._ticks = 0  # pulses received since the follower was made (running or not)
        self._tick_of_beat0 = 0  # tick number of song position 0 while running
        self._position = 0  # song position in pulses, while stopped
        self._start_pending: str | None = None  # Start/Continue announced with the next pulse
        self._lock = threading.Lock()
        self.last_pulse_at: float | None = None
        self.pulses = 0
        self.input: MidiClockInput | None = None  # closed with the follower

    @property
    def source(self) -> str:
        return "midi"

    def feed(self, message: Sequence[int], t: float) -> None:
        if not message:
            return
        status = message[0]
        event = None
        with self._lock:
            if status == CLOCK:
                self._pulse(t)
                event, self._start_pending = self._start_pending, None
            elif status == START:
                self._position = 0
                event = self._begin(t, "start")
            elif status == CONTINUE:
                event = self._begin(t, "continue")
            elif status == STOP:
                if self._running:
                    self._position = max(0, self._ticks - self._tick_of_beat0)
                self._running = False
                self._start_pending = None
                event = "stop"
            elif status == SONG_POSITION and len(message) >= 3:
                self._position = ((message[1] & 0x7F) | (message[2] & 0x7F) << 7) * 6
                if self._running:
                    self._tick_of_beat0 = self._ticks - self._position
                    self._publish()
        if event is not None:
            self._notify(event)

    def _begin(self, t: float, event: str) -> str | None:
        """Start or Continue: the next pulse is song position ``_position``. Returns the event to
        announce now, or None when it waits for that pulse (see below)."""
        self._tick_of_beat0 = self._ticks - self._position
        self._running = True
        line = self._estimator.line
        recent = self.last_pulse_at is not None and not self._estimator.paused(t - self.last_pulse_at)
        if line is None or not recent:
            # The clock paused with the transport: when the next pulse comes is unknown (masters
            # differ), so the listeners hear of it with that pulse, which then fixes the phase.
            interval = line.interval if line is not None else 60.0 / (self.tempo * PPQN)
            self._estimator.line = PulseLine(self._ticks, t + interval, interval)
            self._estimator.reset()
            self._publish()
            self._start_pending = event
            return None
        self._publish()
        return event

    def _pulse(self, t: float) -> None:
        self._estimator.add(self._ticks, t)
        self._ticks += 1
        self.pulses += 1
        self.last_pulse_at = t
        self._publish()

    def _publish(self) -> None:
        line = self._estimator.line
        if line is None:
            return
        beat = (line.origin - self._tick_of_beat0) / PPQN
        self._set_line(beat, line.time - self.offset, 60.0 / (line.interval * PPQN))

    def close(self) -> None:
        """Close the input port feeding this follower, if one was attached."""
        port, self.input = getattr(self, "input", None), None
        if port is not None:
            port.close()

    @property
    def position(self) -> float:
        """Song position in beats (where Continue resumes while stopped)."""
        with self._lock:
            if self._running:
                return (self._ticks - self._tick_of_beat0) / PPQN
            return self._position / PPQN


class MidiClockInput:
    """A MIDI input port feeding a :class:`MidiClockFollower`: the daemon's own virtual port
    (``port=None``, ``<client>:clock_in``) or an existing port whose name contains ``port``."""

    def __init__(
        self,
        follower: MidiClockFollower,
        api: str = "auto",
        port: str | None = None,
        client_name: str = "e2m-live",
        port_name: str = "clock_in",
    ) -> None:
        from e2m_live.live.outputs import (
            OutputError,
            compiled_midi_apis,
            default_midi_api,
            import_rtmidi,
            match_port,
            midi_api_names,
            midi_api_problem,
        )

        os.environ.setdefault("JACK_NO_START_SERVER", "1")
        rtmidi = import_rtmidi()
        self.follower = follower
        apis = [api]
        if api == "auto":
            apis = [default_midi_api()] + (["jack"] if default_midi_api() == "alsa" else [])
        problems = []
        midi_in = None
        for name in apis:
            if name not in compiled_midi_apis():
                problems.append(f"this python-rtmidi build has no {name} support")
                continue
            try:
                midi_in = rtmidi.MidiIn(midi_api_names()[name], name=client_name, queue_size_limit=4096)
                self.api = name
                break
            except Exception as error:
                problems.append(f"cannot open {name} MIDI input: {midi_api_problem(name)} ({error})")
        if midi_in is None:
            raise OutputError("no MIDI clock input: " + "; ".join(problems))
        self._in = midi_in
        self._in.ignore_types(sysex=True, timing=False, active_sense=True)
        if port is None:
            if self.api == "winmm":
                self._in.delete()
                raise OutputError(
                    "Windows has no virtual MIDI ports: pass --clock-in-port with a loopMIDI port"
                )
            self._in.open_virtual_port(port_name)
            self.name = f"{self.api} virtual port '{client_name}:{port_name}'"
        else:
            ports = list(self._in.get_ports())
            index = match_port(port, ports)
            if index is None:
                self._in.delete()
                raise OutputError(
                    f"no {self.api} MIDI input matches {port!r}; inputs: {', '.join(ports) or 'none'}"
                )
            self._in.open_port(index, port_name)
            self.name = f"{self.api} port '{ports[index]}'"
        self._stamper = ArrivalStamper()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="e2m-clock-in", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        """Drain rtmidi's queue. Not a callback: that would make the MIDI driver's thread (JACK's
        process thread) wait for our GIL, and the wait would delay the driver's own timestamps
        of the next pulses; queued, they are stamped by the driver whatever Python does."""
        get_message = self._in.get_message
        while not self._closed.is_set():
            event = get_message()
            if event is None:
                time.sleep(POLL_SECONDS)
                continue
            message, delta = event
            try:
                self.follower.feed(message, self._stamper.stamp(delta, time.monotonic()))
            except Exception:
                log.exception("MIDI clock input failed on %s", message)

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        try:
            self._in.close_port()
        finally:
            self._in.delete()


class ArrivalStamper:
    """Monotonic times for driver-timestamped messages.

    The driver's deltas (JACK: the process cycle; ALSA: the sequencer queue) are summed into a
    source timeline; its offset to ``time.monotonic()`` is the smallest ``arrival - source`` seen
    over the last ``window`` seconds, so delays in reaching Python (the GIL, thread wake-ups)
    are removed rather than added to the pulse times.
    """

    def __init__(self, window: float = 2.0, max_skew: float = 0.05) -> None:
        self.window = window
        self.max_skew = max_skew
        self._source: float | None = None
        self._offsets: collections.deque[tuple[float, float]] = collections.deque()

    def stamp(self, delta: float, arrival: float) -> float:
        if self._source is None or not math.isfinite(delta) or delta < 0:
            self._source, self._offsets = 0.0, collections.deque()
        else:
            self._source += delta
        offset = arrival - self._source
        offsets = self._offsets
        while offsets and offsets[-1][1] >= offset:
            offsets.pop()  # monotonic deque: the front is the window's minimum
        offsets.append((arrival, offset))
        while offsets[0][0] < arrival - self.window:
            offsets.popleft()
        stamped = self._source + offsets[0][1]
        if arrival - stamped > self.max_skew:  # the driver's deltas are not to be trusted
            self._source, self._offsets = 0.0, collections.deque([(arrival, arrival)])
            return arrival
        return stamped
