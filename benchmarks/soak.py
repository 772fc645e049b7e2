"""Soak benchmark: the daemon for hours, a change every two bars; memory, late bars, timing, recording.

    nice -n 5 .venv/bin/python benchmarks/soak.py --minutes 120 --record --out /tmp/soak

Starts a private dummy JACK server (48 kHz, 256-frame periods), the daemon as its own process (the
model generator by default, JACK virtual output, ``--record``: a ``.mid`` recording) and a JACK
receiving client in this process. Every two bars (at the tempo in force) one OSC change goes out:
mostly a feature (energy, valence, danceability, acousticness, instrumentalness, loudness), else a
mood, tempo, key and mode, key lock, ensemble, a sync switch (to ``link`` and back to ``internal`` a bar
later: alone in a Link session nothing starts the transport), transport stop then play, or panic then
play. Every ``--sample-every``
seconds one CSV row: resident memory of the daemon and of each of its descendants (the generation
worker), bars played and repeated (``/e2m/state/lag`` feedback), the daemon's own send error
(collected in the daemon process: with the frame-accurate JACK output, how far after its frame each
message was written; with ``--jack-latency-ms 0`` (rtmidi), deadline vs the time it went out), the
receiver's note-ons against the position grid (the receiver stamps each message with its JACK frame:
what a DAW would record), notes open at the receiver, the recording's size. At the end:
stop, SIGTERM, notes left open at the receiver, ``e2m-live describe`` on the recording, a PNG plot
and the verdicts on the targets of issue 20 (files in ``--out``: ``soak.csv``, ``soak.png``,
``soak.json``, ``sender_timing.jsonl``, ``changes.jsonl``, ``daemon.log`` (what each repeated bar waited
for; ``E2M_SOAK_ENGINE_DEBUG=1``: also when every bar arrived), ``soak.mid``; ``--analyse``
recomputes verdicts and plot from them):

* resident memory (daemon + children) after minute 5 grows <= 5 %: the median of the last 10 minutes
  against the median of minutes 5-15 (the worker swings by tens of MB with the section it decodes,
  so single samples measure the swing; the worst 10-minute median and the peak are reported too);
* 0 late (repeated) bars after the first minute (the first section of the model is its warm start);
* sender p99 <= 1 ms in the first and in the last 10 minutes (halves of shorter runs): at most 1 % of
  the messages of each span sent more than 1 ms from their deadline;
* 0 notes hanging at the receiver at the end; the recording reads back with ``e2m-live describe``.

Ctrl-C or SIGTERM ends a run early the way its end does (stop, SIGTERM, checks, ``soak.json``
with ``interrupted_at_s``); its ``ran_full_length`` verdict is then false.

The daemon process is ``e2m-live serve`` with the same flags, started by this script (``--serve-child``)
only so that the player keeps each message's deadline and send time (drained every 5 s into a
summary file, so it does not grow). ``--plain`` runs the ``e2m-live serve`` command itself (no sender
figures). ``--minutes 2 --generator rules`` is the smoke test's size (``tests/test_soak_smoke.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

JACK_RATE, JACK_PERIOD_FRAMES = 48000, 256
POSITIONS_PER_QUARTER = 12
TIMING_EVERY_S = 5.0
COLUMNS = (
    "t_s",
    "rss_daemon_mb",
    "rss_children_mb",
    "rss_total_mb",
    "children",
    "bars",
    "late_bars",
    "sender_n",
    "sender_p50_ms",
    "sender_p99_ms",
    "sender_max_ms",
    "receiver_note_ons",
    "receiver_grid_p99_ms",
    "xruns",
    "open_notes",
    "record_bytes",
    "changes",
)


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


# ---- the daemon process (--serve-child) ------------------------------------------------------------


def serve_child(timing_file: str, serve_args: list[str]) -> int:
    """``e2m-live serve`` as ``e2m_live.commands.serve.run`` does it, keeping the player's send times."""
    import argparse as ap
    import faulthandler
    import logging

    from e2m_live.commands.serve import add_arguments
    from e2m_live.live.config import config_from_args
    from e2m_live.live.daemon import Daemon
    from e2m_live.live.jack_midi import JackMidiOutput
    from e2m_live.live.realtime import DAEMON_PRIORITY, make_realtime

    # The daemon's log says why a bar was late; E2M_SOAK_ENGINE_DEBUG=1 adds when each section's bars
    # arrived (a line a second from the engine thread).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.environ.get("E2M_SOAK_ENGINE_DEBUG"):
        logging.getLogger("e2m_live.live.engine").setLevel(logging.DEBUG)
    parser = ap.ArgumentParser(prog="soak-serve")
    add_arguments(parser)
    config = config_from_args(parser.parse_args(serve_args))
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sys.setswitchinterval(0.0005)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    daemon = Daemon(config, record_timing=True)
    daemon.start()
    if config.realtime:
        make_realtime(threading.get_native_id(), DAEMON_PRIORITY)

    def drain() -> None:
        if config.realtime:  # holding the GIL, it must not be preempted (see e2m_live/live/realtime.py)
            make_realtime(threading.get_native_id(), DAEMON_PRIORITY)
        # A frame-accurate JACK output: a message's error is how far after its frame it was written
        # (its send's own lateness is absorbed by the output's constant latency: "wake" figures).
        framed = next((o for o in daemon.outputs.outputs if isinstance(o, JackMidiOutput)), None)
        if framed is not None:
            framed.timing = []
        with open(timing_file, "a") as out:
            while not stop.wait(TIMING_EVERY_S):
                player = daemon.player
                if player is None or player.timing is None:
                    continue
                taken, player.timing = player.timing, []
                wake = [abs(sent - deadline) * 1000 for deadline, sent in taken]
                errors = wake
                if framed is not None and framed.timing is not None:
                    frames, framed.timing = framed.timing, []
                    errors = [f * 1000 / framed.rate for f in frames]
                out.write(
                    json.dumps(
                        {
                            "t": time.monotonic(),
                            "n": len(errors),
                            "p50": percentile(errors, 0.5),
                            "p99": percentile(errors, 0.99),
                            "max": max(errors, default=None),
                            "over_1ms": sum(e > 1.0 for e in errors),
                            "framed": framed is not None,
                            "wake_p99": percentile(wake, 0.99),
                            "wake_over_1ms": sum(e > 1.0 for e in wake),
                            "callbacks": framed.callbacks if framed else None,
                            "slow_callbacks": framed.slow_callbacks if framed else None,
                            "worst_callback_start": framed.worst_callback_start if framed else None,
                            "callback_priority": framed.callback_priority if framed else None,
                        }
                    )
                    + "\n"
                )
                out.flush()

    threading.Thread(target=drain, name="soak-timing", daemon=True).start()
    try:
        daemon.wait(stop)
    finally:
        daemon.shutdown()
        print("e2m-live serve: stopped, all notes released", flush=True)
    return 0


