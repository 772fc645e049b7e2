"""Incremental decoding: cache == recompute, FIGARO's sampler, determinism, grammar, priming."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
import torch

from e2m_live.description.vocab import split_bars
from e2m_live.figaro.config import FigaroConfig
from e2m_live.figaro.constraints import bar_length_in_positions
from e2m_live.figaro.decode import (
    INTERRUPT_EVERY,
    IncrementalDecoder,
    figaro_reference_decode,
    prepare_description,
)
from e2m_live.figaro.inputs import remi_vocab as model_vocab
from e2m_live.figaro.model import FigaroModel

TINY = FigaroConfig(
    d_model=32,
    encoder_layers=1,
    decoder_layers=2,
    heads=2,
    ffn=64,
    context_size=40,
    max_bars=40,
    relative_cross_attention=True,
)

DESCRIPTION = [
    "Bar_1",
    "Time Signature_4/4",
    "Note Density_3",
    "Mean Velocity_25",
    "Mean Pitch_13",
    "Mean Duration_32",
    "Instrument_Electric Bass (finger)",
    "Instrument_drum",
    "Instrument_Acoustic Grand Piano",
    "Chord_A:maj",
    "Bar_2",
    "Time Signature_3/4",
    "Note Density_2",
    "Mean Velocity_20",
    "Mean Pitch_11",
    "Mean Duration_20",
    "Instrument_drum",
    "Chord_D:min",
    "Bar_3",
    "Time Signature_4/4",
    "Note Density_4",
    "Mean Velocity_25",
    "Mean Pitch_14",
    "Mean Duration_12",
    "Instrument_Acoustic Grand Piano",
    "Instrument_Violin",
    "Chord_E:dom7",
]


@lru_cache(maxsize=4)
def random_model(seed: int = 0, config: FigaroConfig = TINY) -> FigaroModel:
    torch.manual_seed(seed)
    model = FigaroModel(config).eval()
    with torch.no_grad():  # larger weights than BERT's init, so the logits are far from uniform
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(10.0)
    return model


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread avoids OpenMP contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def flatten(bars: list[list[str]]) -> list[str]:
    return [t for bar in bars for t in bar]


@pytest.mark.parametrize("constrained", [True, False])
def test_cached_greedy_equals_uncached_greedy_across_window_restarts(constrained):
    model = random_model(1)
    kwargs = {"temperature": 0.0, "max_tokens_per_bar": 30}
    cached = IncrementalDecoder(model, constrained=constrained)
    uncached = IncrementalDecoder(model, constrained=constrained, use_cache=False)
    a = list(cached.generate_bars(DESCRIPTION, **kwargs))
    b = list(uncached.generate_bars(DESCRIPTION, **kwargs))
    assert cached.token_ids == uncached.token_ids
    assert a == b
    assert cached.tokens_generated > TINY.context_size  # the window was restarted at least once
    assert cached.windows_started >= 2


def test_first_window_equals_figaros_own_sampler():
    model = random_model(2)
    decoder = IncrementalDecoder(model, constrained=False)
    list(decoder.generate_bars(DESCRIPTION, temperature=0.0, max_tokens_per_bar=200))
    ours = decoder.token_ids
    n = min(len(ours), TINY.context_size - 1, *(decoder.forced_at or [len(ours)]))
    assert n >= 10
    desc = prepare_description(split_bars(DESCRIPTION, "description"))
    reference = figaro_reference_decode(model, desc, n)
    assert ours[:n] == reference


def test_same_seed_same_output_and_different_seed_differs():
    model = random_model(3)
    decoder = IncrementalDecoder(model)

    def run(seed: int) -> list:
        bars = decoder.generate_bars(DESCRIPTION, seed=seed, temperature=1.0, top_k=50, max_tokens_per_bar=40)
        return list(bars)

    assert run(7) == run(7)
    assert run(7) != run(8)


def check_grammar(bars: list[list[str]], description: list[str], first_bar: int, budget: int) -> int:
    """Assert the REMI+ rules on generated bars; returns the number of notes checked."""
    desc_bars = split_bars(description, "description")
    notes = 0
    assert len(bars) == len(desc_bars)
    for k, (bar, desc_bar) in enumerate(zip(bars, desc_bars, strict=True)):
        assert bar[0] == f"Bar_{first_bar + k}"
        ts = next(t for t in desc_bar if t.startswith("Time Signature_"))
        assert bar[1] == ts
        assert len(bar) <= budget
        allowed = {t for t in desc_bar if t.startswith("Instrument_")}
        length = bar_length_in_positions(ts)
        last_position, i = 0, 2
        assert bar[i].startswith("Position_")
        while i < len(bar):
            assert bar[i].startswith("Position_"), bar[i : i + 5]
            position = int(bar[i].split("_")[1])
            assert last_position <= position < length
            last_position = position
            nxt = bar[i + 1]
            if nxt.startswith(("Chord_", "Tempo_")):
                i += 2
                continue
            instrument, pitch, velocity, duration = bar[i + 1 : i + 5]
            assert instrument in allowed
            assert pitch.startswith("Pitch_drum_") == (instrument == "Instrument_drum")
            assert pitch.startswith("Pitch_")
            assert velocity.startswith("Velocity_")
            assert duration.startswith("Duration_")
            notes += 1
            i += 5
    return notes


def test_constrained_sampling_gives_complete_ordered_notes_even_with_random_weights():
    torch.manual_seed(4)
    model = FigaroModel(TINY).eval()  # BERT init: near-uniform over the allowed tokens
    with torch.no_grad():  # nudge towards instruments, so that notes (not only chords) get sampled
        direction = torch.ones(TINY.d_model) / TINY.d_model**0.5
        model.decoder_layers[-1].ffn.norm.bias += 2 * direction
        instruments = [i for i, t in enumerate(model_vocab().itos) if t.startswith("Instrument_")]
        model.output.weight[instruments] += 2 * direction
    decoder = IncrementalDecoder(model)
    notes = 0
    for seed in range(4):
        bars = list(decoder.generate_bars(DESCRIPTION, seed=seed, temperature=1.0, max_tokens_per_bar=120))
        notes += check_grammar(bars, DESCRIPTION, first_bar=1, budget=120)
    assert notes > 5


def test_priming_continues_after_the_prime_bar():
    model = random_model(5)
    decoder = IncrementalDecoder(model)
    prime = [
        "Bar_12",
        "Time Signature_4/4",
        "Position_0",
        "Instrument_drum",
        "Pitch_drum_36",
        "Velocity_20",
        "Duration_5",
        "Position_12",
        "Chord_A:min",
    ]
    bars = list(decoder.generate_bars(DESCRIPTION, prime=prime, seed=3, max_tokens_per_bar=45))
    check_grammar(bars, DESCRIPTION, first_bar=2, budget=45)
    unprimed = list(decoder.generate_bars(DESCRIPTION, seed=3, max_tokens_per_bar=45))
    assert [b[1:] for b in bars] != [b[1:] for b in unprimed]


def test_bars_are_yielded_as_soon_as_they_are_complete():
    model = random_model(6)
    decoder = IncrementalDecoder(model)
    stream = decoder.generate_bars(DESCRIPTION, seed=0, max_tokens_per_bar=40)
    first = next(stream)
    assert decoder.tokens_generated == len(first) + 1  # the bar plus the token that closed it
    rest = list(stream)
    assert len(rest) == 2


def test_bad_input_gives_clear_errors():
    decoder = IncrementalDecoder(random_model(0))
    with pytest.raises(ValueError, match="must start with a Bar"):
        list(decoder.generate_bars(["Time Signature_4/4"]))
    with pytest.raises(ValueError, match="unknown description tokens"):
        list(decoder.generate_bars(["Bar_1", "Instrument_Kazoo"]))
    with pytest.raises(ValueError, match="max_tokens_per_bar"):
        list(decoder.generate_bars(DESCRIPTION, max_tokens_per_bar=3))
    with pytest.raises(ValueError, match="unknown REMI tokens"):
        list(decoder.generate_bars(DESCRIPTION, prime=["Bar_1", "Nonsense_3"]))
    with pytest.raises(ValueError, match="temperature"):
        list(decoder.generate_bars(DESCRIPTION, temperature=-1))
    with pytest.raises(ValueError, match="top_p"):
        list(decoder.generate_bars(DESCRIPTION, top_p=0))


def test_reference_descriptions_decode_under_the_grammar(reference_dir):
    """Real descriptions (12 bars, incl. unusual time signatures) decode into valid bars."""
    data = json.loads((reference_dir / "figaro_reference_outputs.json").read_text())
    model = random_model(7)
    decoder = IncrementalDecoder(model)
    checked = 0
    for entry in list(data.values())[:40]:
        if "description" not in entry:
            continue
        desc = flatten(split_bars(entry["description"], "description")[:3])
        bars = list(decoder.generate_bars(desc, seed=checked, top_p=0.9, max_tokens_per_bar=30))
        check_grammar(bars, desc, first_bar=1, budget=30)
        checked += 1
        if checked == 5:
            break
    assert checked == 5


def test_reference_remi_follows_the_grammar_we_enforce(reference_dir):
    """The rules of the mask hold on FIGARO's own REMI+ output (so the mask forbids nothing real)."""
    data = json.loads((reference_dir / "figaro_reference_outputs.json").read_text())
    checked = 0
    for entry in data.values():
        if "remi" not in entry:
            continue
        bars = split_bars(entry["remi"], "remi")
        desc_bars = split_bars(entry["description"], "description")
        for k, (bar, desc_bar) in enumerate(zip(bars, desc_bars, strict=False)):
            renumbered = [f"Bar_{k + 1}", *bar[1:]]
            desc = [f"Bar_{k + 1}", *desc_bar[1:]]
            # FIGARO's description lists instruments that play; ours must accept FIGARO's own bars
            check_grammar([renumbered], desc, k + 1, 10**6)
            checked += 1
    assert checked > 1000


