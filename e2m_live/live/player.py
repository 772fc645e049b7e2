"""The player thread: bars in, MIDI messages out at absolute deadlines.

All MIDI goes out from this one thread, so open-note bookkeeping needs no locks. Other threads
talk to it through :meth:`Player.play`, :meth:`Player.stop`, :meth:`Player.panic` and
:meth:`Player.shutdown` (queued, the thread wakes at once).

Guarantees:

* deadlines come from one :class:`~e2m_live.live.clock.Clock`; each event's time is computed
  from its beat when it is due, never by adding up sleeps;
* material and tempo change only at bar lines; a bar is fetched from the source
  ``prepare_ahead`` seconds before its bar line;
* if the source has no bar ready, the last bar is played again (the lag is counted and
  reported): no silence;
* every note-on gets its note-off: at its end, or at the bar line when the material switches,
  or on stop, panic, output loss and shutdown (then CC 123 and CC 120 on all 16 channels);
* with ``clock_out``, MIDI clock (24 pulses per quarter, Start/Stop/Continue, Song Position)
  goes out from the same deadline heap as the notes;
* on an external clock (MIDI clock in, Link) the first bar starts on the master's next bar line
  (bar lines are multiples of the bar length in the master's beats); while the master's
  transport is stopped nothing is scheduled;
* on stop, panic or a restart, the bars the source handed out and nobody heard in full (the bar
  being played, one fetched for the next bar line) go back to it (``give_back``, optional), so a
  stop costs the generator no material: the first bar after play is the interrupted one again.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from e2m_live.live.channels import ChannelMap
from e2m_live.live.clock import Clock, InternalClock
from e2m_live.live.midi_clock import CLOCK, CONTINUE, PPQN, START, STOP, song_position
from e2m_live.live.outputs import (
    ALL_NOTES_OFF,
    ALL_SOUND_OFF,
    CONTROL_CHANGE,
    NOTE_OFF,
    NOTE_ON,
    PROGRAM_CHANGE,
    Output,
    OutputSet,
)
from e2m_live.live.realtime import PLAYER_PRIORITY, make_realtime
from e2m_live.live.send_watch import LATE_SEND_SECONDS
from e2m_live.live.transform import Adaptation
from e2m_live.loudness import DB_PER_VELOCITY_DECADE
from e2m_live.music import DRUM_CHANNEL, Bar

log = logging.getLogger(__name__)

# Event kinds, in the order they go out when they share a beat (negative: MIDI clock out).
_TRANSPORT, _PULSE, _CUT, _OFF, _PROGRAM, _ON = -2, -1, 0, 1, 2, 3
#: On an external clock, a bar line passed by less than this is still played (e.g. the master's
#: Start arrives with, not before, its first pulse): its first notes go out at once.
_LATE_START_SECONDS = 0.03
#: How long shutdown waits for a send in progress on the player thread (one blocked output).
_LAST_WORD_SECONDS = 5.0
_MIN_DURATION = 1e-3  # quarters; a zero-length note still gets a note-off after its note-on


@dataclass(slots=True)
class PlannedBar:
    """A bar from the source. ``continues``: it directly follows the previous bar of the same
    section, so notes may ring over the bar line; otherwise sounding notes are cut there."""

    bar: Bar
    section: int = 0
    continues: bool = False
    lag_ms: float = 0.0  # how long the player held material waiting for it
    plan: str = ""
    repeat: bool = False  # material played again because the next bar was late
    loudness: float | None = None  # dB the velocities were made for; None: never scaled
    adaptation: Adaptation | None = None  # the immediate answers, applied as the bar is scheduled


class BarSource(Protocol):
    """Where the player's bars come from. A source may also have ``give_back(bars: int)``: the
    player stopped before the last ``bars`` bars it got (repeats not counted) were heard in full,
    and they should be handed out again (optional: the player looks it up)."""

    def next_bar(self) -> PlannedBar | None:
        """The bar to play next, or None if none is ready (never blocks)."""
        ...


@dataclass(slots=True)
class BarStarted:
    """Feedback for one bar line."""

    number: int  # running count since play
    index: int  # position within its section
    section: int
    repeated: bool
    late_bars: int  # bars repeated so far because material was late
    lag_ms: float
    tempo: float
    time: float  # monotonic time of the bar line
    plan: str = ""
    numerator: int = 4  # time signature of the bar
    denominator: int = 4
    bar: Bar | None = None  # the bar as decoded
    messages_sent: int = 0  # so far, and how many of them more than LATE_SEND_SECONDS late
    messages_late: int = 0
    adaptation: Adaptation | None = None  # and the immediate answers it was scheduled with
    gain: float = 1.0  # the loudness gain in force when it was scheduled


@dataclass(order=True, slots=True)
class _Event:
    beat: float
    kind: int
    seq: int
    message: tuple[int, ...] = field(compare=False, default=())
    token: int = field(compare=False, default=0)
    level: float = field(compare=False, default=0.0)  # note-on: 1 / gain of its bar's loudness; 0: as is


class Player:
    """Plays bars from ``source`` to ``outputs`` on ``clock``."""

    def __init__(
        self,
        clock: Clock,
        outputs: OutputSet,
        source: BarSource,
        *,
        tempo: Callable[[], float] | float = 120.0,
        on_bar: Callable[[BarStarted], None] | None = None,
        on_state: Callable[[bool], None] | None = None,
        on_output_lost: Callable[[str, str], None] | None = None,
        prepare_ahead: float = 0.015,
        start_delay: float = 0.05,
        record_timing: bool = False,
        record_messages: bool = False,
        realtime: bool = True,
        clock_out: OutputSet | None = None,
    ) -> None:
        self.clock = clock
        self.outputs = outputs
        self.clock_out = clock_out
        self.source = source
        self._tempo = tempo if callable(tempo) else (lambda: float(tempo))
        self.on_bar = on_bar
        self.on_state = on_state
        self.on_output_lost = on_output_lost
        self.prepare_ahead = prepare_ahead
        self.start_delay = start_delay
        self.realtime = realtime
        #: (deadline, actual send time) of every message, when ``record_timing``.
        self.timing: list[tuple[float, float]] | None = [] if record_timing else None
        #: With ``record_messages``: every message sent, in the order of :attr:`timing` (benchmarks
        #: pair them with what a receiver heard).
        self.sent_messages: list[tuple[int, ...]] | None = [] if record_messages else None
        self.playing = False
        self.late_bars = 0
        #: Messages sent, and those sent more than LATE_SEND_SECONDS after their deadline.
        self.messages_sent = 0
        self.messages_late = 0
        self.bar_number = -1
        self._commands: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._heap: list[_Event] = []
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self._open: dict[tuple[int, int], int] = {}  # (channel, pitch) -> token of the note sounding
        self._channels = ChannelMap()
        self._next_bar_beat = 0.0
        self._last: PlannedBar | None = None
        self._bar_tempo = 120.0
        self._align_pending = False  # external clock: find the master's next bar line first
        self._held: PlannedBar | None = None  # the bar fetched to align on
        self._bar_lines: list[float] = []  # start beats of the bars scheduled lately
        #: (start beat, quarters) of the bars lately fetched from the source (not repeats).
        self._fetched: collections.deque[tuple[float, float]] = collections.deque(maxlen=4)
        self._resume_beat: float | None = None
        self._next_clock: Clock | None = None
        self._thread = threading.Thread(target=self._run, name="e2m-player", daemon=True)
        self._stopped = threading.Event()
        # Held around every send: after the last word (from whichever thread) nothing goes out.
        self._send_lock = threading.RLock()
        # Loudness as a gain on note-on velocities (immediate answer): requested from any thread as
        # (gain, time); the player applies it from the first beat after that time.
        self._gain_request: tuple[float, float] | None = None  # None: velocities go out as made
        self._gain_seen: tuple[float, float] | None = None
        self._gain, self._gain_next, self._gain_from = 1.0, 1.0, 0.0

    # ---- control (any thread) ---------------------------------------------------------------------
    def start_thread(self) -> None:
        self._thread.start()

    def play(self) -> None:
        """Start from beat 0 (internal clock) or at the master's next bar line (external)."""
        self._command("play")

    def resume(self) -> None:
        """Continue: internal clock: from the bar line after the stop; external: like play."""
        self._command("continue")

    def restart(self) -> None:
        """Play again from the top even while playing (the master sent Start)."""
        self._command("restart")

    def set_clock(self, clock: Clock) -> None:
        """Swap the clock (sync source); stops playing first. The old clock is not closed."""
        self._next_clock = clock
        self._command("clock")

    def stop(self) -> None:
        self._command("stop")

    def panic(self) -> None:
        self._command("panic")

    def shutdown(self, timeout: float = 2.0) -> None:
        """Release every note, send CC 123 + CC 120 on all channels, stop the thread."""
        if self._thread.is_alive():
            self._command("quit")
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the player thread did not stop within %.1f s; releasing notes here", timeout)
        # A no-op once the thread said it; waits for it while it says it; else (never started, or
        # stuck before it) says it from here.
        self._last_word(_LAST_WORD_SECONDS)

    def set_loudness(self, loudness_db: float, after: float | None = None) -> None:
        """The requested loudness: note-on velocities are scaled from the first beat after
        ``after`` (monotonic time; default now) by ``10 ** ((loudness_db - made_for) / 40)``,
        ``made_for`` being the dB its bar was made for."""
        when = time.monotonic() if after is None else after
        self._gain_request = (10.0 ** (float(loudness_db) / DB_PER_VELOCITY_DECADE), when)

    @property
    def gain(self) -> float:
        """The loudness gain in force (relative to 0 dB)."""
        return self._gain

    @property
    def open_notes(self) -> int:
        return len(self._open)

    def _command(self, name: str) -> None:
        self._commands.put(name)
        self._wake.set()

    # ---- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        if self.realtime:
            _try_realtime_priority()
        try:
            while True:
                if not self._handle_commands():
                    break
                if not self.playing:
                    self._wake.wait(0.1)
                    continue
                self._step()
        except Exception:
            log.exception("player thread failed; releasing all notes")
        finally:
            self._last_word()

    def _handle_commands(self) -> bool:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                self._wake.clear()
                if not self._commands.empty():
                    continue
                return True
            if command in ("play", "continue") and not self.playing:
                self._start_playing(resume=command == "continue")
            elif command == "restart":
                self._stop_playing(panic=False, notify=False)
                self._start_playing(resume=False)
            elif command == "clock" and self._next_clock is not None:
                self._stop_playing(panic=False)
                self.clock, self._next_clock = self._next_clock, None
                self._resume_beat = None
            elif command == "stop":
                self._stop_playing(panic=False)
            elif command == "panic":
                self._stop_playing(panic=True)
            elif command == "quit":
                return False

    def _start_playing(self, resume: bool = False) -> None:
        clock = self.clock
        self._heap.clear()
        self._held = None
        self._bar_lines.clear()
        self._fetched.clear()
        if clock.follows_external_tempo:
            self._align_pending = True
        elif resume and self._resume_beat is not None and isinstance(clock, InternalClock):
            clock.restart_at(self._resume_beat, clock.now() + self.start_delay)
            self._next_bar_beat = self._resume_beat
            self._queue_transport(self._resume_beat)
        else:
            clock.start(clock.now() + self.start_delay)
            self._next_bar_beat = 0.0
            self._queue_transport(0.0)
        if not resume:
            self._last = None
            self.bar_number = -1
        self.playing = True
        if self.on_state:
            self.on_state(True)

    def _queue_transport(self, beat: float) -> None:
        """Clock out: Start at beat 0, or Song Position + Continue elsewhere, before the first pulse."""
        if self.clock_out is None:
            return
        if beat == 0:
            self._push(_Event(beat, _TRANSPORT, next(self._seq), (START,)))
        else:
            self._push(_Event(beat, _TRANSPORT, next(self._seq), song_position(beat)))
            self._push(_Event(beat, _TRANSPORT, next(self._seq), (CONTINUE,)))

    def _stop_playing(self, panic: bool, notify: bool = True) -> None:
        now = self.clock.now()
        with self._send_lock:
            self.outputs.discard_pending_notes()  # sent ahead of a stop they come after
        self._release_all(now)
        if self.playing:
            # Continue resumes at the first bar line not yet reached.
            beat_now = self.clock.beat_at(now)
            ahead = [b for b in self._bar_lines if b > beat_now]
            self._resume_beat = min(ahead) if ahead else self._next_bar_beat
            if self.clock_out is not None:
                self._send_clock((STOP,), now)
            self._give_back(beat_now)
        self._heap.clear()
        self._held = None
        self._align_pending = False
        if panic:
            self._controllers_off(now)
        was_playing, self.playing = self.playing, False
        if was_playing and notify and self.on_state:
            self.on_state(False)

    def _give_back(self, beat_now: float) -> None:
        """Return to the source the bars it handed out that were not heard in full."""
        unheard = sum(1 for start, quarters in self._fetched if start + quarters > beat_now)
        if self._held is not None and not self._held.repeat:
            unheard += 1  # fetched to align on an external clock, never scheduled
        self._fetched.clear()
        give_back = getattr(self.source, "give_back", None)
        if unheard and give_back is not None:
            try:
                give_back(unheard)
            except Exception:
                log.exception("the bar source could not take %d bars back", unheard)

    def _align_to_master(self) -> bool:
        """External clock: hold the first bar and start it on the master's next bar line."""
        planned = self._held or self.source.next_bar()
        if planned is None:
            self._wake.wait(0.005)
            return False
        self._held = planned
        clock = self.clock
        length = planned.bar.quarters
        late = _LATE_START_SECONDS * clock.tempo / 60.0
        beat = clock.beat_at(clock.now() + self.prepare_ahead)
        self._next_bar_beat = math.ceil((beat - late) / length - 1e-9) * length
        self._align_pending = False
        self._queue_transport(self._next_bar_beat)
        return True

    def _step(self) -> None:
        clock = self.clock
        if clock.follows_external_tempo:
            if not clock.running:
                self._wake.wait(0.005)  # the master's transport is stopped
                return
            if self._align_pending and not self._align_to_master():
                return
        prepare_at = clock.time_of(self._next_bar_beat) - self.prepare_ahead
        next_event = clock.time_of(self._heap[0].beat) if self._heap else float("inf")
        if prepare_at <= next_event:
            if clock.sleep_until(prepare_at, self._wake):
                self._prepare_bar()
            return
        if clock.sleep_until(next_event, self._wake):
            self._send_due()

    def _send_due(self) -> None:
        """Send every event whose deadline has come (they share the wake-up)."""
        clock = self.clock
        now = clock.now()
        request = self._gain_request
        if request is not None and request is not self._gain_seen:  # a new loudness: from the next beat on
            first = self._gain_seen is None
            self._gain_seen = request
            self._gain, self._gain_next = (request[0] if first else self._gain_next), request[0]
            self._gain_from = math.ceil(clock.beat_at(request[1]) - 1e-6)
        while self._heap:
            deadline = clock.time_of(self._heap[0].beat)
            if deadline > now + 0.0002:
                return
            self._dispatch(heapq.heappop(self._heap), deadline)

    def _dispatch(self, event: _Event, deadline: float) -> None:
        if event.kind < _CUT:
            self._send_clock(event.message, deadline)
            return
        if event.kind == _CUT:
            self._release_all(deadline)
            return
        message = event.message
        key = (message[0] & 0x0F, message[1])
        if event.kind == _OFF:
            if self._open.get(key) != event.token:
                return  # superseded by a later note-on of the same key, or already released
            del self._open[key]
        elif event.kind == _ON:
            if key in self._open:
                self._send((NOTE_OFF | key[0], key[1], 0), deadline)  # retrigger: close the old one
            self._open[key] = event.token
            if event.level and self._gain_seen is not None:
                if event.beat >= self._gain_from:
                    self._gain = self._gain_next
                velocity = round(message[2] * self._gain * event.level)
                message = (message[0], message[1], 127 if velocity > 127 else 1 if velocity < 1 else velocity)
        self._send(message, deadline)

    def _send(self, message: tuple[int, ...], deadline: float) -> None:
        with self._send_lock:
            if self._stopped.is_set():
                return  # after the last word (said from shutdown while this thread was busy)
            lost = self.outputs.send(message, deadline)
        sent = time.monotonic()
        self.messages_sent += 1
        if sent - deadline > LATE_SEND_SECONDS:
            self.messages_late += 1
        if self.timing is not None:
            self.timing.append((deadline, sent))
        if self.sent_messages is not None:
            self.sent_messages.append(message)
        for output in lost:
            self._farewell(output, deadline)

    def _send_clock(self, message: tuple[int, ...], deadline: float) -> None:
        assert self.clock_out is not None
        with self._send_lock:
            if not self._stopped.is_set():
                self.clock_out.send(message, deadline)

    def _farewell(self, output: Output, when: float) -> None:
        """An output failed and was dropped: best effort, release its notes and close it."""
        sounding = list(self._open)
        try:
            for channel, pitch in sounding:
                output.send((NOTE_OFF | channel, pitch, 0), when)
            for channel in range(16):
                output.send((CONTROL_CHANGE | channel, ALL_NOTES_OFF, 0), when)
        except Exception as error:
            log.warning("could not release notes on the lost output %s: %s", output.describe(), error)
        try:
            output.close()
        except Exception as error:
            log.debug("closing the lost output %s failed: %s", output.describe(), error)
        if self.on_output_lost:
            why = next((w for name, w in reversed(self.outputs.lost) if name == output.describe()), "")
            self.on_output_lost(output.describe(), why)

    def _prepare_bar(self) -> bool:
        """Fetch the next bar and schedule it; returns False if interrupted."""
        planned, self._held = self._held or self.source.next_bar(), None
        repeated = False
        if planned is None:
            if self._last is None and self.clock.follows_external_tempo:
                self._align_pending = True
                return False
            if self._last is None:
                # Nothing generated yet: wait for the first bar (only possible right after play).
                self._wake.wait(0.005)
                if self.clock.now() > self.clock.time_of(self._next_bar_beat):
                    self.clock.start(self.clock.now() + self.prepare_ahead + 0.005)
                    self._next_bar_beat = 0.0
                return False
            planned = PlannedBar(
                self._last.bar,
                self._last.section,
                continues=False,
                lag_ms=self._last.lag_ms,
                plan=self._last.plan,
                loudness=self._last.loudness,
                adaptation=self._last.adaptation,
            )
            repeated = True
        repeated = repeated or planned.repeat
        if repeated:
            self.late_bars += 1
        else:
            self._fetched.append((self._next_bar_beat, planned.bar.quarters))
        self._schedule(planned)
        self.bar_number += 1
        self._last = planned
        if self.on_bar:
            self.on_bar(
                BarStarted(
                    number=self.bar_number,
                    index=planned.bar.index,
                    section=planned.section,
                    repeated=repeated,
                    late_bars=self.late_bars,
                    lag_ms=planned.lag_ms,
                    tempo=self._bar_tempo,
                    time=self.clock.time_of(self._next_bar_beat - planned.bar.quarters),
                    plan=planned.plan,
                    numerator=planned.bar.numerator,
                    denominator=planned.bar.denominator,
                    bar=planned.bar,
                    messages_sent=self.messages_sent,
                    messages_late=self.messages_late,
                    adaptation=planned.adaptation,
                    gain=self._bar_gain(planned),
                )
            )
        return True

    def _bar_gain(self, planned: PlannedBar) -> float:
        """The velocity factor the latest requested loudness gives ``planned``'s notes."""
        request = self._gain_request
        if request is None or planned.loudness is None:
            return 1.0
        return request[0] * 10.0 ** (-planned.loudness / DB_PER_VELOCITY_DECADE)

    def _schedule(self, planned: PlannedBar) -> None:
        bar = planned.bar
        start = self._next_bar_beat
        if self.clock.follows_external_tempo:
            tempo = self.clock.tempo
        else:
            tempo = float(self._tempo())
            self.clock.set_tempo(tempo, start)
        self._bar_tempo = tempo
        self._bar_lines = [*self._bar_lines[-3:], start]
        push = self._push
        if self.clock_out is not None:
            first, last = math.ceil(start * PPQN - 1e-6), math.ceil((start + bar.quarters) * PPQN - 1e-6)
            for pulse in range(first, last):
                push(_Event(pulse / PPQN, _PULSE, next(self._seq), (CLOCK,)))
        if not planned.continues and self._open:
            push(_Event(start, _CUT, next(self._seq)))
        melodic = sorted({n.program for n in bar.notes if not n.is_drum})
        busy = {channel for channel, _ in self._open} if planned.continues else set()
        mapping, changes = self._channels.assign(melodic, busy, self.bar_number + 1)
        for channel, program in changes:
            push(_Event(start, _PROGRAM, next(self._seq), (PROGRAM_CHANGE | channel, program & 0x7F)))
        length = bar.quarters
        level = 0.0 if planned.loudness is None else 10.0 ** (-planned.loudness / DB_PER_VELOCITY_DECADE)
        adaptation = planned.adaptation
        dropped = adaptation.dropped if adaptation is not None else ()
        for index, note in enumerate(bar.notes):
            if not 0 <= note.pitch <= 127 or note.start >= length or note.start < 0 or index in dropped:
                continue
            channel = DRUM_CHANNEL if note.is_drum else mapping[note.program]
            if adaptation is None:
                pitch, velocity = note.pitch, min(127, max(1, int(note.velocity)))
            else:
                pitch, velocity = adaptation.pitch(note), adaptation.velocity(note)
            token = next(self._tokens)
            on_beat = start + note.start
            off_beat = on_beat + max(_MIN_DURATION, note.duration)
            push(_Event(on_beat, _ON, next(self._seq), (NOTE_ON | channel, pitch, velocity), token, level))
            push(_Event(off_beat, _OFF, next(self._seq), (NOTE_OFF | channel, pitch, 0), token))
        self._next_bar_beat = start + length

    def _push(self, event: _Event) -> None:
        heapq.heappush(self._heap, event)

    def _release_all(self, when: float) -> None:
        for channel, pitch in list(self._open):
            self._send((NOTE_OFF | channel, pitch, 0), when)
        self._open.clear()

    def _controllers_off(self, when: float) -> None:
        for channel in range(16):
            self._send((CONTROL_CHANGE | channel, ALL_NOTES_OFF, 0), when)
            self._send((CONTROL_CHANGE | channel, ALL_SOUND_OFF, 0), when)
        self._channels.reset()  # program changes are sent again after a panic

    def _last_word(self, timeout: float = -1) -> None:
        """Release every note and send CC 123 + 120 on all channels, once; nothing goes out after.
        From :meth:`shutdown` it waits (up to ``timeout`` s) for the thread's sending to finish."""
        if not self._send_lock.acquire(timeout=timeout):
            log.warning("the player thread is stuck sending; closing anyway")
            return
        try:
            if self._stopped.is_set():
                return
            now = time.monotonic()
            if self.playing and self.clock_out is not None:
                self._send_clock((STOP,), now)
            self.outputs.discard_pending_notes()
            self._release_all(now)
            self._heap.clear()
            self._controllers_off(now)
            self.playing = False
            self._stopped.set()
        finally:
            self._send_lock.release()


def _try_realtime_priority() -> None:
    """Best effort: SCHED_FIFO for the player thread, so nothing else on the machine preempts it."""
    if make_realtime(threading.get_native_id(), PLAYER_PRIORITY):
        log.debug("player thread runs SCHED_FIFO")
    else:
        log.debug("no realtime priority for the player thread (not permitted)")
