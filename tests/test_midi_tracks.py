"""MIDI files a DAW user can open (issue 14): one named track per instrument, no overlapping or
repeated note of one pitch on a track, nothing sounding past the last bar line; read back with mido
and pretty_midi, from both writers, ``write_midi``, the live recorder and ``e2m-live generate``."""

from __future__ import annotations

import io
import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import mido
import pretty_midi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2m_live.description.remi import (
    RESOLUTION,
    bars_to_midi,
    bars_to_smf,
    clean_notes,
    tokens_to_midi,
    write_midi,
)
from e2m_live.live.outputs import MidiFileRecorder
from e2m_live.music import Bar, Note

PIANO, BASS, STRINGS = 0, 33, 48


@dataclass
class ReadTrack:
    """One MTrk as mido reads it: name, programs, channels, notes (start, end, pitch), end of track."""

    name: str = ""
    programs: set[int] = field(default_factory=set)
    channels: set[int] = field(default_factory=set)
    notes: list[tuple[int, int, int]] = field(default_factory=list)
    end_of_track: int = 0
    hanging: int = 0  # note-ons never switched off


def read_tracks(data: bytes | Path) -> tuple[mido.MidiFile, list[ReadTrack]]:
    midi = mido.MidiFile(file=io.BytesIO(data)) if isinstance(data, bytes) else mido.MidiFile(str(data))
    tracks = []
    for raw in midi.tracks:
        track, now, sounding = ReadTrack(), 0, {}
        for message in raw:
            now += message.time
            if message.type == "track_name":
                track.name = message.name
            elif message.type == "program_change":
                track.programs.add(message.program)
            elif message.type == "end_of_track":
                track.end_of_track = now
            elif message.type in ("note_on", "note_off"):
                track.channels.add(message.channel)
                key = (message.channel, message.note)
                if message.type == "note_on" and message.velocity > 0:
                    assert key not in sounding, f"{track.name}: note {message.note} started twice at {now}"
                    sounding[key] = now
                elif key in sounding:
                    track.notes.append((sounding.pop(key), now, message.note))
        track.hanging = len(sounding)
        tracks.append(track)
    return midi, tracks


def instrument_of(track: ReadTrack) -> str:
    return "drums" if track.channels == {9} else f"program {min(track.programs)}"


def assert_clean(tracks: list[ReadTrack], end: int | None) -> None:
    """One track per instrument, named, no two notes of one pitch sounding at once, none past ``end``."""
    playing = [t for t in tracks if t.notes]
    per_instrument = Counter(instrument_of(t) for t in playing)
    assert max(per_instrument.values()) == 1, per_instrument
    for track in playing:
        assert track.name and track.hanging == 0
        if track.channels != {9}:
            assert len(track.programs) == 1
            assert track.name == pretty_midi.program_to_instrument_name(min(track.programs))
        else:
            assert track.name == "Drums"
        by_pitch: dict[int, list[tuple[int, int]]] = {}
        for start, stop, pitch in track.notes:
            assert stop > start
            by_pitch.setdefault(pitch, []).append((start, stop))
        for pitch, spans in by_pitch.items():
            spans.sort()
            for (_, stop), (start, _) in itertools.pairwise(spans):
                assert stop <= start, f"{track.name}: pitch {pitch} overlaps at {start}"
        if end is not None:
            assert max(stop for _, stop, _ in track.notes) <= end


def note(
    pitch: int, start: float, duration: float, program: int = PIANO, velocity: int = 80, drum: bool = False
) -> Note:
    return Note(pitch=pitch, velocity=velocity, start=start, duration=duration, program=program, is_drum=drum)


#: Two 4/4 bars at 100 BPM, then one 3/4 bar at 80: overlapping and repeated notes of one pitch,
#: three programs and drums, notes ringing past the last bar line.
SECTION = [
    Bar([
        note(60, 0.0, 8.0),  # rings over two bar lines, overlapped by the 60s below
        note(60, 1.0, 1.0), note(60, 1.0, 0.5, velocity=120),  # repeated: the longer one stays
        note(64, 2.0, 1.0, velocity=50), note(64, 2.0, 1.0, velocity=90),  # equal length: the louder
        note(40, 0.0, 4.0, BASS), note(40, 3.0, 2.0, BASS),
        note(36, 0.0, 0.25, drum=True), note(36, 0.0, 0.25, drum=True), note(42, 0.5, 0.25, drum=True),
    ], tempo=100.0, index=0),
    Bar([note(67, 0.0, 2.0, STRINGS), note(67, 1.0, 16.0, STRINGS), note(60, 2.0, 1.0)], index=1),
    Bar([note(72, 1.0, 12.0), note(38, 2.0, 4.0, drum=True), note(40, 2.5, 9.0, BASS)], 3, 4, 80.0, index=2),
]  # fmt: skip
SECTION_END = (4 + 4 + 3) * RESOLUTION  # ticks
INSTRUMENTS = {"Drums", "Acoustic Grand Piano", "Electric Bass (finger)", "String Ensemble 1"}


