"""Extraction of REMI+ events and descriptions, checked against FIGARO's own outputs."""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pretty_midi
import pytest

from e2m_live.description import chords, midi_reader
from e2m_live.description.extract import Extraction, MidiError, extract, load_midi
from e2m_live.description.vocab import DURATION_BINS


def _bars(tokens: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    for tok in tokens:
        if tok.startswith("Bar_"):
            out.append([tok])
        elif out:
            out[-1].append(tok)
    return out


def _instruments_as_set(bar: list[str]) -> tuple[list[str], list[str]]:
    """The reference orders a bar's instruments by hash seed: compare them as a set."""
    return [t for t in bar if not t.startswith("Instrument_")], sorted(
        t for t in bar if t.startswith("Instrument_")
    )


@pytest.fixture(scope="module")
def reference(reference_dir):
    return json.loads((reference_dir / "figaro_reference_outputs.json").read_text())


def test_matches_reference_outputs(reference, datasets_dir):
    """Description tokens equal FIGARO's on >= 99 % of bars, REMI+ events on >= 98 %; rejections agree."""
    bars = remi_equal = desc_equal = 0
    for key, expected in sorted(reference.items()):
        path = datasets_dir / key
        if "error" in expected:
            with pytest.raises(MidiError):
                extract(path)
            continue
        ours = extract(path)
        ref_remi, ref_desc = _bars(expected["remi"]), _bars(expected["description"])
        our_remi, our_desc = ours.remi_bars(), ours.description_bars()
        bars += max(len(ref_desc), len(our_desc))
        remi_equal += sum(a == b for a, b in zip(ref_remi, our_remi, strict=False))
        desc_equal += sum(
            _instruments_as_set(a) == _instruments_as_set(b) for a, b in zip(ref_desc, our_desc, strict=False)
        )
    assert bars > 5000
    assert desc_equal / bars >= 0.99, f"description bars equal: {desc_equal}/{bars}"
    assert remi_equal / bars >= 0.98, f"REMI+ bars equal: {remi_equal}/{bars}"


def test_reference_rejections_have_readable_messages(reference, datasets_dir):
    rejected = [k for k, v in reference.items() if "error" in v]
    assert rejected
    messages = []
    for key in rejected:
        with pytest.raises(MidiError) as info:
            extract(datasets_dir / key)
        messages.append(str(info.value))
    assert any("time signature" in m for m in messages)
    assert all("\n" not in m and m for m in messages)


def test_instrument_order_is_drums_then_programs(reference, datasets_dir):
    key = next(k for k, v in sorted(reference.items()) if "Instrument_drum" in v.get("description", []))
    first = extract(datasets_dir / key)
    second = extract(datasets_dir / key)
    assert first.description == second.description
    names = {pretty_midi.program_to_instrument_name(p): p for p in range(128)} | {"drum": -1}
    saw_drum_bar = False
    for bar in first.description_bars():
        programs = [names[t.removeprefix("Instrument_")] for t in bar if t.startswith("Instrument_")]
        assert programs == sorted(programs)
        saw_drum_bar |= bool(programs) and programs[0] == -1
    assert saw_drum_bar


# --- small constructed files ----------------------------------------------------------------


def _midi(notes, *, tempo=120.0, time_signature=(4, 4), program=0, pedal=(), is_drum=False) -> bytes:
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=tempo)
    if time_signature:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(*time_signature, 0.0))
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
    for pitch, start, end, velocity in notes:
        inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=start, end=end))
    for on, off in pedal:
        inst.control_changes.append(pretty_midi.ControlChange(64, 127, on))
        inst.control_changes.append(pretty_midi.ControlChange(64, 0, off))
    pm.instruments.append(inst)
    import io

    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def test_sources_path_bytes_and_prettymidi_agree(tmp_path):
    data = _midi([(60, 0.0, 0.5, 80), (64, 0.5, 1.0, 90), (67, 2.0, 4.0, 100)])
    path = tmp_path / "a.mid"
    path.write_bytes(data)
    a, b = extract(path), extract(data)
    c = extract(pretty_midi.PrettyMIDI(str(path)))
    assert isinstance(a, Extraction)
    assert a.remi == b.remi == c.remi and a.description == b.description == c.description
    assert a.n_bars == 2 == len(a.remi_bars()) == len(a.description_bars())
    assert all(bar[0].startswith("Bar_") for bar in a.remi_bars())


