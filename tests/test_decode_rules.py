"""Clean notes by construction (issue 14): the decode rules and the key lock of the grammar mask.

Random-weight models, as in ``test_figaro_decode``: whatever the weights, decoded streams never hold a
repeated note, a note past the section end or longer than the cap, a bar over its note budget, a bar
without one of its described instruments (budget allowing), or (key lock 1) an out-of-scale pitched note.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2m_live.description.vocab import DURATION_BINS, split_bars
from e2m_live.figaro.config import FigaroConfig
from e2m_live.figaro.constraints import (
    KEY_LOCK_SHARPNESS,
    MAX_NOTE_POSITIONS,
    MIN_NOTES_PER_BAR,
    NOTE_BUDGET_MARGIN,
    SCALE_DEGREES,
    TONAL_TILT,
    BarPlan,
    DecodeRules,
    GrammarState,
    RemiGrammar,
    ScaleLock,
    bar_length_in_positions,
    density_notes,
)
from e2m_live.figaro.decode import IncrementalDecoder, bar_plan
from e2m_live.figaro.inputs import remi_vocab
from e2m_live.figaro.model import FigaroModel
from e2m_live.key_profiles import KK_MAJOR

TINY = FigaroConfig(
    d_model=32,
    encoder_layers=1,
    decoder_layers=2,
    heads=2,
    ffn=64,
    context_size=48,
    max_bars=40,
    relative_cross_attention=True,
)

PIANO, BASS, DRUMS = "Instrument_Acoustic Grand Piano", "Instrument_Electric Bass (finger)", "Instrument_drum"
DESCRIPTIONS = [
    [
        "Bar_1",
        "Time Signature_4/4",
        "Note Density_2",
        "Mean Velocity_25",
        "Mean Pitch_13",
        "Mean Duration_32",
        BASS,
        DRUMS,
        PIANO,
        "Chord_A:maj",
        "Bar_2",
        "Time Signature_3/4",
        "Note Density_0",
        "Mean Velocity_20",
        "Mean Pitch_11",
        "Mean Duration_20",
        DRUMS,
        PIANO,
        "Chord_D:min",
        "Bar_3",
        "Time Signature_2/4",
        "Note Density_1",
        "Mean Velocity_25",
        "Mean Pitch_14",
        "Mean Duration_30",
        PIANO,
        "Instrument_Violin",
        "Chord_E:dom7",
    ],
    [
        "Bar_1",
        "Time Signature_6/8",
        "Note Density_3",
        "Mean Velocity_25",
        "Mean Pitch_13",
        "Mean Duration_32",
        PIANO,
        "Chord_C:maj",
        "Bar_2",
        "Time Signature_6/8",
        "Note Density_0",
        "Mean Velocity_20",
        "Mean Pitch_11",
        "Mean Duration_31",
        PIANO,
        BASS,
        "Chord_G:maj",
    ],
]


@lru_cache(maxsize=4)
def eager_model(seed: int) -> FigaroModel:
    """Random weights nudged towards instruments (so bars fill with notes) and long durations."""
    torch.manual_seed(seed)
    model = FigaroModel(TINY).eval()
    itos = remi_vocab().itos
    with torch.no_grad():
        direction = torch.ones(TINY.d_model) / TINY.d_model**0.5
        model.decoder_layers[-1].ffn.norm.bias += 2 * direction
        pushes = {
            "Instrument_": 3.0,
            "Duration_5": 2.0,
            "Pitch_60": 4.0,
            "Pitch_drum_36": 4.0,
            "Position_0": 1.0,
        }  # pitches exactly; the others as prefixes
        for prefix, push in pushes.items():
            exact = "Pitch" in prefix
            ids = [i for i, t in enumerate(itos) if (t == prefix if exact else t.startswith(prefix))]
            model.output.weight[ids] += push * direction
    return model


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def notes_of(bar: list[str]) -> list[tuple[int, str, str, int]]:
    """(position, instrument, pitch token, duration in positions) of every note of a bar."""
    notes, position = [], 0
    for i, tok in enumerate(bar):
        if tok.startswith("Position_"):
            position = int(tok.split("_")[1])
        elif tok.startswith("Instrument_"):
            duration = DURATION_BINS[int(bar[i + 3].split("_")[1])]
            notes.append((position, tok, bar[i + 1], int(duration)))
    return notes


def check_rules(bars: list[list[str]], description: list[str], budget: int, lock: ScaleLock | None) -> int:
    """Assert every rule on decoded bars; returns the number of notes checked."""
    desc_bars = split_bars(description, "description")
    signatures = [next(t for t in d if t.startswith("Time Signature_")) for d in desc_bars]
    lengths = [bar_length_in_positions(ts) for ts in signatures]
    checked = 0
    for k, (bar, desc) in enumerate(zip(bars, desc_bars, strict=True)):
        notes = notes_of(bar)
        checked += len(notes)
        section_left = sum(lengths[k:])
        last: dict[tuple[int, str], int] = {}
        for position, instrument, pitch, duration in notes:
            value = int(pitch.rsplit("_", 1)[1])
            assert value > last.get((position, instrument), -1), f"not rising: {bar}"
            last[(position, instrument)] = value
            assert duration <= MAX_NOTE_POSITIONS
            assert position + duration <= section_left, "a note lasts past the section end"
            if lock is not None and lock.lock >= 1 and instrument != DRUMS:
                assert value % 12 in lock.pitch_classes()
        plan = bar_plan(desc, True)
        assert plan.density_notes is not None and plan.instrument_ids is not None
        assert len(notes) <= max(
            math.ceil(NOTE_BUDGET_MARGIN * plan.density_notes), len(plan.instrument_ids), MIN_NOTES_PER_BAR
        )
        described = {t for t in desc if t.startswith("Instrument_")}
        if len(bar) + 5 * len(described) <= budget:  # room was left: every described instrument played
            assert described <= {n[1] for n in notes}, (described, bar)
    return checked


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    which=st.integers(0, len(DESCRIPTIONS) - 1),
    model=st.integers(0, 1),
    key=st.integers(0, 11),
    mode=st.integers(0, 1),
    lock=st.sampled_from([0.0, 0.7, 1.0]),
    budget=st.sampled_from([40, 90, 160]),
)
def test_decoded_streams_obey_every_rule(seed, which, model, key, mode, lock, budget):
    decoder = IncrementalDecoder(eager_model(model))
    description = DESCRIPTIONS[which]
    scale = ScaleLock(key, mode, lock)
    bars = list(
        decoder.generate_bars(
            description,
            seed=seed,
            temperature=1.5,
            max_tokens_per_bar=budget,
            scale=(key, mode),
            key_lock=lock,
        )
    )
    check_rules(bars, description, budget, scale)


def test_rules_are_exercised_not_vacuous():
    """With the rules off the same eager models do break them (so the property test can fail)."""
    broken = {"repeat": 0, "past end": 0, "too long": 0}
    for seed in range(6):
        decoder = IncrementalDecoder(eager_model(seed % 2))
        bars = list(
            decoder.generate_bars(
                DESCRIPTIONS[0], seed=seed, temperature=1.5, max_tokens_per_bar=160, rules=DecodeRules.off()
            )
        )
        section_left = [96, 48, 24]  # 4/4 + 3/4 + 2/4, in positions from each bar's start to the end
        for k, bar in enumerate(bars):
            seen = set()
            for position, instrument, pitch, duration in notes_of(bar):
                broken["repeat"] += (position, instrument, pitch) in seen
                seen.add((position, instrument, pitch))
                broken["past end"] += position + duration > section_left[k]
                broken["too long"] += duration > MAX_NOTE_POSITIONS
    assert broken["repeat"] > 0 and broken["past end"] > 0, broken


def test_key_lock_one_gives_scale_tones_and_leaves_drums_alone():
    description = DESCRIPTIONS[0]
    pitched, drum_classes = 0, set()
    for seed in range(4):
        decoder = IncrementalDecoder(eager_model(seed % 2))
        bars = list(
            decoder.generate_bars(
                description, seed=seed, temperature=1.5, max_tokens_per_bar=160, scale=(2, 1), key_lock=1.0
            )
        )  # D major: no C, the pushed pitch
        for bar in bars:
            for _, instrument, pitch, _ in notes_of(bar):
                value = int(pitch.rsplit("_", 1)[1])
                if instrument == DRUMS:
                    drum_classes.add(value % 12)
                else:
                    pitched += 1
                    assert value % 12 in {(2 + d) % 12 for d in SCALE_DEGREES[1]}
    assert pitched > 10
    grammar = RemiGrammar(remi_vocab())
    locked, free = ScaleLock(2, 0, 1.0), ScaleLock(2, 0, 0.0)
    drums = ("pitch", True, 0, 127, None, None)
    assert torch.equal(grammar.mask(drums), grammar.mask(drums))
    state = GrammarState(grammar, rules=DecodeRules(), lock=locked)
    for token in ["Bar_1", "Time Signature_4/4", "Position_0", "Instrument_drum"]:
        state.advance(remi_vocab()[token])
    drum_mask = state.mask()
    state.lock = free
    assert torch.equal(drum_mask, state.mask())  # drums: no key lock at all
    assert len(drum_classes) > 0


def test_key_lock_penalty_curve():
    grammar = RemiGrammar(remi_vocab())
    vocab = remi_vocab()
    out_of_scale, in_scale = vocab["Pitch_61"], vocab["Pitch_62"]  # C# and D in C major
    z = (KK_MAJOR - KK_MAJOR.mean()) / KK_MAJOR.std()
    previous = 0.0
    for lock in (0.0, 0.25, 0.5, 0.9, 0.99):
        mask = grammar.mask(("pitch", False, 0, 127, ScaleLock(0, 1, lock), None))
        penalty = float(mask[out_of_scale] - mask[in_scale])
        tilt = TONAL_TILT * lock * (z[1] - z[2])  # C# vs D in the key profile
        assert penalty == pytest.approx(KEY_LOCK_SHARPNESS * math.log1p(-lock) + tilt, abs=1e-5)
        assert penalty <= previous
        previous = penalty
    assert math.isinf(float(grammar.mask(("pitch", False, 0, 127, ScaleLock(0, 1, 1.0), None))[out_of_scale]))
    tonic = grammar.mask(("pitch", False, 0, 127, ScaleLock(0, 1, 1.0), None))
    c, d, e = (float(tonic[vocab[f"Pitch_{p}"]]) for p in (60, 62, 64))
    assert c > e > d > -1  # the tilt towards the key profile: tonic most, then the third
    with pytest.raises(ValueError, match="key_lock"):
        ScaleLock(0, 1, 1.5)
    with pytest.raises(ValueError, match="key_lock"):
        list(IncrementalDecoder(eager_model(0)).generate_bars(DESCRIPTIONS[0], scale=(0, 1), key_lock=-0.1))


def test_density_budget_and_plans():
    plan = bar_plan(["Bar_1", "Time Signature_4/4", "Note Density_2", PIANO], True)
    assert plan.density_notes == pytest.approx((0.75 + 0.1875) * 48)  # bin 2: up to 0.9375 notes/position
    assert bar_plan(["Bar_1", "Time Signature_4/4", PIANO], True).density_notes is None
    assert density_notes(0, 48) == pytest.approx(9.0)
    state = GrammarState(
        RemiGrammar(remi_vocab()), plans={1: BarPlan(density_notes=2.0)}, final_bar=1, rules=DecodeRules()
    )
    for token in ["Bar_1", "Time Signature_4/4"]:
        state.advance(remi_vocab()[token])
    assert state.max_notes == MIN_NOTES_PER_BAR


def test_reference_remi_mostly_passes_the_rules(reference_dir):
    """FIGARO's own REMI+ of real music: the rules forbid only the rare doubled note and held note."""
    data = json.loads((reference_dir / "figaro_reference_outputs.json").read_text())
    vocab, grammar = remi_vocab(), RemiGrammar(remi_vocab())
    tokens = forbidden = 0
    for entry in list(data.values())[:25]:
        if "remi" not in entry:
            continue
        bars = split_bars(entry["remi"], "remi")
        desc_bars = split_bars(entry["description"], "description")[: len(bars)]
        plans = {k: bar_plan(d, True) for k, d in enumerate(desc_bars, start=1)}
        state = GrammarState(grammar, plans=plans, final_bar=len(bars), budget=10**6, rules=DecodeRules())
        for k, bar in enumerate(bars, start=1):
            for tok in [f"Bar_{k}", *bar[1:]]:
                tokens += 1
                forbidden += math.isinf(float(state.mask()[vocab[tok]]))
                state.advance(vocab[tok])
    assert tokens > 20000
    assert forbidden / tokens < 0.01, (forbidden, tokens)
