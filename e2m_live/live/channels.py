"""Instrument -> MIDI channel allocation.

Drums always play on channel 10 (index 9). Melodic instruments get the other 15 channels, each
with a program change before its first note. Policy when more than 15 melodic programs are
wanted (documented in docs/live.md):

1. a program that already has a channel keeps it;
2. otherwise it takes a free channel;
3. otherwise it takes the least recently used channel that has no sounding note (the program
   change goes out at the bar line, before the bar's notes);
4. otherwise (all 15 channels are sounding) it shares the channel of the nearest program,
   preferring the same General MIDI family (programs ``8k..8k+7``); no program change.
"""

from __future__ import annotations

from collections.abc import Iterable

from e2m_live.music import DRUM_CHANNEL

MELODIC_CHANNELS: tuple[int, ...] = tuple(c for c in range(16) if c != DRUM_CHANNEL)


class ChannelMap:
    """Remembers which program sits on which channel."""

    def __init__(self) -> None:
        self.program_of: dict[int, int] = {}  # channel -> program
        self._last_used: dict[int, int] = {}  # channel -> bar number

    def channel_of(self, program: int) -> int | None:
        for channel, prog in self.program_of.items():
            if prog == program:
                return channel
        return None

    def assign(
        self, programs: Iterable[int], busy: set[int], bar_number: int
    ) -> tuple[dict[int, int], list[tuple[int, int]]]:
        """Channels for one bar's melodic ``programs``.

        ``busy``: channels with sounding notes (not reassigned). Returns ``(program -> channel,
        [(channel, program), ...] program changes to send at the bar line)``.
        """
        mapping: dict[int, int] = {}
        changes: list[tuple[int, int]] = []
        wanted = list(dict.fromkeys(programs))
        for program in wanted:
            channel = self.channel_of(program)
            if channel is not None:
                mapping[program] = channel
        claimed = set(mapping.values())
        for program in wanted:
            if program in mapping:
                continue
            channel = self._free_channel(claimed, busy)
            if channel is None:
                channel = self._nearest(program, claimed)
            else:
                self.program_of[channel] = program
                changes.append((channel, program))
            mapping[program] = channel
            claimed.add(channel)
        for channel in mapping.values():
            self._last_used[channel] = bar_number
        return mapping, changes

    def _free_channel(self, claimed: set[int], busy: set[int]) -> int | None:
        for channel in MELODIC_CHANNELS:
            if channel not in self.program_of:
                return channel
        candidates = [c for c in MELODIC_CHANNELS if c not in claimed and c not in busy]
        if not candidates:
            return None
        return min(candidates, key=lambda c: self._last_used.get(c, -1))

    def _nearest(self, program: int, claimed: set[int]) -> int:
        def cost(channel: int) -> tuple[int, int]:
            other = self.program_of[channel]
            return (0 if other // 8 == program // 8 else 1, abs(other - program))

        pool = [c for c in MELODIC_CHANNELS if c in self.program_of]
        return min(pool, key=cost)

    def reset(self) -> None:
        self.program_of.clear()
        self._last_used.clear()
