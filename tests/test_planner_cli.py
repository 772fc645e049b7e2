"""`e2m-live plan` and the reusable feature flags."""

from __future__ import annotations

import argparse
import json

import pytest

from e2m_live import cli
from e2m_live.arrangement import Arrangement
from e2m_live.commands.errors import UsageError
from e2m_live.commands.feature_flags import (
    add_arrangement_arguments,
    add_feature_arguments,
    arrangement_from_args,
    features_from_args,
    flag_name,
)
from e2m_live.description.grammar import validate
from e2m_live.features import FEATURE_ORDER, FEATURES, MOODS, EmotionFeatures


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_feature_arguments(parser)
    add_arrangement_arguments(parser)
    return parser.parse_args(argv)


def test_every_feature_has_a_flag_named_after_it() -> None:
    parser = argparse.ArgumentParser()
    add_feature_arguments(parser)
    flags = {option for action in parser._actions for option in action.option_strings}
    assert {flag_name(name) for name in FEATURE_ORDER} <= flags
    assert "--time-signature" in flags and "--mood" in flags


def test_no_flags_give_the_default_features() -> None:
    assert features_from_args(parse([])) == EmotionFeatures()


def test_explicit_flags_override_the_mood() -> None:
    features = features_from_args(
        parse(
            [
                "--mood",
                "sad",
                "--energy",
                "0.8",
                "--time-signature",
                "3",
                "--key",
                "F#",
                "--mode",
                "major",
                "--tempo",
                "99.5",
            ]
        )
    )
    sad = MOODS["sad"]
    assert (features.energy, features.time_signature, features.key, features.mode, features.tempo) == (
        0.8,
        3,
        6,
        1,
        99.5,
    )
    assert features.valence == sad.valence and features.loudness == sad.loudness


@pytest.mark.parametrize(
    "argv",
    [
        ["--energy", "1.5"],
        ["--energy", "loud"],
        ["--key", "H"],
        ["--mode", "dorian"],
        ["--time-signature", "9"],
        ["--time-signature", "3.5"],
        ["--loudness", "3"],
    ],
)
def test_bad_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        features_from_args(parse(argv))


def test_plan_command_prints_json_with_tokens_and_bars(capsys) -> None:
    code = cli.main(
        ["plan", "--mood", "sad", "--valence", "0.2", "--time-signature", "3", "--seed", "4", "--json"]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    validate(data["tokens"])
    assert len(data["bars"]) == 12
    assert all(bar["time_signature"][0] == 3 for bar in data["bars"])
    assert data["features"]["valence"] == 0.2 and data["features"]["key"] == MOODS["sad"].key


def test_plan_command_text_output_is_deterministic(capsys) -> None:
    assert cli.main(["plan", "--mood", "happy", "--seed", "9", "--bars", "4"]) == 0
    first = capsys.readouterr().out
    assert cli.main(["plan", "--mood", "happy", "--seed", "9", "--bars", "4"]) == 0
    assert capsys.readouterr().out == first
    assert first.count("\nBar ") + first.startswith("Bar ") == 4


@pytest.mark.parametrize(
    "argv", [["--energy", "7"], ["--bars", "0"], ["--model-dir", "/nonexistent/planner"]]
)
def test_plan_command_errors_exit_2_with_one_line(argv: list[str], capsys) -> None:
    assert cli.main(["plan", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("e2m-live plan: error:") and "\n" not in err


def test_arrangement_flags() -> None:
    assert arrangement_from_args(parse([])) == Arrangement()
    args = parse(
        [
            "--key-lock",
            "0.4",
            "--ensemble",
            "Strings",
            "--instruments",
            "violin, 42,drums",
            "--mute",
            "drums",
            "--mute",
            "cello",
        ]
    )
    assert arrangement_from_args(args) == Arrangement(
        key_lock=0.4,
        ensemble="strings",
        instruments=("Violin", "Cello", "drums"),
        muted=frozenset({"drums", "Cello"}),
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--key-lock", "1.1"],
        ["--key-lock", "tight"],
        ["--ensemble", "polka"],
        ["--instruments", "kazoo"],
        ["--mute", "kazooo"],
        ["--ensemble", "piano", "--mute", "0"],
    ],
)
def test_bad_arrangement_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        arrangement_from_args(parse(argv))


def test_plan_command_keeps_to_the_instruments_asked_for(capsys) -> None:
    assert (
        cli.main(
            [
                "plan",
                "--mood",
                "happy",
                "--seed",
                "3",
                "--instruments",
                "violin,cello",
                "--mute",
                "cello",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["arrangement"] == {
        "key_lock": 0.9,
        "ensemble": "auto",
        "instruments": ["Violin", "Cello"],
        "muted": ["Cello"],
    }
    assert all(set(bar["instruments"]) <= {"Violin"} for bar in data["bars"]), data["bars"]
    assert any(bar["instruments"] for bar in data["bars"])


def test_flag_help_and_metavar_come_from_the_feature_schema() -> None:
    parser = argparse.ArgumentParser()
    add_feature_arguments(parser)
    actions = {action.dest: action for action in parser._actions}
    for name, spec in FEATURES.items():
        assert actions[name].help == spec.flag_help()
    assert (actions["tempo"].help, actions["key"].metavar, actions["time_signature"].metavar) == (
        "BPM, 40..240",
        "KEY",
        "N",
    )
