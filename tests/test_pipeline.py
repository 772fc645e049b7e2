"""e2m_live.pipeline and e2m_live.models: features -> plan -> decoded bars, with the shipped FIGARO weights.

The planner is the shipped one when ``models/planner`` holds it, else a randomly initialised one of
the same architecture (same code path; only the plans are less musical). Budgets are small so the
decoder runs a few hundred tokens per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2m_live.description.vocab import TEMPO_BINS, split_bars
from e2m_live.features import EmotionFeatures
from e2m_live.models import ModelPaths, ModelsMissing, missing_models, model_paths, require_models
from e2m_live.music import Bar, Note
from e2m_live.pipeline import (
    DecodingOptions,
    Pipeline,
    PipelineError,
    bar_to_tokens,
    impose_tempo,
    tempo_token,
)

REPO = Path(__file__).resolve().parents[1]
SMALL = DecodingOptions(max_tokens_per_bar=80)


def models_root(tmp: Path) -> Path:
    """A models/ folder: the shipped FIGARO weights and the shipped (or a random) planner."""
    shipped = REPO / "models"
    if not missing_models(ModelPaths(shipped / "planner", shipped / "figaro-compact")):
        return shipped
    import torch

    from e2m_live.planner import Planner
    from e2m_live.planner.classes import ORDERED_CLASSES, STREAM_VOCAB
    from e2m_live.planner.model import OrderedClassLSTM, OrderedLSTMConfig, StreamLSTM, StreamLSTMConfig

    torch.manual_seed(0)
    ordered = {name: OrderedClassLSTM(OrderedLSTMConfig(name=name)) for name in ORDERED_CLASSES}
    Planner(ordered, StreamLSTM(StreamLSTMConfig(vocab_size=len(STREAM_VOCAB)))).save(tmp / "planner")
    (tmp / "figaro-compact").symlink_to(shipped / "figaro-compact")
    return tmp


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Pipeline:
    return Pipeline.load(models_root(tmp_path_factory.mktemp("models")), threads=1)


def test_bars_carry_the_plans_time_signature_and_the_requested_tempo(pipeline: Pipeline) -> None:
    features = EmotionFeatures(time_signature=3, tempo=97.0, energy=0.7)
    description = pipeline.plan(features, bars=3, seed=4)
    bars = list(pipeline.decode(description, features, seed=5, options=SMALL))
    assert [g.index for g in bars] == [0, 1, 2]
    assert [g.description for g in bars] == [
        [f"Bar_{i}", *tokens[1:]] for i, tokens in enumerate(split_bars(description.tokens()), start=1)
    ]
    for generated in bars:
        assert generated.tokens[0] == f"Bar_{generated.index + 1}"
        assert generated.tokens[1] == "Time Signature_3/4"
        assert (generated.bar.numerator, generated.bar.denominator) == (3, 4)
        assert generated.bar.tempo == 97.0 and generated.bar.index == generated.index
        tempos = {t for t in generated.tokens if t.startswith("Tempo_")}
        assert tempos <= {tempo_token(97.0)}
        assert all(0 <= n.start < 3.0 for n in generated.bar.notes)


def test_same_seed_same_music_other_seed_other_music(pipeline: Pipeline) -> None:
    features = EmotionFeatures(energy=0.6)

    def tokens(seed: int) -> list[list[str]]:
        return [g.tokens for g in pipeline.generate(features, bars=2, seed=seed, options=SMALL)]

    first = tokens(11)
    assert tokens(11) == first
    assert tokens(12) != first


def test_a_bar_becomes_prime_tokens_in_the_training_order() -> None:
    bar = Bar(
        [Note(60, 90, 0.0, 1.0, 0), Note(64, 80, 1.0, 0.5, 0), Note(36, 100, 0.0, 0.25, 0, True)],
        4,
        4,
        120.0,
        5,
    )
    tokens = bar_to_tokens(bar)
    assert tokens is not None and tokens[:2] == ["Bar_1", "Time Signature_4/4"]
    assert [t for t in tokens if t.startswith("Pitch_")] == ["Pitch_drum_36", "Pitch_60", "Pitch_64"]
    assert "Instrument_Acoustic Grand Piano" in tokens and "Instrument_drum" in tokens
    assert bar_to_tokens(Bar([], 4, 4, 120.0)) is None


def test_priming_with_a_played_bar_continues_from_it(pipeline: Pipeline) -> None:
    features = EmotionFeatures(energy=0.4)
    played = Bar([Note(67, 90, 0.0, 2.0, 0), Note(43, 90, 0.0, 4.0, 32)], 4, 4, 120.0, 11)
    primed = [g.tokens for g in pipeline.generate(features, bars=2, seed=3, prime=played, options=SMALL)]
    plain = [g.tokens for g in pipeline.generate(features, bars=2, seed=3, options=SMALL)]
    assert [b[0] for b in primed] == ["Bar_1", "Bar_2"]  # renumbered within the section
    assert primed != plain  # same plan and seed: only the prime differs


def test_tempo_tokens_are_the_nearest_bin() -> None:
    assert tempo_token(120.0) == f"Tempo_{list(TEMPO_BINS).index(120)}"
    assert tempo_token(1.0) == "Tempo_1"  # bin 0 (0 BPM) is never chosen
    assert impose_tempo(["Bar_1", "Position_0", "Tempo_3", "Position_12"], 240.0) == [
        "Bar_1",
        "Position_0",
        "Tempo_32",
        "Position_12",
    ]


@pytest.mark.parametrize(
    "kwargs, message", [({"bars": 0}, "bars"), ({"seed": -1}, "seed"), ({"temperature": -1.0}, "temperature")]
)
def test_bad_arguments_raise_one_clear_error(pipeline: Pipeline, kwargs: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        pipeline.generate(EmotionFeatures(), **kwargs)


def test_a_description_must_start_with_a_bar(pipeline: Pipeline) -> None:
    with pytest.raises(PipelineError, match="Bar_"):
        pipeline.decode(["Time Signature_4/4"], EmotionFeatures())


def test_missing_models_name_the_doctor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2M_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("E2M_PLANNER_DIR", raising=False)
    monkeypatch.delenv("E2M_FIGARO_DIR", raising=False)
    assert model_paths() == ModelPaths(tmp_path / "planner", tmp_path / "figaro-compact")
    with pytest.raises(ModelsMissing, match="e2m-live doctor") as caught:
        require_models()
    assert "planner" in str(caught.value) and "figaro-compact" in str(caught.value)
    monkeypatch.setenv("E2M_FIGARO_DIR", str(REPO / "models" / "figaro-compact"))
    assert model_paths().figaro == REPO / "models" / "figaro-compact"
    assert [p for p in missing_models() if p.startswith("FIGARO")] == []


def test_pipeline_sets_passive_openmp_before_openmp_loads() -> None:
    code = (
        "import os, e2m_live.pipeline as p; import torch; "
        "print(os.environ['OMP_WAIT_POLICY'], p._PASSIVE_OPENMP)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["PASSIVE", "True"]
