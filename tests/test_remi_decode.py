"""REMI+ decoding: tolerant parsing, bars, MIDI, and the extract -> decode -> extract round trip."""

from __future__ import annotations

import json

import mido
import pretty_midi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2m_live.description.extract import MidiError, extract
from e2m_live.description.remi import tokens_to_bars, tokens_to_midi, write_midi
from e2m_live.description.vocab import RemiVocab

NOTE = ["Position_6", "Instrument_Acoustic Grand Piano", "Pitch_60", "Velocity_20", "Duration_11"]


def _strip(tokens: list[str], keys: set[str]) -> list[str]:
    """Drop tokens of the given kinds together with the Position token in front of them."""
    out: list[str] = []
    for tok in tokens:
        if tok.split("_", 1)[0] in keys:
            if out and out[-1].startswith("Position_"):
                out.pop()
            continue
        out.append(tok)
    return out


def test_one_note():
    bars = tokens_to_bars(["Bar_1", "Time Signature_3/4", "Position_0", "Tempo_16", *NOTE])
    assert len(bars) == 1
    bar = bars[0]
    assert (bar.numerator, bar.denominator, bar.tempo) == (3, 4, 120.0)
    (note,) = bar.notes
    assert (note.pitch, note.velocity, note.program, note.is_drum) == (60, 80, 0, False)
    assert note.start == pytest.approx(0.5) and note.duration == pytest.approx(1.0)


def test_time_signature_carries_over_and_drums():
    bars = tokens_to_bars(
        [
            "Bar_1", "Time Signature_6/8",
            "Bar_2", "Position_3", "Instrument_drum", "Pitch_drum_36", "Velocity_25", "Duration_2",
        ]
    )  # fmt: skip
    assert [(b.numerator, b.denominator) for b in bars] == [(6, 8), (6, 8)]
    (kick,) = bars[1].notes
    assert kick.is_drum and kick.pitch == 36 and kick.start == pytest.approx(0.25)


def test_malformed_notes_are_skipped():
    tokens = [
        "Bar_1",
        "Pitch_60", "Velocity_20", "Duration_3",  # no position or instrument yet
        "Position_0", "Instrument_Violin", "Pitch_62", "Duration_3",  # no velocity
        "Position_0", "Instrument_Violin", "Pitch_drum_40", "Velocity_20", "Duration_3",  # drum pitch, violin
        "Position_60", "Instrument_Violin", "Pitch_64", "Velocity_20", "Duration_3",  # past the 4/4 bar
        "Position_1", "Instrument_Nonexistent", "Pitch_65", "Velocity_20", "Duration_3",
        "Position_2", "Instrument_Violin", "Pitch_67", "Velocity_99", "Duration_3",  # velocity out of range
        "Position_3", "Instrument_Violin", "Pitch_69", "Velocity_20", "Duration_3",  # the one good note
        "<eos>", "garbage", 42, None,
    ]  # fmt: skip
    (bar,) = tokens_to_bars(tokens)
    assert [(n.pitch, n.program) for n in bar.notes] == [(69, 40)]


def test_empty_and_weird_streams():
    assert tokens_to_bars([]) == []
    assert len(tokens_to_midi([]).instruments) == 0
    assert tokens_to_bars(["Tempo_0", "Time Signature_0/4", "Position_-3"])[0].tempo is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([*RemiVocab().itos, "Bar_", "Pitch_x", "Position_", "_"]), max_size=80))
def test_decoding_never_raises(tokens):
    bars = tokens_to_bars(tokens)
    pm = tokens_to_midi(tokens)
    # One note per instrument, onset and pitch (tests/test_midi_tracks.py); exact keeps them all.
    distinct = {(b.index, n.start, n.program, n.is_drum, n.pitch) for b in bars for n in b.notes}
    assert len(distinct) == sum(len(i.notes) for i in pm.instruments)
    exact = tokens_to_midi(tokens, exact=True)
    assert sum(len(b.notes) for b in bars) == sum(len(i.notes) for i in exact.instruments)


