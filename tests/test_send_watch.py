"""SendWatch: a hint once a minute's messages are more than 1 % late, then quiet for a while."""

from __future__ import annotations

from e2m_live.live.send_watch import LATE_SHARE, MIN_MESSAGES, QUIET_SECONDS, WINDOW_SECONDS, SendWatch


def _feed(watch: SendWatch, seconds: float, per_bar: int, late_per_bar: int, start=(0.0, 0, 0)):
    """Bars of 2 s from ``start`` (time, sent, late); the hints and the end state."""
    time, sent, late = start
    hints = []
    while time < start[0] + seconds:
        time, sent, late = time + 2.0, sent + per_bar, late + late_per_bar
        if hint := watch.add(time, sent, late):
            hints.append((time, hint))
    return hints, (time, sent, late)


def test_on_time_sending_says_nothing() -> None:
    hints, _ = _feed(SendWatch(keep_awake=False), 600, per_bar=100, late_per_bar=0)
    assert hints == []


def test_late_share_at_the_bound_says_nothing_and_above_it_hints_keep_awake() -> None:
    at_bound = round(100 * LATE_SHARE)
    assert _feed(SendWatch(keep_awake=False), 300, per_bar=100, late_per_bar=at_bound)[0] == []
    hints, _ = _feed(SendWatch(keep_awake=False), 300, per_bar=100, late_per_bar=at_bound + 2)
    assert len(hints) == 1
    time, text = hints[0]
    assert time >= WINDOW_SECONDS  # not before a whole window was seen
    assert "--keep-awake" in text and "3.0 %" in text


def test_with_keep_awake_on_the_hint_points_at_the_machine_instead() -> None:
    hints, _ = _feed(SendWatch(keep_awake=True), 120, per_bar=100, late_per_bar=10)
    assert hints and "--keep-awake" not in hints[0][1] and "doctor" in hints[0][1]


def test_a_hint_is_followed_by_quiet_then_may_come_again() -> None:
    watch = SendWatch(keep_awake=False)
    hints, _ = _feed(watch, QUIET_SECONDS + 2 * WINDOW_SECONDS, per_bar=100, late_per_bar=10)
    assert len(hints) == 2
    assert hints[1][0] - hints[0][0] >= QUIET_SECONDS


def test_a_sparse_window_says_nothing() -> None:
    per_bar = MIN_MESSAGES // 60  # too few messages a minute to judge
    assert _feed(SendWatch(keep_awake=False), 300, per_bar=per_bar, late_per_bar=per_bar)[0] == []


def test_a_late_stretch_ages_out_of_the_window() -> None:
    watch = SendWatch(keep_awake=False)
    hints, state = _feed(watch, WINDOW_SECONDS + 2, per_bar=100, late_per_bar=50)
    assert len(hints) == 1
    later, _ = _feed(watch, QUIET_SECONDS + 2 * WINDOW_SECONDS, per_bar=100, late_per_bar=0, start=state)
    assert later == []


def test_restarted_counters_start_a_new_window() -> None:
    watch = SendWatch(keep_awake=False)
    _feed(watch, 100, per_bar=100, late_per_bar=0)
    assert watch.add(102.0, 10, 9) is None  # fewer than before: a new player, nothing to judge yet


def test_counts_from_a_frame_accurate_output_are_named_as_frames() -> None:
    watch = SendWatch(keep_awake=True)
    hint = None
    for bar in range(1, 40):
        hint = hint or watch.add(2.0 * bar, 100 * bar, 5 * bar, framed=True)
    assert hint is not None and "JACK frame late" in hint and "--jack-latency-ms" in hint
