"""Real components for the live tests: a private JACK server, a JACK MIDI recorder client, the
daemon as a subprocess, and an OSC client. Import the fixtures into test modules."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from e2m_live.live.osc import encode_message

REPO = Path(__file__).resolve().parents[1]
#: `e2m-live` without relying on the console script (``-m e2m_live.cli`` would import cli twice).
CLI = (sys.executable, "-c", "import sys; from e2m_live.cli import main; sys.exit(main())")


def wait_until(predicate, timeout: float = 5.0, step: float = 0.01) -> bool:
    """Poll ``predicate()`` until it is true (True) or ``timeout`` seconds pass (False): assert
    the result, a wait that times out must fail the test."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def jack_available() -> bool:
    if shutil.which("jackd") is None:
        return False
    try:
        import rtmidi
    except ImportError:
        return False
    return rtmidi.API_UNIX_JACK in rtmidi.get_compiled_api()


@contextlib.contextmanager
def jack_server(name: str | None = None, period: int = 256, rate: int = 48000) -> Iterator[str]:
    """A private dummy-driver JACK server (own name via JACK_DEFAULT_SERVER), torn down after.

    A JACK MIDI port buffer holds one audio period's worth of bytes (``4 * period``): short
    periods at 48 kHz overflow on chords and drop events, so short *times* are made with a
    higher rate (192 kHz, 128 frames: 0.67 ms, 512 bytes)."""
    name = name or f"e2mtest{os.getpid()}p{period}"
    env = {**os.environ, "JACK_NO_START_SERVER": "1"}
    log = open(f"/tmp/jackd-{name}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(period)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    old = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    try:
        import rtmidi

        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jackd exited: {Path(log.name).read_text()[-500:]}")
            try:
                probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="e2m-probe")
                probe.delete()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError("jackd did not come up in 10 s") from None
                time.sleep(0.1)
        yield name
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def jack() -> Iterator[str]:
    if not jack_available():
        pytest.skip("jackd or python-rtmidi JACK support missing")
    with jack_server() as name:
        yield name


@dataclass
class Received:
    """One MIDI message at the recorder: arrival (monotonic) and JACK time (seconds)."""

    arrival: float
    jack_time: float
    message: list[int]


