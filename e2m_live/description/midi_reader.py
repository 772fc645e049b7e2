"""Fast reading of standard MIDI files into :class:`pretty_midi.PrettyMIDI`.

pretty_midi parses files with mido, which builds and validates one ``Message`` object per event;
that is most of the time spent describing a file. This reader decodes the common, well-formed
case itself (channel messages, sysex and meta events, running status) into light event objects
and hands them to pretty_midi through its ``mido_object`` entry point, so the resulting
PrettyMIDI is the same. Anything unusual (a malformed chunk, a data byte above 127, system common
messages, running status after sysex, ...) makes :func:`read` return ``None``; callers then use
pretty_midi's own reader, which produces its exact result or error.

pretty_midi drops marker meta events; this reader keeps the ``e2m-chord:`` ones that
:mod:`.remi` writes (:func:`chord_markers`), so a decoded file gives back its chords.

pretty_midi refuses a file whose last tick is above ``MAX_TICK`` (10^7) as "likely corrupt": it
builds an array of one float per tick. A well-formed long file (a recording of a two-hour set at
960 ticks a quarter has ~12-17 million) is read at a coarser resolution instead: every tick and the
division are divided by the smallest divisor of the division that brings it under the limit, so
times in seconds stay exact up to that rounding (:func:`coarsen`).
"""

from __future__ import annotations

import itertools
import struct
import warnings

import mido
import pretty_midi

try:  # mido's own meta-event decoding, so text, key and tempo values come out identical
    from mido.midifiles.meta import build_meta_message, meta_charset
except ImportError:  # pragma: no cover - other mido layouts: always use the slow path
    build_meta_message = meta_charset = None

#: Text of the marker meta events that carry a REMI+ chord (``e2m-chord:A:min``), written by
#: :mod:`.remi` so that extraction gives back the same ``Chord`` tokens.
CHORD_MARKER_PREFIX = "e2m-chord:"
#: mido refuses messages longer than this (``MAX_MESSAGE_LENGTH``).
_MAX_MESSAGE_LENGTH = 1_000_000
_CHANNEL_TYPES = {
    0x80: "note_off",
    0x90: "note_on",
    0xA0: "polytouch",
    0xB0: "control_change",
    0xC0: "program_change",
    0xD0: "aftertouch",
    0xE0: "pitchwheel",
}


class _Unusual(Exception):
    """The file needs mido's full reader."""


class _Event:
    """The attributes of a mido message that pretty_midi reads."""

    __slots__ = ("channel", "control", "note", "pitch", "program", "time", "type", "value", "velocity")
    # Set by the reader for the message types that have them (as mido's attributes).
    control: int
    note: int
    pitch: int
    program: int
    value: int
    velocity: int

    def __init__(self, type_: str, time: int, channel: int = 0) -> None:
        self.type = type_
        self.time = time
        self.channel = channel