# ---- process memory ------------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc/*/stat)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found += children
        frontier += children
    return found


# ---- the receiver's timing against the grid ---------------------------------------------------------


def grid_errors(times: list[float], tempo: float) -> list[float]:
    """|error| (ms) of note-on times against the position grid (12 a quarter) at ``tempo``, phase fitted.

    The grid's phase is the circular mean of the times modulo one position; what is left is
    detrended (least squares): the receiver stamps frames, and the dummy driver's frame clock runs
    a little slower than the wall clock the daemon plays by (about 0.05 % here), a steady drift,
    not jitter. The constant offset (the port's latency) goes with it."""
    if len(times) < 8:
        return []
    step = 60.0 / tempo / POSITIONS_PER_QUARTER
    angles = [2 * math.pi * ((t / step) % 1.0) for t in times]
    phase = math.atan2(sum(map(math.sin, angles)), sum(map(math.cos, angles))) / (2 * math.pi) * step
    residuals = [((t - phase + step / 2) % step) - step / 2 for t in times]
    try:
        slope, intercept = statistics.linear_regression(times, residuals)
    except statistics.StatisticsError:  # every note at one instant (a single chord)
        slope, intercept = 0.0, statistics.fmean(residuals)
    return [abs(r - intercept - slope * t) * 1000 for t, r in zip(times, residuals, strict=True)]


