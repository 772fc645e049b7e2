"""REMI+ grammar for constrained decoding.

The order of events in FIGARO's REMI+ (checked on the reference outputs):

    Bar_i, Time Signature_n/d, { Position_p, ( Instrument_x, Pitch_y, Velocity_v, Duration_d
                                             | Chord_c | Tempo_t ) }*

with ``Pitch_drum_*`` after ``Instrument_drum`` and ``Pitch_0..127`` after any other
instrument. On top of the grammar the mask enforces: bars numbered one after another,
positions that never go backwards and stay inside the bar, the bar's time signature and
instruments from its description (when the description has them), and a token budget per
bar (no new event starts unless a whole note still fits).

Masks are additive float tensors over the vocabulary (0 allowed, -inf forbidden), built from
precomputed id sets and cached per grammar situation, so a step costs one tensor add.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import torch
from torch import Tensor

from e2m_live.description.vocab import (
    BAR_KEY,
    CHORD_KEY,
    DRUM_INSTRUMENT,
    DURATION_KEY,
    EOS_TOKEN,
    INSTRUMENT_KEY,
    PITCH_KEY,
    POSITION_KEY,
    POSITIONS_PER_QUARTER,
    TEMPO_KEY,
    TIME_SIGNATURE_KEY,
    VELOCITY_KEY,
    RemiVocab,
)

#: Tokens of one complete note event (Position, Instrument, Pitch, Velocity, Duration).
NOTE_LENGTH = 5
#: The smallest useful per-bar budget: Bar, Time Signature and one note.
MIN_TOKENS_PER_BAR = 2 + NOTE_LENGTH


class TokenClass(IntEnum):
    OTHER = 0
    BAR = 1
    TIME_SIGNATURE = 2
    POSITION = 3
    INSTRUMENT = 4
    PITCH = 5
    DRUM_PITCH = 6
    VELOCITY = 7
    DURATION = 8
    CHORD = 9
    TEMPO = 10
    EOS = 11


def classify(token: str) -> TokenClass:
    """The grammar class of one REMI+ token."""
    if token == EOS_TOKEN:
        return TokenClass.EOS
    key = token.split("_")[0]
    if key == PITCH_KEY:
        return TokenClass.DRUM_PITCH if token.startswith(f"{PITCH_KEY}_drum_") else TokenClass.PITCH
    return {
        BAR_KEY: TokenClass.BAR,
        TIME_SIGNATURE_KEY: TokenClass.TIME_SIGNATURE,
        POSITION_KEY: TokenClass.POSITION,
        INSTRUMENT_KEY: TokenClass.INSTRUMENT,
        VELOCITY_KEY: TokenClass.VELOCITY,
        DURATION_KEY: TokenClass.DURATION,
        CHORD_KEY: TokenClass.CHORD,
        TEMPO_KEY: TokenClass.TEMPO,
    }.get(key, TokenClass.OTHER)


def bar_length_in_positions(time_signature: str) -> int | None:
    """Positions in a bar of ``Time Signature_n/d`` (12 per quarter), or None if unparsable."""
    try:
        num, den = time_signature.split("_", 1)[1].split("/")
        return int(num) * 4 * POSITIONS_PER_QUARTER // int(den)
    except (IndexError, ValueError, ZeroDivisionError):
        return None


@dataclass(frozen=True)
class BarPlan:
    """What the description says about one bar: its time signature and instruments (REMI ids)."""

    time_signature_id: int | None = None
    instrument_ids: frozenset[int] | None = None  # None: unrestricted


class RemiGrammar:
    """Vocabulary-level tables for the REMI+ grammar; one instance serves many decodes."""

    MAX_CACHED_MASKS = 4096

    def __init__(self, vocab: RemiVocab | None = None, device: str | torch.device = "cpu") -> None:
        self.vocab = vocab or RemiVocab()
        self.device = torch.device(device)
        itos = self.vocab.itos
        self.size = len(itos)
        self.token_class: list[TokenClass] = [classify(t) for t in itos]
        pairs = list(zip(itos, self.token_class, strict=True))
        self.position_value = [int(t.split("_")[1]) if c == TokenClass.POSITION else -1 for t, c in pairs]
        self.bar_number = [int(t.split("_")[1]) if c == TokenClass.BAR else -1 for t, c in pairs]
        self.bar_id = {n: i for i, n in enumerate(self.bar_number) if n >= 0}
        self.bar_positions: list[int | None] = [
            bar_length_in_positions(t) if c == TokenClass.TIME_SIGNATURE else None
            for t, c in pairs
        ]
        self.drum_instrument_id = self.vocab[f"{INSTRUMENT_KEY}_{DRUM_INSTRUMENT}"]
        self.eos_id = self.vocab.eos_id
        classes = torch.tensor([int(c) for c in self.token_class])
        self._class_ids = {c: torch.nonzero(classes == int(c)).flatten() for c in TokenClass}
        self._positions = torch.tensor(self.position_value)
        self._cache: dict[tuple, Tensor] = {}

    def ids(self, cls: TokenClass) -> Tensor:
        return self._class_ids[cls]

    def _mask(self, key: tuple, allowed: Tensor) -> Tensor:
        mask = torch.full((self.size,), float("-inf"))
        mask[allowed] = 0.0
        mask = mask.to(self.device)
        if len(self._cache) >= self.MAX_CACHED_MASKS:  # a long live session meets many instrument sets
            self._cache.clear()
        self._cache[key] = mask
        return mask

    def mask(self, key: tuple) -> Tensor:
        """The additive mask for a grammar situation ``key`` (see :class:`GrammarState`)."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        kind = key[0]
        if kind == "ids":  # an explicit set of ids
            return self._mask(key, torch.tensor(sorted(key[1]), dtype=torch.long))
        if kind == "class":
            return self._mask(key, self.ids(key[1]))
        if kind == "after_position":  # instruments (maybe restricted), chords, tempi
            instruments = self.ids(TokenClass.INSTRUMENT) if key[1] is None else torch.tensor(sorted(key[1]))
            allowed = torch.cat([instruments, self.ids(TokenClass.CHORD), self.ids(TokenClass.TEMPO)])
            return self._mask(key, allowed.long())
        if kind == "position":  # positions in [lo, hi), plus the given terminators
            _, lo, hi, terminators = key
            pos = self.ids(TokenClass.POSITION)
            values = self._positions[pos]
            allowed = pos[(values >= lo) & (values < hi)]
            return self._mask(key, torch.cat([allowed, torch.tensor(sorted(terminators), dtype=torch.long)]))
        raise KeyError(key)


