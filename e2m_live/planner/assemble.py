"""Assemble per-bar plans into a FIGARO description by walking the grammar.

Each bar is written in FIGARO's order: ``Bar_k``, ``Time Signature`` (from the features), the four
meta tokens, the instruments, the chords. Every token then goes through the grammar's
:class:`~e2m_live.description.grammar.DescriptionState` (``parse``), so a plan that could ever
break the grammar fails here, loudly and with the offending token, instead of reaching the decoder. Unlike the
original project's combiner (which interleaved the classes token by token), the classes are never
mixed within a bar.
"""

from __future__ import annotations

from collections.abc import Sequence

from e2m_live.description.grammar import Description, GrammarError, parse
from e2m_live.planner.sampling import BarPlan


def bar_tokens(plan: BarPlan, index: int, time_signature: tuple[int, int]) -> list[str]:
    """One bar's tokens in FIGARO's order."""
    numerator, denominator = time_signature
    return [
        f"Bar_{index}",
        f"Time Signature_{numerator}/{denominator}",
        f"Note Density_{plan.note_density}",
        f"Mean Velocity_{plan.mean_velocity}",
        f"Mean Pitch_{plan.mean_pitch}",
        f"Mean Duration_{plan.mean_duration}",
        *(f"Instrument_{name}" for name in plan.instruments),
        *(f"Chord_{name}" for name in plan.chords),
    ]


def assemble(
    bar_plans: Sequence[BarPlan], time_signature: tuple[int, int], first_bar: int = 1
) -> Description:
    """The description of ``bar_plans`` (numbered from ``first_bar``) in ``time_signature``.

    Raises ``GrammarError`` (naming the token, its index and the bar) if the plans do not form a
    valid description.
    """
    if not bar_plans:
        raise GrammarError("a description needs at least one bar")
    tokens: list[str] = []
    for offset, plan in enumerate(bar_plans):
        tokens.extend(bar_tokens(plan, first_bar + offset, time_signature))
    # parse() runs the grammar's DescriptionState over every token and builds the typed bars.
    return parse(tokens)
