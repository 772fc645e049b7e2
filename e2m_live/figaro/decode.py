"""Incremental FIGARO decoding: KV cache, description scrolling, one bar at a time.

Windows. FIGARO's sampler feeds the decoder the last ``context_size`` tokens and re-encodes
the description from the bar of the window's first token whenever that bar changes. A KV
cache cannot slide token by token (every cached state depends on the tokens that left the
window), so :class:`IncrementalDecoder` lets the window grow to ``context_size`` tokens and
then restarts it with the last ``window_keep`` tokens: it re-encodes the description window
for the new first bar (exactly as FIGARO builds it) and refills the cache in one batched
pass. Up to the first restart the result equals FIGARO's sampler token for token; after it,
each window is a context FIGARO was trained on (training windows start anywhere).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from e2m_live.description.vocab import (
    BAR_KEY,
    BOS_TOKEN,
    EOS_TOKEN,
    INSTRUMENT_KEY,
    NOTE_DENSITY_KEY,
    PAD_TOKEN,
    TIME_SIGNATURE_KEY,
    split_bars,
)
from e2m_live.figaro.constraints import (
    MIN_TOKENS_PER_BAR,
    NOTE_LENGTH,
    BarPlan,
    DecodeRules,
    GrammarState,
    RemiGrammar,
    ScaleLock,
    TokenClass,
    bar_length_in_positions,
    density_notes,
    steer_plans,
)
from e2m_live.figaro.inputs import description_vocab, filter_description, remi_vocab
from e2m_live.figaro.model import DecoderCache, FigaroModel
from e2m_live.figaro.quantize import quantize_int8

#: Grammar masks one decoder keeps (5.4 KB each at the REMI+ vocabulary). Keys carry fader values (the
#: groove's drum bonus follows danceability, the key lock its strength), so a live session keeps making
#: new ones: ~15 a section when every request moves a fader (421 after 28 sections,
#: ``tests/test_worker_memory.py``'s driver). The grammar's own bound (4096, 22 MB) made a 22 MB sawtooth
#: in the worker's RSS over a long session (issue 20); 512 keeps it under 3 MB.
MASK_CACHE_SIZE = 512
#: Tokens between two calls of a run's ``interrupt`` (~40 ms of decoding on one core).
INTERRUPT_EVERY = 8


@dataclass
class EncodedDescription:
    """A description prepared for the encoder: ``<bos> tokens <eos>`` ids and their bar ids."""

    ids: Tensor
    bar_ids: Tensor
    tokens: list[str]

    def window(self, first_bar: int, size: int) -> tuple[Tensor, Tensor]:
        """FIGARO's description window: from the first token of ``first_bar`` (the last token if
        that bar is not described), ``size`` tokens, padded with ``<pad>`` / bar 0."""
        hits = torch.nonzero(self.bar_ids == first_bar).flatten()
        start = int(hits[0]) if len(hits) else len(self.ids) - 1
        count = min(size, len(self.ids) - start)
        ids = torch.zeros(size, dtype=torch.long)
        bars = torch.zeros(size, dtype=torch.long)
        ids[:count] = self.ids[start : start + count]
        bars[:count] = self.bar_ids[start : start + count]
        return ids, bars


def _renumber(bar: list[str], number: int) -> list[str]:
    return [f"{BAR_KEY}_{number}", *bar[1:]]


def prepare_description(
    bars: Sequence[Sequence[str]], options: dict[str, bool] | None = None
) -> EncodedDescription:
    """``<bos>`` + bars (already numbered) + ``<eos>`` as ids with FIGARO's description bar ids."""
    vocab = description_vocab()
    tokens = [BOS_TOKEN]
    bar_ids = [0]
    for number, bar in enumerate(bars, start=1):
        kept = filter_description(bar, options)
        tokens += kept
        bar_ids += [number] * len(kept)
    tokens.append(EOS_TOKEN)
    bar_ids.append(0)
    unknown = [t for t in tokens if t not in vocab]
    if unknown:
        raise ValueError(f"unknown description tokens: {unknown[:5]}")
    return EncodedDescription(torch.tensor(vocab.encode(tokens)), torch.tensor(bar_ids), tokens)


