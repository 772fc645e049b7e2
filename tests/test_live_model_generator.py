"""The daemon's `model` generator: planner + FIGARO in the engine's real worker process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2m_live.features import EmotionFeatures
from e2m_live.generators.base import SECTION_BARS
from e2m_live.generators.model import ModelGenerator
from e2m_live.generators.registry import GENERATORS, unavailable_reason
from e2m_live.live.engine import Engine
from e2m_live.music import Bar, Note
from tests.test_pipeline import models_root


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return models_root(tmp_path_factory.mktemp("models"))


def test_engine_with_the_model_generator_produces_bars(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The registry's check (in the worker too) reads the environment, which the worker inherits.
    monkeypatch.setenv("E2M_MODELS_DIR", str(models))
    monkeypatch.delenv("E2M_PLANNER_DIR", raising=False)
    monkeypatch.delenv("E2M_FIGARO_DIR", raising=False)
    features = EmotionFeatures(energy=0.6, time_signature=3, tempo=132.0)
    engine = Engine(
        "model", {"threads": 1, "max_tokens_per_bar": 48}, features, seed=3, debounce=0.01, max_debounce=0.05
    )
    engine.start(wait=60.0)
    try:
        assert engine.worker_pid is not None
        assert engine._ready.is_set(), "the worker never reported ready"
        assert engine.wait_first_bar(90), engine.errors
        played = []
        deadline = time.monotonic() + 90
        while len(played) < 3 and time.monotonic() < deadline:
            planned = engine.next_bar()
            if planned is not None and not planned.repeat:
                played.append(planned.bar)
            else:
                time.sleep(0.05)
        assert [bar.index for bar in played] == [0, 1, 2]
        assert all((bar.numerator, bar.denominator, bar.tempo) == (3, 4, 132.0) for bar in played)
        assert engine.errors == [] and engine.status()["worker_alive"]
    finally:
        engine.close()


def test_its_own_bars_prime_the_next_section_with_their_tokens(models: Path) -> None:
    generator = ModelGenerator(models_dir=str(models), threads=1, max_tokens_per_bar=48, warm_start=False)
    features = EmotionFeatures(energy=0.5)
    first = []
    for bar in generator.generate(features, seed=1):
        first.append(bar)
        if len(first) == 2:
            break
    assert generator.load_seconds is not None and generator._made  # remembered as it went
    known = generator._made[generator._key(first[-1])]
    assert known[0][0] == "Bar_2" and known[1][0] == "Bar_2"  # tokens and description bar
    following = next(iter(generator.generate(features, prime=first[-1], seed=2)))
    assert following.index == 0 and following.tempo == features.tempo
    foreign = Bar([Note(60, 80, 0.0, 1.0, 0)], 4, 4, 120.0, 0)  # not ours: converted to tokens
    assert next(iter(generator.generate(features, prime=foreign, seed=2))).index == 0
    assert SECTION_BARS == 12


def test_check_is_cheap_and_names_the_doctor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2M_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("E2M_PLANNER_DIR", raising=False)
    monkeypatch.delenv("E2M_FIGARO_DIR", raising=False)
    reason = unavailable_reason("model")
    assert reason is not None and "e2m-live doctor" in reason and "planner" in reason
    code = (
        "import sys; from e2m_live.generators.registry import unavailable_reason; "
        "unavailable_reason('model'); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "E2M_MODELS_DIR": str(tmp_path)},
    )
    assert out.stdout.strip() == "False"
    assert GENERATORS["model"].description.startswith("planner")


def test_warm_start_opens_with_a_rule_bar_while_the_model_loads(models: Path) -> None:
    generator = ModelGenerator(models_dir=str(models), threads=1, max_tokens_per_bar=48)
    features = EmotionFeatures(energy=0.5, time_signature=5, tempo=100.0)
    section = generator.generate(features, seed=4)
    first = next(section)
    assert not generator._made  # a rule bar, not decoded: it did not wait for the model
    second = next(section)
    assert generator._made  # decoded by the model, primed with the rule bar
    assert [first.index, second.index] == [0, 1]
    assert all((b.numerator, b.tempo) == (5, 100.0) for b in (first, second))
    assert len([first, second, *section]) == SECTION_BARS
    assert next(iter(generator.generate(features, seed=5))).index == 0  # loaded: no stand-in
    assert generator._made[generator._key(next(iter(generator.generate(features, seed=6))))][0][0] == "Bar_1"
