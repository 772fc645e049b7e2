"""Assemble per-bar plans into a FIGARO description by walking the grammar.

Each bar is written in FIGARO's order: ``Bar_k``, ``Time Signature`` (from the features), the four
meta tokens, the instruments, the chords. Every token is fed to a
:class:`~e2m_live.description.grammar.DescriptionState`, so a plan that could ever break the grammar
fails here, loudly and with the offending token, instead of reaching the decoder. Unlike the
original project's combiner (which interleaved the classes token by token), the classes are never
mixed within a bar.
"""

from __future__ import annotations

from collections.abc import Sequence

from e2m_live.description.grammar import BarDescription, Description, DescriptionState, GrammarError
from e2m_live.planner.sampling import BarPlan


def assemble(
    bar_plans: Sequence[BarPlan], time_signature: tuple[int, int], first_bar: int = 1
) -> Description:
    """The description of ``bar_plans`` (numbered from ``first_bar``) in ``time_signature``.

    Raises ``GrammarError`` (naming the token and bar) if the plans do not form a valid description.
    """
    if not bar_plans:
        raise GrammarError("a description needs at least one bar")
    state = DescriptionState(first_bar=first_bar)
    bars: list[BarDescription] = []
    for offset, plan in enumerate(bar_plans):
        bar = BarDescription(
            time_signature=time_signature,
            note_density=plan.note_density,
            mean_velocity=plan.mean_velocity,
            mean_pitch=plan.mean_pitch,
            mean_duration=plan.mean_duration,
            instruments=plan.instruments,
            chords=plan.chords,
            index=first_bar + offset,
        )
        state.feed(bar.tokens())
        bars.append(bar)
    if not state.is_complete():
        raise GrammarError(f"planned description is incomplete: expected {state.expected()}")
    return Description(bars)
