"""`e2m-live decode`: plan and describe JSON, edited copies and MIDI files through the real models
(2-3 bars each); bad descriptions and files give one line and exit code 2."""

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

BEATLES = "lakh-clean-beatles/01_-_Please_Please_Me/01_-_I_Saw_Her_Standing_There.v0.mid"
SHORT = ["--max-tokens-per-bar", "96"]  # keeps each bar short on a busy CPU


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return models_root(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def beatles(datasets_dir: Path) -> Path:
    path = datasets_dir / BEATLES
    if not path.is_file():
        pytest.skip(f"shared data missing: {path}")
    return path


def _stdout(argv: list[str], capsys) -> str:
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _played(path: Path) -> set[tuple[int, bool]]:
    """(program, is_drum) of every track with notes (drums as program 0)."""
    midi = pretty_midi.PrettyMIDI(str(path))
    return {(0 if inst.is_drum else inst.program, inst.is_drum) for inst in midi.instruments if inst.notes}


def test_plan_json_decoded_with_the_seed_is_what_generate_makes(models: Path, tmp_path: Path, capsys) -> None:
    plan = ["--mood", "happy", "--bars", "2", "--seed", "4", "--ensemble", "band", "--key-lock", "1"]
    (tmp_path / "plan.json").write_text(_stdout(["plan", *plan, "--json"], capsys))
    _stdout(
        ["generate", *plan, *SHORT, "--model-dir", str(models), "-o", str(tmp_path / "generated.mid")], capsys
    )
    out = _stdout(
        [
            "decode",
            str(tmp_path / "plan.json"),
            "--seed",
            "4",
            *SHORT,
            "--model-dir",
            str(models),
            "-o",
            str(tmp_path / "decoded.mid"),
            "--plan-out",
            str(tmp_path / "again.json"),
        ],
        capsys,
    )
    assert "2 bars" in out and "real time" in out
    assert (tmp_path / "decoded.mid").read_bytes() == (tmp_path / "generated.mid").read_bytes()
    # What was decoded is written back in the same shape: features and key lock came from the plan.
    original, again = (json.loads((tmp_path / name).read_text()) for name in ("plan.json", "again.json"))
    assert again["tokens"] == original["tokens"] and again["features"] == original["features"]
    assert again["arrangement"]["key_lock"] == 1.0


def test_describe_json_with_edited_instruments_decodes_them(
    models: Path, beatles: Path, tmp_path: Path, capsys
) -> None:
    described = json.loads(_stdout(["describe", str(beatles), "--bars", "5:6", "--json"], capsys))
    assert "Electric Bass (finger)" in described["bars"][0]["instruments"]  # the song's band
    for bar in described["bars"]:  # a hand edit: piano, violin and drums instead of the band
        bar["instruments"] = ["Acoustic Grand Piano", "Violin", "drums"]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(described))
    out = _stdout(
        [
            "decode",
            str(edited),
            "--seed",
            "1",
            *SHORT,
            "--model-dir",
            str(models),
            "-o",
            str(tmp_path / "out.mid"),
        ],
        capsys,
    )
    assert "2 bars" in out
    assert _played(tmp_path / "out.mid") == {(0, False), (40, False), (0, True)}


def test_a_midi_file_is_described_on_the_fly(models: Path, beatles: Path, tmp_path: Path, capsys) -> None:
    _stdout(
        [
            "decode",
            str(beatles),
            "--bars",
            "5:6",
            "--mute",
            "drums",
            "--seed",
            "2",
            *SHORT,
            "--model-dir",
            str(models),
            "-o",
            str(tmp_path / "out.mid"),
            "--wav",
            str(tmp_path / "out.wav"),
        ],
        capsys,
    )
    with wave.open(str(tmp_path / "out.wav")) as wav:  # FluidSynth rendered the same two bars
        assert wav.getframerate() == 44100 and wav.getnframes() / 44100 >= 2 * 4 * 60 / 161 * 0.5
    midi = pretty_midi.PrettyMIDI(str(tmp_path / "out.mid"))
    assert not any(inst.is_drum and inst.notes for inst in midi.instruments)  # muted
    # Two 4/4 bars at the song's tempo (161 BPM, from the file).
    assert midi.get_end_time() == pytest.approx(2 * 4 * 60 / 161, rel=0.05)
    assert (33, False) in _played(tmp_path / "out.mid")  # the song's bass, from its description


