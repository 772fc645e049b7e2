"""training/evaluation/control: the reduced (CI) grid end to end, its chord-tone and instrument measures."""

from __future__ import annotations

import io
import json
import math

import mido
import pytest

from e2m_live.arrangement import ENSEMBLES
from e2m_live.description.remi import bars_to_smf
from e2m_live.figaro import constraints
from e2m_live.music import Bar, Note
from tests.test_pipeline import models_root
from training.evaluation import control as evaluate_control
from training.evaluation.control import (
    CONTINUOUS,
    ENSEMBLE_SWEEP,
    GridRow,
    build_grid,
    chord_pitch_classes,
    chord_shares,
    ensemble_scores,
    planned_instruments,
    spotify_levels,
)
from training.evaluation.pathology import count_piece


def _writer_keeps_one_track_per_instrument() -> bool:
    """Whether the project's MIDI writer merges overlapping notes of one pitch into one track (issue 14)."""
    bar = Bar([Note(60, 80, 0.0, 2.0, 0), Note(60, 80, 1.0, 2.0, 0)])
    midi = mido.MidiFile(file=io.BytesIO(bars_to_smf([bar])))
    return sum(any(m.type == "note_on" for m in track) for track in midi.tracks) == 1


def test_quick_grid_runs_and_reports_every_figure(tmp_path_factory) -> None:
    models = models_root(tmp_path_factory.mktemp("models"))
    out = tmp_path_factory.mktemp("report")
    code = evaluate_control.main(
        [
            "--quick",
            "--bars",
            "1",
            "--max-tokens-per-bar",
            "64",
            "--threads",
            "1",
            "--model-dir",
            str(models),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads((out / "control.json").read_text())
    summary = report["summary"]
    assert set(summary["features"]) == set(CONTINUOUS)
    for entry in summary["features"].values():
        assert math.isnan(entry["rho"]) or -1 <= entry["rho"] <= 1
        assert entry["n"] <= 2
    exact = summary["exact"]
    # imposed by the pipeline, whatever the models learned
    assert exact["time_signature"] == 1.0 and exact["tempo"] == 1.0
    assert exact["n_all"] + exact["no_notes"] == len(report["samples"]) == len(build_grid(True, 1))
    metres = {s["requested"]["time_signature"] for s in report["samples"] if s["sweep"] == "key"}
    assert metres == {3, 4, 5, 6, 7}
    assert set(summary["ensembles"]) == set(ENSEMBLE_SWEEP)
    for entry in summary["ensembles"].values():
        assert entry["bars"] == 1 and (math.isnan(entry["inst_f1"]) or 0 <= entry["inst_f1"] <= 1)
    pathology = summary["pathology"]
    assert pathology["pieces"] == len(report["samples"]) and pathology["n_default"] <= 1
    assert 0 <= summary["key_lock"]["in_scale_share"] <= 1
    # Hold whatever the models learned, once the rules that guarantee them are in place.
    if getattr(getattr(constraints, "DecodeRules", None), "rising_pitches", False):
        assert pathology["repeated_per_piece"] == 0
    if _writer_keeps_one_track_per_instrument():
        assert pathology["tracks_per_instrument_max"] == 1
    table = (out / "control_table.md").read_text()
    rows = (
        "| energy | Spearman",
        "midi-emotion: 0.195",
        "| repeated notes |",
        "| tracks per instrument |",
        "| solo share |",
        "| drum share |",
        "| key lock 0.9 |",
        "| ensemble piano |",
    )
    for row in rows:
        assert row in table
    assert (out / "control_features.png").stat().st_size > 10_000
    assert len((out / "control_samples.jsonl").read_text().splitlines()) == len(report["samples"])
    # the report again from the samples alone
    again = tmp_path_factory.mktemp("again")
    samples_file = str(out / "control_samples.jsonl")
    assert evaluate_control.main(["--from-samples", samples_file, "--out", str(again)]) == 0
    assert (again / "control_table.md").read_text() == table


def test_levels_rise_and_the_grid_holds_the_others_at_the_median() -> None:
    for feature in CONTINUOUS:
        low, mid, high = spotify_levels(feature)
        assert low < mid < high
    low, _, high = spotify_levels("danceability")
    assert low <= 0.3 and high >= 0.7  # where issue 14 sets the drum targets
    grid = build_grid(False, 10)
    energy = [row.features for row in grid if row.sweep == "energy"]
    assert len(energy) == 30 and len({f.valence for f in energy}) == 1
    keys = [(row.features.key, row.features.mode) for row in grid if row.sweep == "key"]
    assert len(set(keys)) == 24 and len(keys) == 48
    ensembles = [row.ensemble for row in grid if row.sweep == "ensemble"]
    assert set(ensembles) == {"auto", *ENSEMBLES} and len(ensembles) == 10 * len(ENSEMBLE_SWEEP)
    assert len([row for row in grid if row.sweep == "default"]) == 10


def test_instrument_f1_and_the_instruments_the_decoder_leaves_out() -> None:
    assert planned_instruments(["Bar_1", "Instrument_drum", "Instrument_Acoustic Bass", "Chord_C:maj"]) == (
        32,
        128,
    )
    row = GridRow("ensemble", 0, evaluate_control.median_features(), "jazz")
    sample = evaluate_control.Sample(
        sweep=row.sweep,
        seed=0,
        requested=row.features,
        ensemble="jazz",
        estimated=None,
        chord_share=1.0,
        chance_share=0.0,
        seconds=1.0,
        music_seconds=2.0,
        notes=1,
        counts=count_piece([Bar([Note(60, 80, 0.0, 1.0, 0)])]),
        planned=[(0, 32, 128), (0, 66)],
        played=[(0, 32, 128), (0,)],
    )
    scores = ensemble_scores([sample])["jazz"]
    assert scores["inst_f1"] == pytest.approx((1.0 + 2 / 3) / 2)  # bar 2: precision 1, recall 1/2
    assert scores["recall"]["Tenor Sax"] == 0.0 and scores["fails"] == ["Tenor Sax"]
    assert scores["plan_in_palette"] == 1.0


def test_chord_share_counts_note_time_on_the_planned_chord_tones() -> None:
    assert chord_pitch_classes("A:min7") == {9, 0, 4, 7}
    assert chord_pitch_classes("N:N") == set()
    notes = [Note(60, 80, 0, 3.0, 0), Note(61, 80, 3.0, 1.0, 0), Note(36, 90, 0, 4.0, 0, True)]
    bar = Bar(notes, 4, 4, 120.0)
    on, chance = chord_shares([bar], [["Bar_1", "Chord_C:maj"]])
    assert on == pytest.approx(0.75)  # C for 3 of 4 pitched quarters; drums ignored
    assert chance == pytest.approx(0.25)  # the C# quarter lies on F#:maj (F#, A#, C#), a tritone away
    assert all(math.isnan(x) for x in chord_shares([bar], [["Bar_1"]]))


def _band(
    *, program: int = 0, drums: bool = False, bass: int | None = None, lead: int | None = None, bars: int = 8
) -> list[Bar]:
    """Block chords with a free melody on top, and optional drums, bass line and monophonic lead."""
    out = []
    for index in range(bars):
        notes = [Note(p, 70, q, 2.0, program) for q in (0.0, 2.0) for p in (60, 64, 67)]
        notes += [Note(72 + (3 * i + index) % 7, 60 + 5 * i, 0.3 + 0.6 * i, 0.4, program) for i in range(6)]
        for beat in range(4):
            if drums:
                notes += [
                    Note(36 if beat % 2 == 0 else 38, 100, float(beat), 0.25, 0, True),
                    Note(42, 80, beat + 0.5, 0.25, 0, True),
                ]
            if bass is not None:
                notes.append(Note(36 + (beat % 2) * 7, 90, float(beat), 0.9, bass))
            if lead is not None:
                notes.append(Note(64 + (beat + index) % 5, 80, float(beat), 0.95, lead))
        out.append(Bar(notes, 4, 4, 120.0, index))
    return out


def test_the_re_estimator_hears_the_instrumentation_controls() -> None:
    """The evaluation's danceability, acousticness and instrumentalness estimates move with what the
    planner now changes (drums and bass; acoustic vs electric programs; a voice-like lead)."""
    from e2m_live.analysis import estimate_features

    dance = [
        estimate_features(b).danceability
        for b in (_band(), _band(bass=33), _band(drums=True), _band(drums=True, bass=33))
    ]
    assert dance == sorted(dance) and dance[2] > dance[0] + 0.05
    # piano; piano and electric bass; electric piano, synth bass and drums
    acoustic = [
        estimate_features(b).acousticness
        for b in (_band(), _band(bass=33), _band(program=4, bass=38, drums=True))
    ]
    assert acoustic == sorted(acoustic, reverse=True) and acoustic[0] > acoustic[-1] + 0.1
    instrumental = [
        estimate_features(b).instrumentalness for b in (_band(), _band(lead=73), _band(lead=52))
    ]  # no lead; flute lead; choir-aahs lead
    assert instrumental[0] > instrumental[1] > instrumental[2]