def test_min_tokens_per_bar_fixes_the_token_count():
    decoder = IncrementalDecoder(random_model(8))
    bars = list(decoder.generate_bars(DESCRIPTION, seed=1, max_tokens_per_bar=40, min_tokens_per_bar=35))
    assert all(35 <= len(bar) <= 40 for bar in bars)
    check_grammar(bars, DESCRIPTION, first_bar=1, budget=40)
    with pytest.raises(ValueError, match="min_tokens_per_bar"):
        list(decoder.generate_bars(DESCRIPTION, max_tokens_per_bar=40, min_tokens_per_bar=39))


def test_int8_decoder_follows_the_grammar():
    decoder = IncrementalDecoder(random_model(9), quantize="int8")
    bars = list(decoder.generate_bars(DESCRIPTION, seed=2, max_tokens_per_bar=40))
    check_grammar(bars, DESCRIPTION, first_bar=1, budget=40)
    with pytest.raises(ValueError, match="quantize"):
        IncrementalDecoder(random_model(9), quantize="int4")


def test_sampler_draws_from_the_right_distribution():
    from e2m_live.figaro.decode import _Sampler

    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05])
    logits = probs.log()  # -inf for the impossible token
    sampler = _Sampler(1.0, None, None, 123, torch.device("cpu"))
    draws = torch.tensor([sampler(logits) for _ in range(20000)])
    counts = torch.bincount(draws, minlength=5).float() / len(draws)
    assert counts[1] == 0
    assert torch.allclose(counts, probs, atol=0.015)
    top2 = _Sampler(1.0, 2, None, 1, torch.device("cpu"))
    assert {top2(logits) for _ in range(500)} == {0, 2}
    nucleus = _Sampler(1.0, None, 0.85, 1, torch.device("cpu"))  # 0.5 + 0.3 < 0.85: needs 0.15 too
    assert {nucleus(logits) for _ in range(2000)} == {0, 2, 3}
    assert _Sampler(0.0, None, None, None, torch.device("cpu"))(logits) == 0