class JackMidiRecorder:
    """A second JACK client that connects to the daemon's port and records what arrives."""

    def __init__(self, client_name: str = "e2m-test-recorder", timing: bool = False) -> None:
        import rtmidi

        self._rtmidi = rtmidi
        self.client_name = client_name
        self.midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=client_name, queue_size_limit=65536)
        self.midi_in.ignore_types(True, not timing, True)
        self.received: list[Received] = []
        self._jack_clock = 0.0
        self._lock = threading.Lock()
        # Polled, not a callback: a callback would make JACK's process thread wait for this
        # process's GIL, and a test thread holding it would delay (bunch) the JACK timestamps.
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="recorder-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        from e2m_live.live.realtime import make_realtime

        # Real-time where permitted: preempted while holding this process's GIL, this thread
        # would stall a JackClockMaster in the same process (priority inversion).
        make_realtime(threading.get_native_id(), 25)
        while not self._closed.is_set():
            event = self.midi_in.get_message()
            if event is None:
                time.sleep(0.0005)
                continue
            self._on_message(event)

    def _on_message(self, event, _data=None) -> None:
        message, delta = event
        now = time.monotonic()
        with self._lock:
            self._jack_clock += delta
            self.received.append(Received(now, self._jack_clock, list(message)))

    def connect(self, port_part: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = self.midi_in.get_ports()
            for index, name in enumerate(ports):
                if port_part in name:
                    self.midi_in.open_port(index, "in")
                    return name
            time.sleep(0.05)
        raise AssertionError(f"no JACK MIDI port containing {port_part!r}: {self.midi_in.get_ports()}")

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def note_ons(self, since: float = 0.0, until: float = float("inf")) -> list[Received]:
        return [r for r in self.snapshot() if r.message[0] & 0xF0 == 0x90 and r.message[2] > 0
                and since <= r.arrival < until]

    def open_notes(self) -> set[tuple[int, int]]:
        """(channel, pitch) with a note-on and no note-off yet (CC 123/120 are not counted)."""
        sounding: set[tuple[int, int]] = set()
        for r in self.snapshot():
            status, data = r.message[0] & 0xF0, r.message
            if len(data) < 3:
                continue
            key = (data[0] & 0x0F, data[1])
            if status == 0x90 and data[2] > 0:
                sounding.add(key)
            elif status in (0x80, 0x90):
                sounding.discard(key)
        return sounding

    def close(self) -> None:
        self._closed.set()
        self._poller.join(1.0)
        self.midi_in.close_port()
        self.midi_in.delete()


@dataclass
class DaemonProcess:
    """``e2m-live serve`` as a subprocess, with its OSC ports parsed from its startup output."""

    proc: subprocess.Popen
    udp_port: int
    tcp_port: int
    midi_name: str
    startup: list[str] = field(default_factory=list)
    started_in: float = 0.0

    def send(self, address: str, *args) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(encode_message(address, list(args)), ("127.0.0.1", self.udp_port))

    def send_raw(self, sock: socket.socket, data: bytes) -> None:
        sock.sendto(data, ("127.0.0.1", self.udp_port))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not exit after the signal") from None


def start_daemon(*extra: str, midi_name: str | None = None, timeout: float = 15.0) -> DaemonProcess:
    """Start ``e2m-live serve`` on free ports with a JACK virtual output; wait until ready."""
    midi_name = midi_name or f"e2m-live-test-{os.getpid()}-{time.monotonic_ns() % 100000}"
    command = [*CLI, "serve", "--generator", "rules", "--midi-api", "jack",
               "--midi-name", midi_name, "--udp-port", "0", "--tcp-port", "0", *extra]
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    udp = tcp = None
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if match := re.search(r"OSC udp [\d.]+:(\d+)", line):
            udp = int(match.group(1))
        if match := re.search(r"OSC tcp [\d.]+:(\d+)", line):
            tcp = int(match.group(1))
        if line.strip().startswith("ready"):
            break
    else:
        proc.kill()
        raise AssertionError("daemon not ready in time:\n" + "\n".join(lines))
    if udp is None or tcp is None:
        proc.kill()
        raise AssertionError("daemon did not report its ports:\n" + "\n".join(lines))
    # Keep draining its output so it never blocks on a full pipe.
    threading.Thread(target=_drain, args=(proc, lines), daemon=True).start()
    return DaemonProcess(proc, udp, tcp, midi_name, lines, time.monotonic() - started)


def _drain(proc: subprocess.Popen, lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())


def collect_osc(sock: socket.socket, wait: float) -> list[tuple[str, list]]:
    """Every OSC message that arrives on ``sock`` within ``wait`` seconds (sock needs a timeout)."""
    from pythonosc.osc_message import OscMessage

    replies = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            message = OscMessage(sock.recv(65536))
        except TimeoutError:
            continue
        replies.append((message.address, list(message.params)))
    return replies


def osc_request(port: int, address: str, *args, wait: float = 1.0) -> list[tuple[str, list]]:
    """Send one message over UDP and collect the replies that arrive within ``wait`` seconds."""
    from pythonosc.osc_message import OscMessage

    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(encode_message(address, list(args)), ("127.0.0.1", port))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if replies:
                    break
                continue
            message = OscMessage(data)
            replies.append((message.address, list(message.params)))
    return replies


def jack_connect(source: str, destination: str) -> None:
    """Connect two JACK ports by full name (on the server in JACK_DEFAULT_SERVER)."""
    subprocess.run(["jack_connect", source, destination], check=True, capture_output=True, timeout=10)


def jack_port_names() -> list[str]:
    result = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10)
    return result.stdout.split("\n")


@dataclass
class MasterEvent:
    """One message the test master sent: its deadline, when it went out, and what."""

    deadline: float
    sent: float
    message: tuple[int, ...]


