"""Sync benchmark: following a MIDI clock master, MIDI clock out, and Ableton Link.

    .venv/bin/python benchmarks/sync.py [--follow-period 256] [--bars 4] [--clock-seconds 20] [--quick]

Starts private dummy JACK servers and real clients: a test MIDI clock master (pulses at absolute
deadlines from its own SCHED_FIFO thread), ``e2m-live serve`` as a subprocess, and recorders for
the master's port and the daemon's output (one port fed by both would merge them, and JACK drops
events when a merged buffer fills).

1. Follow: the master runs a beat of clock, sends Start, plays ``--bars`` bars at 100 BPM, then
   ``--bars`` at 140 BPM, then Stop, then Song Position (bar 3) + Continue and one more bar.
   Figures: the daemon's tempo error from its note onsets (from two beats after each change),
   its bar starts against the master's downbeats, the notes open one pulse after Stop, the time
   from Stop to the last note-off, and the first bar after Continue against the master's.
2. Clock out: the daemon plays on its own clock with ``--clock-out`` while the worker generates
   (``e2m_live.testing.load``: the rule generator plus 0.2 s of matmul per bar); the recorder measures the
   pulse intervals (p50/p99/max error against 60/(24 * tempo)).
3. Link (if aalink is installed): a daemon-side LinkClock and a test peer on loopback; tempo
   and phase agreement after a tempo change made by the peer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from e2m_live.testing.daemon import start_daemon, wait_until  # noqa: E402
from e2m_live.testing.follow import (  # noqa: E402
    clock_schedule,
    continue_error,
    follow_figures,
    pulse_interval_errors,
    resume_schedule,
)
from e2m_live.testing.jack import JackClockMaster, JackMidiRecorder, jack_server, jack_xruns  # noqa: E402
from e2m_live.testing.load import LOAD_GENERATOR  # noqa: E402


def _pct(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    ordered = sorted(abs(v) for v in values)
    if not ordered:
        return {"n": 0}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * scale, 3)

    return {"n": len(ordered), "p50": pick(0.5), "p99": pick(0.99), "max": round(ordered[-1] * scale, 3)}


def follow(bars: int, beats_per_bar: int) -> dict:
    segments = [(100.0, bars * beats_per_bar), (140.0, bars * beats_per_bar)]
    d = start_daemon("--sync", "midi", "--tempo", "120")
    recorder = JackMidiRecorder("e2m-bench-recorder", timing=True)
    master_recorder = JackMidiRecorder("e2m-bench-master-recorder", timing=True)
    master = JackClockMaster("e2m-bench-master")
    try:
        d.send("/e2m/time_signature", beats_per_bar)
        recorder.connect(f"{d.midi_name}:out")
        master.connect(":clock_in")
        master_recorder.connect(master.port)
        time.sleep(1.0)  # the new time signature's first section
        events, beats = clock_schedule(time.monotonic() + 1.0, segments)
        resume_at = 3.0 * beats_per_bar  # after the Stop: Song Position to bar 3, Continue, a bar
        events += resume_schedule(beats[-1] + 0.3, resume_at, 140.0, beats_per_bar)
        master.play(events)
        master.wait()
        time.sleep(0.5)
        figures = follow_figures(master_recorder.snapshot(), recorder.snapshot(), segments, beats_per_bar)
        resumed = continue_error(master_recorder.snapshot(), recorder.snapshot())
        alive = d.alive()
    finally:
        master.close()
        master_recorder.close()
        recorder.close()
        d.terminate()
    late = [e for e in master.sent if e.sent - e.deadline > 0.001]
    return {
        "bar_start_error_ms": _pct(figures.bar_errors),
        "bar_start_signed_ms": [round(e * 1000, 2) for e in figures.bar_errors],
        "bars_without_onset": figures.bars_without_onset,
        "tempo_error_pct_from_2_beats": [round(e * 100, 3) for e in figures.tempo_errors],
        "open_notes_one_pulse_after_stop": figures.open_at_stop,
        "stop_to_last_note_off_ms": round(figures.stop_to_silence * 1000, 2),
        "notes_after_stop": figures.notes_after_stop,
        "continue_bar_start_error_ms": None if resumed is None else round(resumed * 1000, 2),
        "master_pulses_sent_late_over_1ms": len(late),
        "daemon_alive": alive,
    }


def clock_out(seconds: float, tempo: float) -> dict:
    d = start_daemon("--generator", LOAD_GENERATOR, "--clock-out", "--tempo", str(tempo))
    recorder = JackMidiRecorder("e2m-bench-clock-recorder", timing=True)
    try:
        recorder.connect(f"{d.midi_name}:out")
        time.sleep(0.5)
        d.send("/e2m/play")
        wait_until(lambda: any(r.message[0] == 0xFA for r in recorder.snapshot()), 20)  # the first bar
        time.sleep(seconds)
        for energy in (0.2, 0.8):
            d.send("/e2m/energy", energy)  # keep the worker generating
        time.sleep(1.0)
        d.send("/e2m/stop")
        time.sleep(0.3)
        received = recorder.snapshot()
    finally:
        recorder.close()
        d.terminate()
    errors, lost = pulse_interval_errors(received, tempo)
    statuses = [r.message[0] for r in received if r.message[0] in (0xFA, 0xFB, 0xFC)]
    big = [(i, round(e * 1000, 2)) for i, e in enumerate(errors) if e > 0.001]
    return {
        "pulse_interval_error_ms": _pct(errors),
        "intervals_off_by_over_1ms": big[:20],
        "pulses_lost_in_jack": lost,
        "transport": [hex(s) for s in statuses],
    }


def link(seconds: float) -> dict:
    from e2m_live.live.link import LinkClock, link_available, new_link_session

    if link_available():
        return {"skipped": link_available()}
    clock = LinkClock(120.0, quantum=4, start_stop_sync=False)
    peer, close_peer = new_link_session(120.0, quantum=4)
    try:
        deadline = time.monotonic() + 5
        while clock.peers == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        peer.tempo = 133.0
        time.sleep(0.5)
        phase_errors, tempo_errors = [], []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            before = time.monotonic()
            peer_beat = peer.beat
            after = time.monotonic()
            ours = clock.beat_at((before + after) / 2)
            phase_errors.append((ours - peer_beat) * 60.0 / peer.tempo)
            tempo_errors.append(abs(clock.tempo / peer.tempo - 1))
            time.sleep(0.01)
        return {
            "peers": clock.peers,
            "tempo": clock.tempo,
            "phase_error_ms": _pct(phase_errors),
            "tempo_error_max_pct": round(max(tempo_errors) * 100, 4),
        }
    finally:
        clock.close()
        close_peer()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--follow-period", type=int, default=256, help="JACK period (frames at 48 kHz) for following a master"
    )
    parser.add_argument("--bars", type=int, default=4, help="bars per tempo")
    parser.add_argument("--beats-per-bar", type=int, default=3)
    parser.add_argument("--clock-seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="2 bars a tempo, 5 s of clock out (make bench)")
    args = parser.parse_args()
    if args.quick:
        args.bars, args.clock_seconds = 2, 5.0
    results: dict = {}
    name = f"e2msyncbench{args.follow_period}"
    with jack_server(name, period=args.follow_period):
        results["follow"] = {
            "jack_period_ms": round(args.follow_period / 48, 3),
            **follow(args.bars, args.beats_per_bar),
            "jack_xruns": jack_xruns(name),
        }
    # Clock out at 0.67 ms periods (192 kHz, 128 frames): a JACK receiver sees each message at the
    # start of the period after it was sent, so the period bounds what it can resolve.
    with jack_server("e2msyncbenchfast", period=128, rate=192000):
        results["clock_out"] = {
            "jack_period_ms": round(128 / 192, 3),
            **clock_out(args.clock_seconds, 120.0),
            "jack_xruns": jack_xruns("e2msyncbenchfast"),
        }
    results["link"] = link(5.0)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