# A byte parser's flat dispatch: one branch per MIDI event kind, in one loop because it reads every
# event of a 30k-file corpus (C901 counts the branches).
def _read_track(data: bytes, pos: int, end: int, markers: list[int]) -> list:  # noqa: C901
    """Events of one track; the index of each marker meta event is appended to ``markers``."""
    events: list = []
    append = events.append
    last_status = None
    while pos < end:
        delta = 0
        while True:
            byte = data[pos]
            pos += 1
            delta = (delta << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        status = data[pos]
        pos += 1
        if status < 0x80:  # running status: this byte is the first data byte
            if last_status is None or last_status >= 0xF0:
                raise _Unusual
            first = status
            status = last_status
        else:
            if status != 0xFF:
                last_status = status
            first = None
            if status >= 0xF0:
                if status == 0xFF:
                    meta_type = data[pos]
                    pos += 1
                    length, pos = _varint(data, pos)
                    if length > _MAX_MESSAGE_LENGTH or pos + length > end:
                        raise _Unusual
                    if meta_type == 0x06:
                        markers.append(len(events))
                    append(build_meta_message(meta_type, list(data[pos : pos + length]), delta))
                    pos += length
                elif status in (0xF0, 0xF7):
                    length, pos = _varint(data, pos)
                    if length > _MAX_MESSAGE_LENGTH or pos + length > end:
                        raise _Unusual
                    pos += length
                    append(_Event("sysex", delta))
                else:
                    raise _Unusual
                continue
        kind = status & 0xF0
        channel = status & 0x0F
        if first is None:
            first = data[pos]
            pos += 1
        if first > 127:
            raise _Unusual
        event = _Event(_CHANNEL_TYPES[kind], delta, channel)
        if kind == 0xC0:
            event.program = first
        elif kind == 0xD0:
            event.value = first
        else:
            second = data[pos]
            pos += 1
            if second > 127:
                raise _Unusual
            if kind == 0x90 or kind == 0x80:
                event.note, event.velocity = first, second
            elif kind == 0xB0:
                event.control, event.value = first, second
            elif kind == 0xE0:
                event.pitch = (first | (second << 7)) - 8192
            else:
                event.note, event.value = first, second
        append(event)
    if pos != end:
        raise _Unusual
    return events


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos


def _read_tracks(data: bytes) -> tuple[int, list[list], list[tuple[int, str]]]:
    if len(data) < 14 or data[:4] != b"MThd":
        raise _Unusual
    (size,) = struct.unpack(">L", data[4:8])
    if size < 6:
        raise _Unusual
    _fmt, n_tracks, division = struct.unpack(">hhh", data[8:14])
    pos = 8 + size
    tracks = []
    markers: list[tuple[int, str]] = []
    with meta_charset("latin1"):
        for _ in range(n_tracks):
            if pos + 8 > len(data) or data[pos : pos + 4] != b"MTrk":
                raise _Unusual
            (length,) = struct.unpack(">L", data[pos + 4 : pos + 8])
            start, end = pos + 8, pos + 8 + length
            if end > len(data):
                raise _Unusual
            at: list[int] = []
            events = _read_track(data, start, end, at)
            tracks.append(events)
            pos = end
            if at:  # absolute ticks, only computed for tracks that have markers
                ticks = list(itertools.accumulate(e.time for e in events))
                markers += [(ticks[i], events[i].text) for i in at]
    return division, tracks, markers


def _last_tick(tracks: list[list]) -> int:
    return max((sum(event.time for event in track) for track in tracks), default=0)


def coarsen(
    division: int, tracks: list[list], markers: list[tuple[int, str]], last: int, limit: float
) -> tuple[int, list[tuple[int, str]]] | None:
    """Bring ``last`` (pretty_midi's tick count of ``tracks``, delta times, changed in place) to at
    most ``limit`` by dividing every tick and the division by the smallest divisor of ``division``
    that does it. Returns the new division and markers, or ``None`` if no divisor is enough."""
    factor = next((k for k in range(2, division + 1) if division % k == 0 and last / k <= limit), None)
    if factor is None:
        return None
    half = factor // 2
    for track in tracks:
        tick = placed = 0
        for event in track:
            tick += event.time
            coarse = (tick + half) // factor
            event.time, placed = coarse - placed, coarse
    return division // factor, [((tick + half) // factor, text) for tick, text in markers]


def read(data: bytes) -> pretty_midi.PrettyMIDI | None:
    """PrettyMIDI of a well-formed MIDI file's bytes, or ``None`` when it needs pretty_midi's own reader."""
    if build_meta_message is None:
        return None
    try:
        division, tracks, markers = _read_tracks(data)
    except (_Unusual, IndexError, struct.error):
        return None
    except Exception:  # mido's meta decoding refused something: let the full reader report it
        return None
    last = _last_tick(tracks) + 1  # pretty_midi's count
    if division > 0 and last > pretty_midi.pretty_midi.MAX_TICK:
        coarser = coarsen(division, tracks, markers, last, pretty_midi.pretty_midi.MAX_TICK)
        if coarser is None:
            return None
        division, markers = coarser
    midi = mido.MidiFile()
    midi.ticks_per_beat = division
    midi.tracks = tracks
    if not tracks:  # pretty_midi fails on this; let it say so in its own words
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            pm = pretty_midi.PrettyMIDI(mido_object=midi)
        except Exception:  # e.g. an empty track: pretty_midi's own reader gives the verdict and message
            return None
    prefix = CHORD_MARKER_PREFIX
    chords = [(tick, text[len(prefix) :]) for tick, text in markers if text.startswith(prefix)]
    if chords:
        chords.sort(key=lambda item: item[0])  # stable: markers at one tick keep their file order
        set_chord_markers(pm, chords)
    return pm


def set_chord_markers(pm: pretty_midi.PrettyMIDI, chords: list[tuple[int, str]]) -> None:
    """Attach chord labels (tick, label) to a PrettyMIDI, which has no place of its own for markers."""
    pm.e2m_chord_markers = list(chords)  # type: ignore[attr-defined]  # our own attribute


def chord_markers(pm: pretty_midi.PrettyMIDI) -> list[tuple[int, str]]:
    """(tick, label) of the ``e2m-chord:`` markers read with the file, in time order; empty if none."""
    return getattr(pm, "e2m_chord_markers", [])