def test_bars_to_smf_writes_one_clean_track_per_instrument() -> None:
    midi, tracks = read_tracks(bars_to_smf(SECTION))
    assert_clean(tracks, SECTION_END)
    playing = [t for t in tracks if t.notes]
    assert [t.name for t in playing] == [
        "Drums",
        "Acoustic Grand Piano",
        "Electric Bass (finger)",
        "String Ensemble 1",
    ]  # drums first, then programs ascending
    assert not tracks[0].notes and len(tracks) == 5  # the tempo map's track and one per instrument
    assert {t.end_of_track for t in tracks} == {SECTION_END}  # every track ends at the last bar line
    piano = sorted(next(t for t in playing if t.name == "Acoustic Grand Piano").notes, key=lambda n: n[2])
    q = RESOLUTION
    assert [n for n in piano if n[2] == 60] == [(0, q, 60), (q, 2 * q, 60), (6 * q, 7 * q, 60)]
    assert [n for n in piano if n[2] == 72] == [(9 * q, SECTION_END, 72)]  # cut at the last bar line
    # The tempo map and time signatures are the bars' own.
    tempos = [mido.tempo2bpm(m.tempo) for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempos == pytest.approx([100.0, 80.0])
    signatures = [(m.numerator, m.denominator) for m in midi.tracks[0] if m.type == "time_signature"]
    assert signatures == [(4, 4), (3, 4)]


def test_repeated_notes_keep_the_longer_then_the_louder() -> None:
    _, tracks = read_tracks(bars_to_smf(SECTION))
    velocities = {}
    for message in mido.MidiFile(file=io.BytesIO(bars_to_smf(SECTION))).tracks[2]:
        if message.type == "note_on":
            velocities.setdefault(message.note, []).append(message.velocity)
    assert velocities[64] == [90]  # equal length: the louder
    assert velocities[60][1] == 80  # at beat 1 the longer (velocity 80), not the louder short one
    drums = next(t for t in tracks if t.name == "Drums")
    assert sorted(n[2] for n in drums.notes) == [36, 38, 42]


def test_clean_notes_rules() -> None:
    notes = [
        (0, 100, 60, 80),
        (0, 50, 60, 127),
        (40, 60, 60, 70),
        (10, 20, 62, 90),
        (10, 20, 62, 99),
        (300, 400, 64, 80),
        (90, 500, 65, 80),
    ]
    assert clean_notes(notes, 300) == [(0, 40, 60, 80), (10, 20, 62, 99), (40, 60, 60, 70), (90, 300, 65, 80)]


def test_bars_to_midi_holds_the_same_music() -> None:
    pm = bars_to_midi(SECTION)
    assert [(i.name, i.program, i.is_drum) for i in pm.instruments] == [
        ("Drums", 0, True),
        ("Acoustic Grand Piano", PIANO, False),
        ("Electric Bass (finger)", BASS, False),
        ("String Ensemble 1", STRINGS, False),
    ]
    bar_end = pm.tick_to_time(SECTION_END)
    assert pm.get_end_time() == pytest.approx(bar_end)
    again = pretty_midi.PrettyMIDI(io.BytesIO(bars_to_smf(SECTION)))
    assert [len(i.notes) for i in again.instruments] == [len(i.notes) for i in pm.instruments]
    for mine, read in zip(pm.instruments, again.instruments, strict=True):
        # the same times to the last bit
        assert sorted((n.start, n.end, n.pitch) for n in mine.notes) == sorted(
            (n.start, n.end, n.pitch) for n in read.notes
        )


def test_exact_layout_keeps_every_note_as_given() -> None:
    """exact=True is the round-trip layout: overlaps go to further tracks, durations stay whole."""
    _, tracks = read_tracks(bars_to_smf(SECTION, exact=True))
    names = [t.name for t in tracks if t.notes]
    assert "Acoustic Grand Piano 2" in names and "Drums 2" in names
    assert sum(len(t.notes) for t in tracks) == sum(len(b.notes) for b in SECTION)
    assert max(stop for t in tracks for _, stop, _ in t.notes) > SECTION_END


TOKENS = [
    "Bar_1", "Time Signature_4/4", "Position_0", "Tempo_16",
    "Position_0", "Instrument_drum", "Pitch_drum_36", "Velocity_20", "Duration_2",
    "Pitch_drum_36", "Velocity_25", "Duration_2",
    "Instrument_Acoustic Grand Piano", "Pitch_60", "Velocity_20", "Duration_40",
    "Pitch_60", "Velocity_20", "Duration_3",
    "Position_12", "Instrument_Acoustic Grand Piano", "Pitch_60", "Velocity_25", "Duration_3",
    "Instrument_Violin", "Pitch_72", "Velocity_20", "Duration_40",
    "Bar_2", "Time Signature_4/4",
    "Position_36", "Instrument_Violin", "Pitch_74", "Velocity_20", "Duration_40",
]  # fmt: skip


def test_write_midi_and_tokens_to_midi(tmp_path: Path) -> None:
    path = tmp_path / "out.mid"
    write_midi(TOKENS, path)
    _, tracks = read_tracks(path)
    assert_clean(tracks, 2 * 4 * RESOLUTION)
    assert [t.name for t in tracks if t.notes] == ["Drums", "Acoustic Grand Piano", "Violin"]
    pm = tokens_to_midi(TOKENS)
    assert [i.name for i in pm.instruments] == ["Drums", "Acoustic Grand Piano", "Violin"]
    assert [len(i.notes) for i in pm.instruments] == [len(t.notes) for t in tracks if t.notes] == [1, 2, 2]
    assert pm.get_end_time() == pytest.approx(4.0)  # two 4/4 bars at 120 BPM


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 47),
            st.integers(1, 96),
            st.integers(58, 62),
            st.sampled_from([PIANO, BASS, 128]),
        ),
        max_size=60,
    )
)
def test_any_bars_make_a_clean_file(raw) -> None:
    bars = [Bar([], index=i) for i in range(3)]
    for bar, position, duration, pitch, program in raw:
        drum = program == 128
        bars[bar].notes.append(note(pitch, position / 12, duration / 12, 0 if drum else program, drum=drum))
    _, tracks = read_tracks(bars_to_smf(bars))
    if raw:
        assert_clean(tracks, 3 * 4 * RESOLUTION)
    distinct = {(b, p, pitch, program) for b, p, _, pitch, program in raw}
    assert sum(len(t.notes) for t in tracks) == len(distinct)


