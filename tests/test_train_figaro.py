"""The FIGARO trainer: windows, packs, schedule, a real (tiny) run with resume and export, DDP on
two CPU processes, and the device script on the CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from e2m_live.description.vocab import DescriptionVocab, RemiVocab
from e2m_live.figaro.inputs import make_training_example, training_windows
from training.figaro import export as fx
from training.figaro import train as tf
from training.figaro.baseline import baseline_remi
from training.figaro.data import (
    PackedSegment,
    SegmentWindows,
    TokenTables,
    collate,
    load_pack,
    non_overlapping,
    save_pack,
)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "training" / "figaro" / "configs" / "figaro_tiny_test.toml"
INSTRUMENTS = ["Acoustic Grand Piano", "drum", "Violin", "Electric Bass (finger)"]
CHORDS = ["C:maj", "A:min", "F:maj", "G:dom7"]


def _segment(song: str, rng: np.random.Generator, n_bars: int = 4) -> PackedSegment:
    """A real description and REMI+ pair: random description, notes from the chord-tone baseline."""
    desc: list[str] = []
    for b in range(1, n_bars + 1):
        desc += [
            f"Bar_{b}",
            "Time Signature_4/4",
            f"Note Density_{rng.integers(0, 3)}",
            "Mean Velocity_20",
            "Mean Pitch_15",
            "Mean Duration_32",
        ]
        desc += [f"Instrument_{i}" for i in rng.choice(INSTRUMENTS, 2, replace=False)]
        desc += [f"Chord_{rng.choice(CHORDS)}"]
    remi = baseline_remi(desc, seed=int(rng.integers(1 << 30)))
    return PackedSegment(
        np.array(DescriptionVocab().encode(desc)), np.array(RemiVocab().encode(remi)), song, "synthetic"
    )


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("pack") / "pack.npz"
    save_pack(
        path,
        {
            "train": [_segment(f"song{i}", rng) for i in range(40)],
            "val": [_segment(f"val{i // 2}", rng) for i in range(6)],  # two segments per song
        },
    )
    return path


def test_windows_match_the_model_helpers_figaro_example(pack: Path):
    tables = TokenTables()
    for seg in load_pack(pack, "train")[:5]:
        windows = SegmentWindows(seg, tables)
        for context in (16, 64):
            for i, (start, _) in enumerate(training_windows(len(seg.remi_ids), context)):
                ours = windows.window(start, context)
                ref = make_training_example(seg.description_ids, seg.remi_ids, context, window=i)
                np.testing.assert_array_equal(ours.input_ids, ref["input_ids"].numpy())
                np.testing.assert_array_equal(ours.labels, ref["labels"].numpy())
                np.testing.assert_array_equal(ours.bar_ids, ref["bar_ids"].numpy())
                np.testing.assert_array_equal(ours.position_ids, ref["position_ids"].numpy())
                np.testing.assert_array_equal(ours.desc_ids, ref["description"].numpy())
                np.testing.assert_array_equal(ours.desc_bar_ids, ref["desc_bar_ids"].numpy())


def test_collate_pads_with_ignored_labels(pack: Path):
    windows = SegmentWindows(load_pack(pack, "train")[0], TokenTables())
    batch = collate([windows.window(0, 64), windows.window(len(windows) - 20, 64)])
    assert batch["remi_ids"].shape == batch["labels"].shape == (2, 64)
    assert (batch["labels"][1, 19:] == 0).all() and (batch["labels"][1, :19] != 0).all()


def test_transposition_shifts_pitches_only(pack: Path):
    windows = SegmentWindows(load_pack(pack, "train")[1], TokenTables())
    up = windows.transposed(2)
    remi = RemiVocab()
    before = [t for t in remi.decode(windows.tokens) if t.startswith("Pitch_") and "drum" not in t]
    after = [t for t in remi.decode(up.tokens) if t.startswith("Pitch_") and "drum" not in t]
    assert before and [int(t[6:]) + 2 for t in before] == [int(t[6:]) for t in after]
    np.testing.assert_array_equal(up.bar_ids, windows.bar_ids)
    assert windows.transposed(200) is windows  # out of range: unchanged


def test_pack_round_trip_and_bad_input(pack: Path, tmp_path: Path):
    val = load_pack(pack, "val")
    assert [s.song_id for s in val] == ["val0", "val0", "val1", "val1", "val2", "val2"]
    with pytest.raises(ValueError, match="no split"):
        load_pack(pack, "test")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read pack"):
        load_pack(junk, "train")


def test_non_overlapping_keeps_disjoint_segments_per_file():
    class Seg:
        def __init__(self, file: str, start: int) -> None:
            self.file, self.start_bar, self.n_bars = file, start, 12

    segs = [Seg("a", 0), Seg("a", 4), Seg("a", 12), Seg("b", 8), Seg("a", 20), Seg("a", 24)]
    kept = [(s.file, s.start_bar) for s in non_overlapping(segs)]
    assert sorted(kept) == [("a", 0), ("a", 12), ("a", 24), ("b", 8)]


def test_learning_rate_warms_up_and_decays_by_steps_or_time():
    cfg = tf.TrainConfig(lr=1e-3, warmup_steps=10, max_steps=100, min_lr_ratio=0.1)
    assert tf.learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert tf.learning_rate(cfg, 9) == pytest.approx(1e-3, rel=0.02)
    assert tf.learning_rate(cfg, 100) == pytest.approx(1e-4)
    assert tf.learning_rate(cfg, 50) == pytest.approx(0.55e-3)
    assert tf.learning_rate(cfg, 20, time_fraction=1.0) == pytest.approx(1e-4)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_training_learns_resumes_and_exports(pack: Path, tmp_path: Path):
    run, export = tmp_path / "run", tmp_path / "export"
    common = [
        "--config",
        str(TINY),
        "--data",
        str(pack),
        "--out-dir",
        str(run),
        "--no-progress",
        "--lr",
        "5e-3",
    ]
    assert tf.main([*common, "--max-steps", "20"]) == 0
    assert tf.main([*common, "--max-steps", "40", "--resume", "auto", "--export", str(export)]) == 0

    rows = _log(run)
    starts = [r for r in rows if r["event"] == "start"]
    assert [s["step"] for s in starts] == [0, 20]
    vals = [r for r in rows if r["event"] == "val"]
    assert vals[-1]["step"] == 40
    assert vals[-1]["val_loss"] < vals[0]["val_loss"] - 0.5  # it learns
    assert vals[-1]["val_song_ppl"] > 1 and np.isfinite(vals[-1]["val_ppl"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 40 and summary["tokens_seen"] > 0
    assert (run / "loss_curves.png").stat().st_size > 1000

    ckpt = tf.load_checkpoint(run / "checkpoints" / "best.pt")
    model = fx.load_exported(export)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, ckpt["model"][name].half().float())
    info = json.loads((export / "training.json").read_text())
    assert info["step"] == ckpt["step"] > 0

    from e2m_live.figaro.checkpoint import load_pretrained

    assert load_pretrained(export).num_parameters() == model.num_parameters()


def test_max_minutes_stops_and_saves(pack: Path, tmp_path: Path):
    run = tmp_path / "run"
    args = ["--config", str(TINY), "--data", str(pack), "--out-dir", str(run), "--no-progress"]
    assert tf.main([*args, "--max-steps", "1000000", "--max-minutes", "0.02"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reason"] == "max_minutes" and 0 < summary["step"] < 1000000
    assert tf.load_checkpoint(run / "checkpoints" / "last.pt")["step"] == summary["step"]


def test_bad_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"batch_sise": 4}))
    assert tf.main(["--config", str(bad)]) == 2
    assert "unknown training config keys: batch_sise" in capsys.readouterr().err
    assert tf.main(["--config", str(tmp_path / "missing.toml")]) == 2
    with pytest.raises(ValueError, match="not a training checkpoint"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
        tf.load_checkpoint(tmp_path / "other.pt")


def test_export_shards_and_plain_writer(tmp_path: Path):
    from safetensors.torch import load_file

    from e2m_live.figaro.config import FigaroConfig

    config = FigaroConfig(
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        heads=2,
        ffn=64,
        context_size=64,
        max_relative_positions=64,
    )
    state = {"a": torch.randn(300, 100), "b": torch.randn(200, 100), "c": torch.arange(5)}
    files = fx.export_fp16(state, config, tmp_path / "x", max_shard_bytes=70_000)
    shards = [f for f in files if f.suffix == ".safetensors"]
    assert len(shards) == 2 and all(f.stat().st_size < 70_000 + 1_000 for f in shards)
    back = fx.load_exported_state(tmp_path / "x")
    torch.testing.assert_close(back["a"], state["a"].half())
    assert back["c"].dtype == torch.int64

    fx._write_safetensors_plain(state, tmp_path / "plain.safetensors", {"k": "v"})
    plain = load_file(str(tmp_path / "plain.safetensors"))
    assert set(plain) == set(state) and torch.equal(plain["b"], state["b"])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_keeps_ranks_in_sync(pack: Path, tmp_path: Path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    run = tmp_path / "ddp"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "training.figaro.train",
        "--config",
        str(TINY),
        "--data",
        str(pack),
        "--out-dir",
        str(run),
        "--device",
        "cpu",
        "--max-steps",
        "6",
        "--no-progress",
    ]
    result = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    start = next(r for r in _log(run) if r["event"] == "start")
    assert start["world_size"] == 2 and start["tokens_per_step"] == 2 * 4 * 64
    sums = [json.loads((run / "ranks" / f"{r}.json").read_text())["checksum"] for r in (0, 1)]
    assert sums[0] == sums[1]  # gradients were averaged across ranks that saw different windows


@pytest.mark.slow
def test_device_script_on_cpu_without_pretty_midi(pack: Path, tmp_path: Path):
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "pretty_midi.py").write_text("raise ImportError('hidden for this test')\n")
    env = _env()
    env.update(
        PYTHONPATH=str(blocker),
        OUT=str(tmp_path / "out"),
        MINUTES="0.03",
        DEVICE="cpu",
        CONFIG=str(TINY),
        PYTHON=sys.executable,
    )
    result = subprocess.run(
        ["bash", str(REPO / "training" / "figaro" / "device_train.sh"), str(pack), "--max-steps", "100000"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    out = tmp_path / "out"
    assert "names-only stand-in" in (out / "device_train.log").read_text()
    summary = json.loads((out / "run" / "summary.json").read_text())
    assert summary["reason"] == "max_minutes"
    assert (out / "run" / "checkpoints" / "last.pt").exists()
    assert not (out / "run" / "checkpoints" / "best.pt").exists()
    assert fx.load_exported(out / "export").config.d_model == 32


def test_segments_are_renumbered_from_bar_one():
    vocab = RemiVocab()
    desc = DescriptionVocab().encode(["Bar_37", "Time Signature_4/4", "Bar_38", "Time Signature_4/4"])
    remi = vocab.encode(["Bar_37", "Time Signature_4/4", "Bar_38", "Time Signature_4/4"])
    seg = PackedSegment(np.array(desc), np.array(remi), "s")
    windows = SegmentWindows(seg, TokenTables())
    assert [t for t in vocab.decode(windows.tokens) if t.startswith("Bar_")] == ["Bar_1", "Bar_2"]
    kept = SegmentWindows(seg, TokenTables(), renumber=False)
    assert [t for t in vocab.decode(kept.tokens) if t.startswith("Bar_")] == ["Bar_37", "Bar_38"]


def test_diverging_run_skips_nonfinite_steps_then_stops(pack: Path, tmp_path: Path):
    run = tmp_path / "run"
    args = ["--config", str(TINY), "--data", str(pack), "--out-dir", str(run), "--no-progress"]
    assert tf.main([*args, "--max-steps", "100", "--lr", "1e9"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reason"] == "nonfinite"
    assert summary["skipped_steps"] == tf.MAX_NONFINITE_STEPS and summary["step"] < 100


def test_resuming_another_model_size_is_refused(
    pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run = tmp_path / "run"
    args = ["--config", str(TINY), "--data", str(pack), "--out-dir", str(run), "--no-progress"]
    assert tf.main([*args, "--max-steps", "2"]) == 0
    assert tf.main([*args, "--max-steps", "4", "--resume", "auto", "--set", 'model={"d_model": 64}']) == 2
    assert "another configuration" in capsys.readouterr().err


def test_init_fine_tunes_an_exported_model(pack: Path, tmp_path: Path):
    first, export, second = tmp_path / "first", tmp_path / "export", tmp_path / "second"
    args = ["--config", str(TINY), "--data", str(pack), "--no-progress", "--lr", "5e-3"]
    assert tf.main([*args, "--out-dir", str(first), "--max-steps", "30", "--export", str(export)]) == 0
    trained = [r for r in _log(first) if r["event"] == "val"][-1]["val_loss"]
    # steps 0: only the validation of the starting weights, which are the exported ones (fp16)
    assert tf.main([*args, "--out-dir", str(second), "--max-steps", "0", "--init", str(export)]) == 0
    start = next(r for r in _log(second) if r["event"] == "val")["val_loss"]
    assert start == pytest.approx(trained, abs=0.02)
    fresh = next(r for r in _log(first) if r["event"] == "val")["val_loss"]
    assert start < fresh - 0.5
    assert tf.main([*args, "--out-dir", str(tmp_path / "bad"), "--init", str(tmp_path / "missing")]) == 2
