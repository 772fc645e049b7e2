"""Immediate answers: the pure bar transforms, the engine adapting decoded bars to newer features,
and the player's loudness gain from the next beat (real player thread, in-memory output)."""

from __future__ import annotations

import time

import pytest

from e2m_live.features import EmotionFeatures
from e2m_live.live.clock import InternalClock
from e2m_live.live.engine import Engine
from e2m_live.live.outputs import CaptureOutput, OutputSet
from e2m_live.live.player import PlannedBar, Player
from e2m_live.live.transform import (
    MAJOR,
    MINOR,
    Adaptation,
    adapt,
    adaptation,
    energy_notes,
    loudness_gain,
    pitch_map,
    transpose_notes,
)
from e2m_live.music import Bar, Note
from e2m_live.testing.daemon import start_daemon
from e2m_live.testing.jack import JackMidiRecorder
from tests.live_helpers import jack  # noqa: F401 - jack is a fixture


def _bar(pitches=(60, 64, 67, 71), drum=36) -> Bar:
    notes = [Note(p, 80, i * 1.0, 0.5, program=0) for i, p in enumerate(pitches)]
    notes.append(Note(drum, 100, 0.0, 0.25, is_drum=True))
    return Bar(notes)


def test_transposition_is_exact_and_takes_the_shortest_way():
    moved = transpose_notes(_bar().notes, 0, 1, 7, 1)  # C major -> G major: down a fourth
    assert [n.pitch for n in moved[:4]] == [55, 59, 62, 66]
    assert moved[4].pitch == 36  # drums untouched
    assert [n.pitch for n in transpose_notes(_bar().notes, 0, 1, 2, 1)[:4]] == [62, 66, 69, 73]


def test_mode_maps_scale_degree_to_scale_degree():
    offsets = pitch_map(0, 1, 0, 0)  # C major -> C minor
    assert [(d + offsets[d]) % 12 for d in MAJOR] == list(MINOR)
    back = pitch_map(0, 0, 0, 1)
    assert [(d + back[d]) % 12 for d in MINOR] == list(MAJOR)
    assert offsets[1] == 0 and offsets[6] == 0  # chromatic notes keep their interval from the tonic
    minor = transpose_notes(_bar().notes, 0, 1, 9, 0)  # C major -> A minor: every note in A minor
    assert all((n.pitch - 9) % 12 in MINOR for n in minor[:4])


def test_energy_fall_thins_off_beat_notes_and_softens_rise_louder():
    notes = [Note(60 + i, 40 + 5 * i, i * 0.5, 0.25) for i in range(8)]  # on and off the beat
    thinner = energy_notes(notes, 0.8, 0.2)
    assert len(thinner) < len(notes)
    assert {n.start for n in notes if n.start.is_integer()} <= {n.start for n in thinner}  # beats stay
    assert max(n.velocity for n in thinner) < max(n.velocity for n in notes)
    louder = energy_notes(notes, 0.2, 0.8)
    assert len(louder) == len(notes)
    assert all(a.velocity > b.velocity for a, b in zip(louder, notes, strict=True))
    assert energy_notes(notes, 0.5, 0.5) == notes


def test_adapt_leaves_the_decoded_bar_alone():
    bar = _bar()
    planned = EmotionFeatures(key=0, mode=1, energy=0.5)
    assert adapt(bar, planned, planned.replace(valence=0.9, tempo=90)) is bar  # not an immediate feature
    changed = adapt(bar, planned, planned.replace(key=2, energy=0.9))
    assert changed is not bar and [n.pitch for n in bar.notes[:4]] == [60, 64, 67, 71]
    assert [n.pitch for n in changed.notes[:4]] == [62, 66, 69, 73]
    assert loudness_gain(-20, -10) == pytest.approx(10**0.25)


def test_engine_adapts_the_bars_it_has_until_the_new_section_is_ready():
    # A slow worker (0.4 s a bar): the new section is far from ready when the next bar is asked for.
    engine = Engine(
        "rules", {"seconds_per_bar": 0.4}, EmotionFeatures(key=0, mode=1, energy=0.5), debounce=0.01, seed=3
    )
    engine.start()
    try:
        assert engine.wait_first_bar(10)
        first = engine.next_bar()
        assert _wait(lambda: engine.status()["bars_ready"] >= 3, 10)
        engine.set_features(engine.features.replace(key=6, mode=0, loudness=-20.0))
        planned = engine.next_bar()
        assert planned.section == first.section and planned.bar.index == 1  # still the old plan
        decoded = engine._playing.bars[1]
        assert planned.bar is decoded  # left alone: the player applies the adaptation as it schedules
        assert planned.adaptation.apply(decoded).notes == transpose_notes(decoded.notes, 0, 1, 6, 0)
        assert planned.loudness == EmotionFeatures().loudness  # the gain is the player's business
        assert _wait(lambda: engine._pending is not None and len(engine._pending.bars) >= 2, 15)
        newer = engine.next_bar()
        assert newer.section != first.section and newer.bar.index == 0
        assert newer.bar is engine._playing.bars[0] and newer.adaptation is None  # made for these features
    finally:
        engine.close()


def test_exact_answers_need_no_new_plan_other_changes_re_plan():
    engine = Engine(
        "rules", features=EmotionFeatures(key=0, mode=1), debounce=0.01, max_debounce=0.05, seed=2
    )
    engine.start()
    try:
        assert engine.wait_first_bar(10)
        engine.next_bar()
        assert _wait(lambda: engine._pending is not None and engine._pending.complete, 10)
        changes = len([s for s in engine.sections if s.immediate])
        engine.set_features(engine.features.replace(key=5, loudness=-20.0, tempo=100.0))
        time.sleep(0.3)
        assert len([s for s in engine.sections if s.immediate]) == changes  # transposition, gain, tempo
        planned = engine.next_bar()
        pitch_classes = {n.pitch % 12 for n in planned.adaptation.apply(planned.bar).notes if not n.is_drum}
        assert pitch_classes <= {(5 + d) % 12 for d in MAJOR}
        engine.set_features(engine.features.replace(mode=0))
        assert _wait(lambda: len([s for s in engine.sections if s.immediate]) == changes + 1, 5)
        assert engine.sections[-1].features.key == 5  # the new plan keeps the key asked for before
    finally:
        engine.close()


