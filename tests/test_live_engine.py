"""The generation engine with its real worker process."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from e2m_live.features import EmotionFeatures
from e2m_live.generators.base import SECTION_BARS
from e2m_live.live.engine import REPLAN_TEMPO_RISE, Engine
from e2m_live.testing.load import LOAD_GENERATOR


def _wait(predicate, timeout=8.0):
    """Whether ``predicate()`` becomes true within ``timeout`` s (assert it: a timeout must fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def engine():
    e = Engine("rules", features=EmotionFeatures(energy=0.2), debounce=0.01, max_debounce=0.05, seed=1)
    e.start()
    assert e.wait_first_bar(8)
    yield e
    e.close()


def _take(engine, count):
    return [engine.next_bar() for _ in range(count)]


def test_sections_play_in_order_and_endless_mode_continues(engine):
    assert _wait(lambda: engine._pending is not None and engine._pending.complete)
    assert len(engine._pending.bars) == SECTION_BARS
    bars = _take(engine, SECTION_BARS)
    assert [p.bar.index for p in bars] == list(range(SECTION_BARS))
    assert all(p.continues for p in bars[1:])
    assert _wait(lambda: engine._pending is not None and engine._pending.complete)
    following = engine.next_bar()
    assert following.section != bars[0].section and following.bar.index == 0
    assert following.continues and not following.repeat  # the next section joins seamlessly


def test_change_is_coalesced_and_lands_on_the_next_bar_once_a_bar_ahead(engine):
    engine.next_bar()
    sections_before = len(engine.sections)
    for energy in (0.3, 0.5, 0.7, 0.9):  # a fader drag: latest wins
        engine.set_features(engine.features.replace(energy=energy))
    # The new section takes over with one bar in hand (two decoded), the player's margin.
    assert _wait(
        lambda: (
            engine._pending is not None
            and len(engine._pending.bars) >= 2
            and engine._pending.features.energy == 0.9
        )
    )
    assert len(engine.sections) - sections_before <= 2
    planned = engine.next_bar()
    assert planned.bar.index == 0 and not planned.continues
    assert engine.sections[-1].features.energy == 0.9


def test_tempo_only_change_needs_no_new_material(engine):
    engine.next_bar()
    changes = [s for s in engine.sections if s.immediate]
    engine.set_features(engine.features.replace(tempo=150))
    time.sleep(0.2)
    assert engine.tempo == 150
    assert [s for s in engine.sections if s.immediate] == changes  # endless continuations aside


def test_loop_mode_repeats_the_same_twelve_bars(engine):
    engine.set_loop(True)
    assert _wait(lambda: engine._pending is not None and engine._pending.complete)
    first = _take(engine, SECTION_BARS)
    second = _take(engine, SECTION_BARS)
    assert [p.bar.notes for p in first] == [p.bar.notes for p in second]
    assert not any(p.repeat for p in second)


def test_crashed_worker_is_restarted_and_music_goes_on(engine):
    pid = engine.worker_pid
    os.kill(pid, signal.SIGKILL)
    assert _wait(lambda: engine.restarts == 1 and engine.worker_pid != pid and engine._ready.is_set())
    engine.regenerate()
    assert _wait(lambda: engine._pending is not None and engine._pending.bars)
    assert engine.next_bar().section == engine.sections[-1].id
    assert "restarted" in engine.errors[-1]


@contextlib.contextmanager
def _slow_engine(seconds_per_bar: float, features: EmotionFeatures, **options):
    """A started rule-generator engine that takes ``seconds_per_bar`` per bar, its first bar ready."""
    engine = Engine("rules", {"seconds_per_bar": seconds_per_bar}, features, debounce=0.01, **options)
    engine.start()
    try:
        assert engine.wait_first_bar(8)
        yield engine
    finally:
        engine.close()


def test_slow_generator_makes_the_player_hold_material():
    with _slow_engine(0.3, EmotionFeatures()) as engine:
        first = engine.next_bar()
        assert first is not None
        held = engine.next_bar()  # bar 2 is still being made: bar 1 again, marked as a repeat
        assert held.repeat and held.bar.index == 0 and not held.continues
        assert _wait(lambda: engine.status()["bars_ready"] >= 2, 3)
        second = engine.next_bar()
        assert second.bar.index == 1 and second.lag_ms > 0


def test_a_change_waits_for_the_playing_sections_next_bar_when_none_is_in_hand():
    with _slow_engine(0.4, EmotionFeatures(energy=0.2), seed=2) as engine:
        first = engine.next_bar()  # nothing decoded in hand: the worker is making bar 2
        playing = engine._playing
        assert playing is not None and len(playing.bars) == 1
        engine.set_features(engine.features.replace(energy=0.6))
        assert _wait(lambda: engine._pending is not None and engine._pending.features.energy == 0.6)
        # The request went out only once the playing section's next bar was in hand.
        assert len(playing.bars) >= 1 + engine.hold_bars
        assert engine.next_bar().section == first.section  # and the player has it


def test_a_superseded_sections_bars_bridge_instead_of_a_repeat():
    # A change every bar or two: the second change supersedes the first one's section before it
    # starts. When the playing section runs out before the newest has a bar, the player goes on
    # with the superseded section's bars (adapted), not with a repeated bar.
    # A bar takes 1 s, so the newest section has no bar for at least 1 s after its request: the
    # window in which the test drains the playing section, wide enough for a busy machine.
    with _slow_engine(1.0, EmotionFeatures(energy=0.2), seed=3) as engine:
        first = engine.next_bar()
        engine.set_features(engine.features.replace(energy=0.5))
        assert _wait(lambda: engine._pending is not None and engine._pending.features.energy == 0.5)
        superseded = engine._pending
        assert _wait(lambda: len(superseded.bars) >= 1, 8)
        engine.set_features(engine.features.replace(energy=0.8))
        assert _wait(lambda: engine._pending is not None and engine._pending.features.energy == 0.8)
        newest = engine._pending
        played = [engine.next_bar() for _ in range(SECTION_BARS)]  # far more than are decoded
        from_playing = [p for p in played if p.section == first.section]
        bridge = played[len(from_playing)]
        assert not newest.bars, "the newest section was too quick for this test's window"
        assert bridge.section == superseded.id and bridge.bar.index == 0
        assert not bridge.repeat and not bridge.continues
        assert engine.bridged == 1
        # Once the newest section has its bars, it takes over from the bridge.
        assert _wait(lambda: len(newest.bars) >= 2, 12)
        taken = engine.next_bar()
        assert taken.section == newest.id and taken.bar.index == 0
        assert engine._bridge is None


def test_worker_exits_when_the_daemon_is_killed():
    import subprocess
    import sys

    script = (
        "import time; from e2m_live.live.engine import Engine; e = Engine('rules'); e.start(); "
        "e.wait_first_bar(8); print(e.worker_pid, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    proc.kill()
    proc.wait()

    def gone() -> bool:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return True
        return False

    assert _wait(gone, 5), "the generation worker outlived its daemon"


def test_the_spawned_worker_imports_a_generator_named_by_path():
    # The benchmarks' load generator is no registered name: the worker process imports it itself.
    engine = Engine(LOAD_GENERATOR, {"seconds_per_bar": 0.001}, seed=1)
    engine.start()
    try:
        assert engine.wait_first_bar(30)
        assert not engine.errors
    finally:
        engine.close()


class _StuckGenerator:
    """One bar at once, then a bar that is never finished unless interrupted (a dense bar that takes
    longer than the change that supersedes it)."""

    def __init__(self) -> None:
        self.interrupt = None

    def generate(self, features, *, prime=None, seed=None, arrangement=None):
        from e2m_live.music import Bar

        yield Bar(numerator=4, denominator=4, tempo=120.0, index=0)
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            if self.interrupt is not None and self.interrupt():
                return
            time.sleep(0.005)
        yield Bar(numerator=4, denominator=4, tempo=120.0, index=1)


def test_a_newer_request_interrupts_the_bar_being_made():
    """The worker leaves a section mid-bar for a newer request, and does not report it done."""
    import multiprocessing as mp
    import queue
    import threading

    from e2m_live.live.engine import Request, _serve_requests

    requests, results = mp.Queue(), mp.Queue()
    worker = threading.Thread(
        target=_serve_requests, args=(_StuckGenerator(), requests, results), daemon=True
    )
    worker.start()
    try:
        requests.put(Request(1, EmotionFeatures(), None, 1))
        assert results.get(timeout=10)[:2] == ("bar", 1)
        time.sleep(0.1)  # the worker is inside section 1's second bar
        asked = time.monotonic()
        requests.put(Request(2, EmotionFeatures(energy=0.9), None, 2))
        first = results.get(timeout=10)
        assert first[:2] == ("bar", 2), first
        assert time.monotonic() - asked < 5.0  # not after the stuck bar's 20 s
        with pytest.raises(queue.Empty):
            results.get(timeout=0.3)  # section 2 is stuck in its second bar; no "done" for 1
    finally:
        requests.put(None)
        worker.join(5)
    assert not worker.is_alive()


def test_a_much_faster_tempo_asks_for_a_section_planned_at_it():
    """With a generator whose density follows the tempo (the model's real-time cap), a tempo
    REPLAN_TEMPO_RISE above the newest section's asks for a new section; a smaller rise does not
    (200 BPM: above 1.15 times the first section and the continuation planned at the smaller rise)."""
    engine = Engine(
        "rules",
        features=EmotionFeatures(energy=0.2, tempo=120),
        debounce=0.01,
        max_debounce=0.05,
        seed=1,
        replan_on_tempo_rise=True,
    )
    engine.start()
    try:
        assert engine.wait_first_bar(8)
        engine.next_bar()
        changes = len([s for s in engine.sections if s.immediate])
        engine.set_features(engine.features.replace(tempo=round(120 * REPLAN_TEMPO_RISE) - 1))
        time.sleep(0.3)
        assert len([s for s in engine.sections if s.immediate]) == changes
        engine.set_features(engine.features.replace(tempo=200))
        assert _wait(lambda: any(s.immediate and s.features.tempo == 200 for s in engine.sections))
    finally:
        engine.close()


def test_only_the_model_generator_replans_on_tempo_by_default():
    assert Engine("model").replan_on_tempo_rise
    assert not Engine("model", {"realtime_density": False}).replan_on_tempo_rise
    assert not Engine("rules").replan_on_tempo_rise


def test_bars_given_back_after_a_stop_are_handed_out_again(engine):
    assert _wait(lambda: engine._pending is not None and engine._pending.complete)
    _, second, third = _take(engine, 3)
    engine.give_back(2)  # the player stopped during the second bar, the third already fetched
    again = engine.next_bar()
    assert (again.section, again.bar.index) == (second.section, second.bar.index)
    assert not again.repeat
    assert engine.next_bar().bar.index == third.bar.index
    engine.give_back(0)
    assert engine.next_bar().bar.index == third.bar.index + 1


def test_a_give_back_never_rewinds_into_a_superseded_section(engine):
    assert _wait(lambda: engine._pending is not None and engine._pending.complete)
    old = engine.next_bar()
    engine.set_features(engine.features.replace(energy=0.9))
    assert _wait(lambda: engine._pending is not None and len(engine._pending.bars) >= 2)
    new = engine.next_bar()
    assert new.section != old.section and new.bar.index == 0
    engine.give_back(2)  # both unheard: only the playing section's bar comes back
    again = engine.next_bar()
    assert (again.section, again.bar.index) == (new.section, 0)