@dataclass
class GrammarState:
    """Where a decode stands in the REMI+ grammar; ``advance`` it with every token."""

    grammar: RemiGrammar
    plans: dict[int, BarPlan] = field(default_factory=dict)  # bar number -> plan
    last_bar: int = 0  # number of the last generated bar (the prime counts)
    final_bar: int = 0  # no bar after this one; its end is Bar_{final+1} or <eos>
    budget: int = 512
    minimum: int = 0  # a bar may end only after this many tokens
    last_class: TokenClass = TokenClass.OTHER
    bar: int = 0
    tokens_in_bar: int = 0
    position: int = 0
    bar_positions: int | None = None
    drum: bool = False

    def advance(self, token_id: int) -> None:
        g = self.grammar
        cls = g.token_class[token_id]
        if cls == TokenClass.BAR:
            self.bar = g.bar_number[token_id]
            self.tokens_in_bar = 0
            self.position = 0
            self.bar_positions = None
        elif cls == TokenClass.TIME_SIGNATURE:
            self.bar_positions = g.bar_positions[token_id]
        elif cls == TokenClass.POSITION:
            self.position = g.position_value[token_id]
        elif cls == TokenClass.INSTRUMENT:
            self.drum = token_id == g.drum_instrument_id
        self.tokens_in_bar += 1
        self.last_class = cls

    def _terminators(self) -> frozenset[int]:
        g = self.grammar
        next_bar = self.bar + 1
        ends = {g.bar_id[next_bar]} if next_bar in g.bar_id else set()
        if self.bar >= self.final_bar:
            ends.add(g.eos_id)
        return frozenset(ends)

    def mask_key(self) -> tuple:
        """The situation that decides which tokens may come next."""
        c = self.last_class
        plan = self.plans.get(self.bar, BarPlan())
        hi = self.bar_positions or 10**6
        if c in (TokenClass.OTHER, TokenClass.EOS):  # start of a sequence: the next bar
            return ("ids", self._terminators() - {self.grammar.eos_id} or self._terminators())
        if c == TokenClass.BAR:
            if plan.time_signature_id is not None:
                return ("ids", frozenset({plan.time_signature_id}))
            return ("class", TokenClass.TIME_SIGNATURE)
        if c == TokenClass.TIME_SIGNATURE:
            return ("position", self.position, hi, frozenset())
        if c == TokenClass.POSITION:
            return ("after_position", plan.instrument_ids)
        if c == TokenClass.INSTRUMENT:
            return ("class", TokenClass.DRUM_PITCH if self.drum else TokenClass.PITCH)
        if c in (TokenClass.PITCH, TokenClass.DRUM_PITCH):
            return ("class", TokenClass.VELOCITY)
        if c == TokenClass.VELOCITY:
            return ("class", TokenClass.DURATION)
        # after a complete event (Duration, Chord, Tempo): another position or the end of the bar
        if self.tokens_in_bar + NOTE_LENGTH > self.budget:
            return ("ids", self._terminators())
        ends = self._terminators() if self.tokens_in_bar >= self.minimum else frozenset()
        return ("position", self.position, hi, ends)

    def mask(self) -> Tensor:
        return self.grammar.mask(self.mask_key())
