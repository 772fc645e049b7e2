"""Outputs: where the player's MIDI messages go. Any number at once.

* :class:`MidiPortOutput`: a MIDI port through python-rtmidi: a virtual port (ALSA, CoreMIDI,
  JACK) or an existing port by name. Windows has no virtual ports. On JACK,
  :func:`open_default_midi` prefers :class:`e2m_live.live.jack_midi.JackMidiOutput` (exact frames).
* :class:`FluidSynthOutput`: audio through FluidSynth (pyfluidsynth), any audio driver, or none
  (then :meth:`FluidSynthOutput.render` pulls samples: tests, offline use).
* :class:`MidiFileRecorder`: a ``.mid`` of the whole performance.
* :class:`CaptureOutput`: keeps messages in memory (tests, benchmarks).

Messages are raw MIDI byte lists (``[0x90 | channel, pitch, velocity]``); ``when`` is the
message's deadline on the monotonic clock.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

Message = Sequence[int]

NOTE_OFF, NOTE_ON, CONTROL_CHANGE, PROGRAM_CHANGE = 0x80, 0x90, 0xB0, 0xC0
ALL_SOUND_OFF, RESET_CONTROLLERS, ALL_NOTES_OFF = 120, 121, 123
#: How long a JACK port stays open after its last message: many process cycles (5.3 ms at 256
#: frames, 48 kHz), so the queue drains even where the JACK threads are not real-time.
JACK_DRAIN_SECONDS = 0.25

#: Searched in order after the system default and pretty_midi's bundled TimGM6mb.sf2.
SOUNDFONT_CANDIDATES = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/default.sf2"),
)
SYSTEM_SOUNDFONT = Path("/usr/share/sounds/sf2/default-GM.sf2")


class OutputError(RuntimeError):
    """An output cannot be opened; the message says why and what to do."""


class Output(ABC):
    """One destination for MIDI messages."""

    name: str = "output"

    @abstractmethod
    def send(self, message: Message, when: float) -> None:
        """Send one message now (``when`` is its deadline, for recorders)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the destination."""

    def mark_bar(self, when: float, tempo: float, numerator: int, denominator: int) -> None:  # noqa: B027
        """A bar line at ``when`` (monotonic seconds); recorders use it for their tempo map."""

    def discard_pending_notes(self) -> None:  # noqa: B027 - optional hook
        """Transport stop: drop note-ons sent but not yet out (outputs that play a latency late)."""

    def delivery_counts(self) -> tuple[int, int] | None:
        """Messages written so far and those written after their time, where the output itself
        places them in time (a frame-accurate JACK port); None where the send is the delivery."""
        return None

    def describe(self) -> str:
        return self.name


# ---- MIDI ports -----------------------------------------------------------------------------------


def import_rtmidi() -> ModuleType:
    """The ``rtmidi`` module (python-rtmidi), imported on first use: ports only, not every command."""
    import rtmidi

    return rtmidi


def midi_api_names() -> dict[str, int]:
    """Our API names -> rtmidi API constants."""
    rtmidi = import_rtmidi()
    return {
        "alsa": rtmidi.API_LINUX_ALSA,
        "jack": rtmidi.API_UNIX_JACK,
        "coremidi": rtmidi.API_MACOSX_CORE,
        "winmm": rtmidi.API_WINDOWS_MM,
    }


def compiled_midi_apis() -> list[str]:
    """Names of the MIDI APIs this python-rtmidi build supports."""
    compiled = set(import_rtmidi().get_compiled_api())
    return [name for name, api in midi_api_names().items() if api in compiled]


def default_midi_api() -> str:
    if sys.platform == "darwin":
        return "coremidi"
    if sys.platform.startswith("win"):
        return "winmm"
    return "alsa"


def jack_server_running() -> bool:
    """True if a JACK server answers (without starting one)."""
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    rtmidi = import_rtmidi()
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        return False
    try:
        probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="e2m-live-probe")
    except Exception:
        return False
    probe.delete()
    return True


def list_midi_ports(api: str) -> list[str] | None:
    """Output ports of ``api``, or None if the API is unusable here."""
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    rtmidi = import_rtmidi()
    try:
        out = rtmidi.MidiOut(midi_api_names()[api], name="e2m-live-list")
    except Exception:
        return None
    try:
        return list(out.get_ports())
    finally:
        out.delete()


def midi_api_problem(api: str) -> str:
    """Why MIDI ``api`` failed to initialise here, in words a performer can act on."""
    if api == "alsa" and not Path("/dev/snd/seq").exists():
        return "no ALSA sequencer here (/dev/snd/seq is missing: no sound hardware or snd-seq module)"
    if api == "jack":
        return "no JACK server is running (start one, e.g. `jackd -d dummy` or with QjackCtl)"
    return f"the {api} MIDI API failed to initialise"


class MidiPortOutput(Output):
    """A MIDI output port via python-rtmidi: virtual (``port=None``) or an existing port."""

    def __init__(
        self,
        api: str = "auto",
        port: str | None = None,
        client_name: str = "e2m-live",
        port_name: str = "out",
    ) -> None:
        os.environ.setdefault("JACK_NO_START_SERVER", "1")
        rtmidi = import_rtmidi()
        api = default_midi_api() if api == "auto" else api
        names = midi_api_names()
        if api not in names:
            raise OutputError(f"unknown MIDI API {api!r}; choose one of {', '.join(names)}")
        if api not in compiled_midi_apis():
            raise OutputError(
                f"this python-rtmidi build has no {api} support "
                f"(it has: {', '.join(compiled_midi_apis()) or 'none'})"
            )
        try:
            self._out = rtmidi.MidiOut(names[api], name=client_name)
        except Exception as error:
            raise OutputError(f"cannot open {api} MIDI: {midi_api_problem(api)} ({error})") from None
        self.api = api
        self._lock = threading.Lock()
        if port is None:
            if api == "winmm":
                ports = self._out.get_ports()
                self._out.delete()
                raise OutputError(
                    "Windows has no virtual MIDI ports: create one with loopMIDI and pass "
                    f"--midi-port NAME; ports now: {', '.join(ports) or 'none'}"
                )
            self._out.open_virtual_port(port_name)
            self.name = f"{api} virtual port '{client_name}:{port_name}'"
        else:
            ports = list(self._out.get_ports())
            index = match_port(port, ports)
            if index is None:
                self._out.delete()
                raise OutputError(f"no {api} MIDI port matches {port!r}; ports: {', '.join(ports) or 'none'}")
            self._out.open_port(index, port_name)
            self.name = f"{api} port '{ports[index]}'"

    def send(self, message: Message, when: float) -> None:
        with self._lock:
            self._out.send_message(message)

    def close(self) -> None:
        with self._lock:
            if self.api == "jack":
                # RtMidi's JACK backend queues messages for the next process cycle, and its
                # close_port waits for one cycle only: one already past its read of the queue
                # lets the port go with the last word still queued (seen on a loaded machine
                # without real-time scheduling: 2 of 28 SIGTERMs lost every note-off and CC).
                time.sleep(JACK_DRAIN_SECONDS)
            try:
                self._out.close_port()
            finally:
                self._out.delete()


def match_port(wanted: str, ports: list[str]) -> int | None:
    """Index of the port named ``wanted``, else of the first whose name contains it (any case)."""
    for i, name in enumerate(ports):
        if name == wanted:
            return i
    lowered = wanted.lower()
    for i, name in enumerate(ports):
        if lowered in name.lower():
            return i
    return None


def open_default_midi(
    api: str = "auto", port: str | None = None, client_name: str = "e2m-live", jack_latency_ms: float = 0.0
) -> tuple[Output | None, str | None]:
    """Open the configured MIDI output, degrading gracefully.

    With ``api="auto"`` on Linux: ALSA first, then JACK if a server runs. JACK with
    ``jack_latency_ms > 0`` places messages on exact frames (:mod:`e2m_live.live.jack_midi`), else
    (or without the JACK-Client package) python-rtmidi sends them at once. Returns
    ``(output, None)`` or ``(None, message)`` saying why there is no MIDI output and what to do.
    """
    tried = []
    candidates = [api] if api != "auto" else [default_midi_api()]
    if api == "auto" and candidates[0] == "alsa":
        candidates.append("jack")
    for name in candidates:
        if name == "jack" and jack_latency_ms > 0:
            from e2m_live.live.jack_midi import JackMidiOutput, import_jack

            try:
                import_jack()
            except OutputError as error:
                log.warning("%s; sending through python-rtmidi (quantised to the JACK period)", error)
            else:
                try:
                    return JackMidiOutput(port, client_name, latency_ms=jack_latency_ms), None
                except OutputError as error:
                    tried.append(str(error))
                    continue
        try:
            return MidiPortOutput(name, port, client_name), None
        except OutputError as error:
            tried.append(str(error))
    hint = (
        "use --midi-api jack with a running JACK server, --fluidsynth for audio, "
        "or --no-midi; see `e2m-live ports` and `e2m-live doctor`"
    )
    return None, "no MIDI output: " + "; ".join(tried) + f". Playing on without MIDI ({hint})."


# ---- FluidSynth ----------------------------------------------------------------------------------


def find_soundfont(explicit: str | os.PathLike | None = None) -> Path | None:
    """The soundfont to use: ``explicit``; else the system GM soundfont
    (``/usr/share/sounds/sf2/default-GM.sf2``), then pretty_midi's bundled ``TimGM6mb.sf2``,
    then other usual places."""
    if explicit:
        path = Path(explicit).expanduser()
        return path if path.is_file() else None
    if SYSTEM_SOUNDFONT.is_file():
        return SYSTEM_SOUNDFONT
    bundled = bundled_soundfont()
    if bundled is not None:
        return bundled
    return next((c for c in SOUNDFONT_CANDIDATES if c.is_file()), None)


def bundled_soundfont() -> Path | None:
    """pretty_midi's TimGM6mb.sf2, if pretty_midi is installed."""
    try:
        import pretty_midi
    except ImportError:
        return None
    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return path if path.is_file() else None


