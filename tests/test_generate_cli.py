"""`e2m-live generate`: features -> MIDI, WAV and plan JSON through the real models; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import pretty_midi
import pytest

from e2m_live.cli import main
from tests.test_pipeline import models_root


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return models_root(tmp_path_factory.mktemp("models"))


def test_generate_writes_midi_wav_and_plan(models: Path, tmp_path: Path) -> None:
    features = tmp_path / "features.json"
    features.write_text(
        json.dumps({"energy": 0.8, "valence": 0.3, "key": 9, "mode": 0, "time_signature": 4, "tempo": 100.0})
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "e2m_live",
            "generate",
            "--features",
            str(features),
            "--time-signature",
            "3",
            "--tempo",
            "84",
            "--bars",
            "2",
            "--seed",
            "5",
            "--max-tokens-per-bar",
            "96",
            "--ensemble",
            "jazz",
            "--key-lock",
            "1",
            "--mute",
            "drums",
            "--model-dir",
            str(models),
            "-o",
            str(tmp_path / "out.mid"),
            "--wav",
            str(tmp_path / "out.wav"),
            "--plan-out",
            str(tmp_path / "plan.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "2 bars" in out.stdout and "real time" in out.stdout
    midi = pretty_midi.PrettyMIDI(str(tmp_path / "out.mid"))
    _, tempi = midi.get_tempo_changes()
    assert tempi[0] == pytest.approx(84.0, abs=0.01)  # the flag overrides the file
    assert [(ts.numerator, ts.denominator) for ts in midi.time_signature_changes] == [(3, 4)]
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["features"]["energy"] == 0.8 and plan["features"]["key"] == 9  # from the file
    assert plan["tokens"][:2] == ["Bar_1", "Time Signature_3/4"] and len(plan["bars"]) == 2
    assert plan["arrangement"] == {
        "key_lock": 1.0,
        "ensemble": "jazz",
        "instruments": None,
        "muted": ["drum"],
    }
    with wave.open(str(tmp_path / "out.wav")) as wav:
        assert wav.getframerate() == 44100
        seconds = wav.getnframes() / wav.getframerate()
    assert seconds >= 2 * 3 * 60 / 84 * 0.5  # two 3/4 bars at 84 BPM, minus silence at the end


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--energy", "2", "-o", "{tmp}/x.mid"], "energy must be"),
        (["--bars", "0", "-o", "{tmp}/x.mid"], "--bars must be"),
        (["--temperature", "-1", "-o", "{tmp}/x.mid"], "--temperature"),
        (["--top-p", "0", "-o", "{tmp}/x.mid"], "--top-p"),
        (["-o", "{tmp}/missing/x.mid"], "does not exist"),
        (
            ["--mood", "happy", "--features", "{tmp}/f.json", "-o", "{tmp}/x.mid"],
            "either --mood or --features",
        ),
        (["--features", "{tmp}/nothing.json", "-o", "{tmp}/x.mid"], "cannot read"),
        (["--ensemble", "disco", "-o", "{tmp}/x.mid"], "unknown ensemble 'disco'"),
        (["--key-lock", "-0.5", "-o", "{tmp}/x.mid"], "key_lock must be"),
        (["--instruments", "electric", "-o", "{tmp}/x.mid"], "ambiguous"),
        (["--instruments", "drums", "--mute", "drums", "-o", "{tmp}/x.mid"], "muted"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(argv, message, tmp_path: Path, capsys) -> None:
    (tmp_path / "f.json").write_text("{}")
    code = main(["generate", *[a.format(tmp=tmp_path) for a in argv]])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_missing_models_say_run_doctor(tmp_path: Path, capsys) -> None:
    code = main(["generate", "--model-dir", str(tmp_path), "-o", str(tmp_path / "x.mid")])
    err = capsys.readouterr().err
    assert code == 2 and "e2m-live doctor" in err and err.count("\n") == 1