def bar_plan(bar: Sequence[str], restrict_instruments: bool) -> BarPlan:
    """Time signature, instruments (as REMI ids) and note density that one description bar prescribes."""
    vocab = remi_vocab()
    ts = [t for t in bar if t.startswith(TIME_SIGNATURE_KEY + "_") and t in vocab]
    instruments = frozenset(vocab[t] for t in bar if t.startswith(INSTRUMENT_KEY + "_") and t in vocab)
    density = [t for t in bar if t.startswith(NOTE_DENSITY_KEY + "_")]
    positions = bar_length_in_positions(ts[0]) if ts else None
    notes = None
    if density and positions and density[0].rsplit("_", 1)[1].isdigit():
        notes = density_notes(int(density[0].rsplit("_", 1)[1]), positions)
    return BarPlan(
        time_signature_id=vocab[ts[0]] if ts else None,
        instrument_ids=instruments if restrict_instruments else None,
        density_notes=notes,
    )


class _Sampler:
    """Temperature / top-k / top-p sampling with its own generator (same seed, same tokens)."""

    def __init__(
        self,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        seed: int | None,
        device: torch.device,
    ) -> None:
        if temperature < 0 or not math.isfinite(temperature):
            raise ValueError("temperature must be >= 0 (0 = greedy)")
        if top_k is not None and top_k < 1:
            raise ValueError("top_k must be >= 1")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.generator = torch.Generator(device=device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def uniform(self) -> float:
        """One uniform number in [0, 1) from this sampler's generator."""
        return float(torch.rand(1, generator=self.generator, device=self.generator.device))

    def __call__(self, logits: Tensor) -> int:
        if self.temperature == 0:
            return int(logits.argmax())
        if self.temperature != 1:
            logits = logits / self.temperature
        if self.top_k is not None and self.top_k < logits.numel():
            kth = torch.topk(logits, self.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.float().softmax(-1)
        if self.top_p is not None and self.top_p < 1:
            sorted_probs, order = torch.sort(probs, descending=True)
            drop = sorted_probs.cumsum(-1) - sorted_probs >= self.top_p  # keep the token that crosses p
            probs = probs.clone()
            probs[order[drop]] = 0.0
        # inverse-CDF draw: one uniform number instead of one per token (torch.multinomial)
        cdf = probs.cumsum(-1)
        u = (1.0 - torch.rand(1, generator=self.generator, device=cdf.device)) * cdf[-1]  # in (0, total]
        return min(int(torch.searchsorted(cdf, u)), cdf.numel() - 1)


class IncrementalDecoder:
    """Generate REMI+ bars from a FIGARO description, one bar at a time.

    ``constrained`` applies the REMI+ grammar mask (:mod:`e2m_live.figaro.constraints`).
    ``window_keep`` is how many tokens a restarted decoder window keeps (default half the
    context). ``use_cache=False`` recomputes the whole window for every token (same windows,
    same results, for checks and benchmarks). ``quantize="int8"`` decodes with int8 weights
    (CPU; about twice as fast at the official size, logits change slightly).
    """

    def __init__(
        self,
        model: FigaroModel,
        *,
        device: str | torch.device = "cpu",
        constrained: bool = True,
        window_keep: int | None = None,
        use_cache: bool = True,
        quantize: str | None = None,
    ) -> None:
        self.device = torch.device(device)
        model = model.to(self.device).eval()
        if quantize == "int8":
            if self.device.type != "cpu":
                raise ValueError("quantize='int8' is for CPU decoding only")
            model = quantize_int8(model)
        elif quantize is not None:
            raise ValueError(f"unknown quantize option {quantize!r} (None or 'int8')")
        self.model = model
        self.config = model.config
        self.constrained = constrained
        self.use_cache = use_cache
        context = self.config.context_size
        self.window_keep = window_keep if window_keep is not None else context // 2
        if not 1 <= self.window_keep < context:
            raise ValueError(f"window_keep must be in [1, {context - 1}]")
        self.vocab = remi_vocab()
        self.grammar = RemiGrammar(self.vocab, self.device)
        self.grammar.MAX_CACHED_MASKS = MASK_CACHE_SIZE
        self.tokens_generated = 0  # statistics of the last run
        self.interrupted = False  # the last run ended on its ``interrupt``
        self.windows_started = 0
        self.token_ids: list[int] = []  # every token id the last run chose (forced ones included)
        self.forced_at: list[int] = []  # indices into token_ids where a bar was forced closed

    # --- public API ----------------------------------------------------------------------

    def generate_bars(
        self,
        description: Sequence[str],
        *,
        prime: Sequence[str] | None = None,
        prime_description: Sequence[str] | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        max_tokens_per_bar: int = 512,
        min_tokens_per_bar: int = 0,
        rules: DecodeRules | None = None,
        scale: tuple[int, int] | None = None,
        key_lock: float = 0.0,
        groove: float = 0.0,
        interrupt: Callable[[], bool] | None = None,
    ) -> Iterator[list[str]]:
        """Yield the REMI+ tokens of each described bar as soon as it is complete.

        ``description``: description tokens of the bars to generate (``Bar_*`` first; ``<bos>``/
        ``<eos>`` are added). ``prime``: REMI+ tokens of the bar played before, for continuity;
        it becomes bar 1 and the generated bars are numbered from 2 (without a prime, from 1).
        ``prime_description`` describes the prime bar (default: the first generated bar's
        description). ``temperature`` 0 is greedy. ``max_tokens_per_bar`` caps each bar
        (``Bar`` token included); a bar that reaches it is closed. ``min_tokens_per_bar`` keeps
        a bar open until it has that many tokens (constrained mode; benchmarks use it to fix the
        token count).

        ``rules`` (constrained mode): the clean-note rules (:class:`DecodeRules`, all on by default;
        ``DecodeRules.off()`` for the grammar alone). ``scale`` ``(key, mode)`` with ``key_lock`` in 0..1
        keeps pitched instruments to that scale (:class:`ScaleLock`; 0 or no scale: no lock). ``groove``
        0..1 is the groove strength of the rules (:class:`GrammarState`; 0: no groove rules).
        ``interrupt``, asked every :data:`INTERRUPT_EVERY` tokens, ends the run where it is when it
        returns True (the bar being decoded is dropped; :attr:`interrupted` says so): the live worker
        leaves a section for a newer request without finishing a bar nobody will play.
        """
        if max_tokens_per_bar < MIN_TOKENS_PER_BAR:
            raise ValueError(f"max_tokens_per_bar must be >= {MIN_TOKENS_PER_BAR}")
        if not 0 <= min_tokens_per_bar <= max_tokens_per_bar - NOTE_LENGTH:
            raise ValueError(f"min_tokens_per_bar must be in [0, max_tokens_per_bar - {NOTE_LENGTH}]")
        desc_bars = split_bars(
            [t for t in description if t not in (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)], "description"
        )
        prime_bars = split_bars(list(prime), "prime") if prime else []
        if prime_bars:
            prime_tokens = [t for bar in prime_bars[-1:] for t in bar]  # the last bar only
            bad = [t for t in prime_tokens if t not in self.vocab]
            if bad:
                raise ValueError(f"unknown REMI tokens in prime: {bad[:5]}")
            prime_desc = (
                split_bars(list(prime_description), "prime_description")[:1]
                if prime_description
                else desc_bars[:1]
            )
            all_desc = prime_desc + desc_bars
        else:
            prime_tokens = []
            all_desc = desc_bars
        first_new = 2 if prime_tokens else 1
        final_bar = first_new + len(desc_bars) - 1
        if final_bar > min(self.config.max_bars, 511):
            raise ValueError(f"too many bars for this model ({final_bar} > {self.config.max_bars})")
        numbered = [_renumber(bar, i) for i, bar in enumerate(all_desc, start=1)]
        desc = prepare_description(numbered, self.config.description_options)
        restrict = (self.config.description_options or {}).get("instruments", True)
        plans = {i: bar_plan(bar, restrict) for i, bar in enumerate(numbered, start=1)}
        plans = steer_plans(plans, desc.tokens)  # the described chords, for the chord-tone bias
        lock = ScaleLock(int(scale[0]), int(scale[1]), float(key_lock)) if scale is not None else None
        if lock is None and not 0.0 <= key_lock <= 1.0:
            raise ValueError(f"key_lock must be in 0..1, got {key_lock!r}")
        sampler = _Sampler(temperature, top_k, top_p, seed, self.device)
        state = GrammarState(
            self.grammar,
            plans=plans,
            final_bar=final_bar,
            budget=max_tokens_per_bar,
            minimum=min_tokens_per_bar,
            rules=DecodeRules() if rules is None else rules,
            lock=lock if lock is not None and lock.active else None,
            groove=float(groove),
        )
        prime_ids = _renumber(prime_tokens, 1) if prime_tokens else []
        return self._run(desc, state, prime_ids, len(desc_bars), sampler, interrupt)

    # --- internals -----------------------------------------------------------------------

    @torch.inference_mode()
    def _run(
        self,
        desc: EncodedDescription,
        state: GrammarState,
        prime: list[str],
        n_bars: int,
        sampler: _Sampler,
        interrupt: Callable[[], bool] | None = None,
    ) -> Iterator[list[str]]:
        vocab, grammar = self.vocab, self.grammar
        itos = vocab.itos
        budget = state.budget
        history = _History()
        history.append(vocab.bos_id, grammar)
        for tok in prime:
            token_id = vocab[tok]
            history.append(token_id, grammar)
            state.advance(token_id)
        state.last_class = TokenClass.OTHER  # the next token opens a new bar
        self.tokens_generated = 0
        self.interrupted = False
        self.windows_started = 0
        self.token_ids = []
        self.forced_at = []
        window = _Window(self, desc)
        logits = window.restart(history)
        bar_tokens: list[str] | None = None  # the bar being generated
        since_bar = 0
        done = 0
        while True:
            if interrupt is not None and since_bar % INTERRUPT_EVERY == 0 and interrupt():
                self.interrupted = True
                return
            if self.constrained:
                token_id = sampler(logits + state.mask())
                if state.groove > 0 and grammar.token_class[token_id] == TokenClass.POSITION:
                    token_id = state.snap(token_id, sampler.uniform() if state.groove < 1 else 0.0)
            else:
                token_id = sampler(logits)
                ends_bar = grammar.token_class[token_id] in (TokenClass.BAR, TokenClass.EOS)
                if since_bar >= budget and not ends_bar:
                    token_id = grammar.bar_id.get(history.bars[-1] + 1, grammar.eos_id)  # close the bar
                    self.forced_at.append(len(self.token_ids))
            self.tokens_generated += 1
            self.token_ids.append(token_id)
            cls = grammar.token_class[token_id]
            if cls == TokenClass.BAR or cls == TokenClass.EOS:
                if bar_tokens is not None:
                    yield bar_tokens
                    done += 1
                if cls == TokenClass.EOS or done == n_bars:
                    return
                bar_tokens = []
                since_bar = 0
            if bar_tokens is not None:
                bar_tokens.append(itos[token_id])
            since_bar += 1
            state.advance(token_id)
            history.append(token_id, grammar)
            logits = window.step(history)


class _History:
    """All decoder tokens so far with FIGARO's bar and position ids."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.bars: list[int] = []
        self.positions: list[int] = []

    def append(self, token_id: int, grammar: RemiGrammar) -> None:
        cls = grammar.token_class[token_id]
        bar = self.bars[-1] if self.bars else 0
        pos = self.positions[-1] if self.positions else 0
        if cls == TokenClass.BAR:
            bar, pos = bar + 1, 0
        elif cls == TokenClass.POSITION:
            pos = grammar.position_value[token_id]
        self.ids.append(token_id)
        self.bars.append(bar)
        self.positions.append(pos)

    def __len__(self) -> int:
        return len(self.ids)


class _Window:
    """The current decoder window: its description encoding and KV cache."""

    def __init__(self, decoder: IncrementalDecoder, desc: EncodedDescription) -> None:
        self.decoder = decoder
        self.model = decoder.model
        self.desc = desc
        self.context = decoder.config.context_size
        self.start = 0  # index into the history of the window's first token
        self.first_bar = -1
        self.memory: Tensor | None = None
        self.cache: DecoderCache | None = None

    def _tensors(self, history: _History, lo: int, hi: int) -> tuple[Tensor, Tensor, Tensor]:
        dev = self.decoder.device
        return (
            torch.tensor([history.ids[lo:hi]], device=dev),
            torch.tensor([history.bars[lo:hi]], device=dev),
            torch.tensor([history.positions[lo:hi]], device=dev),
        )

    def restart(self, history: _History) -> Tensor:
        """Start a window with the last tokens of ``history``; logits for the next token."""
        n = len(history)
        keep = n if n < self.context else self.decoder.window_keep
        self.start = n - keep
        self.decoder.windows_started += 1
        first_bar = history.bars[self.start]
        if first_bar != self.first_bar or self.memory is None:
            ids, bars = self.desc.window(first_bar, self.context)
            dev = self.decoder.device
            self.memory = self.model.encode(ids.to(dev)[None], bars.to(dev)[None])
            self.first_bar = first_bar
        if not self.decoder.use_cache:
            return self._full(history)
        self.cache = self.model.start_cache(self.memory, self.context)
        return self.model.decode_cached(*self._tensors(history, self.start, n), self.cache)[0]

    def step(self, history: _History) -> Tensor:
        """Logits after the token just appended to ``history``."""
        n = len(history)
        if n - self.start > self.context:
            return self.restart(history)
        if not self.decoder.use_cache:
            return self._full(history)
        assert self.cache is not None
        return self.model.decode_step(history.ids[-1], history.bars[-1], history.positions[-1], self.cache)

    def _full(self, history: _History) -> Tensor:
        assert self.memory is not None
        ids, bars, pos = self._tensors(history, self.start, len(history))
        return self.model.decode(ids, self.memory, bars, pos)[0, -1]


@torch.inference_mode()
def figaro_reference_decode(
    model: FigaroModel,
    desc: EncodedDescription,
    n_tokens: int,
    *,
    greedy: bool = True,
    seed: int = 0,
    prefix: Sequence[int] = (),
    device: str | torch.device = "cpu",
) -> list[int]:
    """FIGARO's own sampler (``Seq2SeqModule.sample``), unconstrained: the whole window of the
    last ``context_size`` tokens is recomputed for every token. Starts from ``<bos>`` + ``prefix``
    and returns the ``n_tokens`` new ids. For checks and benchmarks."""
    dev = torch.device(device)
    grammar = RemiGrammar(remi_vocab())
    history = _History()
    history.append(remi_vocab().bos_id, grammar)
    for token in prefix:
        history.append(int(token), grammar)
    n_prefix = len(history)
    context = model.config.context_size
    gen = torch.Generator(device=dev).manual_seed(seed)
    first_bar, memory = -1, None
    for _ in range(n_tokens):
        lo = max(0, len(history) - context)
        if history.bars[lo] != first_bar or memory is None:
            first_bar = history.bars[lo]
            ids, bars = desc.window(first_bar, context)
            memory = model.encode(ids.to(dev)[None], bars.to(dev)[None])
        x = torch.tensor([history.ids[lo:]], device=dev)
        b = torch.tensor([history.bars[lo:]], device=dev)
        p = torch.tensor([history.positions[lo:]], device=dev)
        logits = model.decode(x, memory, b, p)[0, -1]
        if greedy:
            token = int(logits.argmax())
        else:
            token = int(torch.multinomial(logits.softmax(-1), 1, generator=gen))
        history.append(token, grammar)
    return history.ids[n_prefix:]