class _Source:
    def __init__(self, bar: Bar, loudness: float | None, change: Adaptation | None = None) -> None:
        self.bar, self.loudness, self.change = bar, loudness, change

    def next_bar(self) -> PlannedBar:
        return PlannedBar(self.bar, 1, continues=True, loudness=self.loudness, adaptation=self.change)


def test_the_player_schedules_exactly_what_adapt_builds():
    bar = Bar(
        [Note(60 + 2 * i, 40 + 10 * i, i * 0.5, 0.25, program=0) for i in range(8)]
        + [Note(38, 90, 1.5, 0.1, is_drum=True)]
    )
    planned = EmotionFeatures(key=0, mode=1, energy=0.8)
    requested = EmotionFeatures(key=9, mode=0, energy=0.3)
    change = adaptation(bar, planned, requested)
    assert change is not None and change.dropped and change.offsets is not None
    expected = sorted((n.pitch, n.velocity) for n in adapt(bar, planned, requested).notes)
    capture = CaptureOutput()
    player = Player(
        InternalClock(240.0), OutputSet([capture]), _Source(bar, None, change), tempo=240.0, realtime=False
    )
    player.start_thread()
    player.play()
    try:
        assert _wait(lambda: len(_ons(capture)) >= 2 * len(expected))
    finally:
        player.shutdown()
    ons = sorted(_ons(capture))
    first_bar = [m for t, m in ons if t < ons[0][0] + 0.99]  # 240 BPM, 4/4: a bar a second
    assert sorted((m[1], m[2]) for m in first_bar) == expected


def test_player_applies_a_loudness_change_from_the_next_beat():
    # Four quarter notes a bar at 240 BPM (a beat is 0.25 s); the change lands mid-beat.
    bar = Bar([Note(60 + i, 64, float(i), 0.5) for i in range(4)])
    capture = CaptureOutput()
    player = Player(
        InternalClock(240.0), OutputSet([capture]), _Source(bar, -20.0), tempo=240.0, realtime=False
    )
    player.set_loudness(-20.0)
    player.start_thread()
    player.play()
    try:
        assert _wait(lambda: len(_ons(capture)) >= 5)
        time.sleep(0.1)  # mid-beat
        changed_at = time.monotonic()
        player.set_loudness(-10.0)  # x1.78
        assert _wait(lambda: len([m for m in _ons(capture) if m[0] > changed_at]) >= 3)
    finally:
        player.shutdown()
    before = [m for m in _ons(capture) if m[0] <= changed_at]
    after = [m for m in _ons(capture) if m[0] > changed_at]
    assert {m[1][2] for m in before} == {64}
    assert [m[1][2] for m in after[:3]] == [round(64 * 10**0.25)] * 3
    beat = 0.25
    assert after[0][0] - changed_at < beat + 0.1  # the next note-on (on the next beat) is louder


def _ons(capture: CaptureOutput) -> list:
    return [
        (m.when, m.message)
        for m in list(capture.messages)
        if m.message[0] & 0xF0 == 0x90 and m.message[2] > 0
    ]


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---- end to end: `e2m-live serve` to a JACK port, heard by a second JACK client ------------------

TEMPO = 240.0
BAR = 4 * 60.0 / TEMPO  # 1 s
BEAT = 60.0 / TEMPO
F_SHARP_MAJOR = {(6 + d) % 12 for d in MAJOR}
C_MAJOR = set(MAJOR)


@pytest.fixture
def served(jack):  # noqa: F811 - the fixture is imported above
    d = start_daemon("--tempo", str(TEMPO), "--debounce-ms", "20", "--autoplay")
    recorder = JackMidiRecorder()
    recorder.connect(d.midi_name)
    yield d, recorder
    recorder.close()
    if d.alive():
        d.terminate()


def _pitched(received) -> list:
    return [r for r in received if r.message[0] & 0x0F != 9]


@pytest.mark.jack
def test_a_key_change_is_heard_from_the_next_bar_line(served):
    d, recorder = served
    d.send("/e2m/loudness", -12.0)
    time.sleep(3 * BAR)
    changed = time.monotonic()
    d.send("/e2m/key", 6)
    time.sleep(2.2 * BAR)
    before = _pitched(recorder.note_ons(changed - 2 * BAR, changed))
    after = _pitched(recorder.note_ons(changed + BAR, changed + 2 * BAR))  # the next bar line passed
    assert before and after
    assert all(r.message[1] % 12 in C_MAJOR for r in before)
    assert all(r.message[1] % 12 in F_SHARP_MAJOR for r in after), [r.message[1] for r in after]


@pytest.mark.jack
def test_loudness_is_heard_from_the_next_beat(served):
    d, recorder = served
    d.send("/e2m/loudness", -30.0)
    time.sleep(3 * BAR)
    changed = time.monotonic()
    d.send("/e2m/loudness", -15.0)  # velocities x2.37
    time.sleep(BAR)
    before = recorder.note_ons(changed - BAR, changed)
    after = recorder.note_ons(changed + BEAT + 0.03, changed + BAR)  # from the next beat on
    assert before and after
    mean = [sum(r.message[2] for r in part) / len(part) for part in (before, after)]
    assert mean[1] > 1.6 * mean[0], mean
