"""The chord-tone bias of the decode rules (issue 15): the described chord's pitch classes get a logit
bonus for pitched notes, drums are untouched, and a decode with the bias plays more chord tones."""

from __future__ import annotations

import math
from functools import lru_cache

import pytest
import torch

from e2m_live.description.vocab import split_bars
from e2m_live.figaro.config import FigaroConfig
from e2m_live.figaro.constraints import (
    CHORD_BIAS,
    BarPlan,
    DecodeRules,
    GrammarState,
    RemiGrammar,
    chord_pitch_classes,
    chord_timeline,
    steer_plans,
)
from e2m_live.figaro.decode import bar_plan
from e2m_live.figaro.inputs import remi_vocab
from e2m_live.figaro.model import FigaroModel
from training.figaro.evaluate import GenerationSettings, main, parse_rule_overrides, steered_decoder_class

PIANO, DRUMS = "Instrument_Acoustic Grand Piano", "Instrument_drum"
A_MAJOR = frozenset({9, 1, 4})  # A C# E


@lru_cache(maxsize=1)
def grammar() -> RemiGrammar:
    return RemiGrammar(remi_vocab())


def test_chord_pitch_classes():
    assert chord_pitch_classes("A:maj") == A_MAJOR
    assert chord_pitch_classes("F#:min7") == {6, 9, 1, 4}
    assert chord_pitch_classes("C:None") == {0}
    for bad in ("N:N", "H:maj", "C:sus4", "C", ""):
        assert chord_pitch_classes(bad) == frozenset()


def test_chord_timeline_drops_the_carried_over_chord():
    assert chord_timeline(["A:dom7", "D:maj", "G:maj"], "A:dom7") == ["D:maj", "G:maj"]
    assert chord_timeline(["A:dom7"], "A:dom7") == ["A:dom7"]  # held through the bar
    assert chord_timeline(["D:maj", "A:dom7"], "A:dom7") == ["D:maj", "A:dom7"]
    assert chord_timeline([], "E:min") == ["E:min"]
    assert chord_timeline([], None) == []


def test_steer_plans_reads_the_chords():
    desc = [
        "<bos>",
        "Bar_1",
        "Time Signature_4/4",
        "Mean Pitch_15",
        PIANO,
        "Chord_A:maj",
        "Chord_E:maj",
        "Bar_2",
        "Time Signature_4/4",
        PIANO,
        "Chord_E:maj",
        "Chord_D:min",
        "Bar_3",
        "<eos>",
    ]
    bars = split_bars(desc[1:-1], "description")
    plans = steer_plans({i: bar_plan(b, True) for i, b in enumerate(bars, start=1)}, desc)
    assert plans[1].instrument_ids == bar_plan(bars[0], True).instrument_ids  # the rest is kept
    first, second = plans[1].chords
    assert first == tuple(p for p in range(128) if p % 12 in A_MAJOR)
    assert {p % 12 for p in second} == chord_pitch_classes("E:maj")
    assert [{p % 12 for p in c} for c in plans[2].chords] == [chord_pitch_classes("D:min")]  # E carried
    assert [{p % 12 for p in c} for c in plans[3].chords] == [chord_pitch_classes("D:min")]  # none named
    # chords share the bar evenly: the second half of a 48-position bar is E major
    assert plans[1].chord_pitches(0, 48) == first and plans[1].chord_pitches(23, 48) == first
    assert plans[1].chord_pitches(24, 48) == second and plans[1].chord_pitches(47, 48) == second
    assert BarPlan().chord_pitches(0, 48) == ()


def _pitch_mask(rules: DecodeRules, instrument: str) -> torch.Tensor:
    g = grammar()
    vocab = remi_vocab()
    desc = ["Bar_1", "Time Signature_4/4", PIANO, DRUMS, "Chord_A:maj"]
    plans = steer_plans({1: bar_plan(desc, True)}, desc)
    state = GrammarState(g, plans=plans, final_bar=1, rules=rules)
    for tok in ("Bar_1", "Time Signature_4/4", "Position_0", instrument):
        state.advance(vocab[tok])
    return state.mask()


