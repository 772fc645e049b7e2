"""Description-fidelity metrics and the chord-tone baseline."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from e2m_live.description.vocab import NOTE_DENSITY_BINS, DescriptionVocab, RemiVocab, split_bars
from e2m_live.music import Note
from training.common import set_scores
from training.figaro import fidelity as fm
from training.figaro.baseline import baseline_remi, chord_pitch_classes, parse_description


def _bar(notes, chords=(), sig=(4, 4)) -> fm.BarFacts:
    return fm.BarFacts(tuple(notes), sig[0], sig[1], tuple(chords))


def _n(pitch, start, program=0, velocity=80, duration=1.0, drum=False) -> Note:
    return Note(pitch, velocity, start, duration, program, drum)


PIANO_BAR = _bar(
    [_n(60, 0), _n(64, 1, velocity=70), _n(67, 2, duration=0.5), _n(36, 0, drum=True), _n(72, 3, program=33)],
    chords=("C:maj",),
)


def test_identical_bars_score_perfectly():
    row = fm.bar_metrics(PIANO_BAR, PIANO_BAR)
    for key in (
        "inst_f1",
        "chord_f1",
        "time_sig_acc",
        "pitch_oa",
        "velocity_oa",
        "duration_oa",
        "note_density_oa",
        "chroma_sim",
        "groove_sim",
    ):
        assert row[key] == pytest.approx(1.0), key
    assert row["note_density_abs_err"] == 0.0


def test_instrument_and_chord_sets():
    sample = _bar([_n(60, 0), _n(62, 1, program=40)], chords=("C:maj", "G:maj"))
    row = fm.bar_metrics(PIANO_BAR, sample)
    # reference {0, 33, drums}; sample {0, 40}: one hit of two predicted, of three expected
    assert row["inst_prec"] == pytest.approx(0.5)
    assert row["inst_rec"] == pytest.approx(1 / 3)
    assert row["inst_f1"] == pytest.approx(0.4)
    assert row["chord_prec"] == pytest.approx(0.5)
    assert row["chord_rec"] == pytest.approx(1.0)
    assert row["chord_f1"] == pytest.approx(2 / 3)


def test_empty_sets_agree_and_missing_predictions_are_undefined_precision():
    assert set_scores(np.zeros(3, bool), np.zeros(3, bool)) == (1.0, 1.0, 1.0)
    p, r, f1 = set_scores(np.array([True, False]), np.zeros(2, bool))
    assert math.isnan(p) and r == 0.0 and f1 == 0.0


def test_time_signature_accuracy():
    assert fm.bar_metrics(PIANO_BAR, _bar(PIANO_BAR.notes, sig=(3, 4)))["time_sig_acc"] == 0.0


def test_overlapping_area_matches_normal_distributions():
    a, b = [60, 62, 64], [70, 72, 74]
    expected = NormalDist(62, float(np.std(a))).overlap(NormalDist(72, float(np.std(b))))
    assert fm.overlapping_area(a, b) == pytest.approx(expected)
    assert 0.0 < expected < 0.1
    assert fm.overlapping_area([60], [60]) == pytest.approx(1.0)
    assert fm.overlapping_area([], [60]) == 0.0
    assert math.isnan(fm.overlapping_area([], []))


def test_chroma_and_groove_similarity_drop_with_different_material():
    shifted = _bar([_n(61, 0.25), _n(66, 1.5), _n(68, 2.75)], chords=("C:maj",))
    row = fm.bar_metrics(PIANO_BAR, shifted)
    assert row["chroma_sim"] == pytest.approx(0.0)  # no shared pitch class
    assert row["groove_sim"] < 0.5
    # empty vs empty: agreeing silence
    silent = fm.bar_metrics(_bar([]), _bar([]))
    assert silent["chroma_sim"] == pytest.approx(1.0) and silent["groove_sim"] == pytest.approx(1.0)


def test_note_density_overlap_follows_onsets_per_quarter():
    sparse = _bar([_n(60, 0)])
    dense = _bar([_n(60, q + k / 4) for q in range(4) for k in range(4)])
    assert fm.onsets_per_quarter(dense) == [4, 4, 4, 4]
    assert fm.bar_metrics(dense, dense)["note_density_oa"] == pytest.approx(1.0)
    assert fm.bar_metrics(dense, sparse)["note_density_oa"] < 0.2


def test_segment_counts_missing_bars_as_empty():
    ref = [PIANO_BAR, PIANO_BAR]
    full = fm.segment_metrics(ref, ref)
    half = fm.segment_metrics(ref, ref[:1])
    assert full["inst_f1"] == pytest.approx(1.0)
    assert half["inst_f1"] == pytest.approx(0.5)
    assert full["note_density_nrmse"] == 0.0
    assert half["note_density_nrmse"] > 0.5
    summary = fm.summarize([full, half])
    assert summary["inst_f1"] == pytest.approx(0.75)
    assert summary["n_segments"] == 2
    assert fm.meets_targets(summary)["time_sig_acc"] is True
    with pytest.raises(ValueError):
        fm.segment_metrics([], ref)


def test_description_parsing_helpers():
    desc = [
        "<bos>",
        "Bar_1",
        "Time Signature_3/4",
        "Chord_C:maj",
        "Chord_G:dom7",
        "Bar_2",
        "Time Signature_6/8",
        "<eos>",
    ]
    assert fm.chords_by_bar(desc) == [("C:maj", "G:dom7"), ()]
    assert fm.time_signatures_by_bar(desc) == [(3, 4), (6, 8)]


DESCRIPTION = [
    "Bar_1",
    "Time Signature_4/4",
    "Note Density_2",
    "Mean Velocity_20",
    "Mean Pitch_15",
    "Mean Duration_32",
    "Instrument_Acoustic Grand Piano",
    "Instrument_drum",
    "Chord_A:min",
    "Bar_2",
    "Time Signature_3/4",
    "Note Density_1",
    "Mean Velocity_10",
    "Mean Pitch_18",
    "Mean Duration_32",
    "Instrument_Violin",
    "Chord_F:maj7",
    "Chord_G:maj",
    "Bar_3",
    "Time Signature_4/4",
    "Note Density_0",
    "Mean Velocity_10",
    "Mean Pitch_18",
    "Mean Duration_32",
]


def test_baseline_follows_description():
    assert all(t in DescriptionVocab() for t in DESCRIPTION)
    tokens = baseline_remi(DESCRIPTION, seed=3)
    remi = RemiVocab()
    assert all(t in remi for t in tokens), [t for t in tokens if t not in remi]
    bars = split_bars(tokens)
    assert len(bars) == 3
    described = parse_description(DESCRIPTION)
    for bar, facts in zip(bars, described, strict=True):
        n_notes = sum(t.startswith("Pitch_") for t in bar)
        per_position = NOTE_DENSITY_BINS[facts.density_bin] if facts.density_bin else NOTE_DENSITY_BINS[1] / 2
        expected = (
            max(len(facts.instruments), round(per_position * facts.positions)) if facts.instruments else 0
        )
        assert n_notes == expected
        used = {t.removeprefix("Instrument_") for t in bar if t.startswith("Instrument_")}
        assert used == set(facts.instruments)  # every described instrument plays
    assert bars[0][1] == "Time Signature_4/4" and bars[1][1] == "Time Signature_3/4"  # after each Bar_ token
    allowed = set(chord_pitch_classes("F:maj7")) | set(chord_pitch_classes("G:maj"))
    pitched = [int(t.split("_")[1]) for t in bars[1] if t.startswith("Pitch_")]
    assert pitched and all(p % 12 in allowed for p in pitched)
    assert baseline_remi(DESCRIPTION, seed=3) == tokens
    assert baseline_remi(DESCRIPTION, seed=4) != tokens


def test_chord_pitch_classes():
    assert chord_pitch_classes("A:min") == (9, 0, 4)
    assert chord_pitch_classes("N:N") == ()
    assert chord_pitch_classes("H:maj") == ()
