"""Instruments in their ranges, voices that sing, groove from danceability (issue 14, follow-up).

Random-weight models as in ``test_decode_rules``: whatever the weights, drums keep to GM keys 35..81,
basses and voices to their ranges, a voice never starts a note while its last one sounds, and at
groove 1 every beat of a drum bar has a drum note, its bass plays on the downbeat and no onset is off
the sixteenth grid. Groove 0 changes nothing.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from e2m_live.description.vocab import DURATION_BINS, split_bars
from e2m_live.figaro.config import FigaroConfig
from e2m_live.figaro.constraints import (
    BASS_RANGE,
    DRUM_RANGE,
    GROOVE_DRUM_BIAS,
    VOICE_RANGE,
    BarPlan,
    DecodeRules,
    GrammarState,
    RemiGrammar,
    bar_length_in_positions,
    beat_length,
    groove_strength,
    pitch_range,
)
from e2m_live.figaro.decode import IncrementalDecoder
from e2m_live.figaro.inputs import remi_vocab
from e2m_live.figaro.model import FigaroModel

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
VOICES = ("Instrument_Voice Oohs", "Instrument_Synth Choir")
DESCRIPTION = [
    "Bar_1",
    "Time Signature_4/4",
    "Note Density_3",
    "Mean Velocity_25",
    "Mean Pitch_13",
    "Mean Duration_32",
    BASS,
    DRUMS,
    PIANO,
    VOICES[0],
    "Chord_A:maj",
    "Bar_2",
    "Time Signature_6/8",
    "Note Density_2",
    "Mean Velocity_20",
    "Mean Pitch_11",
    "Mean Duration_20",
    BASS,
    DRUMS,
    VOICES[1],
    "Chord_D:min",
    "Bar_3",
    "Time Signature_3/4",
    "Note Density_3",
    "Mean Velocity_25",
    "Mean Pitch_14",
    "Mean Duration_30",
    DRUMS,
    PIANO,
    VOICES[0],
    "Chord_E:dom7",
]


@lru_cache(maxsize=4)
def wild_model(seed: int) -> FigaroModel:
    """Random weights pushed to every extreme the rules must stop: notes everywhere, very low and very
    high pitches, drum keys outside the kit, triplet positions and long notes."""
    torch.manual_seed(seed)
    model = FigaroModel(TINY).eval()
    itos = remi_vocab().itos
    with torch.no_grad():
        direction = torch.ones(TINY.d_model) / TINY.d_model**0.5
        model.decoder_layers[-1].ffn.norm.bias += 2 * direction
        pushes = {
            "Instrument_": 3.0,
            "Duration_2": 1.0,
            "Duration_20": 1.0,
            "Position_4": 2.0,
            "Position_8": 2.0,
            "Position_16": 2.0,
        }
        exact = {
            "Pitch_10": 3.0,
            "Pitch_120": 3.0,
            "Pitch_60": 2.0,
            "Pitch_drum_20": 3.0,
            "Pitch_drum_100": 3.0,
            "Pitch_drum_49": 2.0,
        }
        for name, push in {**pushes, **exact}.items():
            ids = [i for i, t in enumerate(itos) if (t == name if name in exact else t.startswith(name))]
            model.output.weight[ids] += push * direction
    return model


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def notes_of(bar: list[str]) -> list[tuple[int, str, int, int]]:
    """(position, instrument, pitch, duration in positions) of every note of a bar."""
    notes, position = [], 0
    for i, tok in enumerate(bar):
        if tok.startswith("Position_"):
            position = int(tok.split("_")[1])
        elif tok.startswith("Instrument_"):
            duration = int(DURATION_BINS[int(bar[i + 3].split("_")[1])])
            notes.append((position, tok, int(bar[i + 1].rsplit("_", 1)[1]), duration))
    return notes


def decode(seed: int, groove: float, rules: DecodeRules | None = None, budget: int = 200) -> list[list[str]]:
    decoder = IncrementalDecoder(wild_model(seed % 2))
    return list(
        decoder.generate_bars(
            DESCRIPTION,
            seed=seed,
            temperature=1.3,
            max_tokens_per_bar=budget,
            rules=rules,
            scale=(9, 1),
            key_lock=0.5,
            groove=groove,
        )
    )


def test_family_ranges():
    assert pitch_range(None) == DRUM_RANGE == (35, 81)
    assert pitch_range(33) == pitch_range(43) == BASS_RANGE
    assert pitch_range(53) == pitch_range(85) == VOICE_RANGE
    assert pitch_range(0) == (21, 108)
    signatures = ("4/4", "3/4", "6/8", "7/8", "2/2")
    assert [beat_length(f"Time Signature_{ts}") for ts in signatures] == [12, 12, 18, 18, 24]
    assert groove_strength(0.3) == groove_strength(0.4) == 0.0
    assert groove_strength(0.6) == pytest.approx(0.5) and groove_strength(0.9) == 1.0


@pytest.mark.parametrize("groove", [0.0, 1.0])
def test_instruments_stay_in_their_ranges_and_voices_sing_one_note_at_a_time(groove):
    checked = {"drum": 0, "bass": 0, "voice": 0}
    for seed in range(4):
        bars = decode(seed, groove)
        offset, voice_end = 0, {}
        for bar, desc in zip(bars, split_bars(DESCRIPTION, "description"), strict=True):
            for position, instrument, pitch, duration in notes_of(bar):
                if instrument == DRUMS:
                    assert DRUM_RANGE[0] <= pitch <= DRUM_RANGE[1]
                    checked["drum"] += 1
                elif instrument == BASS:
                    assert BASS_RANGE[0] <= pitch <= BASS_RANGE[1]
                    checked["bass"] += 1
                elif instrument in VOICES:
                    assert VOICE_RANGE[0] <= pitch <= VOICE_RANGE[1]
                    start = offset + position
                    assert start >= voice_end.get(instrument, 0), f"{instrument} overlaps itself: {bar}"
                    voice_end[instrument] = start + duration
                    checked["voice"] += 1
                else:
                    assert 21 <= pitch <= 108
            offset += bar_length_in_positions(desc[1])
    assert min(checked.values()) >= 4, checked


def test_without_the_rules_the_wild_models_break_them():
    """The range and voice tests can fail: the same models leave the ranges with the rules off."""
    outside, overlaps = 0, 0
    for seed in range(4):
        rules = DecodeRules(pitch_ranges=False, monophonic_voices=False)
        for bar in decode(seed, 0.0, rules):
            starts: dict[str, list[tuple[int, int]]] = {}
            for position, instrument, pitch, duration in notes_of(bar):
                lo, hi = {DRUMS: DRUM_RANGE, BASS: BASS_RANGE}.get(instrument, (0, 127))
                outside += not lo <= pitch <= hi
                if instrument in VOICES:
                    overlaps += any(s <= position < e for s, e in starts.get(instrument, []))
                    starts.setdefault(instrument, []).append((position, position + duration))
    assert outside > 0 and overlaps > 0, (outside, overlaps)


def test_full_groove_puts_a_drum_on_every_beat_bass_on_the_downbeat_and_keeps_the_sixteenth_grid():
    off_grid_without = 0
    for seed in range(4):
        for bar, desc in zip(decode(seed, 1.0), split_bars(DESCRIPTION, "description"), strict=True):
            notes = notes_of(bar)
            beat, length = beat_length(desc[1]), bar_length_in_positions(desc[1])
            drum_positions = {p for p, instrument, _, _ in notes if instrument == DRUMS}
            assert set(range(0, length, beat)) <= drum_positions, (desc[1], bar)
            if BASS in desc:
                assert (0, BASS) in {(p, i) for p, i, _, _ in notes}
            assert all(p % 3 == 0 for p, _, _, _ in notes), bar
        off_grid_without += sum(p % 3 != 0 for bar in decode(seed, 0.0) for p, _, _, _ in notes_of(bar))
    assert off_grid_without > 0  # the models do want triplets: the grid rule is what removes them


def role_hits(groove: float) -> int:
    """Drum notes of the 4/4 bar on their beat role's keys: kick on 1 and 3, snare on 2 and 4, hats."""
    hits = 0
    for seed in range(6):
        for position, instrument, pitch, _ in notes_of(decode(seed, groove)[0]):
            if instrument == DRUMS:
                keys = (35, 36) if position in (0, 24) else (38, 40) if position in (12, 36) else (42, 44)
                hits += pitch in keys
    return hits


