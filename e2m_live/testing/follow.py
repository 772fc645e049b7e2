"""A MIDI clock master's performance for tests and benchmarks, and how the daemon followed it: the
schedules a :class:`~e2m_live.testing.jack.JackClockMaster` plays, and the figures computed from
what two :class:`~e2m_live.testing.jack.JackMidiRecorder` heard (the master's pulses, the daemon's notes)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from e2m_live.testing.jack import Received, jack_seconds


def clock_schedule(
    start: float, segments: list[tuple[float, float]], pre_roll_beats: float = 1.0, stop_after: bool = True
) -> tuple[list[tuple[float, tuple[int, ...]]], list[float]]:
    """A master's performance: ``pre_roll_beats`` of clock with the transport stopped, then Start
    (half a pulse before beat 0), then ``(bpm, beats)`` segments, then Stop. Returns the events
    and the deadline of every beat from beat 0 (the last entry is where Stop falls)."""
    events: list[tuple[float, tuple[int, ...]]] = []
    first_tempo = segments[0][0]
    interval = 60.0 / (first_tempo * 24)
    pre = round(pre_roll_beats * 24)
    for k in range(pre, 0, -1):
        events.append((start - k * interval, (0xF8,)))
    events.append((start - interval / 2, (0xFA,)))
    beats = [start]
    t, pulses = start, 0
    for bpm, count in segments:
        interval = 60.0 / (bpm * 24)
        for _ in range(round(count * 24)):
            events.append((t, (0xF8,)))
            t += interval
            pulses += 1
            if pulses % 24 == 0:
                beats.append(t)
    if stop_after:
        events.append((t - interval / 2, (0xFC,)))
    return events, beats


def resume_schedule(
    after: float, position_beats: float, bpm: float, beats: float
) -> list[tuple[float, tuple[int, ...]]]:
    """A master's Song Position + Continue ``after`` seconds (monotonic), then ``beats`` of clock
    from ``position_beats`` (a bar line), then Stop."""
    interval = 60.0 / (bpm * 24)
    sixteenths = round(position_beats * 4)
    events = [(after, (0xF2, sixteenths & 0x7F, sixteenths >> 7)), (after + 0.2 - interval / 2, (0xFB,))]
    t = after + 0.2
    for _ in range(round(beats * 24)):
        events.append((t, (0xF8,)))
        t += interval
    events.append((t - interval / 2, (0xFC,)))
    return events


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``: returns (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def _lateness(pulses: list[float], k: int, window: int = 24) -> float:
    """Pulse ``k`` minus the time the line through the ``window`` pulses before it predicts."""
    if k < window:
        return 0.0
    xs = [float(i) for i in range(k - window, k)]
    a, b = _fit(xs, pulses[k - window : k])
    return pulses[k] - (a + b * k)


@dataclass
class FollowFigures:
    """How the daemon's notes followed a MIDI clock master, both seen by one JACK recorder."""

    bar_errors: list[float]  # daemon bar start - master downbeat, seconds, per master bar
    #: master downbeat - the line through the bar's previous 24 pulses (0.0 for the first bar):
    #: how late the test's own clock thread sent that pulse, which the daemon could not foresee
    downbeat_lateness: list[float]
    bars_without_onset: int
    tempo_errors: list[float]  # |daemon tempo / master tempo - 1| per segment, from 2 beats in
    notes_after_stop: int
    open_at_stop: int  # notes sounding one pulse after the master's Stop
    stop_to_silence: float  # seconds from Stop (at the recorder) to the last note-off
    #: (bar, nearest note-on to its downbeat in seconds, None if none) of each bar without an onset
    missing_bars: list[tuple[int, float | None]] = field(default_factory=list)