# ---- the live recorder --------------------------------------------------------------------------


def test_recorder_writes_one_clean_track_per_instrument(tmp_path: Path) -> None:
    path = tmp_path / "live.mid"
    recorder = MidiFileRecorder(path)
    beat = 0.5  # 120 BPM
    recorder.mark_bar(0.0, 120.0, 4, 4)
    recorder.mark_bar(4 * beat, 120.0, 4, 4)
    sent = [
        (0.0, (0xC0, 0)), (0.0, (0xC1, 33)), (0.0, (0xC2, 0)),  # piano on channels 0 and 2 (shared)
        (0.0, (0x90, 60, 80)), (0.0, (0x92, 60, 90)),  # same pitch, same instrument, two channels
        (1 * beat, (0x82, 60, 0)), (1 * beat, (0x92, 60, 70)),  # the player's retrigger: off, then on
        (2 * beat, (0x80, 60, 0)), (3 * beat, (0x82, 60, 0)),
        (0.0, (0x91, 40, 100)), (2 * beat, (0x81, 40, 0)),
        (0.0, (0x99, 36, 100)), (0.0, (0x89, 36, 0)),  # a zero-length drum hit still sounds
        (4 * beat, (0xC1, 48)), (4 * beat, (0x91, 67, 60)),  # channel 1 becomes strings at the bar line
        (5 * beat, (0x90, 64, 60)),  # still sounding when the recording stops
        (6 * beat, (0xB0, 123, 0)), (6 * beat, (0xB5, 123, 0)), (6 * beat, (0x81, 67, 0)),
    ]  # fmt: skip
    for when, message in sent:
        recorder.send(message, when)
    recorder.close()
    midi, tracks = read_tracks(path)
    assert_clean(tracks, None)
    assert [t.name for t in tracks] == [
        "",
        "Drums",
        "Acoustic Grand Piano",
        "Electric Bass (finger)",
        "String Ensemble 1",
    ]
    tpb = midi.ticks_per_beat
    piano = tracks[2]
    assert sorted(piano.notes) == [(0, tpb, 60), (tpb, 3 * tpb, 60), (5 * tpb, 6 * tpb, 64)]
    assert piano.channels == {0, 2}  # messages keep their channels: the file plays as the performance did
    assert tracks[3].notes == [(0, 2 * tpb, 40)] and tracks[3].programs == {33}
    assert tracks[4].notes == [(4 * tpb, 6 * tpb, 67)] and tracks[4].programs == {48}
    assert tracks[1].notes == [(0, 1, 36)]
    controls = [(m.channel, m.control) for t in midi.tracks for m in t if m.type == "control_change"]
    assert controls == [(0, 123)]  # channel 5 never played: its controller message is dropped
    assert pretty_midi.PrettyMIDI(str(path)).get_end_time() == pytest.approx(3.0)


# ---- end to end ---------------------------------------------------------------------------------


def test_generate_writes_one_track_per_instrument(tmp_path: Path, capsys) -> None:
    """``e2m-live generate`` through the shipped models (in process: the imports are the slow part)."""
    from e2m_live.cli import main
    from tests.test_pipeline import models_root

    out = tmp_path / "out.mid"
    code = main(
        [
            "generate",
            "--mood",
            "happy",
            "--bars",
            "2",
            "--seed",
            "3",
            "--max-tokens-per-bar",
            "64",
            "--model-dir",
            str(models_root(tmp_path)),
            "-o",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    midi, tracks = read_tracks(out)
    (signature,) = [m for m in midi.tracks[0] if m.type == "time_signature"]
    bars_end = 2 * signature.numerator * 4 * midi.ticks_per_beat // signature.denominator
    assert_clean(tracks, bars_end)
    assert {t.end_of_track for t in tracks} == {bars_end}
    assert len([t for t in tracks if t.notes]) == len(tracks) - 1 >= 1
