"""Keep the model generator ahead of the player: plan no denser than this machine decodes in time.

The decoder's cost is its tokens: about six a note (``Position``, ``Instrument``, ``Pitch``,
``Velocity``, ``Duration``, and the bars hold up to ~1.2 times the notes their ``Note Density`` bin
names). On one core of the development machine it makes 170-200 tokens a second, so a dense band
(``Note Density_4``, ~80-100 notes, 400-510 tokens) took 2.4-3.8 s a bar where the bar lasts 1.7-2 s:
the worker fell behind and the player repeated bars, and bars that reached the 512-token cap lost
their last beats. So the live generator measures its own rate (:class:`DecodeRate`) and lowers each
planned bar's density bin to what it can decode in :data:`REALTIME_SHARE` of the bar's duration at
the tempo in force (:func:`cap_density`): a slow or busy machine plays sparser bars, in time and whole;
a fast one is not capped at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from e2m_live.description.vocab import NOTE_DENSITY_KEY, POSITIONS_PER_QUARTER, TIME_SIGNATURE_KEY

#: Decoder tokens per note a density bin allows (measured: 5.0-6.0 tokens a note, up to 1.2 times the
#: bin's notes).
TOKENS_PER_NOTE = 6.0
#: Share of a bar's duration its decoding may take: a change's first bar must be ready while the
#: bar in hand plays, so the worker needs some slack beyond keeping pace. 0.8 until session 12: the
#: few late bars of the two-hour soaks were all a section's next bar, still decoding in minutes when
#: the host took the CPU away (a fifth of a bar's slack was not enough there).
REALTIME_SHARE = 0.7
#: The sparsest bin the cap goes down to (a bar that still has a pulse).
MIN_DENSITY_BIN = 1


class DecodeRate:
    """Decoder tokens a second on this machine, now: an exponential average over bars."""

    def __init__(self, initial: float = 150.0, smoothing: float = 0.3) -> None:
        self.tokens_per_second = initial
        self.smoothing = smoothing
        self.measured = 0

    def add(self, tokens: int, seconds: float) -> None:
        """A bar of ``tokens`` took ``seconds`` (wall clock: what the worker really got)."""
        if tokens <= 0 or seconds <= 0:
            return
        rate = tokens / seconds
        weight = 1.0 if self.measured == 0 else self.smoothing
        self.tokens_per_second += weight * (rate - self.tokens_per_second)
        self.measured += 1


def density_cap(tokens_per_second: float, seconds: float, positions: int) -> int:
    """The densest ``Note Density`` bin a bar of ``positions`` positions lasting ``seconds`` may have
    (at least :data:`MIN_DENSITY_BIN`)."""
    from e2m_live.figaro.constraints import density_notes  # imports torch: not at the registry's check

    budget = tokens_per_second * seconds * REALTIME_SHARE
    cap = MIN_DENSITY_BIN
    while density_notes(cap + 1, positions) * TOKENS_PER_NOTE <= budget and cap < 64:
        cap += 1
    return cap


def cap_density(description: Sequence[str], tempo: float, tokens_per_second: float) -> tuple[list[str], int]:
    """``description`` with every bar's ``Note Density`` bin lowered to what decodes in time (see the
    module's docstring); also how many bars were lowered. A bar's ``Time Signature`` comes before its
    density (FIGARO's order); 4/4 until one does."""
    from e2m_live.figaro.constraints import bar_length_in_positions

    out: list[str] = []
    positions, capped = 4 * POSITIONS_PER_QUARTER, 0
    for token in description:
        key, _, value = token.partition("_")
        if key == TIME_SIGNATURE_KEY:
            positions = bar_length_in_positions(token) or positions
        elif key == NOTE_DENSITY_KEY and value.isdigit():
            seconds = positions / POSITIONS_PER_QUARTER * 60.0 / tempo
            cap = density_cap(tokens_per_second, seconds, positions)
            if int(value) > cap:
                token = f"{NOTE_DENSITY_KEY}_{cap}"
                capped += 1
        out.append(token)
    return out, capped
