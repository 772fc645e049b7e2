"""training/evaluation/pathology: the listener's counters on hand-made bars and on .mid files read back."""

from __future__ import annotations

import io
import math

import mido
import pytest

from e2m_live.music import Bar, Note
from training.common import DRUM_SLOT
from training.evaluation.pathology import (
    count_piece,
    in_scale_share,
    instruments,
    longest_note_bars,
    midi_readback,
    overhang_bars,
    repeated_notes,
    scale_pitch_classes,
    summarise,
)


def test_a_repeated_note_shares_instrument_onset_and_pitch() -> None:
    bar = Bar(
        [
            Note(60, 80, 1.0, 1.0, 0),
            Note(60, 90, 1.0, 0.5, 0),  # repeats the first
            Note(60, 90, 1.0 + 1e-4, 2.0, 0),  # same 12-per-quarter position: repeats it too
            Note(60, 80, 1.0, 1.0, 24),  # another instrument
            Note(60, 80, 1.0, 1.0, 0, True),  # drums are an instrument of their own
            Note(60, 80, 1.5, 1.0, 0),  # another onset
            Note(61, 80, 1.0, 1.0, 0),  # another pitch
        ]
    )
    assert repeated_notes([bar]) == 2
    assert repeated_notes([bar, Bar([Note(60, 80, 1.0, 1.0, 0)])]) == 2  # onsets are per bar


def test_longest_note_and_overhang_are_in_bars() -> None:
    bars = [Bar([Note(60, 80, 0.0, 6.0, 0)], 4, 4), Bar([Note(62, 80, 1.0, 4.0, 0)], 3, 4)]
    assert longest_note_bars(bars) == pytest.approx(1.5)  # 6 quarters in a 4/4 bar
    assert overhang_bars(bars) == pytest.approx(2 / 3)  # ends at 4 + 5 quarters, the bars at 4 + 3
    assert overhang_bars(bars[:1]) == pytest.approx(0.5)
    assert overhang_bars([Bar([Note(60, 80, 0.0, 4.0, 0)])]) == 0.0
    assert longest_note_bars([Bar()]) == 0.0 and overhang_bars([]) == 0.0


def test_instruments_and_the_counts_of_a_piece() -> None:
    bars = [
        Bar([Note(36, 100, 0.0, 0.25, 0, True), Note(40, 90, 0.0, 1.0, 33), Note(64, 70, 0.0, 4.0, 0)]),
        Bar([Note(67, 70, 0.0, 4.0, 0)]),
    ]
    assert instruments(bars) == {0, 33, DRUM_SLOT}
    counts = count_piece(bars, key=0, mode=1)
    assert counts.notes == 4 and counts.repeated_notes == 0
    assert counts.drum_notes == 1 and counts.bars == 2
    assert counts.drums and counts.bass and not counts.solo
    assert counts.max_tracks_per_instrument == 1  # the project's writer, read back with mido
    assert counts.overhang_bars == 0.0 and counts.midi_overhang_bars == 0.0
    assert counts.in_scale_share == 1.0
    assert math.isnan(count_piece(bars).in_scale_share)  # no key asked for


def test_midi_readback_counts_tracks_per_instrument_and_the_overhang() -> None:
    midi = mido.MidiFile(ticks_per_beat=480)
    for channel, program, pitch in ((0, 0, 60), (1, 0, 64), (9, 0, 36), (2, 40, 67)):
        track = mido.MidiTrack(
            [
                mido.MetaMessage("track_name", name=f"t{channel}"),
                mido.Message("program_change", channel=channel, program=program),
                mido.Message("note_on", channel=channel, note=pitch, velocity=80, time=0),
                mido.Message("note_on", channel=channel, note=pitch, velocity=0, time=480 * (4 + channel)),
            ]
        )
        midi.tracks.append(track)
    midi.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name="empty")]))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    readback = midi_readback(buffer.getvalue(), length_quarters=8.0)
    assert readback.tracks == {0: 2, DRUM_SLOT: 1, 40: 1}
    assert readback.names == ("t0", "t1", "t9", "t2")
    assert readback.overhang_quarters == pytest.approx(5.0)  # the drum note ends at 13 quarters
    assert midi_readback(buffer.getvalue()).overhang_quarters == 0.0


def test_in_scale_share_weighs_pitched_note_time() -> None:
    assert scale_pitch_classes(9, 0) == scale_pitch_classes(0, 1) | {8}  # A minor: C major's notes and G#
    bar = Bar([Note(60, 80, 0.0, 3.0, 0), Note(61, 80, 3.0, 1.0, 0), Note(61, 80, 0.0, 4.0, 0, True)])
    assert in_scale_share([bar], 0, 1) == pytest.approx(0.75)  # C# out, the drum note ignored
    assert in_scale_share([bar], 2, 1) == pytest.approx(0.25)  # D major: C# in, C out
    assert math.isnan(in_scale_share([Bar()], 0, 1))


def test_summary_shares_and_percentiles() -> None:
    solo = [Bar([Note(60, 80, 0.0, 8.0, 0)])]  # two bars long in one bar: overhang 1 bar
    band = [Bar([Note(36, 100, 0.0, 0.25, 0, True), Note(40, 90, 0.0, 1.0, 33), Note(40, 90, 0.0, 1.0, 33)])]
    summary = summarise([count_piece(solo), count_piece(band), count_piece([Bar()])])
    assert summary["pieces"] == 3 and summary["silent_pieces"] == 1
    assert summary["solo_share"] == 0.5 and summary["drum_share"] == 0.5 and summary["bass_share"] == 0.5
    assert summary["drum_hits_per_bar"] == 1.0  # over the pieces with drums only
    assert summary["repeated_per_piece"] == 0.5 and summary["pieces_with_repeats"] == 0.5
    assert summary["longest_max"] == pytest.approx(2.0)
    assert summary["overhang_max"] == pytest.approx(1.0)
    # the project's writer may end notes at the last bar line (issue 14), never later
    assert 0.0 <= summary["midi_overhang_max"] <= summary["overhang_max"]