FLUIDSYNTH_DRIVERS = (
    "pulseaudio",
    "pipewire",
    "alsa",
    "jack",
    "coreaudio",
    "dsound",
    "wasapi",
    "oss",
    "sdl2",
    "portaudio",
    "file",
)


class FluidSynthOutput(Output):
    """Plays through FluidSynth. ``driver=None``: no audio device, pull audio with :meth:`render`."""

    def __init__(
        self,
        soundfont: str | os.PathLike | None = None,
        driver: str | None = None,
        sample_rate: int = 48000,
        gain: float = 0.4,
        file_name: str | None = None,
    ) -> None:
        try:
            import fluidsynth
        except ImportError as error:  # pragma: no cover - dependency of the package
            raise OutputError(f"pyfluidsynth/libfluidsynth not available: {error}") from None
        font = find_soundfont(soundfont)
        if font is None:
            where = soundfont or f"{SYSTEM_SOUNDFONT}, pretty_midi's TimGM6mb.sf2"
            raise OutputError(f"no soundfont found ({where}); install fluid-soundfont-gm or pass --soundfont")
        self._lock = threading.Lock()
        self.sample_rate = sample_rate
        self._synth = fluidsynth.Synth(gain=gain, samplerate=float(sample_rate))
        if driver == "file" and file_name:
            self._synth.setting("audio.file.name", str(file_name))
        if driver:
            # Only an audio driver: Synth.start() would also open a MIDI *input* driver we don't use.
            self._synth.setting("audio.driver", driver)
            synth = self._synth
            synth.audio_driver = fluidsynth.new_fluid_audio_driver(synth.settings, synth.synth)
            if not self._synth.audio_driver:
                self._synth.delete()
                raise OutputError(
                    f"FluidSynth audio driver {driver!r} failed to start "
                    "(see `e2m-live ports` for the drivers compiled in)"
                )
        self._font_id = self._synth.sfload(str(font))
        if self._font_id < 0:
            self._synth.delete()
            raise OutputError(f"FluidSynth cannot load soundfont {font}")
        for channel in range(16):
            self._synth.program_select(channel, self._font_id, 128 if channel == 9 else 0, 0)
        self.soundfont = font
        self.name = f"FluidSynth ({driver or 'no audio driver'}, {font.name})"

    def send(self, message: Message, when: float) -> None:
        status, channel = message[0] & 0xF0, message[0] & 0x0F
        with self._lock:
            if status == NOTE_ON and message[2] > 0:
                self._synth.noteon(channel, message[1], message[2])
            elif status in (NOTE_ON, NOTE_OFF):
                self._synth.noteoff(channel, message[1])
            elif status == CONTROL_CHANGE:
                self._synth.cc(channel, message[1], message[2])
            elif status == PROGRAM_CHANGE:
                self._synth.program_select(channel, self._font_id, 128 if channel == 9 else 0, message[1])

    def render(self, frames: int) -> np.ndarray:
        """Pull ``frames`` stereo frames (int16, interleaved) when no audio driver runs."""
        with self._lock:
            return self._synth.get_samples(frames)

    def close(self) -> None:
        with self._lock:
            self._synth.delete()


