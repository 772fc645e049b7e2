"""The generation engine: a worker process that makes bars, and the bar source the player reads.

* Generation runs in its own process (niced), so the player thread never waits for the model or
  for a GIL the model holds. A crashed worker is restarted and its request resubmitted. The same
  process estimates the features of what was played (:meth:`Engine.measure`, measured.py).
* Every control change is heard at once: each bar handed to the player is first adapted to the
  features requested since it was planned (:func:`~e2m_live.live.transform.adapt`: key, mode,
  energy); loudness is the player's gain. Tempo, loudness and a key change within the mode are
  exact that way and need no new material, except a tempo :data:`REPLAN_TEMPO_RISE` times the
  newest section's with the model generator, whose density was capped for the slower tempo.
* Other changes (features, and the :class:`~e2m_live.arrangement.Arrangement` beside them:
  key lock, ensemble, instruments, muted) are coalesced (latest wins) and debounced: a request
  goes out ``debounce`` seconds after the last change, or ``max_debounce`` after the first of a
  burst (a fader being dragged still produces new material).
* A re-plan requests a new section primed with the bar being played; it takes over at the first
  bar line where it is ``margin_bars`` ahead of the player (or at once if the playing section has
  nothing more). In endless mode the next section (same features, primed with the section's last
  bar) is requested as soon as the current one is complete; in loop mode the current 12 bars
  repeat.
* A change that arrives while the worker is decoding the playing section's *next* bar (nothing
  decoded in hand) waits for that bar plus ``hold_bars`` - 1 more (at most ``max_hold`` s) before
  the worker leaves the section: the immediate answers carry the change meanwhile, and the new
  section then starts with bars in hand rather than a repeat.
* A change that supersedes a section still waiting to start keeps that section's bars as a
  *bridge*: if the playing section runs out before the newest one has a bar, the player goes on
  with the bridge's bars (adapted to the features in force) instead of repeating a bar: they were
  decoded anyway (:attr:`Engine.bridged` counts them; docs/live.md has the A/B).
* Bars the player got but nobody heard in full when it stopped (stop, panic, restart) come back
  (:meth:`Engine.give_back`): the first bar after play is the interrupted one again, so a stop does
  not cost the worker a bar of its lead (a repeated bar after panic/play in both two-hour soaks).
* If a bar is late the player gets the bar being played again (adapted), and the lag is
  reported; :attr:`Engine.margins` records the bars decoded ahead at every bar, for benchmarks.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import multiprocessing as mp
import os
import queue
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from e2m_live.arrangement import Arrangement
from e2m_live.features import KEY_NAMES, EmotionFeatures
from e2m_live.generators.base import SECTION_BARS
from e2m_live.generators.registry import create_generator
from e2m_live.live.allocator import AUTO, allocator_of, preloaded, worker_library
from e2m_live.live.player import BarStarted, PlannedBar
from e2m_live.live.transform import adaptation
from e2m_live.music import Bar

log = logging.getLogger(__name__)

#: The model generator caps each section's note density to what decodes in time at the tempo it was
#: asked for (:mod:`e2m_live.generators.realtime`, 20 % slack). A tempo this much above that makes
#: its bars too long to decode in time, so the engine asks for a new section, planned at the new
#: tempo (the two-hour soak: 84 -> 144 BPM within a section, three repeated bars in a row).
REPLAN_TEMPO_RISE = 1.15


@dataclass(slots=True)
class Request:
    """One section to generate."""

    section: int
    features: EmotionFeatures
    prime: Bar | None
    seed: int
    arrangement: Arrangement = field(default_factory=Arrangement)  # frozen, plain values: pickles


@dataclass(slots=True)
class Section:
    """A requested section and the bars received so far."""

    id: int
    features: EmotionFeatures
    seed: int
    immediate: bool  # a change: starts as soon as its first bar is ready
    changed_at: float  # when the control change that caused it arrived
    arrangement: Arrangement = field(default_factory=Arrangement)
    requested_at: float = 0.0
    bars: list[Bar] = field(default_factory=list)
    complete: bool = False
    first_ready_at: float | None = None
    started_at: float | None = None  # bar line of its first bar
    failed: str | None = None


def _measure_loop(measures: mp.Queue, results: mp.Queue) -> None:
    """Worker thread: estimate the features of the latest window played (see measured.py)."""
    from e2m_live.live.measured import estimate

    parent = os.getppid()
    while True:
        try:
            window = measures.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        with contextlib.suppress(queue.Empty):
            while window is not None:  # latest wins
                window = measures.get_nowait()
        if window is None:
            return
        try:
            features = estimate(window)
        except Exception as error:  # odd material must not end the feedback
            results.put(("measure-error", f"{type(error).__name__}: {error}"))
            continue
        if features is not None:
            results.put(("measured", features.to_dict()))


def _worker_main(
    name: str,
    options: dict[str, Any],
    requests: mp.Queue,
    results: mp.Queue,
    niceness: int,
    measures: mp.Queue | None = None,
) -> None:
    """The worker process: latest request wins, bars are sent as soon as each is ready; a thread
    estimates the features of what was played (``measures``)."""
    # Ctrl-C, and SIGTERM sent to the whole process group (``timeout``, service managers), reach
    # the worker too; the daemon decides when the worker ends (it kills it if it has to).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(niceness)
    generator = create_generator(name, **options)
    if measures is not None:
        threading.Thread(
            target=_measure_loop, args=(measures, results), name="e2m-measure", daemon=True
        ).start()
    results.put(("ready", os.getpid()))
    _serve_requests(generator, requests, results)


def _latest(requests: mp.Queue, block: bool, parent: int) -> Request | None:
    """The newest request (older ones are dropped); ``None``: quit. Without ``block``, raises
    ``queue.Empty`` if none is waiting."""
    if block:
        while True:
            try:
                item = requests.get(timeout=1.0)
                break
            except queue.Empty:
                if os.getppid() != parent:  # the daemon died without telling us: don't linger
                    return None
    else:
        item = requests.get_nowait()
    while item is not None:
        try:
            item = requests.get_nowait()
        except queue.Empty:
            return item
    return None


def _serve_requests(generator: Any, requests: mp.Queue, results: mp.Queue) -> None:
    """Generate the latest request's bars, sending each as soon as it is ready, until told to quit."""
    parent = os.getppid()
    if hasattr(generator, "interrupt"):
        # A newer request ends the section mid-bar: finishing a bar of a superseded section cost
        # up to a bar's decoding (2-3 s for a dense band) before the new section began.
        generator.interrupt = lambda: not requests.empty()
    request = _latest(requests, True, parent)
    while request is not None:
        newer: Request | str | None = "none"
        try:
            for bar in generator.generate(
                request.features, prime=request.prime, seed=request.seed, arrangement=request.arrangement
            ):
                results.put(("bar", request.section, bar))
                try:
                    newer = _latest(requests, False, parent)
                except queue.Empty:
                    continue
                break
            else:
                try:  # interrupted: the section ended early for the request waiting
                    newer = _latest(requests, False, parent)
                except queue.Empty:
                    results.put(("done", request.section))
        except Exception as error:  # a generator bug must not kill the daemon's music
            results.put(("error", request.section, f"{type(error).__name__}: {error}"))
        request = _latest(requests, True, parent) if newer == "none" else newer  # type: ignore[assignment]


