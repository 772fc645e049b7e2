"""Ableton Link: join a Link session and follow its tempo, bar phase and start/stop.

Optional: needs the ``link`` extra (``pip install aalink``; aalink and Ableton Link are
GPL-3.0, so the daemon only imports it when ``--sync link`` is asked for).

:class:`LinkClock` is an :class:`~e2m_live.live.clock.ExternalClock`. A poll thread samples the
session every few milliseconds: the beat Link reports now (with ``quantum`` = the bar length,
so beats that are multiples of the quantum are the session's bar lines), read between two
``time.monotonic()`` calls, and the session tempo. The player's beats are Link's beats, so bars
begin on the session's bar phase. With start/stop sync, the session's playing state is the
transport (``start``/``stop`` for the listeners) and ``/e2m/play``/``/e2m/stop`` start and stop
the session for every peer; without it, the session always runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from e2m_live.live.clock import ExternalClock

log = logging.getLogger(__name__)
T = TypeVar("T")

LINK_EXTRA_HINT = (
    "Ableton Link needs the optional 'link' extra: pip install aalink (aalink and Ableton Link are GPL-3.0)"
)


class SyncUnavailable(RuntimeError):
    """A sync source cannot be used here; the message says why and what to do."""


def link_available() -> str | None:
    """None if aalink imports, else why not."""
    try:
        import aalink  # noqa: F401
    except ImportError as error:
        return f"{LINK_EXTRA_HINT} ({error})"
    return None


class _EventLoopThread:
    """aalink wants a running asyncio loop (for its callbacks and ``sync``): give it one of its
    own, in a daemon thread, so the daemon's threads need not be asyncio."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="e2m-link-loop", daemon=True)
        self.thread.start()

    def call(self, function: Callable[[], T]) -> T:
        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5.0)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(1.0)


def new_link_session(tempo: float, quantum: float = 4.0) -> tuple[Any, Callable[[], None]]:
    """An enabled ``aalink.Link`` on its own event-loop thread; returns (link, closer)."""
    problem = link_available()
    if problem:
        raise SyncUnavailable(problem)
    import aalink

    loop = _EventLoopThread()
    link = loop.call(lambda: aalink.Link(float(tempo)))
    link.quantum = float(quantum)
    link.enabled = True

    def close() -> None:
        link.enabled = False
        loop.close()

    return link, close


class LinkClock(ExternalClock):
    """Follows an Ableton Link session (see the module docstring)."""

    def __init__(
        self,
        tempo: float = 120.0,
        quantum: float = 4.0,
        start_stop_sync: bool = True,
        poll_seconds: float = 0.005,
        offset: float = 0.0,
    ) -> None:
        super().__init__(tempo)
        self.offset = offset
        self.start_stop_sync = start_stop_sync
        self._link, self._close_link = new_link_session(tempo, quantum)
        self._link.start_stop_sync_enabled = start_stop_sync
        self._poll_seconds = poll_seconds
        self._closed = threading.Event()
        self._sample()
        self._running = self._link.playing if start_stop_sync else True
        self._thread = threading.Thread(target=self._poll, name="e2m-link", daemon=True)
        self._thread.start()

    @property
    def source(self) -> str:
        return "link"

    @property
    def peers(self) -> int:
        return int(self._link.num_peers)

    @property
    def quantum(self) -> float:
        return float(self._link.quantum)

    @quantum.setter
    def quantum(self, beats: float) -> None:
        """The bar length in beats (follow the time signature)."""
        if beats > 0 and beats != self._link.quantum:
            self._link.quantum = float(beats)

    def describe(self) -> str:
        return f"{super().describe()}, {self.peers} peer(s)"

    def set_playing(self, playing: bool) -> None:
        """Start or stop the session for every peer (with start/stop sync)."""
        if self.start_stop_sync:
            self._link.playing = playing

    def propose_tempo(self, bpm: float) -> None:
        """Set the session tempo for every peer (Link has no master: any peer may)."""
        self._link.tempo = float(bpm)

    def _sample(self) -> None:
        link = self._link
        before = time.monotonic()
        beat = link.beat
        after = time.monotonic()
        self._set_line(float(beat), (before + after) / 2 - self.offset, float(link.tempo))

    def _poll(self) -> None:
        while not self._closed.wait(self._poll_seconds):
            try:
                self._sample()
                if not self.start_stop_sync:
                    continue
                playing = bool(self._link.playing)
                if playing != self._running:
                    self._running = playing
                    self._notify("start" if playing else "stop")
            except Exception:
                log.exception("Link poll failed")

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        self._close_link()
