"""training/evaluate_control: the reduced (CI) grid end to end, and its chord-tone measure."""

from __future__ import annotations

import json
import math

import pytest

from e2m_live.music import Bar, Note
from tests.test_pipeline import models_root
from training import evaluate_control
from training.evaluate_control import (
    CONTINUOUS,
    build_grid,
    chord_pitch_classes,
    chord_shares,
    spotify_levels,
)


def test_quick_grid_runs_and_reports_every_figure(tmp_path_factory) -> None:
    models = models_root(tmp_path_factory.mktemp("models"))
    out = tmp_path_factory.mktemp("report")
    code = evaluate_control.main(["--quick", "--bars", "1", "--max-tokens-per-bar", "64", "--threads", "1",
                                  "--model-dir", str(models), "--out", str(out)])
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
    table = (out / "control_table.md").read_text()
    assert "| energy | Spearman" in table and "midi-emotion: 0.195" in table
    assert (out / "control_features.png").stat().st_size > 10_000


def test_levels_rise_and_the_grid_holds_the_others_at_the_median() -> None:
    for feature in CONTINUOUS:
        low, mid, high = spotify_levels(feature)
        assert low < mid < high
    grid = build_grid(False, 2)
    energy = [f for sweep, _, f in grid if sweep == "energy"]
    assert len(energy) == 6 and len({f.valence for f in energy}) == 1
    keys = {(f.key, f.mode) for sweep, _, f in grid if sweep == "key"}
    assert len(keys) == 24


def test_chord_share_counts_note_time_on_the_planned_chord_tones() -> None:
    assert chord_pitch_classes("A:min7") == {9, 0, 4, 7}
    assert chord_pitch_classes("N:N") == set()
    notes = [Note(60, 80, 0, 3.0, 0), Note(61, 80, 3.0, 1.0, 0), Note(36, 90, 0, 4.0, 0, True)]
    bar = Bar(notes, 4, 4, 120.0)
    on, chance = chord_shares([bar], [["Bar_1", "Chord_C:maj"]])
    assert on == pytest.approx(0.75)  # C for 3 of 4 pitched quarters; drums ignored
    assert chance == pytest.approx(0.25)  # the C# quarter lies on F#:maj (F#, A#, C#), a tritone away
    assert all(math.isnan(x) for x in chord_shares([bar], [["Bar_1"]]))
