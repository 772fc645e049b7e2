"""JACK for tests and benchmarks: a private dummy-driver server, a MIDI recorder client, a MIDI clock
master client, and the server's XRun count. ``rtmidi`` is imported when a client is made."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


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
    proc = subprocess.Popen(
        ["jackd", "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(period)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
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


@dataclass
class Received:
    """One MIDI message at the recorder: arrival (monotonic) and JACK time (seconds)."""

    arrival: float
    jack_time: float
    message: list[int]


class _Recording:
    """What a recorder client received, shared by both recorders."""

    received: list[Received]
    _lock: threading.Lock

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def take(self) -> list[Received]:
        """What arrived since the last take, cleared in the same step (``snapshot`` then ``clear``
        would lose what arrives between the two)."""
        with self._lock:
            taken, self.received = self.received, []
        return taken

    def note_ons(self, since: float = 0.0, until: float = float("inf")) -> list[Received]:
        return [
            r
            for r in self.snapshot()
            if r.message[0] & 0xF0 == 0x90 and r.message[2] > 0 and since <= r.arrival < until
        ]

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


class JackMidiRecorder(_Recording):
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
        while True:
            event = self.midi_in.get_message()
            if event is None:
                if self._closed.is_set():
                    break  # closed and drained: what arrived before close() is kept
                time.sleep(0.0005)
                continue
            self._on_message(event)

    def _on_message(self, event: tuple[list[int], float], _data: object = None) -> None:
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
                    return str(name)
            time.sleep(0.05)
        raise AssertionError(f"no JACK MIDI port containing {port_part!r}: {self.midi_in.get_ports()}")

    def close(self) -> None:
        self._closed.set()
        self._poller.join(1.0)
        self.midi_in.close_port()
        self.midi_in.delete()


class JackFrameRecorder(_Recording):
    """A JACK client (the JACK-Client package) that stamps each message with the frame it arrived
    at: sample-exact times, where rtmidi stamps a whole process cycle with the time it read it.
    ``jack_time`` is that frame in seconds (``frame / rate``, unwrapped)."""

    def __init__(self, client_name: str = "e2m-test-frames") -> None:
        import jack

        self.client = jack.Client(client_name, no_start_server=True)
        self.rate = self.client.samplerate
        self.port = self.client.midi_inports.register("in")
        self.received = []
        self._lock = threading.Lock()
        self._last_start: int | None = None
        self._wraps = 0
        #: XRuns the server reported: the dummy driver's frame clock falls behind the wall clock at
        #: each, so frame-stamped timing across one has a step that is the driver's, not the sender's.
        self.xruns = 0
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._on_xrun)
        self.client.activate()

    def _process(self, frames: int) -> None:
        start = self.client.last_frame_time
        if self._last_start is not None and start < self._last_start:
            self._wraps += 1
        self._last_start = start
        base = start + (self._wraps << 32)
        now = time.monotonic()
        events = [(base + offset, list(bytes(data))) for offset, data in self.port.incoming_midi_events()]
        if events:
            with self._lock:
                self.received += [Received(now, frame / self.rate, message) for frame, message in events]

    def _on_xrun(self, _delay: float) -> None:
        self.xruns += 1

    def connect(self, port_part: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for port in self.client.get_ports(is_midi=True, is_output=True):
                if port_part in port.name:
                    self.client.connect(port, self.port)
                    return str(port.name)
            time.sleep(0.05)
        raise AssertionError(f"no JACK MIDI output port containing {port_part!r}")

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def jack_seconds(received: list[Received]) -> list[float]:
    """The recorder's JACK times moved onto the monotonic timeline (smallest arrival delay)."""
    if not received:
        return []
    offset = min(r.arrival - r.jack_time for r in received)
    return [r.jack_time + offset for r in received]


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
                    return str(name)
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


def jack_xruns(server: str) -> int:
    """XRuns the private server logged so far (clients that did not finish their cycle)."""
    try:
        return Path(f"/tmp/jackd-{server}.log").read_text().count("XRun")
    except OSError:
        return 0
