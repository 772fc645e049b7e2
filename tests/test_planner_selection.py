"""Every planner is selectable by name in `plan`, `generate`, the pipeline and the live config (issue 19)."""

from __future__ import annotations

from pathlib import Path

import pretty_midi
import pytest

from e2m_live.cli import main
from e2m_live.live.config import LiveConfig, config_from_args
from e2m_live.planner.registry import PLANNER_NAMES
from tests.test_pipeline import REPO

MODELS = REPO / "models"


@pytest.fixture(scope="module")
def models() -> Path:
    wanted = [
        MODELS / "planner",
        MODELS / "figaro-compact",
        MODELS / "planner-transformer",
        MODELS / "planner-single-lstm",
    ]
    if not all(path.is_dir() for path in wanted):
        pytest.skip("shipped models missing")
    return MODELS


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_generate_with_each_planner(name: str, models: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{name}.mid"
    code = main(
        [
            "generate",
            "--planner",
            name,
            "--seed",
            "3",
            "--bars",
            "2",
            "--max-tokens-per-bar",
            "96",
            "--model-dir",
            str(models),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    midi = pretty_midi.PrettyMIDI(str(out))
    assert sum(len(i.notes) for i in midi.instruments) > 0


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_pipeline_loads_the_named_planner(name: str, models: Path) -> None:
    from e2m_live.pipeline import Pipeline
    from e2m_live.planner.registry import planner_class

    pipeline = Pipeline.load(models, planner=name)
    assert isinstance(pipeline.planner, planner_class(name))


def test_plan_refuses_an_unknown_planner(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--planner", "gpt"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_live_config_takes_a_planner_name() -> None:
    import argparse

    from e2m_live.live.config import add_config_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = config_from_args(parser.parse_args(["--planner", "transformer"]))
    assert config.planner == "transformer"
    assert LiveConfig().planner == "class-lstm"
    with pytest.raises(SystemExit):
        parser.parse_args(["--planner", "nope"])