# ---- recording -----------------------------------------------------------------------------------


@dataclass(slots=True)
class TimedMessage:
    when: float  # deadline (monotonic seconds)
    message: tuple[int, ...]
    sent: float = 0.0  # monotonic time at send


class CaptureOutput(Output):
    """Keeps every message with its deadline and actual send time (tests, benchmarks)."""

    def __init__(self, name: str = "capture") -> None:
        import time

        self._now = time.monotonic
        self.name = name
        self.messages: list[TimedMessage] = []

    def send(self, message: Message, when: float) -> None:
        self.messages.append(TimedMessage(when, tuple(message), self._now()))


class MidiFileRecorder(Output):
    """Records the performance to a ``.mid`` that is on disk, valid, up to the last bar line.

    **While recording** the file is a standard type-0 MIDI file (one track, every channel, tempo and
    time signatures inline) that grows at every bar line: :meth:`mark_bar` hands the events before it
    to a writer thread, which appends them, closes the notes still sounding at the last event
    (provisional note-offs), writes the end of track and patches the track's length; the next bar's
    events overwrite the provisional tail. So after a crash or SIGKILL the file plays, and ``e2m-live
    describe`` reads it, up to the last bar line written (the file parses at every instant, see
    :class:`_Stream`). Memory stays bounded: only the events since the last bar line, the sounding
    notes and a few tempo anchors are kept.

    **On close** (:meth:`close`, e.g. SIGTERM or the end of ``serve``) the file is rewritten, from
    itself, as type 1: track 0 holds the tempo map and time signatures; then comes one track per
    instrument that played, named after it (``"Drums"`` or the General MIDI program name), drums
    first, then programs ascending. A note belongs to the program its channel had when it started
    (channel 10: drums; a channel shared by two programs, ``channels.py``'s last resort, plays as the
    program it was set to). Each message keeps its channel, and program changes go to the track of
    the program they select, so the file plays as the performance did. Notes of one pitch on one
    instrument never overlap (the earlier ends where the later starts; of two with equal start the
    longer is kept), a note still sounding when the file is written ends at the last recorded event,
    and controller messages go to the track of their channel's instrument (dropped on channels where
    no instrument played).

    The player marks every bar line (:meth:`mark_bar`) just before the bar starts, so the file
    carries the tempo map and time signatures of the performance and its bars fall where they were
    played. Before the first bar line, 120 BPM is assumed. A message that arrives after events later
    than it were written (never from the player, which sends in deadline order) is written at the
    time of the last one.
    """

    def __init__(self, path: str | os.PathLike, ticks_per_beat: int = 960) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise OutputError(f"cannot record to {self.path}: folder {self.path.parent} does not exist")
        self.ticks_per_beat = ticks_per_beat
        self.name = f"recorder {self.path}"
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[tuple[float, int, tuple[int, ...] | None, tuple[float, int, int] | None]] = []
        self._seq = 0  # arrival order, the tie-break at one time
        self._latest_sent = float("-inf")  # the latest deadline sent so far
        self._bar_lines: list[float] = []  # the last two bar lines marked
        self._horizon = float("-inf")  # events up to here may be written
        self._closing = False
        try:
            self._stream = _Stream(self.path, ticks_per_beat)
        except OSError as error:
            raise OutputError(f"cannot record to {self.path}: {error}") from None
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="e2m-recorder", daemon=True)
        self._writer.start()

    def send(self, message: Message, when: float) -> None:
        with self._lock:
            self._seq += 1
            self._pending.append((when, self._seq, tuple(message), None))
            if when > self._latest_sent:
                self._latest_sent = when

    def mark_bar(self, when: float, tempo: float, numerator: int, denominator: int) -> None:
        """A bar line at ``when``: what was sent before this call (and the bar line before this one)
        is complete, so the writer thread puts it on disk."""
        with self._wake:
            self._seq += 1
            self._pending.append((when, self._seq, None, (float(tempo), int(numerator), int(denominator))))
            previous = self._bar_lines[-1] if self._bar_lines else float("-inf")
            self._bar_lines = [previous, when]
            self._horizon = max(self._horizon, self._latest_sent, previous)
            self._wake.notify()

    def _take(self, horizon: float) -> list:
        """Pending items up to ``horizon`` in time order (the lock is held)."""
        due = [item for item in self._pending if item[0] <= horizon]
        if due:
            self._pending = [item for item in self._pending if item[0] > horizon]
        due.sort(key=lambda item: (item[0], item[1]))
        return due

    def _write_loop(self) -> None:
        written = float("-inf")
        while True:
            with self._wake:
                while self._horizon <= written and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                written = self._horizon
                due = self._take(written)
            try:
                self._stream.append(due)
            except Exception as error:  # a full disk must not take the player down
                log.error("recording to %s failed: %s", self.path, error)
                self._error = error
                return

    def flush(self) -> None:
        """Write what was sent so far (the file stays valid: notes sounding are closed provisionally)."""
        with self._wake:
            self._horizon = max(self._horizon, self._latest_sent)
            self._wake.notify()

    def close(self) -> None:
        """Write everything, then rewrite the file as one track per instrument (see the class doc)."""
        with self._wake:
            if self._closing:
                return
            self._closing = True
            self._wake.notify()
        self._writer.join()
        with self._lock:
            due = self._take(float("inf"))
        if self._error is None:
            self._stream.append(due)
        self._stream.close()
        _rewrite_by_instrument(self.path, self.ticks_per_beat)


