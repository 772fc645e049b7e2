"""Opening a clock source by name: ``internal``, ``midi`` (MIDI clock in) or ``link``."""

from __future__ import annotations

from e2m_live.live.clock import Clock, InternalClock
from e2m_live.live.config import LiveConfig
from e2m_live.live.link import LinkClock, SyncUnavailable
from e2m_live.live.midi_clock import MidiClockFollower, MidiClockInput
from e2m_live.live.outputs import OutputError


def open_clock(
    source: str, config: LiveConfig, tempo: float, beats_per_bar: float, output_latency: float = 0.0
) -> Clock:
    """The clock for ``source``; raises :class:`SyncUnavailable` saying why it cannot open.

    ``output_latency`` (seconds, a frame-accurate JACK output's) is added to ``--sync-offset-ms``:
    following a master, the notes sound on its beat."""
    offset = config.sync_offset_ms / 1000.0 + output_latency
    if source == "internal":
        return InternalClock(tempo)
    if source == "midi":
        follower = MidiClockFollower(tempo, offset=offset)
        try:
            follower.input = MidiClockInput(
                follower, config.midi_api, config.clock_in_port or None, client_name=config.midi_name
            )
        except OutputError as error:
            raise SyncUnavailable(str(error)) from None
        return follower
    if source == "link":
        return LinkClock(tempo, quantum=beats_per_bar, start_stop_sync=config.link_start_stop, offset=offset)
    raise SyncUnavailable(f"unknown sync source {source!r}; choose internal, midi or link")


def describe_source(clock: Clock) -> str:
    """Where the clock comes from, for the startup summary."""
    if isinstance(clock, MidiClockFollower):
        where = clock.input.name if clock.input is not None else "no port"
        return f"MIDI clock in from {where}"
    if isinstance(clock, LinkClock):
        return (
            f"Ableton Link session (quantum {clock.quantum:g}, start/stop sync "
            f"{'on' if clock.start_stop_sync else 'off'})"
        )
    return f"internal clock, {clock.tempo:g} BPM"
