"""Evaluation of description fidelity through REMI -> MIDI -> extraction, and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from e2m_live.description.extract import extract
from training.figaro import card as figaro_card
from training.figaro import evaluate as ev
from training.figaro import train as tf
from training.figaro.baseline import baseline_remi
from training.figaro.data import PackedSegment, save_pack
from training.figaro.segments import EvalSegment, first_bars, select_segments
from training.figaro.speed import measure_realtime
from training.figaro.tables import metrics_table

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "training" / "figaro" / "configs" / "figaro_tiny_test.toml"
DESCRIPTION = [
    "Bar_1", "Time Signature_4/4", "Note Density_2", "Mean Velocity_20", "Mean Pitch_15", "Mean Duration_32",
    "Instrument_Acoustic Grand Piano", "Instrument_drum", "Chord_A:min",
    "Bar_2", "Time Signature_4/4", "Note Density_1", "Mean Velocity_12", "Mean Pitch_17", "Mean Duration_32",
    "Instrument_Violin", "Chord_F:maj", "Chord_G:maj",
]  # fmt: skip


def _segment(song: str, seed: int) -> EvalSegment:
    return EvalSegment(song, "synthetic", list(DESCRIPTION), baseline_remi(DESCRIPTION, seed=seed))


def test_extraction_path_keeps_bars_aligned():
    remi = [
        "Bar_1",
        "Time Signature_4/4",
        *[
            ("Bar_2" if t == "Bar_1" else "Bar_3" if t == "Bar_2" else t)
            for t in baseline_remi(DESCRIPTION, seed=1)
        ],
    ]
    facts = ev.facts_through_midi(remi)
    assert len(facts) == 3
    assert facts[0].notes == ()  # the leading empty bar extraction drops is put back
    original = ev.reference_facts(EvalSegment("s", "", ["Bar_1", *DESCRIPTION], remi))
    assert sorted((n.pitch, n.start) for n in facts[1].notes) == sorted(
        (n.pitch, n.start) for n in original[1].notes
    )
    assert ev.facts_through_midi([]) == []


def test_ceiling_beats_baseline_on_extracted_material():
    segments = [_segment(f"s{i}", i) for i in range(3)]
    result = ev.evaluate(segments, None, seed=5, log=lambda _m: None)
    ceiling, baseline = result["summaries"]["ceiling"], result["summaries"]["baseline"]
    for key in (
        "inst_f1",
        "time_sig_acc",
        "pitch_oa",
        "velocity_oa",
        "note_density_oa",
        "chroma_sim",
        "groove_sim",
    ):
        assert ceiling[key] == pytest.approx(1.0, abs=0.02), key
    assert baseline["groove_sim"] < ceiling["groove_sim"] - 0.2
    assert "model" not in result["summaries"]
    table = metrics_table(result["summaries"])
    assert "| chord_f1 |" in table and ">= 0.6" in table


def test_ceiling_on_a_shared_corpus_file(datasets_dir: Path):
    path = sorted((datasets_dir / "nottingham").glob("*.mid"))[0]
    found = extract(path)
    seg = EvalSegment("n", "nottingham", first_bars(found.description, 8), first_bars(found.remi, 8))
    summary = ev.evaluate([seg], None, log=lambda _m: None)["summaries"]["ceiling"]
    assert summary["time_sig_acc"] == 1.0 and summary["inst_f1"] == 1.0
    assert summary["chord_f1"] > 0.8 and summary["pitch_oa"] > 0.95


def test_select_segments_takes_one_per_song_first():
    from e2m_live.description.vocab import DescriptionVocab, RemiVocab

    dv, rv = DescriptionVocab(), RemiVocab()
    segs = [
        PackedSegment(np.array(dv.encode(DESCRIPTION)), np.array(rv.encode(baseline_remi(DESCRIPTION))), song)
        for song in ["b", "a", "b", "c"]
    ]
    chosen = select_segments(segs, limit=3, bars=1)
    assert [s.song_id for s in chosen] == ["a", "b", "c"]
    assert chosen[0].n_bars == 1 and chosen[0].remi[0] == "Bar_1"


@pytest.mark.slow
def test_evaluation_and_card_in_one_command(tmp_path: Path):
    from e2m_live.description.vocab import DescriptionVocab, RemiVocab

    dv, rv = DescriptionVocab(), RemiVocab()
    segs = [
        PackedSegment(
            np.array(dv.encode(DESCRIPTION)),
            np.array(rv.encode(baseline_remi(DESCRIPTION, seed=i))),
            f"song{i}",
            "synthetic",
        )
        for i in range(8)
    ]
    pack = save_pack(tmp_path / "pack.npz", {"train": segs[:6], "val": segs[6:]})
    model = tmp_path / "model"
    assert (
        tf.main(
            [
                "--config",
                str(TINY),
                "--data",
                str(pack),
                "--out-dir",
                str(tmp_path / "run"),
                "--max-steps",
                "5",
                "--export",
                str(model),
                "--no-progress",
            ]
        )
        == 0
    )
    notes = tmp_path / "notes.md"
    notes.write_text("Listening notes: nothing stuck.\n")
    out = tmp_path / "eval"
    assert (
        ev.main(
            [
                "--model",
                str(model),
                "--data",
                str(pack),
                "--limit",
                "1",
                "--bars",
                "1",
                "--out",
                str(out),
                "--card",
                str(model),
                "--examples",
                "1",
                "--notes",
                str(notes),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["summaries"]) == {"model", "baseline", "ceiling"}
    assert report["timing"]["model_tokens"] > 0
    card = (model / "MODEL_CARD.md").read_text()
    assert "| inst_f1 |" in card and "Listening notes: nothing stuck." in card
    assert "synthetic" in card and "tokens/s" in card
    assert (model / "example_0_pianoroll.png").stat().st_size > 5000
    assert (out / "example_0.mid").exists()
    assert "The model by corpus" in card and report["by_corpus"]["synthetic"]["model"]["inst_f1"] >= 0

    # the card again from the finished evaluation, with a measured real-time factor
    speed = measure_realtime(model, DESCRIPTION, threads=1, tokens_per_bar=24, repeats=1)
    assert 2 * 20 <= speed["tokens"] <= 2 * 28 and speed["real_time_factor"] > 0
    (out / "speed.json").write_text(json.dumps({"float32, 1 thread": speed}))
    notes.write_text("Second look: the drums sit on the beat.\n")
    assert figaro_card.main(["--model", str(model), "--run", str(out), "--notes", str(notes)]) == 0
    card = (model / "MODEL_CARD.md").read_text()
    assert "Second look: the drums sit on the beat." in card
    assert f"real-time factor {speed['real_time_factor']:.3f}" in card
    assert figaro_card.main(["--model", str(model), "--run", str(tmp_path / "missing")]) == 2


def test_bad_arguments_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert ev.main(["--data", str(tmp_path / "none.npz"), "--quiet"]) == 2
    assert "evaluate_figaro: error" in capsys.readouterr().err
    assert ev.main(["--card", str(tmp_path), "--quiet"]) == 2


def test_fidelity_table_joins_runs_and_counts_wins(tmp_path):
    from training.figaro import fidelity_table as ft

    def run(name: str, chord: float, segments: list) -> str:
        folder = tmp_path / name
        folder.mkdir()
        summaries = {
            "model": {"chord_f1": chord, "inst_f1": 1.0, "note_density_nrmse": 0.5},
            "baseline": {"chord_f1": 0.6, "inst_f1": 1.0, "note_density_nrmse": 0.4},
            "ceiling": {"chord_f1": 0.9},
        }
        by_corpus = {"pop": summaries}
        (folder / "metrics.json").write_text(
            json.dumps({"segments": segments, "summaries": summaries, "by_corpus": by_corpus})
        )
        return f"{name}={folder}"

    segs = [{"song_id": "a", "corpus": "pop", "bars": 2}]
    runs = ft.load_runs([run("off", 0.3, segs), run("on", 0.7, segs)])
    table = ft.pooled_table(runs)
    assert "| chord_f1 | 0.300 | 0.700 | 0.600 | 0.900 | >= 0.65 |" in table
    assert "| **pooled** | 1 | 0.300 | 0.700 | 0.600 |" in ft.corpus_table(runs, "chord_f1")
    assert ft.against_baseline(runs[1][1]) == {
        "chord_f1": "win",
        "inst_f1": "tie",
        "note_density_nrmse": "loss",
    }
    other = run("other", 0.5, [{"song_id": "b", "corpus": "pop", "bars": 2}])
    with pytest.raises(ValueError, match="other segments"):
        ft.load_runs([run("first", 0.3, segs), other])
    assert ft.main([other, "--by-corpus", "no_such_metric"]) == 2
