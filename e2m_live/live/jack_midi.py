"""A JACK MIDI output that puts every message on its exact frame, a fixed latency after its deadline.

python-rtmidi's JACK backend sends "now": the message waits in a queue for the next process cycle
and goes out at frame 0 of it, so what a DAW records is quantised to the period (5.3 ms at 256
frames, 48 kHz) on top of however late the player's thread woke up. Here the player's deadline
(monotonic seconds) is mapped to a JACK frame with ``jack_frame_time`` read beside
``time.monotonic`` at send time, plus a constant :attr:`JackMidiOutput.latency`; the process
callback (JACK's thread, via the JACK-Client package) writes each message at its frame offset.
A message reaches its frame exactly as long as the player sent it less than ``latency`` minus one
period late; later ones go out at the start of the cycle being built and are counted
(:attr:`JackMidiOutput.late`). The constant latency is what a DAW compensates like any output
latency; with ``--sync midi`` or ``link`` the daemon plays that much ahead (see ``daemon.py``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any

from e2m_live.live.outputs import Message, Output, OutputError, match_port, midi_api_problem
from e2m_live.live.realtime import JACK_CALLBACK_PRIORITY, raise_realtime

log = logging.getLogger(__name__)

#: Default constant latency: two periods of 5.3 ms would leave one period of slack; 10 ms leaves
#: 4.7 ms at 256 frames, 48 kHz (the player's sends are 0.1 ms late at the median, 2-5 ms in the
#: host's worst minutes).
DEFAULT_LATENCY_MS = 10.0
#: How long :meth:`JackMidiOutput.close` waits for the queue to drain before it lets the port go.
DRAIN_TIMEOUT_SECONDS = 1.0
FRAME_MASK, HALF_RANGE = 0xFFFFFFFF, 0x80000000
#: A frame/clock reading taken over a longer gap than this (the thread was preempted) is retaken,
#: up to :data:`MAPPING_ATTEMPTS` times; two frames at 48 kHz.
MAPPING_TOLERANCE_SECONDS, MAPPING_ATTEMPTS = 0.00005, 3


def import_jack() -> Any:
    """The ``jack`` module (JACK-Client); OutputError where it or libjack is missing."""
    try:
        import jack
    except (ImportError, OSError) as error:
        raise OutputError(
            f"frame-accurate JACK MIDI needs the JACK-Client package and libjack ({error})"
        ) from None
    return jack


def _is_note_on(data: bytes) -> bool:
    return len(data) >= 3 and data[0] & 0xF0 == 0x90 and data[2] > 0


class JackMidiOutput(Output):
    """A JACK MIDI port (virtual, optionally connected to ``port``) writing at exact frames."""

    def __init__(
        self,
        port: str | None = None,
        client_name: str = "e2m-live",
        port_name: str = "out",
        latency_ms: float = DEFAULT_LATENCY_MS,
    ) -> None:
        os.environ.setdefault("JACK_NO_START_SERVER", "1")
        jack = import_jack()
        try:
            self._client = jack.Client(client_name, no_start_server=True)
        except jack.JackError as error:
            raise OutputError(f"cannot open jack MIDI: {midi_api_problem('jack')} ({error})") from None
        client = self._client
        self.rate = int(client.samplerate)
        period = client.blocksize / self.rate
        if latency_ms / 1000.0 < period + 0.001:
            log.warning(
                "JACK latency %.1f ms is under one period (%.1f ms) + 1 ms: raised to that",
                latency_ms,
                period * 1000,
            )
        #: Seconds from a message's deadline to the frame it is written at.
        self.latency = max(latency_ms / 1000.0, period + 0.001)
        self._latency_frames = round(self.latency * self.rate)
        self._queue: deque[tuple[int, bytes]] = deque()
        #: When a list: frames each written message came after its target (0: on its frame).
        self.timing: list[int] | None = None
        self._lock = threading.Lock()  # one sender at a time: frames in queue order
        self._gone = ""  # why the server let us go, once it has
        #: Messages written after their frame (the sender was later than the slack), and the worst.
        self.late = 0
        self.worst_late_frames = 0
        self.written = 0
        #: Process callbacks, those that began more than half a period into their cycle, the latest
        #: start (frames): the cost of running the callback in Python, under the GIL.
        self.callbacks = 0
        self.slow_callbacks = 0
        self.worst_callback_start = 0
        #: The SCHED_FIFO priority the callback's thread runs at (None until the first callback).
        self.callback_priority: int | None = None
        self._port = client.midi_outports.register(port_name)
        client.set_process_callback(self._process)
        client.set_shutdown_callback(self._on_shutdown)
        client.activate()
        self.name = f"jack virtual port '{self._port.name}' (frame-accurate, +{self.latency * 1000:.1f} ms)"
        if port is not None:
            self._connect(port)

    def _connect(self, wanted: str) -> None:
        inputs = [p.name for p in self._client.get_ports(is_midi=True, is_input=True)]
        inputs = [name for name in inputs if not name.startswith(self._client.name + ":")]
        index = match_port(wanted, inputs)
        if index is None:
            self._shut()
            raise OutputError(f"no jack MIDI port matches {wanted!r}; ports: {', '.join(inputs) or 'none'}")
        self._client.connect(self._port, inputs[index])
        self.name = f"jack port '{inputs[index]}' (frame-accurate, +{self.latency * 1000:.1f} ms)"

    def send(self, message: Message, when: float) -> None:
        if self._gone:
            raise OutputError(self._gone)
        with self._lock:
            frame, now = self._now()
            target = frame + round((when - now) * self.rate) + self._latency_frames
            self._queue.append((target & FRAME_MASK, bytes(message)))

    def _now(self) -> tuple[int, float]:
        """The frame JACK estimates for now and our clock's now, read back to back (the offset
        between the two timelines follows the audio clock's drift). A thread preempted between the
        two reads would map every message of that send by the gap: read again if it exceeds
        :data:`MAPPING_TOLERANCE_SECONDS` (a sender without real-time priority on a busy machine)."""
        for _ in range(MAPPING_ATTEMPTS):
            before = time.monotonic()
            frame = self._client.frame_time
            after = time.monotonic()
            if after - before <= MAPPING_TOLERANCE_SECONDS:
                break
        return frame, (before + after) / 2

    def _process(self, frames: int) -> None:
        """JACK's thread, once a period: write every queued message whose frame is in this cycle."""
        # How far into the cycle this callback began: it waits for this process's GIL, and one that
        # starts after its period is over makes the server's cycle late (an XRun for every client).
        entered = self._client.frames_since_cycle_start
        if self.callback_priority is None:
            # jackd2 gives its clients' threads the server's priority minus 5 (5 by default),
            # below the daemon's player; raise it, once, from inside the thread.
            self.callback_priority = raise_realtime(JACK_CALLBACK_PRIORITY)
        self.callbacks += 1
        if entered > frames // 2:
            self.slow_callbacks += 1
        self.worst_callback_start = max(self.worst_callback_start, entered)
        port = self._port
        port.clear_buffer()
        queue = self._queue
        start = self._client.last_frame_time
        timing = self.timing
        floor = 0  # offsets in a buffer must not decrease
        while queue:
            target, data = queue[0]
            # Frame times are 32-bit and wrap (after 24.9 h at 48 kHz): compare them modulo 2**32.
            offset = ((target - start + HALF_RANGE) & FRAME_MASK) - HALF_RANGE
            if offset >= frames:
                break
            written = max(offset, floor)
            try:
                port.write_midi_event(written, data)
            except Exception:
                break  # the buffer is full: the rest go in the next cycle
            queue.popleft()
            floor = written
            self.written += 1
            late = written - offset
            if offset < 0:
                self.late += 1
                self.worst_late_frames = max(self.worst_late_frames, late)
            if timing is not None:
                timing.append(late)

    def discard_pending_notes(self) -> None:
        """Drop the queued note-ons: at a stop they are due after it (within the latency; following
        a master, after its Stop). Everything else stays: note-offs of notes that did start, CCs."""
        with self._lock:
            # The callback may pop from the old queue meanwhile: a message it writes and that is
            # kept here goes out twice, harmless for what is kept (no note-on is kept).
            kept = deque(item for item in list(self._queue) if not _is_note_on(item[1]))
            self._queue = kept

    def _on_shutdown(self, status: Any, reason: str) -> None:
        self._gone = f"the JACK server shut the client down ({reason or status})"

    def delivery_counts(self) -> tuple[int, int]:
        """Messages written and those written after their frame (sent later than the slack)."""
        return self.written, self.late

    def pending(self) -> int:
        """Messages queued and not yet written."""
        return len(self._queue)

    def close(self) -> None:
        deadline = time.monotonic() + self.latency + DRAIN_TIMEOUT_SECONDS
        while self._queue and not self._gone and time.monotonic() < deadline:
            time.sleep(0.002)
        if self._queue and not self._gone:
            log.warning("%d MIDI messages still queued for JACK at close", len(self._queue))
        time.sleep(2 * self._client.blocksize / self.rate)  # the last cycle reaches the reader
        self._shut()

    def _shut(self) -> None:
        try:
            if not self._gone:
                self._client.deactivate()
        finally:
            self._client.close()
