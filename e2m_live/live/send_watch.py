"""Watch how late the player sends, and say once when the machine, not the music, is the cause.

The player counts the messages it sends and those more than :data:`LATE_SEND_SECONDS` after their
deadline (two integers, no list); a frame-accurate JACK output counts those it wrote after their
frame instead (a send within its latency lands on time). At each bar line :class:`SendWatch` looks at the last
:data:`WINDOW_SECONDS`; when more than :data:`LATE_SHARE` of a window's messages were late, it
returns a hint for the log: on a virtual machine or a laptop with deep C-states that is almost always
halted CPUs waking late, which ``--keep-awake`` cures (see ``keep_awake.py``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

#: A message sent this long after its deadline counts as late.
LATE_SEND_SECONDS = 0.001
#: The span judged at each bar line.
WINDOW_SECONDS = 60.0
#: Fewer messages than this in a window say nothing.
MIN_MESSAGES = 300
#: More late messages than this share of a window earns the hint.
LATE_SHARE = 0.01
#: After a hint, stay quiet this long.
QUIET_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class _Count:
    time: float
    sent: int
    late: int


class SendWatch:
    """Feed it the player's cumulative counts at bar lines; it returns a hint when a window is late."""

    def __init__(self, keep_awake: bool) -> None:
        self.keep_awake = keep_awake
        self._counts: deque[_Count] = deque()
        self._quiet_until = float("-inf")

    def add(self, time: float, sent: int, late: int, framed: bool = False) -> str | None:
        """Counts at bar line ``time`` (monotonic seconds); a hint for the log, or None.
        ``framed``: the counts are a frame-accurate output's (written, written after their frame)."""
        counts = self._counts
        if counts and (sent < counts[-1].sent or late < counts[-1].late):
            counts.clear()  # the counters restarted (a new player)
        counts.append(_Count(time, sent, late))
        while len(counts) > 1 and time - counts[1].time >= WINDOW_SECONDS:
            counts.popleft()
        first = counts[0]
        span, window_sent, window_late = time - first.time, sent - first.sent, late - first.late
        if span < WINDOW_SECONDS or window_sent < MIN_MESSAGES or time < self._quiet_until:
            return None
        if window_late <= LATE_SHARE * window_sent:
            return None
        self._quiet_until = time + QUIET_SECONDS
        share = 100.0 * window_late / window_sent
        how = (
            "reached their JACK frame late (sent later than --jack-latency-ms allows)"
            if framed
            else f"went out more than {LATE_SEND_SECONDS * 1000:.0f} ms late"
        )
        text = f"{window_late} of {window_sent} MIDI messages ({share:.1f} %) {how} in the last {span:.0f} s"
        if self.keep_awake:
            return text + "; the machine is busy or its timers are coarse (see e2m-live doctor)"
        return (
            text + ": on a virtual machine or a laptop with deep C-states, halted CPUs wake late; "
            "try --keep-awake (e2m-live doctor measures it)"
        )
