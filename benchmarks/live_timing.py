"""Live timing benchmark: send-time error at the sender and at a JACK receiver, change latency,
CPU and peak RSS, while generation loads the same cores.

    .venv/bin/python benchmarks/live_timing.py --seconds 60 --load-per-bar 0.8

Starts a private dummy JACK server, runs the daemon in this process (player thread, OSC server,
engine thread; the generator in its worker process) with a JACK virtual output, and a JACK
recorder in a separate process. The worker runs the rule generator plus a synthetic CPU load
(a one-thread torch matmul loop for ``--load-per-bar`` seconds per bar, standing in for the
model; the integrator re-runs with ``--generator model``). Every ``--change-every`` bars an OSC
message changes the energy at a random point in the bar.

Also times ``e2m-live serve --generator rules --midi-api jack`` as a subprocess from launch to its
``ready`` line (``serve_ready_s``, best and worst of ``--startup-runs``), the figure the tests no
longer assert. ``--quick``: 15 s of playing and one startup (``make bench``).

``--changes mixed`` (the default) cycles loudness (-26 <-> -10 dB), key (C <-> F#, a tritone: the
two major scales share two notes) and energy (0.3 <-> 0.8), one every ``--change-every`` bars at a
random point in the bar, and measures from the JACK receiver's notes when each is first heard
(the immediate answers: loudness from the next beat, key and energy from the next bar line) apart
from when the first bar of the re-planned section starts. ``--changes energy``: the old energy
flips. ``--no-measure`` turns the "what is playing" estimate off (compare the sender figures).

The receiver stamps messages by JACK frame (``JackFrameRecorder``), as a DAW records them; the
daemon's JACK output is the frame-accurate one (``--jack-latency-ms``, default 10 ms).

Targets: p99 send error <= 1 ms, max <= 5 ms; p99 at the receiver <= one JACK period + 1 ms; a
change first heard at the next bar line (next beat for loudness) for >= 99 %; no repeated bars;
RSS <= 600 MB; serve ready within 5 s.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from e2m_live.testing.load import LOAD_GENERATOR  # noqa: E402

JACK_RATE, JACK_PERIOD_FRAMES = 48000, 256


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"n": len(ordered), "p50": pick(0.50), "p99": pick(0.99), "max": ordered[-1]}


def _proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return cpu, peak


# ---- the receiver process -------------------------------------------------------------------------


def run_receiver(port_part: str, out_file: str, seconds: float) -> None:
    """Record what arrives at a JACK input as a DAW does: each message at its frame (seconds), and
    the XRuns the server reported (the dummy driver's frame clock steps at each)."""
    from e2m_live.testing.jack import JackFrameRecorder

    recorder = JackFrameRecorder("e2m-bench-recorder")
    try:
        recorder.connect(port_part, timeout=10.0)
    except AssertionError as error:
        raise SystemExit(f"receiver: {error}") from None
    print("receiver ready", flush=True)
    time.sleep(seconds)
    received, xruns = recorder.snapshot(), recorder.xruns
    recorder.close()
    events = [(r.jack_time, r.message) for r in received]
    Path(out_file).write_text(json.dumps({"events": events, "xruns": xruns}))


# ---- the benchmark --------------------------------------------------------------------------------


def pair_messages(
    sent: list[tuple[int, ...]], heard: list[tuple[int, ...]], lookahead: int = 64
) -> list[tuple[int, int]]:
    """(sent index, heard index) of the same messages, in order: a heard message with no sent twin
    (the receiver's extras) or a sent one never heard is skipped, so one lost or extra message does not
    shift every later pair (pairing by position did: receiver errors of 0.1-2 s)."""
    pairs, j = [], 0
    for i, message in enumerate(sent):
        match = next((k for k in range(j, min(j + lookahead, len(heard))) if heard[k] == message), None)
        if match is not None:
            pairs.append((i, match))
            j = match + 1
    return pairs


def run_benchmark(args: argparse.Namespace) -> dict:
    from e2m_live.live.config import build_config
    from e2m_live.live.daemon import Daemon
    from e2m_live.live.osc import encode_message
    from e2m_live.live.realtime import DAEMON_PRIORITY, make_realtime
    from e2m_live.testing.daemon import start_daemon
    from e2m_live.testing.jack import jack_server

    sys.setswitchinterval(0.0005)  # as `e2m-live serve` does
    result: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_before": os.getloadavg()}}
    with jack_server(f"e2mbench{os.getpid()}"), tempfile.TemporaryDirectory() as tmp:
        ready = []
        for _ in range(args.startup_runs):
            served = start_daemon(timeout=60.0)
            ready.append(served.started_in)
            served.terminate()
        result["serve_ready_s"] = (
            {"runs": len(ready), "best": round(min(ready), 2), "worst": round(max(ready), 2)}
            if ready
            else {"runs": 0}
        )
        name = f"e2m-bench-{os.getpid()}"
        config = build_config(
            overrides={
                "udp_port": 0,
                "tcp_port": -1,
                "midi_api": "jack",
                "midi_name": name,
                "generator": args.generator,
                "tempo": args.tempo,
                "mood": "happy",
                "debounce_ms": 30.0,
                "jack_latency_ms": args.jack_latency_ms,
            }
        )
        options = {"seconds_per_bar": args.load_per_bar} if args.generator == LOAD_GENERATOR else {}
        daemon = Daemon(
            config,
            out=io.StringIO(),
            generator_options=options,
            record_timing=True,
            record_messages=True,
            measure=args.measure,
        )
        bars: list = []
        original_on_bar = daemon._on_bar

        known: dict = {}  # every section a bar was played from (the engine keeps only the last 32)

        def on_bar(info) -> None:
            bars.append(info)
            if info.section not in known:
                known[info.section] = next(
                    (s for s in reversed(daemon.engine.sections) if s.id == info.section), None
                )
            original_on_bar(info)

        daemon._on_bar = on_bar  # type: ignore[method-assign]
        started = time.monotonic()
        daemon.start()
        assert daemon.engine is not None  # made by start(); its policies are read as bars come
        if args.hold_bars is not None:
            daemon.engine.hold_bars = args.hold_bars
        daemon.engine.bridge = args.bridge
        result["startup_s"] = time.monotonic() - started
        make_realtime(threading.get_native_id(), DAEMON_PRIORITY)  # as `e2m-live serve` does
        receiver_file = Path(tmp) / "received.json"
        receiver = subprocess.Popen(
            [sys.executable, __file__, "--receiver", name, str(receiver_file), str(args.seconds + 3)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert receiver.stdout is not None
        receiver.stdout.readline()
        rng = random.Random(args.seed)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = ("127.0.0.1", daemon.osc.udp_port)
        bar_seconds = 4 * 60.0 / args.tempo
        state = dict(INITIAL)
        if args.changes == "mixed":
            for name, value in state.items():
                sock.sendto(encode_message(f"/e2m/{name}", [value]), target)
        sock.sendto(encode_message("/e2m/play", []), target)
        t_end = time.monotonic() + args.seconds
        changes: list[dict] = []
        kinds = ("loudness", "key", "energy") if args.changes == "mixed" else ("energy",)
        first_change = time.monotonic() + 4 * bar_seconds  # let the first sections settle
        next_change = first_change + bar_seconds * rng.random()
        while time.monotonic() < t_end:
            if time.monotonic() >= next_change:
                kind = kinds[len(changes) % len(kinds)]
                old = state[kind]
                new = {
                    "loudness": -26.0 if old > -18 else -10.0,
                    "key": 6 if old == 0 else 0,
                    "energy": 0.3 if old > 0.5 else 0.8,
                }[kind]
                state[kind] = new
                sent = time.monotonic()
                sock.sendto(encode_message(f"/e2m/{kind}", [new]), target)
                changes.append({"kind": kind, "old": old, "new": new, "at": sent})
                # A change every `change_every` bars, at a random point of the bar.
                bar_index = math.floor((sent - first_change) / bar_seconds)
                next_change = first_change + bar_seconds * (bar_index + args.change_every + rng.random())
            time.sleep(0.005)
        worker_pid = daemon.engine.worker_pid
        cpu_main, rss_main = _proc_stats(os.getpid())
        cpu_worker, rss_worker = _proc_stats(worker_pid)
        sock.sendto(encode_message("/e2m/stop", []), target)
        time.sleep(0.3)
        timing = list(daemon.player.timing)  # (deadline, actual send time) of every message
        sent_messages = list(daemon.player.sent_messages or [])
        sections = list(
            {
                **{k: v for k, v in known.items() if v is not None},
                **{s.id: s for s in daemon.engine.sections},
            }.values()
        )
        margins = list(daemon.engine.margins)
        measured = daemon.measured.estimates if daemon.measured is not None else 0
        late_bars = daemon.player.late_bars
        daemon.shutdown()
        receiver.wait(timeout=30)
        recorded = json.loads(receiver_file.read_text())
        received, result["receiver_xruns"] = recorded["events"], recorded["xruns"]
    wall = time.monotonic() - started

    # Sender: actual send time minus deadline.
    errors = [(sent - deadline) * 1000 for deadline, sent in timing]
    result["sender_error_ms"] = _percentiles([abs(e) for e in errors])
    result["sender_early_ms_min"] = min(errors) if errors else None
    result["sender_over_1ms"] = sum(1 for e in errors if abs(e) > 1.0)
    bar_starts = sorted(b.time for b in bars)
    worst = sorted(range(len(errors)), key=lambda i: -abs(errors[i]))[:5]

    def since_bar_line(t: float) -> float:
        return round(t - max([line for line in bar_starts if line <= t] or [0.0]), 4)

    result["sender_worst"] = [
        {"error_ms": round(errors[i], 3), "index": i, "s_after_bar_line": since_bar_line(timing[i][0])}
        for i in worst
    ]

    # Receiver: the frame (seconds) of each message against its deadline, minus the constant latency
    # and the frame clock's drift (a line fitted to all pairs; an XRun's step stays in the figure).
    # Messages arrive in order; the receiver also gets the stop's note-offs and CCs after these.
    pairs = pair_messages(sent_messages, [tuple(r[1]) for r in received])
    offsets = [received[j][0] - timing[i][0] for i, j in pairs]
    if len(offsets) >= 2:
        # Least squares: the constant latency and the dummy driver's frame clock drift.
        slope, base = statistics.linear_regression([timing[i][0] for i, _ in pairs], offsets)
        residuals = [o - base - slope * timing[i][0] for o, (i, _) in zip(offsets, pairs, strict=True)]
        result["receiver_error_ms"] = _percentiles([abs(r) * 1000 for r in residuals])
        result["receiver_drift_ppm"] = round(slope * 1e6, 1)
        result["receiver_messages"] = {
            "scheduled": len(timing),
            "received": len(received),
            "paired": len(pairs),
        }
    result["jack_period_ms"] = 1000 * JACK_PERIOD_FRAMES / JACK_RATE

    # Changes: OSC arrival -> first bar of the new material; and whether it took the first bar line
    # after its first bar was ready.
    bar_lines = sorted(b.time for b in bars)
    latencies, to_first_bar, on_first_line = [], [], []
    for section in sections:
        if not section.immediate or section.started_at is None or section.first_ready_at is None:
            continue
        latencies.append((section.started_at - section.changed_at) * 1000)
        to_first_bar.append((section.first_ready_at - section.changed_at) * 1000)
        ready = section.first_ready_at + daemon.player.prepare_ahead
        first_line = next((t for t in bar_lines if t >= ready), None)
        on_first_line.append(first_line is not None and abs(first_line - section.started_at) < 1e-6)
    result["change_latency_ms"] = _percentiles(latencies)
    result["change_to_first_bar_decoded_ms"] = _percentiles(to_first_bar)
    result["change_on_first_bar_line_after_decode"] = f"{sum(on_first_line)}/{len(on_first_line)}"
    if len(offsets) >= 2:
        # Receiver notes on the deadline timeline (frame = deadline * (1 + slope) + base).
        heard = [((r[0] - base) / (1 + slope), r[1]) for r in received]
        result["first_audible"] = first_audible(changes, heard, bars, daemon.player.prepare_ahead, sections)
    ahead = [bars_ahead * bar_seconds for t, bars_ahead in margins if t >= first_change]  # after startup
    result["decoded_ahead_s"] = {
        **_percentiles(ahead),
        "p1": sorted(ahead)[len(ahead) // 100] if ahead else None,
    }
    result["measured_estimates"] = measured
    result["late_bars"] = late_bars
    # When: the first sections are the model's warm start (the first change comes 4 bars in).
    result["late_bar_times_s"] = [round(b.time - started, 1) for b in bars if b.repeated]
    result["bars_played"] = len(bars)
    result["bridged_bars"] = daemon.engine.bridged  # played from a superseded section, not repeated
    result["hold_bars"] = daemon.engine.hold_bars
    result["bridge"] = daemon.engine.bridge
    result["cpu_s"] = {"daemon": round(cpu_main, 2), "worker": round(cpu_worker, 2), "wall": round(wall, 1)}
    result["peak_rss_mb"] = {"daemon": round(rss_main / 2**20, 1), "worker": round(rss_worker / 2**20, 1)}
    result["settings"] = {
        "seconds": args.seconds,
        "tempo": args.tempo,
        "generator": args.generator,
        "load_per_bar_s": args.load_per_bar,
        "change_every_bars": args.change_every,
        "changes": args.changes,
        "measure": args.measure,
        "jack_latency_ms": args.jack_latency_ms,
    }
    return result


# ---- when a change is first heard, from the receiver's notes ----------------------------------------

MAJOR = (0, 2, 4, 5, 7, 9, 11)
#: The mixed changes start here.
INITIAL = {"loudness": -10.0, "key": 0, "energy": 0.8}
#: A change that arrives this close before a beat (loudness) or before the player prepares a bar
#: (``prepare_ahead`` before its line: key, energy) is expected from the beat or bar after: the OSC
#: packet, the daemon's handler and the player's wake-up take a few milliseconds, and no ear tells
#: a change 20 ms before a beat from one 20 ms after it.
REACTION_S = 0.020
#: With python-rtmidi's output (``--jack-latency-ms 0``) a message is heard at the start of a JACK
#: period, so a note on a beat or bar line lands up to half a period either side of it (after the
#: constant offset is removed): windows of heard notes start this much early, so the note on the
#: line falls in the window it belongs to. The frame-accurate output needs none of it.
HEARD_EARLY_S = 0.5 * JACK_PERIOD_FRAMES / JACK_RATE + 0.0005


def _note_ons(heard: list, start: float, end: float, pitched: bool = False) -> list[list[int]]:
    return [
        m
        for t, m in heard
        if start <= t < end
        and len(m) == 3
        and m[0] & 0xF0 == 0x90
        and m[2] > 0
        and not (pitched and m[0] & 0x0F == 9)
    ]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _key_heard(notes: list[list[int]], old: int, new: int) -> bool:
    old_scale, new_scale = {(old + d) % 12 for d in MAJOR}, {(new + d) % 12 for d in MAJOR}
    classes = [m[1] % 12 for m in notes]
    inside = sum(c in new_scale for c in classes)
    return bool(classes) and inside >= 0.8 * len(classes) and any(c not in old_scale for c in classes)


def _closer_to_new(heard: float, old: float, new: float) -> bool:
    """Whether a heard level is nearer (in ratio) to what the new value makes than to the old."""
    return heard > 0 and old > 0 and new > 0 and abs(math.log(heard / new)) < abs(math.log(heard / old))


def _played_bar(line):
    """The bar as the player scheduled it: decoded, with the immediate answers it went out with."""
    if line.bar is None:
        return None
    return line.bar if line.adaptation is None else line.adaptation.apply(line.bar)


def _loudness_heard(
    notes: list[list[int]], window: tuple[float, float], line, change: dict, sections: dict
) -> bool | None:
    """Whether a beat's note-ons went out at the new loudness rather than the old: their median
    velocity against the same notes of the bar as scheduled (same energy answer), scaled to the old
    and to the new loudness from the loudness the bar was made for. None: nothing to compare."""
    from e2m_live.live.transform import loudness_gain

    section, bar = sections.get(line.section), _played_bar(line)
    if section is None or bar is None or not notes:
        return None
    seconds_per_quarter = 60.0 / line.tempo
    velocities = [
        n.velocity
        for n in bar.notes
        if window[0] - 1e-4 <= line.time + n.start * seconds_per_quarter < window[1] - 1e-4
    ]
    if not velocities:
        return None
    made_for = section.features.loudness

    def level(db: float) -> float:
        gain = loudness_gain(made_for, db)
        return _median([min(127, max(1, round(v * gain))) for v in velocities])

    return _closer_to_new(_median([m[2] for m in notes]), level(change["old"]), level(change["new"]))


def _energy_heard(notes: list[list[int]], line, change: dict, sections: dict, until: float) -> bool | None:
    """Whether a bar went out with the new energy's answer rather than the old one's: its velocity
    sum against its decoded bar answered for the old and for the new energy (thinning and velocity),
    at the loudness gain it was scheduled with (the model's bars differ too much from one to the
    next to compare with the bar before), over the notes before ``until`` (the next loudness
    change: its gain would move the sum too). True: the bar comes from a section planned after the
    change (the new plan). None: nothing to compare."""
    from e2m_live.live.transform import energy_notes

    section = sections.get(line.section)
    if section is None or line.bar is None:
        return None
    if section.changed_at >= change["at"]:
        return True
    made_for = section.features.energy
    seconds_per_quarter = 60.0 / line.tempo

    def level(energy: float) -> float:
        answered = energy_notes(line.bar.notes, made_for, energy)
        return sum(
            min(127, max(1, round(n.velocity * line.gain)))
            for n in answered
            if line.time + n.start * seconds_per_quarter < until - 1e-4
        )

    heard, old, new = sum(m[2] for m in notes), level(change["old"]), level(change["new"])
    if not notes or not old or not new:
        return None
    ENERGY_LEVELS.append((line.section, line.index, heard, old, new))
    return _closer_to_new(heard, old, new)


#: (section, index, heard, old, new) velocity sums of every bar judged, for the misses' report.
ENERGY_LEVELS: list[tuple[int, int, float, float, float]] = []


def first_audible(
    changes: list[dict], heard: list, bars: list, prepare_ahead: float, sections: list | None = None
) -> dict:
    """For each change: the first bar (key, energy) or beat (loudness) whose notes at the receiver
    show it, and whether that is the next bar line (the next beat at least ``REACTION_S``
    after the change, for loudness). Loudness and energy: the notes heard against the same bar as
    scheduled, answered for the old and for the new value; key by the scale of the notes."""
    by_id = {s.id: s for s in sections or []}
    lines = sorted({round(b.time, 6): b for b in bars}.values(), key=lambda b: b.time)
    latencies: dict[str, list[float]] = {"loudness": [], "key": [], "energy": []}
    missed: list[dict] = []
    unjudged = 0
    on_time: dict[str, list[bool]] = {"loudness": [], "key": [], "energy": []}
    for change in changes:
        at, kind = change["at"], change["kind"]
        index = next((i for i, b in enumerate(lines) if b.time >= at + prepare_ahead + REACTION_S), None)
        if index is None or index == 0 or index + 4 >= len(lines):
            continue
        found, expected = None, None
        seen: list = []
        if kind == "loudness":
            beat = 60.0 / lines[index - 1].tempo
            earliest = at + REACTION_S
            first_line = max((b for b in lines if b.time <= earliest), key=lambda b: b.time, default=lines[0])
            first_beat = first_line.time + math.ceil((earliest - first_line.time) / beat - 1e-6) * beat
            for k in range(8):
                window = (first_beat + k * beat, first_beat + (k + 1) * beat)
                line = max((b for b in lines if b.time <= window[0] + 1e-6), key=lambda b: b.time)
                notes = _note_ons(heard, window[0] - HEARD_EARLY_S, window[1] - HEARD_EARLY_S)
                hit = _loudness_heard(notes, window, line, change, by_id)
                seen.append((round(window[0] - at, 3), hit))
                if hit is None:
                    continue
                expected = window[0] if expected is None else expected
                if hit:
                    found = window[0]
                    break
        else:
            # The next loudness change moves velocities too: energy is judged on the notes before it.
            until = next((c["at"] for c in changes if c["kind"] == "loudness" and c["at"] > at), math.inf)
            for k in range(index, index + 4):
                end = lines[k + 1].time if kind == "key" else min(lines[k + 1].time, until)
                notes = _note_ons(
                    heard, lines[k].time - HEARD_EARLY_S, end - HEARD_EARLY_S, pitched=kind == "key"
                )
                if kind == "key":
                    hit = _key_heard(notes, change["old"], change["new"])
                else:
                    hit = _energy_heard(notes, lines[k], change, by_id, until)
                    levels = next(
                        (
                            v[2:]
                            for v in reversed(ENERGY_LEVELS)
                            if v[:2] == (lines[k].section, lines[k].index)
                        ),
                        None,
                    )
                    answer = lines[k].adaptation
                    factor = None if answer is None else round(answer.factor, 3)
                    seen.append((hit, lines[k].section, lines[k].index, lines[k].repeated, levels, factor))
                if hit is None:
                    continue  # this bar cannot be judged: the answer is due at the next one
                expected = lines[k].time if expected is None else expected
                if hit:
                    found = lines[k].time
                    break
        if expected is None:
            unjudged += 1  # nothing in the next beats or bars could be compared (no notes)
            continue
        if found is None:
            on_time[kind].append(False)
        else:
            latencies[kind].append((found - at) * 1000)
            on_time[kind].append(expected is not None and abs(found - expected) < 1e-6)
        if not on_time[kind][-1] and kind != "key":
            what = (
                "bars (heard, section, index, repeated, velocity sums heard/old/new, energy factor)"
                if kind == "energy"
                else "beats (s after the change, heard)"
            )
            due = None if expected is None else round(expected - at, 3)
            missed.append(
                {"kind": kind, "old": change["old"], "new": change["new"], "due_after_s": due, what: seen}
            )
    heard_in_time = sum(sum(v) for v in on_time.values())
    return {
        kind: {
            "changes": len(on_time[kind]),
            "heard_ms": _percentiles(latencies[kind]),
            "at_next_line": f"{sum(on_time[kind])}/{len(on_time[kind])}",
        }
        for kind in latencies
        if on_time[kind]
    } | {
        "all_at_next_line": f"{heard_in_time}/{sum(len(v) for v in on_time.values())}",
        "missed": missed,
        "unjudged": unjudged,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--receiver":
        run_receiver(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--tempo", type=float, default=120.0)
    parser.add_argument(
        "--jack-latency-ms",
        type=float,
        default=10.0,
        help="the frame-accurate JACK output's latency; 0: python-rtmidi's output (to compare)",
    )
    parser.add_argument(
        "--generator",
        default=LOAD_GENERATOR,
        help="rules, model or an import path (default: the rule generator plus a CPU load, "
        f"{LOAD_GENERATOR})",
    )
    parser.add_argument(
        "--load-per-bar",
        type=float,
        default=0.8,
        help="seconds of one-thread matmul per generated bar (the default generator)",
    )
    parser.add_argument("--change-every", type=float, default=2.0, help="bars between changes")
    parser.add_argument(
        "--changes",
        choices=("mixed", "energy"),
        default="mixed",
        help="mixed: loudness, key, energy in turn; energy: energy flips only",
    )
    parser.add_argument(
        "--no-measure",
        dest="measure",
        action="store_false",
        help='turn the "what is playing" feature estimate off',
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--hold-bars", type=int, help="the engine's hold_bars (default: the engine's; 0 turns holding off)"
    )
    parser.add_argument(
        "--no-bridge", dest="bridge", action="store_false", help="no bars from superseded sections (A/B)"
    )
    parser.add_argument("--startup-runs", type=int, default=3, help="times `e2m-live serve` is started")
    parser.add_argument("--quick", action="store_true", help="15 s and one startup (make bench)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.startup_runs = 15.0, 1
    result = run_benchmark(args)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
