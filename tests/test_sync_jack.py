"""Sync with real components on private dummy JACK servers: a test MIDI clock master drives
`e2m-live serve --sync midi` (48 kHz, 256-frame periods), two recorders hear the master and the
daemon; then the daemon's own MIDI clock out is measured while its worker generates (192 kHz,
128 frames: 0.67 ms periods, since a JACK receiver sees every message at its period's start).

The bounds here are functional and hold on a loaded 2-core machine with a wide margin (a bar
starts within a clock pulse of the master's downbeat; the tempo is followed; pulses keep their
count and rate). The precise figures (bar start error, p99 pulse interval error) belong to
``benchmarks/sync.py``; see docs/benchmarks.md."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from e2m_live.testing.daemon import start_daemon, wait_until
from e2m_live.testing.follow import (
    clock_schedule,
    continue_error,
    follow_figures,
    pulse_interval_errors,
    resume_schedule,
)
from e2m_live.testing.jack import JackClockMaster, JackMidiRecorder, jack_available, jack_server, jack_xruns

pytestmark = pytest.mark.jack

JACK_PERIOD = 256 / 48000
FAST_PERIOD = 128 / 192000
BEATS_PER_BAR = 3


def within_a_pulse(tempo: float) -> float:
    """A bar's start error bound: one MIDI-clock pulse at ``tempo`` plus a JACK period.

    A follower predicts the downbeat from the pulses it has heard, so on a loaded machine (jittery
    pulse arrival just after a 40 % tempo step) its bar may start up to about a pulse off; CI saw
    16.0 ms at 140 BPM against the earlier fixed bound of 15.3 ms. A pulse is the clock's own
    resolution, so this still fails a daemon that loses or gains a pulse, or a beat. Quiet and
    CPU-hogged runs: 0-5.6 ms (the JACK period); the precise figures are benchmarks/sync.py's.
    """
    return 60.0 / (tempo * 24) + JACK_PERIOD


@pytest.fixture
def jack_256() -> Iterator[str]:
    if not jack_available():
        pytest.skip("jackd or python-rtmidi JACK support missing")
    with jack_server(period=256) as name:
        yield name


@pytest.fixture
def jack_fast() -> Iterator[str]:
    if not jack_available():
        pytest.skip("jackd or python-rtmidi JACK support missing")
    with jack_server(period=128, rate=192000) as name:
        yield name


def test_daemon_follows_midi_clock_tempo_bars_and_stop(jack_256):
    segments = [(100.0, 2 * BEATS_PER_BAR), (140.0, 2 * BEATS_PER_BAR)]
    d = start_daemon("--sync", "midi", "--tempo", "120")
    recorder = JackMidiRecorder("e2m-sync-recorder", timing=True)
    master_recorder = JackMidiRecorder("e2m-sync-master-recorder", timing=True)
    master = JackClockMaster("e2m-sync-master")
    try:
        assert any("sync: MIDI clock in" in line for line in d.startup), d.startup
        d.send("/e2m/time_signature", BEATS_PER_BAR)
        d.send("/e2m/energy", 0.6)
        recorder.connect(f"{d.midi_name}:out")
        master.connect(":clock_in")
        master_recorder.connect(master.port)
        time.sleep(2.0)  # the new metre's first section is ready, on a loaded machine too
        events, beats = clock_schedule(time.monotonic() + 1.0, segments)
        # After the Stop, the master moves to the bar line at beat 9 and continues for a bar.
        events += resume_schedule(beats[-1] + 0.3, 9.0, 140.0, BEATS_PER_BAR)
        master.play(events)
        assert master.wait(), "the master's performance did not finish"
        time.sleep(0.4)
        figures = follow_figures(master_recorder.snapshot(), recorder.snapshot(), segments, BEATS_PER_BAR)
        resumed = continue_error(master_recorder.snapshot(), recorder.snapshot())
        assert d.alive()
    finally:
        master.close()
        master_recorder.close()
        recorder.close()
        d.terminate()
    assert figures.bars_without_onset == 0, figures.missing_bars  # (bar, nearest onset s)
    assert len(figures.bar_errors) == 4
    # The daemon predicts the downbeat from the pulses it has heard, so it is measured against the
    # master's intended downbeat: a pulse that the test's own (loaded) clock thread sent late
    # moves the heard downbeat, not the daemon (CI once saw -24.6 ms against the late pulse).
    intended = [e + late for e, late in zip(figures.bar_errors, figures.downbeat_lateness, strict=True)]
    bar_tempi = [tempo for tempo, beats in segments for _ in range(beats // BEATS_PER_BAR)]
    assert all(abs(e) <= within_a_pulse(t) for e, t in zip(intended, bar_tempi, strict=True)), (
        [round(e * 1000, 2) for e in figures.bar_errors],
        [round(e * 1000, 2) for e in figures.downbeat_lateness],
    )
    # 100 -> 140 BPM is a 40 % step; quiet runs follow it within 0.03 % (the benchmark's figure).
    assert len(figures.tempo_errors) == 2 and max(figures.tempo_errors) < 0.05, figures.tempo_errors
    assert figures.open_at_stop == 0, "notes still sounding one pulse after the master's Stop"
    assert figures.notes_after_stop == 0
    assert resumed is not None and abs(resumed) <= within_a_pulse(140.0), resumed


def test_clock_out_pulse_intervals_while_generating(jack_fast):
    tempo = 200.0  # 80 pulses a second: a p99 over ~350 intervals in a short run
    # The rule generator: the benchmark's load generator (e2m_live.testing.load) imports torch in
    # the niced worker, which a loaded machine starved of CPU for minutes before its first bar (the
    # pulses' steadiness under that load is benchmarks/sync.py's figure; a CPU hog does the same to
    # the daemon here).
    d = start_daemon("--generator", "rules", "--clock-out", "--tempo", str(tempo))
    recorder = JackMidiRecorder("e2m-clock-recorder", timing=True)
    try:
        recorder.connect(f"{d.midi_name}:out")
        time.sleep(0.3)
        d.send("/e2m/play")
        # The clock starts with the first bar, which a loaded machine may take a while to make.
        started = wait_until(lambda: any(r.message[0] in (0xFA, 0xF8) for r in recorder.snapshot()), 60)
        assert started, "no MIDI clock within 60 s of /e2m/play:\n" + "\n".join(d.startup[-20:])
        time.sleep(2.0)
        d.send("/e2m/energy", 0.9)  # a new section: the worker generates while we measure
        time.sleep(2.5)
        d.send("/e2m/stop")
        time.sleep(0.3)
        received = recorder.snapshot()
    finally:
        recorder.close()
        d.terminate()
    statuses = [r.message[0] for r in received if r.message[0] in (0xFA, 0xFB, 0xFC)]
    # Start then Stop. Like a pulse, a status may only be missing where JACK dropped a late client's
    # cycle (CI once lost the Start with 3,170 XRuns logged on a jittery machine), never out of order.
    if jack_xruns(jack_fast):
        assert statuses in ([0xFA, 0xFC], [0xFA], [0xFC]), statuses
    else:
        assert statuses == [0xFA, 0xFC]
    errors, lost = pulse_interval_errors(received, tempo)
    assert len(errors) > 250
    # Pulses keep their count: one may only be missing where JACK dropped a late client's cycle
    # (an XRun), never because the player skipped it.
    assert lost <= jack_xruns(jack_fast), (lost, jack_xruns(jack_fast))
    # ... and their rate: a pulse interval of 12.5 ms at 200 BPM. Half of them are within a
    # quarter interval (3.1 ms; quiet runs: median 0.19 ms, CI once 1.84 ms) and 95 % within a
    # period plus 10 ms (quiet p99 0.56-1.55 ms, 2.59 ms once under load): pulses sent in bursts
    # (a bar's worth at once) fail both. benchmarks/sync.py reports the p50/p99/max that the
    # target (p99 <= 1 ms) is about.
    errors.sort()
    p50, p95 = errors[len(errors) // 2], errors[int(0.95 * len(errors))]
    assert p50 <= 60.0 / (tempo * 24) / 4, f"median pulse interval error {p50 * 1000:.2f} ms"
    assert p95 <= 0.010 + FAST_PERIOD, f"p95 pulse interval error {p95 * 1000:.2f} ms"
