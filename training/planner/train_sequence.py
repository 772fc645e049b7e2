"""Train a whole-description planner (issue 19): a small Transformer decoder or one LSTM (CPU).

    python -m training.planner.train_sequence --kind transformer [--data data/dataset] [--max-minutes 20]
    python -m training.planner.train_sequence --kind single-lstm

Same data, split and feature input as the shipped class LSTMs (``training.planner.train``): the
dataset's ``train`` songs, held-out curves on ``val``, by default only the corpora the shipped
planner was trained on (``--corpora``, read from its ``config.json``), so the three planners see the
same segments. Each segment becomes one sequence of :mod:`e2m_live.planner.sequence` (segments
whose key is unknown have no relative chords and are left out, as for the stream LSTM). Plain
next-token cross-entropy; every epoch (``--samples-per-epoch`` segments drawn at random) the
held-out songs are scored per class as in the report's Table 1 (:func:`heldout_metrics`). The
planner keeps the shipped planner's steering strengths (``--steering-from``), so the sampled plans
differ only in what the models choose.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from e2m_live.planner.classes import ORDERED_CLASSES
from e2m_live.planner.sequence import (
    SEQUENCE_VOCAB,
    SequencePlanner,
    SingleLSTMPlanner,
    sequence_arrays,
    single_lstm,
)
from e2m_live.planner.steering import Steering
from e2m_live.planner.transformer_planner import DescriptionTransformer, TransformerConfig, TransformerPlanner
from training.planner.train import load_examples, ordered_metrics

log = logging.getLogger("train_sequence_planner")

KINDS = ("transformer", "single-lstm")
_V = SEQUENCE_VOCAB


@dataclass
class SequenceTrainConfig:
    kind: str = "transformer"
    epochs: int = 12
    samples_per_epoch: int = 4096
    batch_size: int = 32
    learning_rate: float = 2e-3
    dropout: float = 0.1
    # Transformer
    d_model: int = 96
    heads: int = 4
    layers: int = 2
    ffn: int = 192
    # single LSTM
    hidden: int = 128
    embedding: int = 48
    sigma: float = 1.0
    seed: int = 0
    threads: int = 1
    max_minutes: float = 20.0
    segment_stride: int = 0
    val_limit: int = 300


def make_model(cfg: SequenceTrainConfig, plan_bars: int) -> nn.Module:
    """A fresh model of ``cfg.kind``."""
    if cfg.kind == "transformer":
        return DescriptionTransformer(
            TransformerConfig(
                d_model=cfg.d_model,
                heads=cfg.heads,
                layers=cfg.layers,
                ffn=cfg.ffn,
                dropout=cfg.dropout,
                plan_bars=plan_bars,
            )
        )
    if cfg.kind == "single-lstm":
        return single_lstm(
            hidden=cfg.hidden, embedding=cfg.embedding, dropout=cfg.dropout, plan_bars=plan_bars
        )
    raise ValueError(f"unknown kind {cfg.kind!r}; kinds are {', '.join(KINDS)}")


def fit_positions(arrays: tuple, max_tokens: int) -> tuple:
    """The sequences that fit ``max_tokens`` positions (a Transformer's), cut to that width."""
    features, inputs, targets, bars = arrays
    keep = (inputs != _V.PAD).sum(1) <= max_tokens
    if not keep.all():
        log.info("leaving out %d sequences longer than %d tokens", int((~keep).sum()), max_tokens)
    return features[keep], inputs[keep, :max_tokens], targets[keep, :max_tokens], bars[keep, :max_tokens]


def teacher_forced_logits(
    model: nn.Module, features: np.ndarray, inputs: np.ndarray, bars: np.ndarray, start: int, stop: int
) -> torch.Tensor:
    with torch.no_grad():
        width = int((inputs[start:stop] != _V.PAD).sum(1).max())
        return model(
            torch.from_numpy(features[start:stop]),
            torch.from_numpy(inputs[start:stop, :width]),
            torch.from_numpy(bars[start:stop, :width]),
        )


def heldout_metrics(
    model: nn.Module,
    features: np.ndarray,
    inputs: np.ndarray,
    targets: np.ndarray,
    bars: np.ndarray,
    sigma: float = 1.0,
    chunk: int = 128,
) -> dict[str, dict]:
    """The report's Table 1 per class, teacher-forced: for the four meta classes the accuracy of the
    most likely bin and KL(soft label || prediction), both over that class's 33 bins (the grammar
    says which class comes next, as the class LSTMs know it); for instruments + chords the accuracy
    of the most likely token (whole vocabulary) at the positions whose target is an instrument or a
    chord; and the mean cross-entropy of every token (``all``)."""
    model.eval()
    per_class: dict[str, list[torch.Tensor]] = {name: [] for name in ORDERED_CLASSES}
    per_class_targets: dict[str, list[torch.Tensor]] = {name: [] for name in ORDERED_CLASSES}
    correct = count = 0
    total_loss = total_n = 0.0
    for start in range(0, len(features), chunk):
        logits = teacher_forced_logits(model, features, inputs, bars, start, start + chunk)
        target = torch.from_numpy(targets[start : start + chunk, : logits.shape[1]])
        valid = target != _V.PAD
        total_loss += float(nn.functional.cross_entropy(logits[valid], target[valid], reduction="sum"))
        total_n += int(valid.sum())
        for k, name in enumerate(ORDERED_CLASSES):
            where = torch.from_numpy(_V.meta_class)[target] == k
            where &= valid
            piece = _V.meta_slice(name)
            per_class[name].append(logits[where][:, piece])
            per_class_targets[name].append(torch.from_numpy(_V.meta_bin)[target[where]])
        stream = torch.from_numpy(_V.is_instrument | _V.is_chord)[target] & valid
        correct += int((logits[stream].argmax(-1) == target[stream]).sum())
        count += int(stream.sum())
    out: dict[str, dict] = {}
    for name in ORDERED_CLASSES:
        metrics = ordered_metrics(torch.cat(per_class[name]), torch.cat(per_class_targets[name]), sigma)
        out[name] = {"accuracy": metrics["accuracy"], "kl": metrics["kl"], "n": metrics["n"]}
    out["instruments_chords"] = {"accuracy": correct / max(count, 1), "n": count}
    out["all"] = {"loss": total_loss / max(total_n, 1), "n": int(total_n)}
    return out


def shipped_steering(directory: Path) -> Steering:
    """The steering strengths in a planner folder's ``config.json`` (off when there is none)."""
    path = directory / "config.json"
    if not path.is_file():
        log.warning("%s not found: planning without steering", path)
        return Steering.off()
    return Steering.from_dict(json.loads(path.read_text()).get("steering", {}))


def train(
    cfg: SequenceTrainConfig,
    train_arrays: tuple,
    val_arrays: tuple,
    feature_means: np.ndarray,
    steering: Steering,
    out: Path | None,
    provenance: dict,
) -> tuple[SequencePlanner, dict]:
    """Train one model; write the planner to ``out`` unless it is ``None``."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    started = time.monotonic()
    budget = cfg.max_minutes * 60
    deadline = started + budget
    features, inputs, targets, bars = train_arrays
    plan_bars = int(bars.max()) + 1
    model = make_model(cfg, plan_bars)
    if isinstance(model, DescriptionTransformer):
        arrays = fit_positions((features, inputs, targets, bars), model.config.max_tokens)
        features, inputs, targets, bars = arrays
        val_arrays = fit_positions(val_arrays, model.config.max_tokens)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    lengths = (targets != _V.PAD).sum(1)
    rng = np.random.default_rng(cfg.seed)
    history: dict = {"epoch": [], "train_loss": [], "val": [], "seconds": []}
    x, tokens, y, bar = (torch.from_numpy(a) for a in (features, inputs, targets, bars))
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        subset = rng.permutation(len(x))[: cfg.samples_per_epoch]
        subset = subset[np.argsort(lengths[subset], kind="stable")]  # similar lengths: little padding
        chunks = [subset[i : i + cfg.batch_size] for i in range(0, len(subset), cfg.batch_size)]
        losses = []
        for i, c in enumerate(rng.permutation(len(chunks))):
            # Cosine decay over the epochs or the time budget, whichever runs out first.
            done = max((epoch - 1 + i / len(chunks)) / cfg.epochs, (time.monotonic() - started) / budget)
            for group in opt.param_groups:
                group["lr"] = cfg.learning_rate * 0.5 * (1 + np.cos(np.pi * min(done, 1.0)))
            idx = torch.from_numpy(chunks[c])
            width = int(lengths[chunks[c]].max())
            logits = model(x[idx], tokens[idx, :width], bar[idx, :width])
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y[idx, :width].reshape(-1), ignore_index=_V.PAD
            )
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        metrics = heldout_metrics(model, *val_arrays, sigma=cfg.sigma)
        history["epoch"].append(epoch)
        history["train_loss"].append(float(np.mean(losses)))
        history["val"].append(metrics)
        history["seconds"].append(round(time.monotonic() - started, 1))
        log.info(
            "%s epoch %d  train %.3f  val %.3f  density %.3f velocity %.3f pitch %.3f duration %.3f "
            "inst+chords %.3f",
            cfg.kind,
            epoch,
            history["train_loss"][-1],
            metrics["all"]["loss"],
            *(metrics[n]["accuracy"] for n in ORDERED_CLASSES),
            metrics["instruments_chords"]["accuracy"],
        )
        if time.monotonic() > deadline:
            break
    model.eval()
    summary = {
        "command": " ".join(["python -m training.planner.train_sequence", *sys.argv[1:]]),
        "config": asdict(cfg),
        "train_sequences": len(x),
        "val_sequences": len(val_arrays[0]),
        "epochs_run": history["epoch"][-1],
        "wall_time_s": round(time.monotonic() - started, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "final_val": history["val"][-1],
        **provenance,
    }
    cls = TransformerPlanner if cfg.kind == "transformer" else SingleLSTMPlanner
    planner = cls(model, feature_means=feature_means, steering=steering, metadata=summary)
    if out is not None:
        planner.save(out, training=summary)
        (out / "training_history.json").write_text(json.dumps(history, indent=1) + "\n")
    return planner, history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = SequenceTrainConfig()
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/dataset"))
    parser.add_argument("--out", type=Path, default=None, help="output folder (default models/planner-KIND)")
    parser.add_argument(
        "--corpora",
        nargs="+",
        default=None,
        help="only these corpora (default: those the --steering-from planner was trained on)",
    )
    parser.add_argument(
        "--steering-from",
        type=Path,
        default=Path("models/planner"),
        help="the planner whose steering strengths (and default corpora) to take",
    )
    for name in (
        "epochs",
        "samples_per_epoch",
        "batch_size",
        "d_model",
        "heads",
        "layers",
        "ffn",
        "hidden",
        "embedding",
        "seed",
        "threads",
        "segment_stride",
        "val_limit",
    ):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("learning_rate", "dropout", "max_minutes", "sigma"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    parser.add_argument("--limit", type=int, default=0, help="use only the first N training segments (debug)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = SequenceTrainConfig(**{k: getattr(args, k) for k in asdict(defaults) if hasattr(args, k)})
    corpora = args.corpora
    shipped_config = args.steering_from / "config.json"
    if corpora is None and shipped_config.is_file():
        manifest = json.loads(shipped_config.read_text()).get("training", {}).get("dataset_manifest", {})
        corpora = manifest.get("config", {}).get("corpora")
    from training.data.dataset import DatasetError

    torch.set_num_threads(cfg.threads)
    try:
        train_examples = load_examples(args.data, "train", cfg.segment_stride, corpora)
        val_examples = load_examples(args.data, "val", cfg.segment_stride, corpora)
    except DatasetError as error:
        print(f"train_sequence_planner: {error}", file=sys.stderr)
        return 2
    if args.limit:
        train_examples = train_examples[: args.limit]
    if cfg.val_limit and len(val_examples) > cfg.val_limit:
        chosen = np.random.default_rng(cfg.seed).choice(len(val_examples), cfg.val_limit, replace=False)
        val_examples = [val_examples[i] for i in sorted(chosen)]
    try:
        train_arrays, val_arrays = sequence_arrays(train_examples), sequence_arrays(val_examples)
    except ValueError as error:
        print(f"train_sequence_planner: {error}", file=sys.stderr)
        return 2
    # The feature means the steering is centred on: over every training segment, as the class LSTMs'.
    feature_means = np.stack([e.features for e in train_examples]).mean(axis=0)
    out = args.out or Path("models") / f"planner-{cfg.kind}"
    provenance = {"dataset": str(args.data), "corpora": corpora, "steering_from": str(args.steering_from)}
    _, history = train(
        cfg, train_arrays, val_arrays, feature_means, shipped_steering(args.steering_from), out, provenance
    )
    final = history["val"][-1]
    for name in (*ORDERED_CLASSES, "instruments_chords"):
        kl = f"  KL {final[name]['kl']:.3f}" if "kl" in final[name] else ""
        print(f"{name:20s} held-out accuracy {final[name]['accuracy']:.3f}{kl}")
    print(f"wrote {out}")
    return 0 if np.isfinite(final["all"]["loss"]) else 1


if __name__ == "__main__":
    sys.exit(main())