@pytest.mark.parametrize("bias", [0.5, CHORD_BIAS, 3.0])
def test_chord_tones_get_the_bonus_and_drums_do_not(bias: float):
    vocab = remi_vocab()
    mask = _pitch_mask(DecodeRules(chord_bias=bias), PIANO)
    plain = _pitch_mask(DecodeRules(chord_bias=0.0), PIANO)
    for pitch in range(21, 109):  # the piano's range
        delta = float(mask[vocab[f"Pitch_{pitch}"]] - plain[vocab[f"Pitch_{pitch}"]])
        assert delta == pytest.approx(bias if pitch % 12 in A_MAJOR else 0.0), pitch
    assert math.isinf(float(mask[vocab["Pitch_20"]]))  # below the range: still forbidden
    drums = _pitch_mask(DecodeRules(chord_bias=bias), DRUMS)
    assert torch.equal(drums, _pitch_mask(DecodeRules(chord_bias=0.0), DRUMS))


def test_bias_off_leaves_the_mask_as_before():
    state_key = GrammarState(grammar(), rules=DecodeRules(chord_bias=0.0))
    assert DecodeRules.off().chord_bias == 0.0
    vocab = remi_vocab()
    for tok in ("Bar_1", "Time Signature_4/4", "Position_0", PIANO):
        state_key.advance(vocab[tok])
    assert state_key.mask_key()[5] is None  # no favoured pitches: the mask of the rules before


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_chord_bias_is_refused(bad: float):
    with pytest.raises(ValueError, match="chord_bias"):
        DecodeRules(chord_bias=bad)


def test_rule_overrides_parse_and_refuse_bad_input():
    assert parse_rule_overrides(["note_budget_margin=1.0", "coverage=false"]) == {
        "note_budget_margin": 1.0,
        "coverage": False,
    }
    for bad in (["margin"], ["=1"], ["chord_bias=abc"]):
        with pytest.raises(ValueError):
            parse_rule_overrides(bad)
    with pytest.raises(ValueError, match="bad --rule"):
        GenerationSettings(rule_overrides={"no_such_rule": 1}).decode_rules()
    assert GenerationSettings(rules=False).decode_rules().chord_bias == 0.0
    assert GenerationSettings(rules=True, chord_bias=2.5).decode_rules().chord_bias == 2.5


def test_evaluate_refuses_a_bad_bias(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing"), "--chord-bias", "-2", "--out", str(tmp_path)]) == 2


TINY = FigaroConfig(
    d_model=32,
    encoder_layers=1,
    decoder_layers=2,
    heads=2,
    ffn=64,
    context_size=64,
    max_bars=16,
    relative_cross_attention=True,
)


@lru_cache(maxsize=1)
def c_loving_model() -> FigaroModel:
    """Random weights pushed towards the piano playing C (not a tone of A major)."""
    torch.manual_seed(3)
    model = FigaroModel(TINY).eval()
    itos = remi_vocab().itos
    with torch.no_grad():
        direction = torch.ones(TINY.d_model) / TINY.d_model**0.5
        model.decoder_layers[-1].ffn.norm.bias += 2 * direction
        for tok, push in ((PIANO, 3.0), ("Pitch_60", 2.0), ("Pitch_72", 2.0), ("Pitch_48", 2.0)):
            model.output.weight[itos.index(tok)] += push * direction
    return model


def _chord_tone_share(bias: float) -> float:
    decoder = steered_decoder_class()(c_loving_model())
    desc = []
    for k in range(1, 5):
        desc += [f"Bar_{k}", "Time Signature_4/4", "Note Density_2", "Mean Pitch_15", PIANO, "Chord_A:maj"]
    hits = total = 0
    for seed in range(3):
        for bar in decoder.generate_bars(
            desc, seed=seed, rules=DecodeRules(chord_bias=bias), max_tokens_per_bar=64
        ):
            pitches = [int(t.rsplit("_", 1)[1]) for t in bar if t.startswith("Pitch_") and "drum" not in t]
            hits += sum(p % 12 in A_MAJOR for p in pitches)
            total += len(pitches)
    assert total > 20
    return hits / total


def test_a_decode_with_the_bias_plays_more_chord_tones():
    torch.set_num_threads(1)
    without, with_bias = _chord_tone_share(0.0), _chord_tone_share(4.0)
    assert with_bias > without + 0.3, (without, with_bias)
    assert with_bias > 0.6
