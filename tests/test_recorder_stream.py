"""The live recording streams to disk (issue 20): valid after every bar line, after SIGKILL up to the bars
played, memory bounded however long it runs; on close, one track per instrument."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import time
from pathlib import Path

import mido

from e2m_live.live.outputs import MidiFileRecorder
from e2m_live.testing.daemon import wait_until
from tests.live_helpers import CLI, REPO, bars_started, described_bars, read_until_ready
from tests.test_midi_tracks import assert_clean, read_tracks

BEAT = 0.5  # 120 BPM


def play_bar(recorder: MidiFileRecorder, number: int, held: bool = False) -> None:
    """What the player sends for one 4/4 bar: the bar mark, a program change, four piano notes, a drum
    hit, and (``held``) a note that sounds across the next bar line."""
    start = number * 4 * BEAT
    recorder.mark_bar(start, 120.0, 4, 4)
    recorder.send((0xC0, 0), start)
    for beat in range(4):
        recorder.send((0x90, 60 + beat, 80), start + beat * BEAT)
        recorder.send((0x99, 36, 100), start + beat * BEAT)
        recorder.send((0x89, 36, 0), start + beat * BEAT + 0.1)
        recorder.send((0x80, 60 + beat, 0), start + (beat + 0.5) * BEAT)
    if held:
        recorder.send((0x91, 40, 90), start + 3 * BEAT)  # its note-off comes in the next bar


def notes_of(data: bytes) -> tuple[mido.MidiFile, list[tuple[int, int, int]], int]:
    """(file, (start, end, pitch) of every note, notes never ended) of a MIDI file in memory."""
    midi, tracks = read_tracks(data)
    return midi, sorted(n for t in tracks for n in t.notes), sum(t.hanging for t in tracks)


def test_the_file_is_valid_after_every_bar_line(tmp_path: Path) -> None:
    path = tmp_path / "live.mid"
    recorder = MidiFileRecorder(path)
    sizes = [path.stat().st_size]  # the header and an empty track: already a valid file
    assert notes_of(path.read_bytes())[1] == []
    for number in range(6):
        play_bar(recorder, number, held=number == 2)
        if number == 3:
            recorder.send((0x81, 40, 0), number * 4 * BEAT + 0.25)  # ends the note held across bar line 3
        if number == 0:
            continue  # nothing before the first bar line
        # The bar before this one is complete once this bar is marked: the writer puts it on disk.
        assert wait_until(lambda: path.stat().st_size > sizes[-1], 10), number
        sizes.append(path.stat().st_size)
        midi, notes, hanging = notes_of(path.read_bytes())  # what a crash right now would leave
        assert midi.type == 0 and hanging == 0
        assert {n[2] for n in notes} >= {36, 60, 61, 62, 63}
    assert sizes == sorted(sizes)
    midi, notes, _ = notes_of(path.read_bytes())
    tpb = midi.ticks_per_beat
    # Five bars are on disk while the sixth plays; the held bass note sounds into bar 4.
    assert (8 * tpb + 3 * tpb, 12 * tpb + tpb // 2, 40) in notes
    assert len([n for n in notes if n[2] == 36]) >= 5 * 4
    recorder.close()
    midi, tracks = read_tracks(path)
    assert midi.type == 1
    assert [t.name for t in tracks] == ["", "Drums", "Acoustic Grand Piano"]  # channels 0 and 1: one program
    assert_clean(tracks, None)
    assert sum(len(t.notes) for t in tracks) == 6 * 8 + 1  # nothing lost in the rewrite


def test_memory_stays_bounded_over_a_long_recording(tmp_path: Path) -> None:
    path = tmp_path / "long.mid"
    recorder = MidiFileRecorder(path)
    for number in range(2000):  # 2000 bars: more than an hour at 120 BPM
        play_bar(recorder, number)
        if number % 100 == 99:
            assert wait_until(lambda: len(recorder._pending) < 40, 10)  # the writer keeps up
    # All but the last bar on disk once the writer has caught up.
    assert wait_until(lambda: len(notes_of(path.read_bytes())[1]) >= 1999 * 8, 10, step=0.2)
    stream = recorder._stream
    assert len(stream._anchors) <= 8 and not stream._sounding and len(recorder._pending) < 40
    assert notes_of(path.read_bytes())[2] == 0  # nothing hanging
    recorder.close()
    _, tracks = read_tracks(path)
    assert sum(len(t.notes) for t in tracks) == 2000 * 8


def test_the_file_parses_between_the_two_writes_of_a_flush(tmp_path: Path, monkeypatch) -> None:
    """A kill between a flush's events and its length patch leaves a file that parses, with the events of
    the flush before (the notes sounding then lose their provisional note-offs to the padding)."""
    from e2m_live.live import outputs

    path = tmp_path / "cut.mid"
    stream = outputs._Stream(path, 960)
    stream.append([(0.0, 1, (0x90, 60, 90), None), (0.1, 2, (0x90, 64, 90), None)])  # two notes sounding
    before = notes_of(path.read_bytes())[1]
    writes = []
    real = os.pwrite
    monkeypatch.setattr(
        outputs.os,
        "pwrite",
        lambda fd, data, at: (
            writes.append(at) or (len(data) if at == stream._LENGTH_AT else real(fd, data, at))
        ),
    )  # the length patch never lands
    stream.append([(0.5, 3, (0x80, 60, 0), None), (0.6, 4, (0x90, 67, 80), None)])
    assert writes[-1] == stream._LENGTH_AT
    midi, notes, hanging = notes_of(path.read_bytes())
    assert before == [(0, 192, 60), (192, 192, 64)] and notes == [] and hanging == 2
    assert [m.type for m in midi.tracks[0] if m.type != "text"] == ["note_on", "note_on"]  # text: padding
    assert not any(m.type == "end_of_track" for m in midi.tracks[0])  # readers take a track without one
    monkeypatch.setattr(outputs.os, "pwrite", real)
    stream.append([(0.7, 5, (0x80, 64, 0), None)])
    _, notes, hanging = notes_of(path.read_bytes())
    assert [n[2] for n in notes] == [60, 64, 67] and hanging == 0
    stream.close()


def test_a_recorder_that_cannot_write_says_so(tmp_path: Path) -> None:
    from e2m_live.live.outputs import OutputError

    try:
        MidiFileRecorder(tmp_path / "missing" / "x.mid")
    except OutputError as error:
        assert "does not exist" in str(error)
    else:
        raise AssertionError("no error for a missing folder")


def test_sigkill_mid_performance_leaves_the_bars_played(tmp_path: Path) -> None:
    """The daemon (rules generator, no MIDI port, recording) killed with SIGKILL: the file reads back,
    with mido and `e2m-live describe`, and holds the bars played up to the last bar line."""
    record = tmp_path / "gig.mid"
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--generator",
            "rules",
            "--no-midi",
            "--udp-port",
            "0",
            "--tcp-port",
            "-1",
            "--autoplay",
            "--record",
            str(record),
            "--tempo",
            "240",
            "--no-web",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "JACK_DEFAULT_SERVER": "e2m-none", "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines, port = read_until_ready(proc)
        assert wait_until(lambda: bars_started(port) >= 8, 120, step=0.2), "".join(lines)
        played = bars_started(port)
        os.kill(proc.pid, signal.SIGKILL)  # the daemon alone; its worker notices and exits
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left (the worker)
    data = record.read_bytes()
    midi = mido.MidiFile(file=io.BytesIO(data))
    assert midi.type == 0  # the streamed form: nothing rewrote it
    _, notes, hanging = notes_of(data)
    assert hanging == 0 and notes
    bar_ticks = 4 * midi.ticks_per_beat
    signatures = [m for m in midi.tracks[0] if m.type == "time_signature"]
    last_note = max(end for _, end, _ in notes)
    # Bar lines written: every bar played but the one sounding (and the one being prepared).
    assert len(signatures) >= played - 2 and last_note >= (played - 2) * bar_ticks
    assert described_bars(record) >= 1


def test_a_three_hour_recording_reads_back(tmp_path: Path) -> None:
    """pretty_midi refuses files past 10^7 ticks as corrupt; three hours at 960 ticks a quarter and 120 BPM
    are 20.7 million: the reader takes such a file at a coarser resolution, with times still exact."""
    from e2m_live.description.extract import extract, load_midi

    path = tmp_path / "three-hours.mid"
    recorder = MidiFileRecorder(path)
    bars = 3 * 3600 // 2  # 2-s bars
    for number in range(bars):
        play_bar(recorder, number)
    recorder.close()
    assert mido.MidiFile(path).ticks_per_beat == 960
    pm = load_midi(path)
    starts = sorted(n.start for i in pm.instruments for n in i.notes)
    assert len(starts) == bars * 8
    assert abs(starts[-1] - ((bars - 1) * 4 + 3) * BEAT) < 0.002  # the last beat, where it was played
    assert abs(pm.get_end_time() - 3 * 3600) < 1.0
    description = extract(path).description
    assert sum(token.startswith("Bar_") for token in description) >= bars - 1