# ---- the run -------------------------------------------------------------------------------------


@dataclass
class Controls:
    """What the soak has set, and when the last change that moves the grid went out."""

    tempo: float
    beats: int = 4
    playing: bool = True
    grid_moved_at: float = 0.0
    sent: int = 0
    log: list[tuple[float, str, list]] = field(default_factory=list)


FEATURES = ("energy", "valence", "danceability", "acousticness", "instrumentalness", "loudness")
MOODS = ("happy", "sad", "calm", "angry", "tense", "dreamy", "triumphant", "melancholic")
ENSEMBLES = ("auto", "band", "rock", "electronic", "strings", "jazz", "piano", "orchestra")
#: (what, weight): mostly fader moves, as a performer makes them.
CHANGES = (
    ("feature", 12),
    ("mood", 2),
    ("tempo", 2),
    ("key", 2),
    ("key_lock", 1),
    ("ensemble", 1),
    ("sync", 1),
    ("stop_play", 1),
    ("panic", 1),
)


class Soak:
    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.rng = random.Random(args.seed)
        self.controls = Controls(tempo=args.tempo)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.feedback = {"bar": 0, "late_bars": 0, "lag_ms": 0.0}
        self.errors: list[str] = []
        self._quit = threading.Event()
        self.udp_port = 0

    def bar_seconds(self) -> float:
        return self.controls.beats * 60.0 / self.controls.tempo

    # -- OSC ---------------------------------------------------------------------------------------
    def send(self, address: str, *args) -> None:
        from e2m_live.live.osc import encode_message

        self.sock.sendto(encode_message(address, list(args)), ("127.0.0.1", self.udp_port))
        self.controls.log.append((time.monotonic(), address, list(args)))

    def listen(self) -> None:
        from pythonosc.osc_message import OscMessage

        while not self._quit.is_set():
            try:
                message = OscMessage(self.sock.recv(65536))
            except (TimeoutError, OSError):
                continue
            except Exception:  # a packet we cannot parse: not ours to judge here
                continue
            if message.address == "/e2m/state/lag":
                self.feedback["late_bars"], self.feedback["lag_ms"] = message.params[0], message.params[1]
            elif message.address == "/e2m/state/bar":
                self.feedback["bar"] += 1  # bars started (the daemon's own count restarts on play)
            elif message.address == "/e2m/state/tempo":  # a mood sets it too
                self.controls.tempo = float(message.params[0])
            elif message.address == "/e2m/state/time_signature":
                self.controls.beats = int(message.params[0])
            elif message.address == "/e2m/error":
                self.errors = [*self.errors[-19:], " ".join(map(str, message.params))]

    def change(self) -> None:
        """One change, drawn by weight."""
        rng, controls = self.rng, self.controls
        kind = rng.choices([c for c, _ in CHANGES], [w for _, w in CHANGES])[0]
        now = time.monotonic()
        if kind == "feature":
            name = rng.choice(FEATURES)
            value = round(rng.uniform(-40, -4), 1) if name == "loudness" else round(rng.random(), 3)
            self.send(f"/e2m/{name}", value)
        elif kind == "mood":
            self.send("/e2m/mood", rng.choice(MOODS))
            controls.grid_moved_at = now  # a mood sets the tempo too
        elif kind == "tempo":
            self.send("/e2m/tempo", float(rng.choice((84, 96, 108, 120, 132, 144))))
            controls.grid_moved_at = now
        elif kind == "key":
            self.send("/e2m/key", rng.randrange(12))
            self.send("/e2m/mode", rng.randrange(2))
        elif kind == "key_lock":
            self.send("/e2m/key_lock", round(rng.random(), 2))
        elif kind == "ensemble":
            self.send("/e2m/ensemble", rng.choice(ENSEMBLES))
        elif kind == "sync":
            # Alone in a Link session nothing starts the transport: back to internal after a bar.
            self.send("/e2m/sync", "link" if self.args.link else "internal")
            time.sleep(self.bar_seconds())
            self.send("/e2m/sync", "internal")
            controls.grid_moved_at = time.monotonic()
        elif kind == "stop_play":
            self.send("/e2m/stop")
            time.sleep(60.0 / controls.tempo)  # one beat of silence
            self.send("/e2m/play")
            controls.grid_moved_at = time.monotonic()
        elif kind == "panic":
            self.send("/e2m/panic")
            time.sleep(60.0 / controls.tempo)
            self.send("/e2m/play")
            controls.grid_moved_at = time.monotonic()
        controls.sent += 1

    # -- the daemon --------------------------------------------------------------------------------
    def start_daemon(self, midi_name: str, timing_file: Path, record: Path | None):
        serve = [
            "--generator",
            self.args.generator,
            "--midi-api",
            "jack",
            "--midi-name",
            midi_name,
            "--udp-port",
            "0",
            "--tcp-port",
            "-1",
            "--tempo",
            str(self.args.tempo),
            "--no-web",
        ]
        serve += ["--record", str(record)] if record else []
        if self.args.jack_latency_ms is not None:
            serve += ["--jack-latency-ms", str(self.args.jack_latency_ms)]
        serve += ["--keep-awake"] if self.args.keep_awake else []
        if self.args.plain:
            command = [
                sys.executable,
                "-c",
                "import sys; from e2m_live.cli import main; sys.exit(main())",
                "serve",
                *serve,
            ]
        else:
            command = [sys.executable, __file__, "--serve-child", str(timing_file), "--", *serve]
        log = open(self.out / "daemon.log", "w")  # noqa: SIM115 - the daemon's whole life
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            log.write(line)
            if match := re.search(r"OSC udp [\d.]+:(\d+)", line):
                self.udp_port = int(match.group(1))
            if line.strip().startswith("ready") or time.monotonic() > deadline:
                break
        if not self.udp_port or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"the daemon did not start; see {self.out / 'daemon.log'}")

        def drain() -> None:
            for line in proc.stdout:
                log.write(line)
            log.close()

        threading.Thread(target=drain, daemon=True).start()
        return proc


