"""The rule-based generator follows the features; the registry falls back to it."""

from __future__ import annotations

import statistics

import pytest

from e2m_live.features import EmotionFeatures
from e2m_live.generators.base import SECTION_BARS, GeneratorUnavailable
from e2m_live.generators.registry import (
    GENERATORS,
    GeneratorEntry,
    create_generator,
    register,
    resolve_generator,
    unavailable_reason,
)
from e2m_live.generators.rules import RuleBasedGenerator
from e2m_live.music import Bar, Note
from e2m_live.testing.load import LOAD_GENERATOR


def _section(**features) -> list[Bar]:
    return list(RuleBasedGenerator().generate(EmotionFeatures(**features), seed=7))


def _notes(bars, drums=None):
    return [n for b in bars for n in b.notes if drums is None or n.is_drum == drums]


@pytest.mark.parametrize("beats", [3, 4, 5, 7])
def test_section_shape(beats):
    bars = _section(time_signature=beats)
    assert len(bars) == SECTION_BARS
    assert [b.index for b in bars] == list(range(SECTION_BARS))
    assert _notes(bars)
    for bar in bars:
        assert bar.numerator == beats and bar.quarters == beats
        for note in bar.notes:
            assert 0 <= note.start < beats and note.duration > 0
            assert 0 <= note.pitch <= 127 and 1 <= note.velocity <= 127


def test_energy_raises_density_and_brings_drums():
    calm, wild = _section(energy=0.1), _section(energy=0.9)
    assert len(_notes(wild)) > 3 * len(_notes(calm))
    assert not _notes(calm, drums=True) and _notes(wild, drums=True)


def test_loudness_sets_velocity_and_valence_sets_register():
    soft = statistics.mean(n.velocity for n in _notes(_section(loudness=-40)))
    loud = statistics.mean(n.velocity for n in _notes(_section(loudness=-3)))
    assert loud > soft + 20
    low = statistics.mean(n.pitch for n in _notes(_section(valence=0.05), drums=False))
    high = statistics.mean(n.pitch for n in _notes(_section(valence=0.95), drums=False))
    assert high > low + 3


def test_key_and_mode_give_the_scale():
    bars = _section(key=2, mode=0, energy=0.6)  # D minor
    d_minor = {(2 + s) % 12 for s in (0, 2, 3, 5, 7, 8, 10)}
    assert {n.pitch % 12 for n in _notes(bars, drums=False)} <= d_minor


def test_instruments_follow_acousticness_and_instrumentalness():
    acoustic = {n.program for n in _notes(_section(acousticness=0.9, energy=0.6), drums=False)}
    electric = {n.program for n in _notes(_section(acousticness=0.1, energy=0.6), drums=False)}
    assert acoustic.isdisjoint(electric)
    vocal = {n.program for n in _notes(_section(instrumentalness=0.0), drums=False)}
    instrumental = {n.program for n in _notes(_section(instrumentalness=1.0), drums=False)}
    assert vocal != instrumental


def test_same_seed_same_music_and_prime_continues_the_line():
    features = EmotionFeatures(energy=0.6)
    first = list(RuleBasedGenerator().generate(features, seed=3))
    again = list(RuleBasedGenerator().generate(features, seed=3))
    assert [b.notes for b in first] == [b.notes for b in again]
    prime = Bar([Note(84, 90, 3.0, 1.0, 0)], 4, 4)
    primed = list(RuleBasedGenerator().generate(features, prime=prime, seed=3))
    lead = min((n for n in primed[0].notes if n.program == 85), key=lambda n: n.start)
    assert abs(lead.pitch - 84) <= 6


def test_registry_falls_back_to_rules_when_a_generator_is_unavailable():
    # A generator whose check fails (as `model` does without weights) falls back to rules.
    register(
        GeneratorEntry(
            "missing-weights",
            lambda **options: RuleBasedGenerator(),
            lambda: "weights not found",
            "test entry",
        )
    )
    try:
        name, warning = resolve_generator("missing-weights")
    finally:
        GENERATORS.pop("missing-weights")
    assert name == "rules" and "falling back" in warning and "weights not found" in warning
    assert resolve_generator("rules") == ("rules", None)
    with pytest.raises(GeneratorUnavailable, match="no generator named"):
        create_generator("nonexistent")


def test_an_import_path_names_a_generator_outside_the_registry():
    # The benchmarks' CPU-load generator is not registered: the daemon and its worker import it by path.
    assert LOAD_GENERATOR not in GENERATORS and "rules+load" not in GENERATORS
    assert resolve_generator(LOAD_GENERATOR) == (LOAD_GENERATOR, None)
    features = EmotionFeatures(energy=0.6)
    loaded = list(create_generator(LOAD_GENERATOR, seconds_per_bar=0.0).generate(features, seed=7))
    assert [b.notes for b in loaded] == [b.notes for b in RuleBasedGenerator().generate(features, seed=7)]
    assert "cannot import" in unavailable_reason("e2m_live.nowhere:factory")
    assert "cannot import" in unavailable_reason("e2m_live.testing.load:nothing")
    assert "not callable" in unavailable_reason("e2m_live.testing.load:LOAD_GENERATOR")