def _key_text(features: EmotionFeatures) -> str:
    return f"{KEY_NAMES[features.key]} {'major' if features.mode else 'minor'}"


def _arrangement_text(arrangement: Arrangement) -> str:
    """What the section plays with: the list, or the ensemble; muted ones; a non-default key lock."""
    text = "own list" if arrangement.instruments is not None else arrangement.ensemble
    if arrangement.muted:
        text += f" (muted: {', '.join(sorted(arrangement.muted))})"
    return f"{text}, key lock {arrangement.key_lock:g}"


class Engine:
    """Owns the worker process and the sections; :meth:`next_bar` feeds the player."""

    def __init__(
        self,
        generator: str = "rules",
        generator_options: dict[str, Any] | None = None,
        features: EmotionFeatures | None = None,
        *,
        loop: bool = False,
        seed: int | None = None,
        debounce: float = 0.03,
        max_debounce: float = 0.25,
        niceness: int = 10,
        arrangement: Arrangement | None = None,
        margin_bars: int = 1,
        hold_bars: int = 1,
        max_hold: float = 3.0,
        bridge: bool = True,
        replan_on_tempo_rise: bool | None = None,
        allocator: str = AUTO,
    ) -> None:
        self.generator = generator
        #: The worker's memory allocator: auto (jemalloc when installed), glibc or a library path
        #: (e2m_live/live/allocator.py); checked here, so a bad path fails before anything starts.
        self.allocator_library = worker_library(allocator)
        self.generator_options = dict(generator_options or {})
        self.features = features or EmotionFeatures()
        self.arrangement = arrangement or Arrangement()
        self.loop = loop
        self.debounce = debounce
        self.max_debounce = max_debounce
        self.niceness = niceness
        self.restarts = 0
        self.errors: list[str] = []
        self.sections: list[Section] = []  # history (bounded), for feedback and benchmarks
        #: (time, bars decoded ahead) at every bar handed to the player, for benchmarks.
        self.margins: collections.deque[tuple[float, int]] = collections.deque(maxlen=4096)
        self.margin_bars = margin_bars
        #: Decoded bars of the playing section a change's request waits for (0: never waits).
        self.hold_bars = hold_bars
        self.max_hold = max_hold
        #: Keep a superseded section's bars to play instead of a repeat (see the module's docstring).
        self.bridge = bridge
        if replan_on_tempo_rise is None:  # the generators whose density follows the tempo
            replan_on_tempo_rise = generator == "model" and self.generator_options.get(
                "realtime_density", True
            )
        #: A tempo :data:`REPLAN_TEMPO_RISE` times the newest section's asks for a new section.
        self.replan_on_tempo_rise = bool(replan_on_tempo_rise)
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._dirty_first: float | None = None
        self._dirty_last: float | None = None
        self._dirty_immediate = False
        self._playing: Section | None = None
        self._index = -1
        self._pending: Section | None = None  # the newest requested section not yet playing
        self._bridge: Section | None = None  # a superseded section's bars, played if all else is late
        #: Bars played from a superseded section instead of a repeat (see the module's docstring).
        self.bridged = 0
        #: What the last repeat waited for (the log says it with the repeat).
        self.late_reason = ""
        self._last_given: PlannedBar | None = None  # the prime of a re-plan (adapted when it is sent)
        #: (section id, bar index) of the last bars handed out (not repeats), for :meth:`give_back`.
        self._handed: collections.deque[tuple[int, int]] = collections.deque(maxlen=4)
        self._waiting_since: float | None = None
        self._inflight: Request | None = None
        self._ctx = mp.get_context("spawn")
        self._process: mp.process.BaseProcess | None = None
        self._requests: mp.Queue | None = None
        self._results: mp.Queue | None = None
        self._measures: mp.Queue | None = None
        #: Called (engine thread) with the features estimated from a window played (:meth:`measure`).
        self.on_measured: Callable[[EmotionFeatures], None] | None = None
        self._ready = threading.Event()
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2m-engine", daemon=True)
        self.worker_pid: int | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------
    def start(self, wait: float = 10.0) -> None:
        """Start the worker and request the first section."""
        self._spawn()
        self._thread.start()
        with self._lock:
            self._mark_dirty(immediate=True, now=time.monotonic(), at_once=True)
        if wait and not self._ready.wait(wait):
            log.warning("generation worker not ready after %.1f s", wait)

    def wait_first_bar(self, timeout: float) -> bool:
        """Block until the first section has a bar ready (startup); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if (self._pending and self._pending.bars) or self._playing is not None:
                    return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self._quit.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(2)
        for q in (self._requests, self._measures):
            if q is not None:
                with contextlib.suppress(OSError, ValueError):
                    q.put(None)
        if self._process is not None:
            self._process.join(1)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(1)

    def _request_queue(self) -> mp.Queue:
        """The generation worker's request queue (there is one from :meth:`start` on)."""
        if self._requests is None:
            raise RuntimeError("the engine has no generation worker yet: call start() first")
        return self._requests

    def _spawn(self) -> None:
        self._requests = self._ctx.Queue()
        self._results = self._ctx.Queue()
        self._measures = self._ctx.Queue()
        self._ready.clear()
        self._process = self._ctx.Process(
            target=_worker_main,
            name="e2m-generator",
            daemon=True,
            args=(
                self.generator,
                self.generator_options,
                self._requests,
                self._results,
                self.niceness,
                self._measures,
            ),
        )
        with preloaded(self.allocator_library):
            self._process.start()
        self.worker_pid = self._process.pid

    @property
    def worker_allocator(self) -> str:
        """The allocator the running worker has (``jemalloc``, ``system``; ``unknown`` without one)."""
        return allocator_of(self.worker_pid) if self.worker_pid is not None else "unknown"

    # ---- controls (any thread) ---------------------------------------------------------------------
    def set_features(self, features: EmotionFeatures) -> None:
        """New features (latest wins). Every change is heard at once through the immediate answers
        (:func:`~e2m_live.live.transform.adapt` on the bars already decoded, the player's loudness
        gain). Tempo, loudness and a key change within the mode are exact that way and need no new
        material (the next section is planned with them); anything else also requests a new
        section after the debounce, and so does a tempo too fast for the newest section's density
        (:data:`REPLAN_TEMPO_RISE`)."""
        with self._lock:
            old, self.features = self.features, features
            if old.replace(
                tempo=features.tempo, loudness=features.loudness, key=features.key
            ) != features or self._outpaces_density(float(features.tempo)):
                self._mark_dirty(immediate=True, now=time.monotonic())

    def _outpaces_density(self, tempo: float) -> bool:
        """Is ``tempo`` too fast for the bars the newest section was planned with? (lock held)"""
        newest = self._pending or self._playing
        return (
            self.replan_on_tempo_rise
            and newest is not None
            and tempo > float(newest.features.tempo) * REPLAN_TEMPO_RISE
        )

    def set_arrangement(self, arrangement: Arrangement) -> None:
        """A new arrangement (latest wins): like a feature change, a new section after the debounce,
        starting at the first bar line after its first bar is ready."""
        with self._lock:
            old, self.arrangement = self.arrangement, arrangement
            if old != arrangement:
                self._mark_dirty(immediate=True, now=time.monotonic())

    def regenerate(self) -> None:
        """A fresh section under the same features (new seed)."""
        with self._lock:
            self._mark_dirty(immediate=True, now=time.monotonic(), at_once=True)

    def set_loop(self, loop: bool) -> None:
        with self._lock:
            self.loop = loop
            self._maybe_continue()

    def measure(self, window: list) -> None:
        """Estimate the features of ``window`` (``measured.Played`` tuples) in the worker process;
        the answer goes to :attr:`on_measured`. Never blocks (latest wins in the worker)."""
        if self._measures is not None:
            with contextlib.suppress(OSError, ValueError):
                self._measures.put(window)

    @property
    def tempo(self) -> float:
        return float(self.features.tempo)

    def _mark_dirty(self, immediate: bool, now: float, at_once: bool = False) -> None:
        if self._dirty_first is None:
            self._dirty_first = now
        self._dirty_last = now
        self._dirty_immediate = self._dirty_immediate or immediate
        if at_once:
            self._dirty_first = now - self.max_debounce
        self._changed.notify_all()
        if self._results is not None:
            with contextlib.suppress(OSError, ValueError):
                self._results.put(("wake",))  # the engine thread sleeps on this queue

    # ---- the player's side (never blocks for long) -------------------------------------------------
    def next_bar(self) -> PlannedBar | None:
        with self._lock:
            now = time.monotonic()
            planned = self._choose(now)
            if planned is None or planned.repeat:
                if self._waiting_since is None:
                    self._waiting_since = now
                if planned is None:
                    return None
            else:
                planned.lag_ms = 0.0 if self._waiting_since is None else (now - self._waiting_since) * 1000
                self._waiting_since = None
            self._last_given = planned
            if not planned.repeat and self._playing is not None:
                self._handed.append((self._playing.id, self._index))
            self._maybe_continue()
            self.margins.append((now, self._bars_ahead()))
            return planned

    def give_back(self, bars: int) -> None:
        """The player stopped before the last ``bars`` bars it got were heard in full: hand out
        the playing section's among them again (a superseded section's are let go)."""
        with self._lock:
            rewind_to = None
            for _ in range(bars):
                if not self._handed or self._playing is None or self._handed[-1][0] != self._playing.id:
                    break
                rewind_to = self._handed.pop()[1]
            if rewind_to is not None:
                self._index = rewind_to - 1
            self._handed.clear()

    def _choose(self, now: float) -> PlannedBar | None:
        pending = self._pending
        section = self._playing
        following = self._index + 1
        if (
            pending is not None
            and pending.immediate
            and pending.bars
            and (
                len(pending.bars) >= 1 + self.margin_bars
                or pending.complete
                or section is None
                or not following < len(section.bars)
            )
        ):
            # A change's section takes over once it is a bar ahead of the player (one-bar safety
            # margin; the immediate answers carry the change until then), or at once if the
            # playing section has nothing more to give.
            return self._switch_to(pending, continues=False)
        if section is None:
            return None
        if following < SECTION_BARS and not (section.complete and following >= len(section.bars)):
            if following < len(section.bars):
                self._index = following
                return self._planned(section, continues=True)
            if self._bridge is not None:
                return self._cross_bridge()
            # Late: the bar being played again, adapted to the features requested now.
            self.late_reason = self._why_late(now)
            planned = self._planned(section, continues=False)
            planned.repeat = True
            return planned
        # The section is over (or ended early).
        if not self.loop and pending is not None and pending.bars:
            return self._switch_to(pending, continues=True)
        if not self.loop and self._bridge is not None:
            return self._cross_bridge()
        self._index = 0  # loop mode, or the next section is late: repeat this one
        planned = self._planned(section, continues=False)
        planned.repeat = not self.loop
        if planned.repeat:
            self.late_reason = self._why_late(now)
        return planned

    def _why_late(self, now: float) -> str:
        """What a repeat waits for, for the log (the lock is held)."""
        section, pending, inflight = self._playing, self._pending, self._inflight
        parts = []
        if section is not None:
            state = "complete" if section.complete else "being decoded"
            parts.append(
                f"section {section.id} played bar {self._index + 1} of {len(section.bars)} ({state})"
            )
        if pending is not None:
            parts.append(
                f"section {pending.id} requested {now - pending.requested_at:.2f} s ago "
                f"({now - pending.changed_at:.2f} s after its change), {len(pending.bars)} bars ready"
            )
        parts.append(f"worker on section {inflight.section if inflight else 'none'}")
        return "; ".join(parts)

    def _given_bar(self) -> Bar | None:
        """The bar last handed to the player, as it sounded (engine thread: builds the notes)."""
        given = self._last_given
        if given is None:
            return None
        return given.bar if given.adaptation is None else given.adaptation.apply(given.bar)

    def _bars_ahead(self) -> int:
        """Bars decoded and not yet handed to the player (what it can play without a repeat)."""
        section, pending = self._playing, self._pending
        ahead = self._playing_ahead()
        if self._bridge is not None:
            ahead += len(self._bridge.bars)
        if pending is not None and (pending.immediate or (section is not None and section.complete)):
            ahead = max(ahead, len(pending.bars)) if pending.immediate else ahead + len(pending.bars)
        return max(0, ahead)

    def _playing_ahead(self) -> int:
        """Bars of the playing section decoded and not yet handed to the player."""
        return len(self._playing.bars) - 1 - self._index if self._playing is not None else 0

    def _switch_to(self, section: Section, continues: bool) -> PlannedBar:
        self._playing, self._pending, self._index = section, None, 0
        self._bridge = None  # older than what plays now
        return self._planned(section, continues)

    def _cross_bridge(self) -> PlannedBar:
        """Play a superseded section's first bar rather than repeat one; the newest section, still
        being decoded, stays pending and takes over as usual."""
        bridge, self._bridge = self._bridge, None
        assert bridge is not None and bridge.bars  # a bridge is only kept with bars
        self._playing, self._index = bridge, 0
        self.bridged += 1
        log.info(
            "section %d late: bridging with superseded section %d",
            self._pending.id if self._pending else 0,
            bridge.id,
        )
        return self._planned(bridge, continues=False)

    def _planned(self, section: Section, continues: bool) -> PlannedBar:
        # Immediate answer: the decoded bar follows the key, mode and energy requested since (the
        # player applies it note by note as it schedules the bar).
        bar = section.bars[self._index]
        adapted = adaptation(bar, section.features, self.features)
        state = "complete" if section.complete else f"{len(section.bars)}/{SECTION_BARS} ready"
        plan = (
            f"section {section.id} ({self.generator}, {_key_text(section.features)}, "
            f"{section.features.time_signature}/4, energy {section.features.energy:.2f}, "
            f"valence {section.features.valence:.2f}, {_arrangement_text(section.arrangement)}): "
            f"bar {self._index + 1}/{SECTION_BARS}, {state}{', loop' if self.loop else ''}"
        )
        return PlannedBar(
            bar,
            section.id,
            continues=continues,
            plan=plan,
            loudness=section.features.loudness,
            adaptation=adapted,
        )

    def _maybe_continue(self) -> None:
        """Endless mode: request the next section once the current one is complete."""
        section = self._playing
        if (
            not self.loop
            and section is not None
            and section.complete
            and self._pending is None
            and self._dirty_first is None
        ):
            self._mark_dirty(immediate=False, now=time.monotonic(), at_once=True)

    def bar_started(self, info: BarStarted) -> None:
        """Player callback: records when each section's first bar was heard."""
        with self._lock:
            for section in reversed(self.sections[-4:]):
                if section.id == info.section and section.started_at is None:
                    section.started_at = info.time

    def status(self) -> dict[str, Any]:
        with self._lock:
            section = self._playing
            return {
                "generator": self.generator,
                "section": section.id if section else None,
                "bars_ready": len(section.bars) if section else 0,
                "pending": self._pending.id if self._pending else None,
                "loop": self.loop,
                "worker_alive": bool(self._process and self._process.is_alive()),
                "restarts": self.restarts,
            }

    # ---- the engine thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._quit.is_set():
            timeout = self._send_request_if_due()
            try:
                item = self._results.get(timeout=timeout) if self._results else None
            except queue.Empty:
                item = None
            except (OSError, EOFError, ValueError):
                item = None
            if item is not None:
                self._receive(item)
            elif self._process is not None and not self._process.is_alive() and not self._quit.is_set():
                self._restart()

    def _send_request_if_due(self) -> float:
        """Send the coalesced request once its debounce is over; returns how long to sleep."""
        with self._lock:
            if self._dirty_first is None or self._dirty_last is None:  # set together by _mark_dirty
                return 0.1
            if not self._ready.is_set():
                return 0.01
            now = time.monotonic()
            due = min(self._dirty_last + self.debounce, self._dirty_first + self.max_debounce)
            if now < due:
                return max(0.0005, due - now)
            immediate = self._dirty_immediate
            if immediate and now - self._dirty_first < self.max_hold and self._holding():
                return 0.05  # a bar's arrival wakes the loop earlier
            section = Section(
                next(self._ids),
                self.features,
                self._rng.randrange(2**31),
                immediate,
                changed_at=self._dirty_last,
                requested_at=now,
                arrangement=self.arrangement,
            )
            if immediate or self._playing is None:
                prime = self._given_bar()
                section.immediate = True
            else:
                prime = self._playing.bars[-1] if self._playing.bars else self._given_bar()
            self._dirty_first = self._dirty_last = None
            self._dirty_immediate = False
            superseded = self._pending
            if self.bridge and superseded is not None and superseded.bars and superseded is not self._playing:
                self._bridge = superseded
            self._pending = section
            self.sections = [*self.sections[-31:], section]
            self._inflight = Request(section.id, section.features, prime, section.seed, section.arrangement)
            request = self._inflight
        try:
            self._request_queue().put(request)
        except (OSError, ValueError) as error:
            log.error("cannot send a request to the generation worker: %s", error)
        return 0.0

    def _holding(self) -> bool:
        """Whether the worker is decoding the playing section with fewer than ``hold_bars`` of its
        bars decoded and not yet played (a change's request then waits, see the module's docstring)."""
        section, inflight = self._playing, self._inflight
        if self.hold_bars <= 0 or section is None or section.complete:
            return False
        if inflight is None or inflight.section != section.id:
            return False
        return self._playing_ahead() < self.hold_bars

    def _receive(self, item: tuple) -> None:
        kind = item[0]
        if kind == "wake":
            return
        if kind == "ready":
            self.worker_pid = item[1]
            self._ready.set()
            return
        if kind == "measured":
            if self.on_measured is not None:
                try:
                    self.on_measured(EmotionFeatures.from_dict(item[1]))
                except Exception:
                    log.exception("measured-features callback failed")
            return
        if kind == "measure-error":
            log.debug("measuring the features played failed: %s", item[1])
            return
        with self._lock:
            section = next(
                (s for s in (self._pending, self._playing, self._bridge) if s and s.id == item[1]), None
            )
            if section is None or (section is self._bridge and kind != "bar"):
                return  # superseded (a bridge only collects the bar that was being decoded)
            if kind == "bar":
                bar = item[2]
                bar.index = len(section.bars)
                now = time.monotonic()
                if section.first_ready_at is None:
                    section.first_ready_at = now
                section.bars.append(bar)
                log.debug(
                    "section %d: bar %d ready %.2f s after the request",
                    section.id,
                    bar.index + 1,
                    now - section.requested_at,
                )
            elif kind == "done":
                section.complete = True
                if not section.bars:
                    section.failed = "generator yielded no bars"
                self._inflight = None
                self._maybe_continue()
            elif kind == "error":
                log.error("generation failed for section %d: %s", section.id, item[2])
                self.errors = [*self.errors[-9:], item[2]]
                section.failed = item[2]
                section.complete = True
                self._inflight = None
            if section.complete and not section.bars and section is self._pending:
                self._pending = None  # nothing to play from it: keep the current material

    def _restart(self) -> None:
        code = self._process.exitcode if self._process else None
        log.error("generation worker died (exit code %s); restarting it", code)
        self.restarts += 1
        self.errors = [*self.errors[-9:], f"worker died (exit code {code}), restarted"]
        for q in (self._requests, self._results, self._measures):
            if q is not None:
                q.close()
                q.cancel_join_thread()
        self._spawn()
        with self._lock:
            request, self._inflight = self._inflight, None
            if request is None:
                return
            if self._pending is not None and self._pending.id == request.section:
                self._pending.bars.clear()  # the new worker makes the whole section again
                self._inflight = request
                self._request_queue().put(request)
            elif self._playing is not None and self._playing.id == request.section:
                self._playing.complete = True  # play the bars we have, then a fresh section
                self._maybe_continue()
