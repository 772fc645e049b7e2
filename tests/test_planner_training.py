"""A tiny end-to-end run of the planner trainer on FIGARO reference descriptions."""

from __future__ import annotations

import json

import numpy as np

from e2m_live.description.grammar import Description, parse, validate
from e2m_live.features import MOODS
from e2m_live.planner import Planner
from e2m_live.planner.examples import example_from_description
from training.planner.train import TrainConfig, train


def _examples(reference_dir, n_files: int = 12):
    data = json.loads((reference_dir / "figaro_reference_outputs.json").read_text())
    rng = np.random.default_rng(0)
    examples = []
    for path, value in sorted(data.items())[: n_files * 2]:
        if "description" not in value:
            continue
        bars = parse(value["description"]).bars
        for start in range(0, max(len(bars) - 12, 0) + 1, 12):
            window = Description(bars[start : start + 12])
            # Features loosely tied to the content, so there is something to learn.
            density = np.mean([b.note_density for b in window.bars]) / 12
            raw = [min(density, 1.0), rng.random(), -10.0, 0.0, 0.5, 0.5, int(rng.integers(12)), 1, 4, 120.0]
            examples.append(example_from_description(window, raw, path.rsplit(".v", 1)[0]))
    return examples


def test_tiny_training_run_writes_a_loadable_planner(reference_dir, tmp_path) -> None:
    examples = _examples(reference_dir)
    songs = sorted({e.song_id for e in examples})
    held_out = set(songs[::5])
    train_examples = [e for e in examples if e.song_id not in held_out]
    val_examples = [e for e in examples if e.song_id in held_out]
    cfg = TrainConfig(
        epochs=4,
        stream_epochs=4,
        eval_every=2,
        samples_per_epoch=64,
        batch_size=32,
        stream_batch_size=32,
        hidden=16,
        stream_hidden=24,
        threads=1,
        max_minutes=30.0,
        processes=1,
        instrument_embedding=4,
    )
    _, history = train(train_examples, val_examples, cfg, tmp_path)

    for name in ("note_density", "mean_velocity", "mean_pitch", "mean_duration", "instruments_chords"):
        assert (tmp_path / f"{name}.safetensors").is_file()
        record = history[name]
        assert record["eval_epoch"] == [2, 4]
        assert 0.0 <= record["val"][-1]["accuracy"] <= 1.0
        assert record["train_loss"][-1] < record["train_loss"][0]
        if name != "instruments_chords":
            assert record["val"][-1]["kl"] >= 0.0
    for picture in ("loss_curves.png", "metric_curves.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["training"]["train_examples"] == len(train_examples)

    planner = Planner.load(tmp_path)
    description = planner.plan(MOODS["happy"], seed=0)
    validate(description.tokens())