class JackClockMaster:
    """A MIDI clock master for tests: a JACK MIDI output that sends 24 ppqn pulses, Start and
    Stop at absolute monotonic deadlines from its own thread (sleep, then spin)."""

    def __init__(self, client_name: str = "e2m-test-master") -> None:
        import rtmidi

        self.client_name = client_name
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=client_name)
        self.sent: list[MasterEvent] = []
        self._thread: threading.Thread | None = None

    def connect(self, port_part: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, name in enumerate(self.out.get_ports()):
                if port_part in name:
                    self.out.open_port(index, "clock")
                    return name
            time.sleep(0.05)
        raise AssertionError(f"no JACK MIDI input containing {port_part!r}: {self.out.get_ports()}")

    @property
    def port(self) -> str:
        return f"{self.client_name}:clock"

    def play(self, events: list[tuple[float, tuple[int, ...]]]) -> None:
        """Send ``(deadline, message)`` events in order, in the background."""
        self._thread = threading.Thread(target=self._run, args=(sorted(events),), daemon=True)
        self._thread.start()

    def _run(self, events: list[tuple[float, tuple[int, ...]]]) -> None:
        from e2m_live.live.realtime import make_realtime

        make_realtime(threading.get_native_id(), 30)  # best effort: a master keeps its time
        for deadline, message in events:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(remaining - 0.0015 if remaining > 0.002 else 0)
            self.out.send_message(list(message))
            self.sent.append(MasterEvent(deadline, time.monotonic(), message))

    def wait(self, timeout: float = 60.0) -> bool:
        """Whether the performance finished within ``timeout`` seconds."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def close(self) -> None:
        self.out.close_port()
        self.out.delete()


def clock_schedule(start: float, segments: list[tuple[float, float]], pre_roll_beats: float = 1.0,
                   stop_after: bool = True) -> tuple[list[tuple[float, tuple[int, ...]]], list[float]]:
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


def jack_seconds(received: list[Received]) -> list[float]:
    """The recorder's JACK times moved onto the monotonic timeline (smallest arrival delay)."""
    if not received:
        return []
    offset = min(r.arrival - r.jack_time for r in received)
    return [r.jack_time + offset for r in received]


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
    a, b = _fit(xs, pulses[k - window:k])
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


def follow_figures(master: list[Received], daemon: list[Received], segments: list[tuple[float, float]],
                   beats_per_bar: int, settle_beats: float = 2.0) -> FollowFigures:
    """Compare the daemon's note-ons with the master's pulses, each heard by its own JACK recorder
    (one port fed by both would merge them, and JACK drops events when a merged buffer fills)."""
    events = sorted([*zip(jack_seconds(master), master, strict=True),
                     *zip(jack_seconds(daemon), daemon, strict=True)], key=lambda e: e[0])
    start_at = next(t for t, r in events if r.message[0] == 0xFA)
    stop_at = next((t for t, r in events if r.message[0] == 0xFC), float("inf"))
    resumed_at = next((t for t, r in events if r.message[0] == 0xFB), float("inf"))
    pulses = [t for t, r in events if r.message[0] == 0xF8 and start_at <= t < stop_at]
    onsets = [t for t, r in events if r.message[0] & 0xF0 == 0x90 and r.message[2] > 0]
    per_bar = 24 * beats_per_bar
    bar_errors, lateness, missing = [], [], 0
    for k in range(0, len(pulses), per_bar):
        near = [t - pulses[k] for t in onsets if abs(t - pulses[k]) < 0.06]
        if near:
            bar_errors.append(min(near, key=abs))
            lateness.append(_lateness(pulses, k))
        else:
            missing += 1
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
    return FollowFigures(bar_errors, lateness, missing, tempo_errors, len(after), len(sounding),
                         last_off - stop_at)


def continue_error(master: list[Received], daemon: list[Received]) -> float | None:
    """The daemon's first note-on after the master's Continue minus the first pulse after it
    (the bar line the master resumes on), in seconds; None if either is missing."""
    events = sorted([*zip(jack_seconds(master), master, strict=True),
                     *zip(jack_seconds(daemon), daemon, strict=True)], key=lambda e: e[0])
    resumed_at = next((t for t, r in events if r.message[0] == 0xFB), None)
    if resumed_at is None:
        return None
    pulse = next((t for t, r in events if r.message[0] == 0xF8 and t > resumed_at), None)
    onset = next((t for t, r in events if r.message[0] & 0xF0 == 0x90 and r.message[2] > 0
                  and t > resumed_at - 0.05), None)
    return None if pulse is None or onset is None else onset - pulse


def resume_schedule(after: float, position_beats: float, bpm: float, beats: float
                    ) -> list[tuple[float, tuple[int, ...]]]:
    """A master's Song Position + Continue ``after`` seconds (monotonic), then ``beats`` of clock
    from ``position_beats`` (a bar line), then Stop."""
    interval = 60.0 / (bpm * 24)
    sixteenths = round(position_beats * 4)
    events = [(after, (0xF2, sixteenths & 0x7F, sixteenths >> 7)),
              (after + 0.2 - interval / 2, (0xFB,))]
    t = after + 0.2
    for _ in range(round(beats * 24)):
        events.append((t, (0xF8,)))
        t += interval
    events.append((t - interval / 2, (0xFC,)))
    return events


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


def jack_xruns(server: str) -> int:
    """XRuns the private server logged so far (clients that did not finish their cycle)."""
    try:
        return Path(f"/tmp/jackd-{server}.log").read_text().count("XRun")
    except OSError:
        return 0
