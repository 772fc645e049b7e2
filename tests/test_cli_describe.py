"""`e2m-live describe` and `e2m-live remi` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

import pretty_midi
import pytest

from e2m_live.description.extract import extract

# The `e2m-live` entry point, without depending on the console script being installed.
_ENTRY = "import sys; from e2m_live.cli import main; sys.exit(main())"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _ENTRY, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    pm = pretty_midi.PrettyMIDI(initial_tempo=100)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(3, 4, 0.0))
    piano, bass = pretty_midi.Instrument(0), pretty_midi.Instrument(33)
    beat = 0.6
    for i in range(12):  # four bars of 3/4, C major then A minor
        chord = (60, 64, 67) if i < 6 else (57, 60, 64)
        for p in chord:
            piano.notes.append(pretty_midi.Note(70, p, i * beat, (i + 1) * beat))
        bass.notes.append(pretty_midi.Note(90, chord[0] - 24, i * beat, (i + 0.5) * beat))
    pm.instruments += [piano, bass]
    path = tmp_path_factory.mktemp("cli") / "song.mid"
    pm.write(str(path))
    return path


def test_describe_json(song):
    result = _run("describe", str(song), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tokens"] == extract(song).description
    assert len(data["bars"]) == 4
    first = data["bars"][0]
    assert first["bar"] == 1 and first["time_signature"] == "3/4"
    assert first["instruments"] == ["Acoustic Grand Piano", "Electric Bass (finger)"]
    assert "C:maj" in first["chords"]
    assert first["tokens"][0] == "Bar_1"


def test_describe_bar_range_and_text(song):
    result = _run("describe", str(song), "--bars", "2:3", "--json")
    bars = json.loads(result.stdout)["bars"]
    assert [b["bar"] for b in bars] == [2, 3]
    text = _run("describe", str(song), "--bars", "4:")
    assert text.returncode == 0
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Bar   4") and "A:min" in lines[0]


def test_remi_json_and_text(song):
    result = _run("remi", str(song), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tokens"] == extract(song).remi
    text = _run("remi", str(song))
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("Bar_") for line in lines)


@pytest.mark.parametrize("command", ["describe", "remi"])
@pytest.mark.parametrize("content", [b"", b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\xff", b"hello"])
def test_bad_files_give_one_line_and_exit_code_2(tmp_path, command, content):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    result = _run(command, str(path), "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"e2m-live {command}: error:")


def test_missing_file_and_bad_range(tmp_path, song):
    result = _run("describe", str(tmp_path / "nope.mid"))
    assert result.returncode == 2 and "no such file" in result.stderr
    result = _run("describe", str(song), "--bars", "3:1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