def track_sounding(received: list, sounding: dict[tuple[int, int], float]) -> list[float]:
    """Update the (channel, pitch) keys sounding at the receiver, each with its note-on's arrival
    (monotonic), from ``received`` (note-ons, note-offs, All Notes / Sound Off); returns the JACK
    times of the note-ons."""
    note_ons = []
    for r in received:
        message = r.message
        if len(message) < 3:
            continue
        status, key = message[0] & 0xF0, (message[0] & 0x0F, message[1])
        if status == 0x90 and message[2] > 0:
            sounding[key] = r.arrival
            note_ons.append(r.jack_time)
        elif status in (0x80, 0x90):
            sounding.pop(key, None)
        elif status == 0xB0 and message[1] in (120, 123):
            for other in [k for k in sounding if k[0] == key[0]]:
                del sounding[other]
    return note_ons


def all_notes_off_channels(received: list, since: float) -> set[int]:
    """Channels on which an All Notes Off (CC 123) arrived at ``since`` (monotonic) or later."""
    return {
        r.message[0] & 0x0F
        for r in received
        if r.arrival >= since and len(r.message) >= 2 and r.message[0] & 0xF0 == 0xB0 and r.message[1] == 123
    }


def sample_row(
    soak: Soak,
    pid: int,
    t_s: float,
    note_ons: list[float],
    timing: dict,
    open_notes: int,
    record: Path | None,
    xruns: int = 0,
) -> dict:
    """One CSV row: memory of the daemon and its children, bars, sender timing, the receiver's grid."""
    args = soak.args
    # Grid timing only over windows the grid did not move in (tempo, sync, transport).
    steady = time.monotonic() - soak.controls.grid_moved_at > args.sample_every + 4 * soak.bar_seconds()
    steady = steady and not xruns  # an XRun steps the dummy driver's frame clock (see JackFrameRecorder)
    grid = grid_errors(note_ons, soak.controls.tempo) if steady else []
    daemon_rss = rss_mb(pid) or 0.0
    children_rss = sum(rss_mb(child) or 0.0 for child in descendants(pid))
    return {
        "t_s": round(t_s, 1),
        "rss_daemon_mb": round(daemon_rss, 1),
        "rss_children_mb": round(children_rss, 1),
        "rss_total_mb": round(daemon_rss + children_rss, 1),
        "children": len(descendants(pid)),
        "bars": soak.feedback["bar"],
        "late_bars": soak.feedback["late_bars"],
        **timing,
        "receiver_note_ons": len(note_ons),
        "receiver_grid_p99_ms": _round(percentile(grid, 0.99)),
        "xruns": xruns,
        "open_notes": open_notes,
        "record_bytes": record.stat().st_size if record and record.exists() else 0,
        "changes": soak.controls.sent,
    }