def test_int8_step_calls_the_quantized_operator_directly_with_the_same_result():
    from e2m_live.figaro.model import _int8_linear
    from e2m_live.figaro.quantize import quantize_int8

    model = quantize_int8(random_model(9))
    layers, output = model._step_ops()
    modules = [layer.self_attn.qkv for layer in model._decoders] + [model.output]
    direct = [ops[0] for ops in layers] + [output]
    x = torch.randn(1, model.config.d_model)
    for module, call in zip(modules, direct, strict=True):
        assert _int8_linear(module) is not None
        assert torch.equal(call(x), module(x))
    assert _int8_linear(torch.nn.Linear(4, 4)) is None  # float layers keep F.linear


def test_an_interrupt_ends_the_run_mid_bar():
    """The live worker leaves a section for a newer request without finishing the bar it is making."""
    decoder = IncrementalDecoder(random_model(), constrained=True)
    full = list(decoder.generate_bars(DESCRIPTION, seed=0, max_tokens_per_bar=40, interrupt=lambda: False))
    assert not decoder.interrupted and len(full) > 1 and len(full[1]) > 2 * INTERRUPT_EVERY
    stop_at = len(full[0]) + 1 + INTERRUPT_EVERY  # the first bar and its closing token, then a little
    asked = []

    def interrupt() -> bool:
        asked.append(decoder.tokens_generated)
        return decoder.tokens_generated >= stop_at

    bars = list(decoder.generate_bars(DESCRIPTION, seed=0, max_tokens_per_bar=40, interrupt=interrupt))
    assert decoder.interrupted
    assert bars == full[:1]  # the bar being made is dropped
    assert stop_at <= decoder.tokens_generated < stop_at + INTERRUPT_EVERY  # asked every few tokens
    assert len(asked) >= stop_at // INTERRUPT_EVERY