def test_quantisation_moves_starts_back_to_the_grid():
    # At 120 BPM a position (1/12 quarter) is 1/24 s; 0.06 s lies between positions 1 and 2.
    tokens = extract(_midi([(60, 0.06, 0.5, 80)])).remi
    assert "Position_1" in tokens and "Position_2" not in tokens


def _duration_bin(positions: int) -> int:
    return int(np.argmin(np.abs(DURATION_BINS - positions)))


def test_sustain_pedal_extends_notes():
    plain = extract(_midi([(60, 0.0, 0.25, 80), (72, 1.0, 1.5, 80)])).remi
    pedalled = extract(_midi([(60, 0.0, 0.25, 80), (72, 1.0, 1.5, 80)], pedal=[(0.1, 1.0)])).remi
    # 0.25 s = half a quarter = 6 positions; held to 1.0 s = 2 quarters = 24 positions.
    assert plain[plain.index("Pitch_60") + 2] == f"Duration_{_duration_bin(6)}"
    assert pedalled[pedalled.index("Pitch_60") + 2] == f"Duration_{_duration_bin(24)}"
    # A note starting after the pedal is released is not extended.
    assert plain[plain.index("Pitch_72") + 2] == pedalled[pedalled.index("Pitch_72") + 2]


def test_leading_and_trailing_empty_bars_are_trimmed():
    ex = extract(_midi([(60, 4.0, 4.5, 80)]))  # bar 3 at 120 BPM in 4/4
    assert ex.n_bars == 1
    assert ex.remi[:2] == ["Bar_1", "Time Signature_4/4"]
    # The tempo item sits at tick 0, in a trimmed bar: no Tempo token (FIGARO's behaviour).
    assert not any(t.startswith("Tempo_") for t in ex.remi)


def test_description_meta_bins():
    notes = [(60 + i, i * 0.5, i * 0.5 + 0.5, 64) for i in range(8)]  # 8 quarter notes, 2 bars
    bars = extract(_midi(notes)).description_bars()
    assert len(bars) == 2
    first = bars[0]
    assert first[:2] == ["Bar_1", "Time Signature_4/4"]
    # 4 notes / 48 positions = 0.083 -> density bin 0; velocity 64 -> bin 16; mean pitch 61.5 -> bin 15
    assert first[2:5] == ["Note Density_0", "Mean Velocity_16", "Mean Pitch_15"]
    assert "Instrument_Acoustic Grand Piano" in first


def test_downbeats_override_bar_lines():
    notes = [(60, i * 0.5, i * 0.5 + 0.25, 80) for i in range(12)]
    default = extract(_midi(notes))
    custom = extract(_midi(notes), downbeats=[0.0, 1.5, 3.0, 4.5])  # bars of 3 quarters
    assert default.n_bars == 3
    assert custom.n_bars == 4


def test_downbeats_let_files_without_time_signature_through():
    data = pretty_midi.PrettyMIDI()  # in memory: pretty_midi's writer would add a 4/4 signature
    data.instruments.append(pretty_midi.Instrument(0))
    data.instruments[0].notes.append(pretty_midi.Note(80, 60, 0.0, 0.5))
    with pytest.raises(MidiError, match="time signature"):
        extract(data)
    ex = extract(data, downbeats=[0.0, 2.0])
    assert ex.remi[:2] == ["Bar_1", "Time Signature_4/4"]