def follow_figures(
    master: list[Received],
    daemon: list[Received],
    segments: list[tuple[float, float]],
    beats_per_bar: int,
    settle_beats: float = 2.0,
) -> FollowFigures:
    """Compare the daemon's note-ons with the master's pulses, each heard by its own JACK recorder
    (one port fed by both would merge them, and JACK drops events when a merged buffer fills)."""
    events = sorted(
        [*zip(jack_seconds(master), master, strict=True), *zip(jack_seconds(daemon), daemon, strict=True)],
        key=lambda e: e[0],
    )
    start_at = next(t for t, r in events if r.message[0] == 0xFA)
    stop_at = next((t for t, r in events if r.message[0] == 0xFC), float("inf"))
    resumed_at = next((t for t, r in events if r.message[0] == 0xFB), float("inf"))
    pulses = [t for t, r in events if r.message[0] == 0xF8 and start_at <= t < stop_at]
    onsets = [t for t, r in events if r.message[0] & 0xF0 == 0x90 and r.message[2] > 0]
    per_bar = 24 * beats_per_bar
    bar_errors, lateness = [], []
    missing_bars: list[tuple[int, float | None]] = []
    for k in range(0, len(pulses), per_bar):
        near = [t - pulses[k] for t in onsets if abs(t - pulses[k]) < 0.06]
        if near:
            bar_errors.append(min(near, key=abs))
            lateness.append(_lateness(pulses, k))
        else:
            nearest = min((t - pulses[k] for t in onsets), key=abs, default=None)
            missing_bars.append((k // per_bar, nearest))
    tempo_errors = []
    first = 0
    for bpm, beats in segments:
        last = min(len(pulses), first + round(beats * 24))
        window = list(range(first + round(settle_beats * 24), last))
        first = last
        if len(window) < 24:
            continue
        a, b = _fit([float(k) for k in window], [pulses[k] for k in window])
        t0, t1 = pulses[window[0]], pulses[window[-1]]
        inside = [t for t in onsets if t0 <= t <= t1]
        # Nearest position of FIGARO's grid (12 per quarter = every 2 pulses): the model generator
        # plays triplets, which rounding to sixteenths would misplace and so tilt the fitted tempo.
        grid = [round((t - a) / b / 2) * 2 for t in inside]
        if len(set(grid)) < 3:
            continue
        _, slope = _fit([float(g) for g in grid], inside)
        tempo_errors.append(abs(60.0 / (24 * slope) / bpm - 1.0))
    offs: dict[tuple[int, int], float] = {}
    sounding: set[tuple[int, int]] = set()
    one_pulse = 60.0 / (segments[-1][0] * 24)
    for t, r in events:
        m = r.message
        if len(m) < 3 or m[0] & 0xF0 not in (0x80, 0x90):
            continue
        key = (m[0] & 0x0F, m[1])
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            if t <= stop_at + one_pulse:
                sounding.add(key)
        else:
            if t <= stop_at + one_pulse:
                sounding.discard(key)
            offs[key] = t
    after = [t for t in onsets if stop_at + 0.002 < t < resumed_at]
    last_off = max((t for t in offs.values() if stop_at <= t < resumed_at), default=stop_at)
    return FollowFigures(
        bar_errors,
        lateness,
        len(missing_bars),
        tempo_errors,
        len(after),
        len(sounding),
        last_off - stop_at,
        missing_bars,
    )


def continue_error(master: list[Received], daemon: list[Received]) -> float | None:
    """The daemon's first note-on after the master's Continue minus the first pulse after it
    (the bar line the master resumes on), in seconds; None if either is missing."""
    events = sorted(
        [*zip(jack_seconds(master), master, strict=True), *zip(jack_seconds(daemon), daemon, strict=True)],
        key=lambda e: e[0],
    )
    resumed_at = next((t for t, r in events if r.message[0] == 0xFB), None)
    if resumed_at is None:
        return None
    pulse = next((t for t, r in events if r.message[0] == 0xF8 and t > resumed_at), None)
    onset = next(
        (t for t, r in events if r.message[0] & 0xF0 == 0x90 and r.message[2] > 0 and t > resumed_at - 0.05),
        None,
    )
    return None if pulse is None or onset is None else onset - pulse


def pulse_interval_errors(received: list[Received], tempo: float) -> tuple[list[float], int]:
    """|interval - k * nominal| of consecutive MIDI clock pulses at the recorder (seconds), and
    how many pulses never arrived (k - 1 for an interval of about k pulses: JACK drops the
    output of a client that misses its cycle, which the dummy server reports as an XRun)."""
    times = [t for t, r in zip(jack_seconds(received), received, strict=True) if r.message[0] == 0xF8]
    nominal = 60.0 / (tempo * 24)
    errors, lost = [], 0
    for a, b in itertools.pairwise(times):
        pulses = max(1, round((b - a) / nominal))
        lost += pulses - 1
        errors.append(abs((b - a) - pulses * nominal))
    return errors, lost
