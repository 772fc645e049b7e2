"""Description plans made the way the planner makes them, without the planner's weights: for the grammar's
tests and its speed benchmark (``benchmarks/grammar_speed.py``)."""

from __future__ import annotations

import random

from e2m_live.description.grammar import DescriptionState
from e2m_live.description.vocab import DescriptionVocab

_VOCAB = DescriptionVocab()
#: The instruments a walk picks from.
POOL = ["drum", "Acoustic Grand Piano", "Electric Bass (finger)", "String Ensemble 1", "Flute", "Trumpet"]


def plan_like_the_planner(rng: random.Random) -> list[str]:
    """12 bars walked through the grammar the way the planner does: header tokens drawn from the
    mask, 0..4 instruments (one more if the means require notes), 1..3 chords."""
    chord_ids = _VOCAB.ids_with_prefix("Chord")
    state = DescriptionState(first_bar=1)
    tokens: list[str] = []

    def put(tok: str) -> None:
        state.advance(tok)
        tokens.append(tok)

    for bar in range(12):
        put(f"Bar_{bar + 1}")
        for _ in range(5):
            put(_VOCAB.itos[rng.choice(state.allowed_ids(_VOCAB))])
        for name in rng.sample(POOL, rng.randint(0, 4)):
            put(f"Instrument_{name}")
        if not state.allowed_mask(_VOCAB)[_VOCAB["Chord_C:maj"]]:
            put(f"Instrument_{POOL[0]}")  # the means say the bar has notes
        for _ in range(rng.randint(1, 3)):
            chord = rng.choice(chord_ids)
            assert state.allowed_mask(_VOCAB)[chord]
            put(_VOCAB.itos[chord])
    assert state.is_complete()
    return tokens