def test_tempo_and_time_signature_changes_reach_the_midi(tmp_path):
    tokens = [
        "Bar_1", "Time Signature_4/4", "Position_0", "Tempo_16", *NOTE,
        "Bar_2", "Time Signature_3/4", "Position_0", "Tempo_8", *NOTE,
    ]  # fmt: skip
    path = tmp_path / "two.mid"
    write_midi(tokens, path)
    pm = pretty_midi.PrettyMIDI(str(path))
    times, tempi = pm.get_tempo_changes()
    assert list(tempi.round(3)) == [120.0, 60.0]
    assert times[1] == pytest.approx(2.0)  # one 4/4 bar at 120 BPM
    assert [(t.numerator, t.denominator) for t in pm.time_signature_changes] == [(4, 4), (3, 4)]
    starts = sorted(n.start for n in pm.instruments[0].notes)
    assert starts == pytest.approx([0.25, 2.5])  # position 6 = half a quarter


def test_overlapping_same_pitch_notes_survive(tmp_path):
    tokens = [
        "Bar_1", "Time Signature_4/4",
        "Position_0", "Instrument_Acoustic Grand Piano", "Pitch_60", "Velocity_20", "Duration_30",
        "Position_12", "Instrument_Acoustic Grand Piano", "Pitch_60", "Velocity_25", "Duration_3",
    ]  # fmt: skip
    path = tmp_path / "overlap.mid"
    write_midi(tokens, path, exact=True)
    again = extract(path).remi
    assert _strip(again, {"Tempo", "Chord"}) == tokens


@pytest.fixture(scope="module")
def accepted_reference_files(reference_dir, datasets_dir):
    reference = json.loads((reference_dir / "figaro_reference_outputs.json").read_text())
    return [datasets_dir / key for key, value in sorted(reference.items()) if "error" not in value]