def test_groove_biases_drum_keys_by_beat_role():
    # the wild models push drum keys 20, 49 and 100 hard; the role bias still pulls notes to the kit
    assert GROOVE_DRUM_BIAS > 0
    assert role_hits(1.0) >= role_hits(0.0) + 3


def test_groove_zero_changes_nothing():
    """g = 0 decodes exactly as the groove switched off (and, checked when it landed, as before it)."""
    for seed in range(3):
        assert decode(seed, 0.0) == decode(seed, 1.0, DecodeRules(groove=False))


def test_snap_quantises_off_grid_positions_forward():
    grammar = RemiGrammar(remi_vocab())
    bar = [
        remi_vocab()[t]
        for t in (
            "Bar_1",
            "Time Signature_4/4",
            "Position_6",
            "Instrument_drum",
            "Pitch_drum_42",
            "Velocity_20",
            "Duration_3",
        )
    ]
    state = GrammarState(grammar, plans={1: BarPlan()}, final_bar=1, rules=DecodeRules(), groove=1.0)
    for token in bar:
        state.advance(token)
    position = {v: grammar.position_id[v] for v in (7, 8, 10, 46)}
    assert state.snap(position[7], 0.0) == grammar.position_id[9]  # not back to 6, where notes sound
    assert state.snap(position[8], 0.0) == grammar.position_id[9]
    assert state.snap(position[10], 0.0) == grammar.position_id[9]
    assert state.snap(position[46], 0.0) == grammar.position_id[45]
    assert state.snap(position[10], 0.99) == grammar.position_id[9]
    half = GrammarState(grammar, plans={1: BarPlan()}, final_bar=1, rules=DecodeRules(), groove=0.5)
    for token in bar:
        half.advance(token)
    assert half.snap(position[10], 0.7) == position[10]  # u >= g: kept
    off = GrammarState(
        grammar, plans={1: BarPlan()}, final_bar=1, rules=DecodeRules(groove=False), groove=1.0
    )
    assert off.groove == 0.0 and off.snap(position[10], 0.0) == position[10]