@pytest.mark.parametrize(
    "data",
    [b"", b"not a midi file at all", b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x00\x09"],
)
def test_bad_bytes_raise_midi_error(data):
    with pytest.raises(MidiError):
        extract(data)


def test_file_without_notes_raises(tmp_path):
    with pytest.raises(MidiError, match="no notes"):
        extract(_midi([]))
    with pytest.raises(MidiError, match="no such file"):
        load_midi(tmp_path / "missing.mid")
    with pytest.raises(MidiError, match="directory"):
        load_midi(tmp_path)


# --- fast reader and chord recogniser against pretty_midi's own ---------------------------------


def _signature(pm: pretty_midi.PrettyMIDI):
    return (
        pm.resolution,
        pm._tick_scales,
        [(t.numerator, t.denominator, t.time) for t in pm.time_signature_changes],
        [(k.key_number, k.time) for k in pm.key_signature_changes],
        [(x.text, x.time) for x in pm.lyrics + pm.text_events],
        [
            (
                i.program,
                i.is_drum,
                i.name,
                [(n.start, n.end, n.pitch, n.velocity) for n in i.notes],
                [(c.number, c.value, c.time) for c in i.control_changes],
                [(b.pitch, b.time) for b in i.pitch_bends],
            )
            for i in pm.instruments
        ],
    )


@pytest.fixture(scope="module")
def sample_files(datasets_dir):
    files = sorted(p for p in datasets_dir.rglob("*.mid"))
    return random.Random(3).sample(files, 24)


def test_fast_reader_builds_the_same_prettymidi(sample_files):
    read_fast = 0
    for path in sample_files:
        data = path.read_bytes()
        fast = midi_reader.read(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                slow = pretty_midi.PrettyMIDI(str(path))
            except Exception:
                assert fast is None
                continue
        if fast is not None:
            read_fast += 1
            assert _signature(fast) == _signature(slow), path
    assert read_fast >= 20


def test_fast_reader_declines_malformed_data():
    good = _midi([(60, 0.0, 0.5, 80)])
    assert midi_reader.read(good) is not None
    assert midi_reader.read(good[:-3]) is None  # truncated track
    broken = bytearray(good)
    note_on = broken.index(bytes([0x90, 60]))
    broken[note_on + 2] = 0xFF  # velocity above 127: mido refuses it
    assert midi_reader.read(bytes(broken)) is None
    with pytest.raises(MidiError):
        load_midi(bytes(broken))


def test_beat_chroma_equals_pretty_midi(sample_files):
    compared = 0
    for path in sample_files[:8]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                pm = pretty_midi.PrettyMIDI(str(path))
            except Exception:
                continue
        beats = pm.get_beats()
        assert np.array_equal(chords.beat_chroma(pm, beats), pm.get_chroma(times=beats)), path
        compared += 1
    assert compared >= 6  # pretty_midi reads nearly all of them


def test_beat_chroma_with_pedal_and_pitch_bend():
    pm = pretty_midi.PrettyMIDI(initial_tempo=100)
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(90, 60, 0.0, 0.3), pretty_midi.Note(70, 64, 0.5, 2.2)]
    inst.control_changes += [pretty_midi.ControlChange(64, 100, 0.1), pretty_midi.ControlChange(64, 0, 1.7)]
    inst.pitch_bends += [pretty_midi.PitchBend(3000, 1.0), pretty_midi.PitchBend(0, 1.9)]
    pm.instruments.append(inst)
    beats = pm.get_beats()
    assert np.array_equal(chords.beat_chroma(pm, beats), pm.get_chroma(times=beats))
    inst.pitch_bends.clear()
    assert np.array_equal(chords.beat_chroma(pm, beats), pm.get_chroma(times=beats))


@pytest.mark.parametrize(
    ("pitch_classes", "expected"),
    [
        ([0, 4, 7], ("C", "maj", "C")),
        ([9, 0, 4], ("A", "min", "C")),  # bass = lowest pitch class, not lowest note
        ([0, 4, 7, 10], ("C", "dom7", "C")),
        ([2, 5, 8], ("D", "dim", "D")),
        ([0, 4, 8], ("C", "aug", "C")),
        ([0, 3, 4], ("C", "None", "C")),
        ([], ("N", "N", "N")),
    ],
)
def test_chord_of_mask(pitch_classes, expected):
    mask = sum(1 << pc for pc in pitch_classes)
    assert chords.chord_of_mask(mask)[:3] == expected


# --- chord evaluation against POP909 (training/data/eval_chords.py) ---------------------------------


def test_pop909_labels_map_to_figaro_qualities():
    from training.data.eval_chords import harte_to_figaro

    assert harte_to_figaro("Bb:min7/b7") == "A#:min7"
    assert harte_to_figaro("C#:7") == "C#:dom7"
    assert harte_to_figaro("E:hdim7") == "E:dim"
    assert harte_to_figaro("G:sus4(b7)") == "G:None"
    assert harte_to_figaro("Cb:maj6") == "B:maj"
    assert harte_to_figaro("N") == "N:N"
    assert harte_to_figaro("C:weird") is None


def test_chord_scoring_is_time_weighted():
    from training.data.eval_chords import score

    truth = [(0.0, 2.0, "C:maj"), (2.0, 4.0, "A:min"), (4.0, 5.0, "N:N")]
    predicted = [(0.0, 1.0, "C:maj"), (1.0, 3.0, "C:min"), (3.0, 5.0, "A:min")]
    total, root_ok, both_ok = score(truth, predicted)
    assert total == 4.0  # N is not scored
    assert root_ok == 3.0  # C for 2 s, A for 1 s
    assert both_ok == 2.0


def test_eval_chords_on_a_few_pop909_songs(datasets_dir):
    from training.data.eval_chords import evaluate, ours

    result = evaluate(datasets_dir / "pop909", {"ours": ours}, limit=3)
    assert result["songs"] == 3
    assert 0.4 < result["ours"]["root_accuracy"] <= 1.0
    assert result["ours"]["root_quality_accuracy"] <= result["ours"]["root_accuracy"]


@pytest.mark.parametrize("downbeats", [[], [1.0, 0.5], [0.0, float("nan")], [[0.0, 1.0]]])
def test_bad_downbeats_are_refused(downbeats):
    with pytest.raises(ValueError, match="downbeats"):
        extract(_midi([(60, 0.0, 0.5, 80)]), downbeats=downbeats)


def test_a_file_past_pretty_midis_tick_limit_reads_at_a_coarser_resolution() -> None:
    """Past 10^7 ticks pretty_midi says "likely corrupt"; the reader divides ticks and division by a divisor
    of the division instead, so notes and chord markers keep their times."""
    import io

    import mido

    late = 12_000_001  # ~104 minutes at 960 ticks a quarter and 120 BPM
    track = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=500_000, time=0),
            mido.Message("note_on", note=60, velocity=90, time=0),
            mido.Message("note_off", note=60, velocity=0, time=480),
            mido.MetaMessage("marker", text=midi_reader.CHORD_MARKER_PREFIX + "A:min", time=late - 480),
            mido.Message("note_on", note=57, velocity=90, time=0),
            mido.Message("note_off", note=57, velocity=0, time=960),
        ]
    )
    midi = mido.MidiFile(ticks_per_beat=960)
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    pm = load_midi(buffer.getvalue())
    assert pm.resolution == 480  # the smallest divisor of 960 that is enough
    notes = sorted(pm.instruments[0].notes, key=lambda n: n.start)
    seconds = late / 960 / 2
    assert [n.pitch for n in notes] == [60, 57]
    assert abs(notes[1].start - seconds) < 1e-3 and abs(notes[1].end - seconds - 0.5) < 1e-3
    [(tick, label)] = midi_reader.chord_markers(pm)
    assert label == "A:min" and abs(pm.tick_to_time(tick) - seconds) < 1e-3