def _bars(tokens: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    for tok in tokens:
        if tok.startswith("Bar_"):
            out.append([tok])
        elif out:
            out[-1].append(tok)
    return out


def _assert_round_trip(source, path) -> None:
    first = extract(source).remi
    write_midi(first, path, exact=True)
    assert extract(path).remi == first, source
    # The in-memory PrettyMIDI carries the same chords and tempo layout as the written file.
    assert extract(tokens_to_midi(first, exact=True)).remi == first, source


def test_round_trip_on_reference_files(accepted_reference_files, tmp_path):
    """extract -> write_midi -> extract gives back identical REMI+ tokens, chords and tempos included."""
    assert len(accepted_reference_files) == 97
    for source in accepted_reference_files:
        _assert_round_trip(source, tmp_path / "rt.mid")


def test_round_trip_on_dataset_files(datasets_dir, tmp_path):
    """The same on files outside the reference set, a few from each corpus."""
    corpora = ["lakh-clean-beatles", "pop909", "emopia", "vgmidi", "nottingham"]
    checked = 0
    for corpus in corpora:
        files = sorted((datasets_dir / corpus).rglob("*.mid"))
        for source in files[7 :: max(1, len(files) // 4)][:4]:
            try:
                extract(source)
            except MidiError:  # e.g. no time signature: nothing to round-trip
                continue
            _assert_round_trip(source, tmp_path / "rt.mid")
            checked += 1
    assert checked >= 10


def _markers(path) -> list[tuple[int, str]]:
    out = []
    for track in mido.MidiFile(str(path)).tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "marker":
                out.append((now, msg.text))
    return out


CHORDED = [
    "Bar_1", "Time Signature_4/4", "Position_0", "Chord_C:maj", "Position_0", "Tempo_16", *NOTE,
    "Position_24", "Chord_A:min",
    "Bar_2", "Time Signature_4/4", "Position_0", "Chord_A:min", "Position_0", "Tempo_16",
    "Position_0", "Chord_F:maj", *NOTE,
    "Position_6", "Chord_G:7",  # after the note at position 6: the marker keeps that order
    "Position_30", "Chord_N:N",  # past the last note of the piece
]  # fmt: skip


def test_chords_are_written_as_markers_and_read_back(tmp_path):
    path = tmp_path / "chords.mid"
    write_midi(CHORDED, path, exact=True)
    texts = [text for _, text in _markers(path)]
    assert texts == [
        "e2m-chord:C:maj", "e2m-chord:A:min", "e2m-chord:A:min", "e2m-chord:F:maj", "e2m-chord:G:7",
        "e2m-chord:N:N",
    ]  # fmt: skip
    ticks = [tick for tick, _ in _markers(path)]
    assert ticks == [0, 960, 1920, 1920, 1920 + 241, 1920 + 1200]
    found = extract(path)
    assert found.remi == CHORDED
    chords = [tok for tok in found.description_bars()[1] if tok.startswith("Chord_")]
    assert chords == ["Chord_A:min", "Chord_F:maj", "Chord_G:7", "Chord_N:N"]
    assert extract(tokens_to_midi(CHORDED, exact=True)).remi == CHORDED


def test_exact_false_writes_plain_music(tmp_path):
    """What tokens_to_midi gives by default: chords recognised from the notes, no lead-in bar."""
    assert "Chord_G:7" not in extract(tokens_to_midi(CHORDED)).remi
    path = tmp_path / "plain.mid"
    write_midi(CHORDED, path, exact=False)
    assert _markers(path) == []
    no_tempo = _strip(CHORDED, {"Tempo"})
    write_midi(no_tempo, path, exact=False)
    pm = pretty_midi.PrettyMIDI(str(path))
    assert min(n.start for i in pm.instruments for n in i.notes) == pytest.approx(0.25)  # no lead-in bar


def test_stream_without_tempo_gets_an_empty_bar_in_front(tmp_path):
    tokens = _strip(CHORDED, {"Tempo"})
    path = tmp_path / "no_tempo.mid"
    write_midi(tokens, path, exact=True)
    pm = pretty_midi.PrettyMIDI(str(path))
    assert min(n.start for i in pm.instruments for n in i.notes) == pytest.approx(2.25)  # 4/4 at 120 BPM
    assert extract(path).remi == tokens


def test_long_stream_without_tempo_still_round_trips(tmp_path):
    """The extractor samples the tempo at 480 s: a long tempo-less file must end before that."""
    tokens = []
    for i in range(1, 301):  # 300 bars of 4/4: 600 s at 120 BPM
        tokens += [f"Bar_{i}", "Time Signature_4/4", *NOTE]
    path = tmp_path / "long.mid"
    write_midi(tokens, path, exact=True)
    assert pretty_midi.PrettyMIDI(str(path)).get_end_time() < 480
    assert _markers(path) == [(1920, "e2m-chord:")]  # no chord tokens: nothing to recognise either
    assert extract(path).remi == tokens


def test_file_without_markers_still_recognises_chords(tmp_path):
    """Markers with other texts are not chords: chords are recognised from the notes as before."""
    mid = mido.MidiFile(ticks_per_beat=480)
    meta, notes = mido.MidiTrack(), mido.MidiTrack()
    meta += [
        mido.MetaMessage("time_signature", numerator=4, denominator=4),
        mido.MetaMessage("marker", text="Verse"),
    ]
    for pitch in (60, 64, 67):
        notes.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
    notes.append(mido.Message("note_off", note=60, velocity=0, time=1920))
    notes += [mido.Message("note_off", note=p, velocity=0, time=0) for p in (64, 67)]
    mid.tracks += [meta, notes]
    path = tmp_path / "verse.mid"
    mid.save(str(path))
    remi = extract(path).remi
    assert "Chord_C:maj" in remi