class _Stream:
    """The recording as a type-0 file that grows at every :meth:`append` and is valid after each.

    Layout: ``MThd`` (format 0, one track), ``MTrk`` + length, the events written so far, then the
    provisional tail (note-offs of the notes still sounding, at the last event's tick) and the end of
    track. :meth:`append` writes, over the old tail, as many empty text events (``FF 01 00``, four bytes
    with their delta, like every tail entry) as the tail had bytes, the new events and a new tail, in
    one ``pwrite``; then it patches the length. So the file parses at every instant: before the patch
    the old length ends on the padding (a track without its end-of-track event, which readers accept),
    after it the new length ends on the new end of track. Only a kill between those two writes leaves
    the notes that sounded at the previous flush without note-offs. The padding costs four bytes per
    sounding note and bar; the rewrite on close drops it.
    """

    _LENGTH_AT = 18  # 14 bytes of MThd, then "MTrk"

    def __init__(self, path: Path, ticks_per_beat: int) -> None:
        self.path = path
        self.ticks_per_beat = ticks_per_beat
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
        header += ticks_per_beat.to_bytes(2, "big") + b"MTrk"
        self._body_end = len(header) + 4  # where the tail starts
        self._tail_bytes = 0
        self._origin: float | None = None
        self._anchors: list[tuple[float, float, float]] = []  # the last few (seconds, tick, ticks a second)
        self._tick = 0  # tick of the last event written
        self._sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> note-ons not yet ended
        os.pwrite(self._fd, header + (0).to_bytes(4, "big"), 0)
        self._write(b"")

    def _to_tick(self, when: float) -> int:
        if self._origin is None:
            self._origin = when
        anchor = next((a for a in reversed(self._anchors) if a[0] <= when), None)
        if anchor is None:
            tick = (when - self._origin) * 2.0 * self.ticks_per_beat  # 120 BPM before the first bar line
        else:
            tick = anchor[1] + (when - anchor[0]) * anchor[2]
        return max(self._tick, round(tick))  # never back in time (late stragglers)

    def _anchor(self, when: float, tempo: float) -> None:
        if self._anchors:
            seconds, tick, rate = self._anchors[-1]
            when = max(when, seconds)
            base = tick + (when - seconds) * rate
        else:
            if self._origin is None:
                self._origin = when
            base = max(0.0, when - self._origin) * 2.0 * self.ticks_per_beat
        self._anchors = [*self._anchors[-7:], (when, base, tempo / 60.0 * self.ticks_per_beat)]

    def append(self, items: list) -> None:
        """Write ``items`` ((when, seq, message or None, (tempo, numerator, denominator) or None), in
        time order) and a fresh tail."""
        if not items:
            return
        data = bytearray(_EMPTY_TEXT * (self._tail_bytes // len(_EMPTY_TEXT)))
        for when, _, message, bar in items:
            if bar is not None:
                self._anchor(when, bar[0])
            tick = self._to_tick(when)
            if bar is not None:
                data += _vlq(tick - self._tick) + _meta(0x51, round(60_000_000 / bar[0]).to_bytes(3, "big"))
                data += b"\x00" + _meta(0x58, bytes((bar[1], max(0, bar[2].bit_length() - 1), 24, 8)))
                self._tick = tick
                continue
            if not message or not 0x80 <= message[0] < 0xF0:
                continue  # system messages (clock, ...) are not recorded
            size = 2 if message[0] & 0xF0 in (PROGRAM_CHANGE, 0xD0) else 3
            if len(message) < size:
                continue
            data += _vlq(tick - self._tick) + bytes(message[:size])
            self._tick = tick
            status, channel = message[0] & 0xF0, message[0] & 0x0F
            key = (channel, message[1])
            if status == NOTE_ON and message[2] > 0:
                self._sounding[key] = self._sounding.get(key, 0) + 1
            elif status in (NOTE_ON, NOTE_OFF) and key in self._sounding:
                del self._sounding[key]  # one note-off ends every note-on of the key (as synths do)
        self._write(bytes(data))

    def _write(self, events: bytes) -> None:
        """``events`` (padding first) over the old tail, a new tail, then the new length."""
        tail = bytearray()
        for channel, pitch in self._sounding:
            tail += b"\x00" + bytes((NOTE_OFF | channel, pitch, 0))
        tail += b"\x00\xff\x2f\x00"
        os.pwrite(self._fd, events + bytes(tail), self._body_end)
        self._body_end += len(events)
        self._tail_bytes = len(tail)
        end = self._body_end + len(tail)
        os.pwrite(self._fd, (end - self._LENGTH_AT - 4).to_bytes(4, "big"), self._LENGTH_AT)

    def close(self) -> None:
        os.close(self._fd)


#: An empty text event with a zero delta: four bytes that change nothing (the stream's padding).
_EMPTY_TEXT = b"\x00\xff\x01\x00"


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _meta(kind: int, data: bytes) -> bytes:
    return bytes((0xFF, kind)) + _vlq(len(data)) + data


def _read_stream(path: Path) -> tuple[int, list[tuple[int, object]], list[tuple[int, tuple[int, ...]]]]:
    """Our type-0 stream: ticks per beat, (tick, meta message) and (tick, channel message) in order."""
    import mido

    midi = mido.MidiFile(str(path))
    metas: list[tuple[int, object]] = []
    timed: list[tuple[int, tuple[int, ...]]] = []
    tick = 0
    for message in midi.tracks[0] if midi.tracks else ():
        tick += message.time
        if message.is_meta:
            if message.type in ("set_tempo", "time_signature"):
                metas.append((tick, message))
        else:
            timed.append((tick, tuple(message.bytes())))
    return midi.ticks_per_beat, metas, timed


def _rewrite_by_instrument(path: Path, ticks_per_beat: int) -> None:
    """Rewrite the streamed recording as type 1: the conductor track, then one track per instrument."""
    import mido

    _, metas, timed = _read_stream(path)
    # The stream closed sounding notes provisionally at its end: the last real event.
    conductor: list[tuple[int, int, object]] = [(tick, 0, message) for tick, message in metas]
    if not metas:
        conductor.append((0, 0, mido.MetaMessage("set_tempo", tempo=500000)))
    else:
        conductor = _dedupe_conductor(conductor)
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(_track(conductor))
    for name, events in _instrument_tracks(timed):
        midi.tracks.append(_track([(0, -1, mido.MetaMessage("track_name", name=name)), *events]))
    tmp = path.with_suffix(path.suffix + ".tmp")
    midi.save(str(tmp))
    os.replace(tmp, path)


def _dedupe_conductor(conductor: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """Tempo and time signature only where they change (the stream repeats them at every bar line)."""
    kept: list[tuple[int, int, Any]] = []
    last: dict[str, object] = {}
    for tick, order, message in conductor:
        value = message.tempo if message.type == "set_tempo" else (message.numerator, message.denominator)
        if last.get(message.type) != value:
            kept.append((tick, order, message))
            last[message.type] = value
    return kept


_Key = tuple[int, bool]  # an instrument: (program, is_drum)


def _instrument_tracks(timed: list[tuple[int, tuple[int, ...]]]) -> list[tuple[str, list]]:
    """(name, [(tick, order, mido message), ...]) per instrument that played, from time-ordered messages."""
    import mido

    from e2m_live.description.remi import clean_notes, track_name
    from e2m_live.music import DRUM_CHANNEL

    program_of: dict[int, int] = {}  # channel -> program in force (GM: 0 until a program change)
    notes: dict[_Key, list[tuple[int, int, int, int, int]]] = {}  # start, end, pitch, velocity, channel
    others: dict[_Key, list[tuple[int, int, tuple[int, ...]]]] = {}  # tick, order, message
    sounding: dict[tuple[int, int], tuple[int, int, _Key]] = {}  # (channel, pitch) -> start, velocity, key

    def instrument(channel: int) -> _Key:
        return (0, True) if channel == DRUM_CHANNEL else (program_of.get(channel, 0), False)

    def end_note(channel: int, pitch: int, tick: int) -> None:
        start, velocity, key = sounding.pop((channel, pitch))
        notes.setdefault(key, []).append((start, tick, pitch, velocity, channel))

    played: set[int] = set()  # channels that sounded a note
    last_tick = timed[-1][0] if timed else 0
    for tick, message in timed:
        if not message:
            continue
        status, channel = message[0] & 0xF0, message[0] & 0x0F
        if status == NOTE_ON and len(message) > 2 and message[2] > 0:
            if (channel, message[1]) in sounding:  # a repeated note-on ends the note it repeats
                end_note(channel, message[1], tick)
            sounding[(channel, message[1])] = (tick, message[2], instrument(channel))
            played.add(channel)
        elif status in (NOTE_ON, NOTE_OFF) and len(message) > 1:
            if (channel, message[1]) in sounding:
                end_note(channel, message[1], tick)
        elif status == PROGRAM_CHANGE and len(message) > 1:
            if channel != DRUM_CHANNEL:
                program_of[channel] = message[1]
            others.setdefault(instrument(channel), []).append((tick, 1, message))
        elif 0x80 <= status < 0xF0:
            others.setdefault(instrument(channel), []).append((tick, 2, message))
    for channel, pitch in list(sounding):
        end_note(channel, pitch, last_tick)
    tracks = []
    for key in sorted(notes, key=lambda k: (not k[1], k[0])):
        kept = clean_notes(notes[key], end=max(n[1] for n in notes[key]) + 1)
        events: list[tuple[int, int, object]] = [
            (tick, order, mido.Message.from_bytes(list(msg)))
            for tick, order, msg in others.get(key, ())
            if msg[0] & 0x0F in played
        ]
        for start, end, pitch, velocity, channel in kept:
            events.append((end, 0, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
            events.append((start, 3, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
        tracks.append((track_name(*key), events))
    return tracks


def _track(events: list[tuple[int, int, Any]]) -> Any:
    """A mido track from (tick, order, message), sorted by tick then order (stable), with end of track."""
    import mido

    track = mido.MidiTrack()
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


# ---- fan-out --------------------------------------------------------------------------------------


class OutputSet:
    """Sends every message to every output; an output that fails is dropped, the rest go on."""

    def __init__(self, outputs: Iterable[Output] = ()) -> None:
        self.outputs: list[Output] = list(outputs)
        self.lost: list[tuple[str, str]] = []

    def add(self, output: Output) -> None:
        self.outputs.append(output)

    def send(self, message: Message, when: float) -> list[Output]:
        """Send to all; returns the outputs lost on this message (already removed)."""
        lost = []
        for output in self.outputs:
            try:
                output.send(message, when)
            except Exception as error:
                log.error("output %s failed (%s); dropping it", output.describe(), error)
                self.lost.append((output.describe(), str(error)))
                lost.append(output)
        for output in lost:
            self.outputs.remove(output)
        return lost

    def mark_bar(self, when: float, tempo: float, numerator: int, denominator: int) -> None:
        """Tell every output where a bar line fell (recorders build their tempo map from it)."""
        for output in self.outputs:
            try:
                output.mark_bar(when, tempo, numerator, denominator)
            except Exception as error:
                log.warning("marking a bar on %s failed: %s", output.describe(), error)

    def discard_pending_notes(self) -> None:
        """Tell every output the transport stopped (see :meth:`Output.discard_pending_notes`)."""
        for output in self.outputs:
            try:
                output.discard_pending_notes()
            except Exception as error:
                log.warning("discarding queued notes on %s failed: %s", output.describe(), error)

    def delivery_counts(self) -> tuple[int, int] | None:
        """The outputs' :meth:`Output.delivery_counts` summed; None where none of them counts."""
        counts = [c for c in (output.delivery_counts() for output in self.outputs) if c is not None]
        if not counts:
            return None
        return sum(written for written, _ in counts), sum(late for _, late in counts)

    def close(self) -> None:
        for output in self.outputs:
            try:
                output.close()
            except Exception as error:
                log.warning("closing %s failed: %s", output.describe(), error)
        self.outputs = []

    def describe(self) -> list[str]:
        return [o.describe() for o in self.outputs]