def _plan_with(tmp_path: Path, edit) -> Path:
    """A 2-bar plan-shaped JSON (hand-written, no models needed) after ``edit``."""
    bar = {
        "time_signature": [4, 4],
        "note_density": 10,
        "mean_velocity": 20,
        "mean_pitch": 15,
        "mean_duration": 12,
        "instruments": ["Acoustic Grand Piano"],
        "chords": ["C:maj"],
    }
    document = {"bars": [{**bar, "index": 1}, {**bar, "index": 2}]}
    edit(document)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d["bars"][1].update(instruments=["Kazoo"]),
            "token 'Instrument_Kazoo' at index 14 in bar Bar_2 (bar 2, from index 8): "
            "not a description token",
        ),
        (
            lambda d: d["bars"][1].update(chords=[]),
            "description ends early at index 15 (bar Bar_2): expected an Instrument_* not yet used in "
            "this bar or a Chord_* (an earlier bar had a chord",
        ),
        (
            lambda d: d["bars"][1].update(index=3),
            "token 'Bar_3' at index 8 in bar Bar_1 (bar 1, from index 0): expected a Chord_* or Bar_2",
        ),
        (lambda d: d["bars"][0].update(note_density=40), "token 'Note Density_40' at index 2 in bar Bar_1"),
        (lambda d: d["bars"][0].pop("mean_pitch"), "bar 1: unknown fields [], missing fields ['mean_pitch']"),
        (
            lambda d: d.pop("bars") and d.update(tokens=["Bar_1", "Time Signature_4/4"]),
            "description ends early at index 2 (bar Bar_1): expected Note Density_*",
        ),
        (lambda d: d["bars"][0].update(instruments="piano"), "bar 1: 'instruments' must be a list"),
        (
            lambda d: d.pop("bars") and d.update(tokens=["Bar_1", "Chord_C:maj"]),
            "token 'Chord_C:maj' at index 1 in bar Bar_1 (bar 1, from index 0): expected Time Signature_*",
        ),
    ],
)
def test_grammar_violations_give_the_grammars_message(edit, message, tmp_path: Path, capsys) -> None:
    path = _plan_with(tmp_path, edit)
    code = main(["decode", str(path), "--model-dir", str(tmp_path / "none"), "-o", str(tmp_path / "x.mid")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"e2m-live decode: error: {path}: ") and message in err
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.json", b'{"bars": [', "neither a MIDI file nor valid JSON"),
        ("bad.json", b"42", "expected a JSON object with 'bars' or 'tokens'"),
        ("bad.json", b'{"features": {}}', "needs 'bars' or 'tokens'"),
        ("bad.mid", b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\xff", "bad.mid: "),
        ("bad.mid", b"hello", "bad.mid: "),
        ("empty.mid", b"", "empty.mid: "),
    ],
)
def test_malformed_json_and_corrupt_midi_give_one_line(
    name, content, message, tmp_path: Path, capsys
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code = main(["decode", str(path), "-o", str(tmp_path / "x.mid")])
    out = capsys.readouterr()
    assert code == 2 and out.out == "" and out.err.count("\n") == 1
    assert out.err.startswith("e2m-live decode: error:") and message in out.err


def test_a_corrupt_midi_file_as_the_user_runs_it_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "song.mid"
    path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\xff")
    result = subprocess.run(
        [sys.executable, "-m", "e2m_live", "decode", str(path), "-o", str(tmp_path / "x.mid")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"e2m-live decode: error: {path}: ")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--time-signature", "3"], "--time-signature does not apply"),
        (["--bars", "7:9"], "the description has bars Bar_1..Bar_2"),
        (["--bars", "2:1"], "need 1 <= START <= END"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--key-lock", "2"], "key_lock must be"),
        (["--instruments", "electric"], "ambiguous"),
        (["--mood", "happy", "--energy", "7"], "energy must be"),
        (["--top-p", "0"], "--top-p"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(argv, message, tmp_path: Path, capsys) -> None:
    path = _plan_with(tmp_path, lambda d: None)
    code = main(["decode", str(path), *argv, "-o", str(tmp_path / "x.mid")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_missing_models_say_run_doctor(tmp_path: Path, capsys) -> None:
    path = _plan_with(tmp_path, lambda d: None)
    code = main(["decode", str(path), "--model-dir", str(tmp_path), "-o", str(tmp_path / "x.mid")])
    err = capsys.readouterr().err
    assert code == 2 and "e2m-live doctor" in err and err.count("\n") == 1


def test_edited_tokens_beside_the_bars_are_named_edited_bars_are_not(tmp_path: Path, capsys) -> None:
    path = _plan_with(tmp_path, lambda d: None)
    document = json.loads(path.read_text())
    bar_tokens = [
        "Bar_1",
        "Time Signature_4/4",
        "Note Density_10",
        "Mean Velocity_20",
        "Mean Pitch_15",
        "Mean Duration_12",
        "Instrument_Acoustic Grand Piano",
        "Chord_C:maj",
    ]
    document["bars"] = [{**document["bars"][0], "tokens": bar_tokens}]  # as `describe --json` writes it
    document["bars"][0]["instruments"] = ["Violin"]  # the records edited: tokens stale, say nothing
    document["tokens"] = bar_tokens
    path.write_text(json.dumps(document))
    argv = ["decode", str(path), "--model-dir", str(tmp_path), "-o", str(tmp_path / "x.mid")]
    assert main(argv) == 2 and "warning" not in capsys.readouterr().err  # stops at the missing models
    document["tokens"] = [*bar_tokens[:6], "Instrument_Cello", "Chord_C:maj"]  # the tokens edited
    path.write_text(json.dumps(document))
    assert main(argv) == 2
    assert "'tokens' differ from 'bars' from token 6 on; decoding the bars" in capsys.readouterr().err


def test_more_bars_than_the_model_takes_say_choose_some(models: Path, tmp_path: Path, capsys) -> None:
    path = _plan_with(tmp_path, lambda d: d.update(bars=[{**d["bars"][0], "index": None}] * 300))
    code = main(["decode", str(path), "--model-dir", str(models), "-o", str(tmp_path / "x.mid")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "the description has 300 bars, the model takes at most 256: choose some with --bars" in err