def run(args: argparse.Namespace) -> dict:
    from e2m_live.testing.jack import JackFrameRecorder, jack_server, jack_xruns

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    soak = Soak(args, out)
    record = out / "soak.mid" if args.record else None
    timing_file = out / "sender_timing.jsonl"
    timing_file.write_text("")
    midi_name = f"e2m-soak-{os.getpid()}"
    rows: list[dict] = []
    result: dict = {
        "settings": vars(args),
        "machine": {"cpus": os.cpu_count(), "load_avg_before": os.getloadavg()},
    }
    with jack_server(f"e2msoak{os.getpid()}") as server:
        started = time.monotonic()
        proc = soak.start_daemon(midi_name, timing_file, record)
        result["ready_s"] = round(time.monotonic() - started, 2)
        receiver = JackFrameRecorder(f"e2m-soak-receiver-{os.getpid()}")
        receiver.connect(midi_name)
        listener = threading.Thread(target=soak.listen, daemon=True)
        listener.start()
        soak.send("/e2m/status")  # registers this socket for feedback
        soak.send("/e2m/play")
        t0 = time.monotonic()
        result["t0_monotonic"] = t0
        end = t0 + args.minutes * 60
        sounding: dict[tuple[int, int], float] = {}
        ending: list = []  # what arrived after the last sample
        terminated = float("inf")
        timing_offset = 0
        xruns_seen = receiver.xruns
        next_sample = t0 + args.sample_every
        next_change = t0 + 4 * soak.bar_seconds()
        # Ctrl-C or SIGTERM mid-run ends it as a finished run ends, so the summary, the hanging-note
        # check and the recording's check still come out (marked short); a second one aborts.
        stopping = threading.Event()
        previous = {
            sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while time.monotonic() < end and not stopping.is_set():
                now = time.monotonic()
                if proc.poll() is not None:
                    result["crash"] = f"daemon exited with {proc.returncode}"
                    break
                if now >= next_change:
                    soak.change()
                    next_change = time.monotonic() + args.change_every * soak.bar_seconds()
                if now >= next_sample:
                    window_ons = track_sounding(receiver.take(), sounding)
                    timing, timing_offset = read_timing(timing_file, timing_offset)
                    xruns, xruns_seen = receiver.xruns - xruns_seen, receiver.xruns
                    row = sample_row(
                        soak, proc.pid, now - t0, window_ons, timing, len(sounding), record, xruns
                    )
                    rows.append(row)
                    write_csv(out / "soak.csv", rows)
                    if args.verbose:
                        print(json.dumps(row), flush=True)
                    next_sample += args.sample_every
                time.sleep(0.01)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if stopping.is_set():
                result["interrupted_at_s"] = round(time.monotonic() - t0, 1)
                print(f"interrupted at {result['interrupted_at_s']} s: stopping", file=sys.stderr)
            # The end: stop, let the releases arrive, then SIGTERM.
            soak.send("/e2m/stop")
            time.sleep(1.0)
            terminated = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                result["exit_code"] = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                result["exit_code"] = "killed after 60 s"
            # The daemon's last word is CC 123 on all 16 channels: wait for it, not a fixed time.
            settled = time.monotonic() + 5.0
            while len(all_notes_off_channels(ending, terminated)) < 16 and time.monotonic() < settled:
                ending += receiver.take()
                time.sleep(0.05)
        finally:
            soak._quit.set()
            if proc.poll() is None:
                proc.kill()
            receiver.close()
            ending += receiver.take()
        track_sounding(ending, sounding)
        result["jack_xruns"] = jack_xruns(server)
    with open(out / "changes.jsonl", "w") as log:  # what was sent when (s into the run)
        for when, address, values in soak.controls.log:
            log.write(json.dumps([round(when - result.get("t0_monotonic", when), 2), address, values]) + "\n")
    result["hanging_notes_at_end"] = len(sounding)
    # Each (channel, pitch, its note-on in s into the run): enough to find it in the recording.
    t0 = result.get("t0_monotonic", 0.0)
    result["hanging_notes"] = [[ch, pitch, round(at - t0, 3)] for (ch, pitch), at in sorted(sounding.items())]
    result["all_notes_off_channels_at_end"] = len(all_notes_off_channels(ending, terminated))
    result["osc_errors"] = soak.errors
    result["changes_sent"] = soak.controls.sent
    result["rows"] = len(rows)
    if record is not None:
        result["recording"] = describe_recording(record)
    result.update(verdicts(rows, result, args))
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    if rows:
        with contextlib.suppress(ImportError):
            plot(rows, out / "soak.png", args)
    return result


def _round(value: float | None, digits: int = 3) -> float | str:
    return "" if value is None else round(value, digits)


def read_timing(path: Path, offset: int) -> tuple[dict, int]:
    """The daemon's send-error summaries written since ``offset``, merged (p99 and max: the worst)."""
    with open(path) as source:
        source.seek(offset)
        text = source.read()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        text = "".join(lines[:-1])
        lines = lines[:-1]
    chunks = [json.loads(line) for line in lines if line.strip()]
    chunks = [c for c in chunks if c["n"]]
    merged = {
        "sender_n": sum(c["n"] for c in chunks),
        "sender_p50_ms": _round(statistics.median(c["p50"] for c in chunks)) if chunks else "",
        "sender_p99_ms": _round(max(c["p99"] for c in chunks)) if chunks else "",
        "sender_max_ms": _round(max(c["max"] for c in chunks)) if chunks else "",
    }
    return merged, offset + len(text.encode())


def write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def describe_recording(path: Path) -> dict:
    """``e2m-live describe`` on the recording: exit code and the bars it found; size; tracks."""
    command = [
        sys.executable,
        "-c",
        "import sys; from e2m_live.cli import main; sys.exit(main())",
        "describe",
        str(path),
        "--json",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    info: dict = {
        "path": str(path),
        "bytes": path.stat().st_size if path.exists() else 0,
        "describe_exit": done.returncode,
    }
    if done.returncode == 0:
        with contextlib.suppress(json.JSONDecodeError, KeyError):
            info["described_bars"] = len(json.loads(done.stdout)["bars"])
    else:
        info["describe_error"] = done.stderr.strip()[-300:]
    with contextlib.suppress(Exception):
        import mido

        midi = mido.MidiFile(str(path))
        info["tracks"] = len(midi.tracks)
        info["seconds"] = round(midi.length, 1)
    return info


def window_medians(rows: list[dict], window: float) -> list[float]:
    """Median ``rss_total_mb`` of consecutive ``window``-second spans from the first row on (the last
    span is the last ``window`` seconds, so it may overlap the one before)."""
    if not rows:
        return []
    start, end = rows[0]["t_s"], rows[-1]["t_s"]
    starts = [start + k * window for k in range(max(1, int((end - start) // window)))]
    if end - window > starts[-1]:
        starts.append(end - window)
    return [
        round(statistics.median(r["rss_total_mb"] for r in rows if s <= r["t_s"] <= s + window), 1)
        for s in starts
    ]


def verdicts(rows: list[dict], result: dict, args: argparse.Namespace) -> dict:
    """The targets of issue 20 against this run (see the module docstring)."""
    out: dict = {}
    settle = 300.0 if args.minutes > 10 else args.minutes * 60 / 2
    after = [r for r in rows if r["t_s"] >= settle]
    if after:
        base = after[0]["rss_total_mb"]
        peak = max(r["rss_total_mb"] for r in after)
        out["rss_mb"] = {
            "at_settle": base,
            "peak_after": peak,
            "last": after[-1]["rss_total_mb"],
            "peak_overall": max(r["rss_total_mb"] for r in rows),
            "settle_s": settle,
        }
        # The worker's RSS swings with the section it decodes (+-25 MB between samples), so a sample
        # at minute 5 against the highest one after mixes that swing into growth. Growth is the level:
        # the median of the last window against the median of the first window after settling
        # (10 minutes in a long run); the worst window and the single-sample peak are reported.
        span = after[-1]["t_s"] - after[0]["t_s"]
        window = 600.0 if span >= 1800 else max(span / 3, 1.0)
        medians = window_medians(after, window)
        if medians and medians[0]:
            out["rss_mb"]["window_s"] = window
            out["rss_mb"]["window_medians"] = medians
            out["rss_growth_pct"] = round(100 * (medians[-1] - medians[0]) / medians[0], 2)
            out["rss_mb"]["worst_window_pct"] = round(100 * (max(medians) - medians[0]) / medians[0], 2)
        out["rss_mb"]["peak_growth_pct"] = round(100 * (peak - base) / base, 2) if base else None
    warm = [r for r in rows if r["t_s"] >= min(60.0, args.minutes * 60 / 2)]
    late_start = warm[0]["late_bars"] if warm else 0
    out["late_bars"] = {
        "total": rows[-1]["late_bars"] if rows else None,
        "after_first_minute": (rows[-1]["late_bars"] - late_start) if warm else None,
        "first_minute": late_start,
        "bars_played": rows[-1]["bars"] if rows else 0,
    }
    span = 600.0 if args.minutes >= 20 else args.minutes * 60 / 2
    total = rows[-1]["t_s"] if rows else 0.0
    timing = Path(args.out) / "sender_timing.jsonl"
    t0 = result.get("t0_monotonic")
    if t0 is None and timing.exists():  # runs before t0 was kept: the first summary comes ~5 s in
        first_line = timing.read_text().split("\n", 1)[0]
        t0 = json.loads(first_line)["t"] - TIMING_EVERY_S if first_line else None
    out["sender"] = {
        "span_s": span,
        "first": sender_span(timing, t0, 0.0, span) if t0 else None,
        "last": sender_span(timing, t0, total - span, total) if t0 else None,
    }
    grid = [r["receiver_grid_p99_ms"] for r in rows if r["receiver_grid_p99_ms"] != ""]
    out["receiver_grid_p99_ms"] = {
        "median_window": statistics.median(grid) if grid else None,
        "worst_window": max(grid, default=None),
        "jack_period_ms": round(1000 * JACK_PERIOD_FRAMES / JACK_RATE, 2),
    }
    recording = result.get("recording")
    checks = {
        "rss_growth_le_5pct": out.get("rss_growth_pct") is not None and out["rss_growth_pct"] <= 5.0,
        "no_late_bars": out["late_bars"]["after_first_minute"] == 0,
        "sender_p99_le_1ms": all(
            out["sender"][k] and out["sender"][k]["p99_le_1ms"] for k in ("first", "last")
        ),
        "no_hanging_notes": result.get("hanging_notes_at_end") == 0,
        "recording_reads_back": None if recording is None else recording.get("describe_exit") == 0,
        "no_crash": "crash" not in result and result.get("exit_code") == 0,
        "ran_full_length": "interrupted_at_s" not in result,
    }
    out["verdicts"] = checks
    return out


def sender_span(path: Path, t0: float, start: float, end: float) -> dict:
    """The daemon's send error from ``start`` to ``end`` s into the run: messages, the share over 1 ms
    (p99 <= 1 ms exactly when it is <= 1 %), median of the windows' p50, worst window's p99 and max."""
    chunks = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    chunks = [c for c in chunks if c["n"] and start <= c["t"] - t0 <= end + TIMING_EVERY_S]
    n = sum(c["n"] for c in chunks)
    over = sum(c["over_1ms"] for c in chunks)
    return {
        "messages": n,
        "over_1ms": over,
        "share_over_1ms_pct": round(100 * over / n, 3) if n else None,
        "p99_le_1ms": bool(n) and over <= 0.01 * n,
        "p50_ms": round(statistics.median(c["p50"] for c in chunks), 3) if chunks else None,
        "worst_window_p99_ms": round(max(c["p99"] for c in chunks), 3) if chunks else None,
        "max_ms": round(max(c["max"] for c in chunks), 3) if chunks else None,
    }


def analyse(out: Path, args: argparse.Namespace) -> dict:
    """Verdicts and plot again from a finished run's files (``--analyse OUT``)."""
    with open(out / "soak.csv") as source:
        rows = [{k: float(v) if v != "" else "" for k, v in row.items()} for row in csv.DictReader(source)]
    result = json.loads((out / "soak.json").read_text())
    saved = result.get("settings", {})
    args.minutes, args.generator = saved.get("minutes", args.minutes), saved.get("generator", args.generator)
    args.change_every = saved.get("change_every", args.change_every)
    result.update(verdicts(rows, result, args))
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    with contextlib.suppress(ImportError):
        plot(rows, out / "soak.png", args)
    return result


def plot(rows: list[dict], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    ax = axes[0]
    for key, label in (
        ("rss_total_mb", "daemon + worker"),
        ("rss_children_mb", "worker (children)"),
        ("rss_daemon_mb", "daemon"),
    ):
        ax.plot(minutes, [r[key] for r in rows], label=label)
    ax.axhline(600, color="grey", linestyle=":", label="600 MB bound")
    ax.set_ylabel("RSS (MB)")
    ax.legend(loc="center right", fontsize=8)
    ax = axes[1]
    ax.plot(minutes, [r["late_bars"] for r in rows], label="repeated (late) bars, cumulative")
    ax.plot(minutes, [r["open_notes"] for r in rows], label="notes open at the receiver", alpha=0.6)
    ax.set_ylabel("count")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[2]

    def series(key: str) -> tuple[list[float], list[float]]:
        pairs = [(m, r[key]) for m, r in zip(minutes, rows, strict=True) if r[key] != ""]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    ax.plot(*series("sender_p99_ms"), ".", markersize=3, label="sender p99 (window)")
    ax.plot(*series("receiver_grid_p99_ms"), ".", markersize=3, label="JACK receiver vs grid, p99 (window)")
    ax.axhline(1.0, color="grey", linestyle=":")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[3]
    ax.plot(minutes, [r["record_bytes"] / 1024 for r in rows])
    ax.set_ylabel("recording (KiB)")
    ax.set_xlabel("minutes")
    fig.suptitle(
        f"soak: {args.generator} generator, a change every {args.change_every:g} bars, {args.minutes:g} min"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve-child"]:
        return serve_child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument(
        "--generator",
        default="model",
        help="model (default), rules or a path such as e2m_live.testing.load:rules_with_load",
    )
    parser.add_argument("--tempo", type=float, default=120.0)
    parser.add_argument("--change-every", type=float, default=2.0, help="bars between changes")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between CSV rows")
    parser.add_argument("--record", action="store_true", help="record to OUT/soak.mid (and check it)")
    parser.add_argument(
        "--no-link",
        dest="link",
        action="store_false",
        help="sync switches stay on internal (Link needs the optional aalink)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="run `e2m-live serve` itself (no sender figures)"
    )
    parser.add_argument(
        "--keep-awake", action="store_true", help="serve with --keep-awake (idle CPUs never halt)"
    )
    parser.add_argument(
        "--jack-latency-ms",
        type=float,
        default=None,
        help="the daemon's --jack-latency-ms (default: its own, frame-accurate; 0: rtmidi sends at once)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="soak-out", help="folder for soak.csv, soak.png, soak.json")
    parser.add_argument("--verbose", action="store_true", help="print every row")
    parser.add_argument("--analyse", action="store_true", help="only recompute verdicts and plot in --out")
    args = parser.parse_args(argv)
    if args.analyse:
        result = analyse(Path(args.out), args)
        keys = ("rss_mb", "rss_growth_pct", "late_bars", "sender", "receiver_grid_p99_ms", "verdicts")
        print(json.dumps({k: result[k] for k in keys if k in result}, indent=2))
        return 0
    # SIGTERM (timeout, a CI runner) ends the run like Ctrl-C: the daemon and JACK are taken down.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.link:
        try:
            import aalink  # noqa: F401
        except ImportError:
            args.link = False
    result = run(args)
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=2))
    return 0 if all(v in (True, None) for v in result.get("verdicts", {}).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
