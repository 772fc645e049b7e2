"""Train the planner's five class LSTMs on the dataset (CPU).

    python -m training.planner.train [--data data/dataset] [--out models/planner] [--epochs 30]

Ordered classes (note density, mean velocity, mean pitch, mean duration) are trained with soft
labels: a Gaussian over the neighbouring bins (``--sigma`` bins wide) replaces the one-hot target.
The instruments + chords stream is trained with plain next-token cross-entropy. Every
``--eval-every`` epochs the held-out songs (split ``val``) are scored: accuracy of the most likely
bin / token, and for the ordered classes the KL divergence from the soft label to the predicted
distribution. Curves go to ``loss_curves.png`` and ``metric_curves.png``, the history to
``training_history.json``, the weights and ``config.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from e2m_live.planner.classes import ORDERED_CLASS_SIZES, ORDERED_CLASSES, STREAM_VOCAB
from e2m_live.planner.examples import Batch, PlannerExample, batch_examples, examples_from_segments
from e2m_live.planner.model import OrderedClassLSTM, OrderedLSTMConfig, StreamLSTM, StreamLSTMConfig
from e2m_live.planner.planner import DEFAULT_TIME_SIGNATURES, Planner
from e2m_live.planner.steering import Steering

log = logging.getLogger("train_planner")

#: Explicit conditioning shipped with the models (see e2m_live/planner/steering.py and
#: docs/planner.md for how these strengths were chosen).
DEFAULT_STEERING = Steering(
    # issue 15: on the band-heavy data the learned energy -> velocity link is weak (rho +0.17 alone), so
    # energy and loudness steer velocity harder (grid rho 0.55 -> 0.76; loudness 0.41); density 3.5 gives
    # rho 0.81, while 4.5 (rho 0.85) doubles the mean density bin at energy 0.9
    energy_note_density=3.5,
    energy_mean_velocity=2.0,
    loudness_mean_velocity=4.0,
    valence_major_chords=1.0,
    mode_major_chords=1.0,
    key_scale_chords=1.0,
    acousticness_instruments=6.0,
    instrumentalness_voices=6.0,
    # issue 14: danceability, tonic opening and cadence terms, instruments drawn from the features
    danceability_note_density=1.0,
    danceability_mean_duration=2.0,
    danceability_steady_density=3.0,
    tonic_opening=3.0,
    cadence=3.5,
    auto_ensemble=True,
)


@dataclass
class TrainConfig:
    epochs: int = 36
    stream_epochs: int = 24
    eval_every: int = 2
    #: An "epoch" is this many segments drawn at random (the dataset's 12-bar windows overlap,
    #: stride 4, so a full pass sees every bar three times).
    samples_per_epoch: int = 8192
    batch_size: int = 256
    stream_batch_size: int = 256
    learning_rate: float = 4e-3
    stream_learning_rate: float = 4e-3
    sigma: float = 1.0
    hidden: int = 192
    #: Ordered models see the bar's instruments through a projection of this size (0: not at all).
    instrument_embedding: int = 16
    #: LSTM layers of the ordered models.
    layers: int = 1
    #: Ordered models see the bins of the classes before them in the same bar (FIGARO's order):
    #: with hidden 192 and no dropout it lifted held-out mean-pitch accuracy from 0.48 to 0.49.
    chain_context: bool = True
    stream_hidden: int = 128
    dropout: float = 0.0
    stream_dropout: float = 0.1
    seed: int = 0
    threads: int = 1
    #: 2: train the stream model in a second process while the ordered models train here.
    processes: int = 2
    max_minutes: float = 14.0
    #: Use only segments starting on a multiple of this many bars (0: all; 12: non-overlapping windows).
    segment_stride: int = 0
    #: One process: the share of ``max_minutes`` the four ordered models get (the stream the rest).
    ordered_share: float = 0.32
    #: Held-out curves on at most this many val segments (a seeded sample; 0: all). The full held-out
    #: evaluation is ``training.planner.evaluate``'s.
    val_limit: int = 0
    extra: dict = field(default_factory=dict)


# -- losses and metrics --------------------------------------------------------------------------


def soft_labels(targets: torch.Tensor, n_classes: int, sigma: float) -> torch.Tensor:
    """Gaussian soft labels ``[..., n_classes]`` centred on the integer ``targets`` (``sigma`` in
    bins; ``sigma <= 0`` gives one-hot labels). Rows are renormalised over the valid bins."""
    bins = torch.arange(n_classes, dtype=torch.float32)
    centre = targets.clamp(min=0).unsqueeze(-1).float()
    if sigma <= 0:
        return (bins == centre).float()
    weights = torch.exp(-0.5 * ((bins - centre) / sigma) ** 2)
    return weights / weights.sum(-1, keepdim=True)


def ordered_metrics(logits: torch.Tensor, targets: torch.Tensor, sigma: float) -> dict[str, float]:
    """Soft-label loss, accuracy and KL(soft label || prediction) over the valid (``>= 0``) targets."""
    valid = targets >= 0
    logits, targets = logits[valid], targets[valid]
    log_p = torch.log_softmax(logits, dim=-1)
    q = soft_labels(targets, logits.shape[-1], sigma)
    cross = -(q * log_p).sum(-1)
    entropy = -(q * torch.log(q.clamp(min=1e-12))).sum(-1)
    return {
        "loss": float(cross.mean()),
        "accuracy": float((logits.argmax(-1) == targets).float().mean()),
        "kl": float((cross - entropy).mean()),
        "n": int(valid.sum()),
    }


def stream_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Cross-entropy and next-token accuracy over the non-padding targets."""
    valid = targets != STREAM_VOCAB.PAD
    logits, targets = logits[valid], targets[valid]
    return {
        "loss": float(nn.functional.cross_entropy(logits, targets)),
        "accuracy": float((logits.argmax(-1) == targets).float().mean()),
        "n": int(valid.sum()),
    }


# -- data ----------------------------------------------------------------------------------------


def load_examples(
    root: Path, split: str, segment_stride: int = 0, corpora: Sequence[str] | None = None
) -> list[PlannerExample]:
    """Planner examples of one split of the dataset at ``root``; with ``segment_stride`` only the segments
    starting on a multiple of that many bars (12: windows that do not overlap, a third of the stride-4
    segments — parsing every window of the full set takes minutes and adds little); ``corpora``: only
    their segments."""
    from training.data.dataset import load_split

    segments = load_split(root, split, corpora=corpora)
    chosen: Sequence = segments
    if segment_stride > 0:
        keep = np.flatnonzero(segments.start_bars % segment_stride == 0)
        chosen = [segments[int(i)] for i in keep]
    examples, skipped = examples_from_segments(chosen)
    log.info(
        "%s: %d segments, %d used -> %d examples (%d skipped: description does not parse)",
        split,
        len(segments),
        len(chosen),
        len(examples),
        skipped,
    )
    return examples


def ordered_inputs(bins: np.ndarray, n_classes: int) -> torch.Tensor:
    """Teacher-forcing inputs: the previous bar's bin (start id ``n_classes`` for the first bar)."""
    prev = np.full_like(bins, n_classes)
    prev[:, 1:] = np.where(bins[:, :-1] >= 0, bins[:, :-1], n_classes)
    return torch.from_numpy(prev)


def context_inputs(bins: np.ndarray, context: Sequence[str], n_classes: int) -> torch.Tensor:
    """The bar's bins of the ``context`` classes ``[N, T, k]`` (padding -> the unknown id)."""
    columns = [ORDERED_CLASSES.index(name) for name in context]
    values = bins[:, :, columns] if columns else np.zeros((*bins.shape[:2], 0), dtype=np.int64)
    return torch.from_numpy(np.where(values >= 0, values, n_classes))


# -- training loops ------------------------------------------------------------------------------


def _batches(n: int, size: int, samples: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)[: max(samples, 1)]
    return [order[i : i + size] for i in range(0, len(order), size)]


def fit(
    model: nn.Module,
    name: str,
    epoch_losses: Callable[[], Iterator[torch.Tensor]],
    evaluate: Callable[[], dict[str, float]],
    *,
    epochs: int,
    learning_rate: float,
    eval_every: int,
    history: dict,
    deadline: float,
) -> None:
    """The loop both trainers share: Adam with cosine annealing over ``epochs``, gradients clipped at
    norm 1, one optimiser step per loss ``epoch_losses()`` yields; the held-out ``evaluate()`` every
    ``eval_every`` epochs and after the last one, which is ``epochs`` or the first to end past
    ``deadline``. Losses and metrics go to ``history[name]``."""
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    record = history.setdefault(name, {"epoch": [], "train_loss": [], "eval_epoch": [], "val": []})
    label = "stream" if name == "instruments_chords" else name
    for epoch in range(1, epochs + 1):
        model.train()
        losses = []
        for loss in epoch_losses():
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        sched.step()
        record["epoch"].append(epoch)
        record["train_loss"].append(float(np.mean(losses)))
        last = epoch == epochs or time.monotonic() > deadline
        if epoch % eval_every == 0 or last:
            model.eval()
            with torch.no_grad():
                metrics = evaluate()
            record["eval_epoch"].append(epoch)
            record["val"].append(metrics)
            kl = f" KL {metrics['kl']:.3f}" if "kl" in metrics else ""
            log.info(
                "%-13s epoch %3d  train %.3f  val loss %.3f acc %.3f%s",
                label,
                epoch,
                record["train_loss"][-1],
                metrics["loss"],
                metrics["accuracy"],
                kl,
            )
        if last:
            break
    model.eval()


def train_ordered(
    name: str, train: Batch, val: Batch, cfg: TrainConfig, history: dict, deadline: float
) -> OrderedClassLSTM:
    column = ORDERED_CLASSES.index(name)
    n_classes = ORDERED_CLASS_SIZES[name]
    model = OrderedClassLSTM(
        OrderedLSTMConfig(
            name=name,
            n_classes=n_classes,
            hidden=cfg.hidden,
            layers=cfg.layers,
            dropout=cfg.dropout,
            plan_bars=max(train.bins.shape[1], 1),
            instrument_embedding=cfg.instrument_embedding,
            context=list(ORDERED_CLASSES[:column]) if cfg.chain_context else [],
        )
    )
    x_train, y_train = torch.from_numpy(train.features), torch.from_numpy(train.bins[:, :, column])
    p_train = ordered_inputs(train.bins[:, :, column], n_classes)
    x_val, y_val = torch.from_numpy(val.features), torch.from_numpy(val.bins[:, :, column])
    p_val = ordered_inputs(val.bins[:, :, column], n_classes)
    i_train, i_val = torch.from_numpy(train.instruments), torch.from_numpy(val.instruments)
    c_train = context_inputs(train.bins, model.config.context, n_classes)
    c_val = context_inputs(val.bins, model.config.context, n_classes)
    rng = np.random.default_rng(cfg.seed)

    def epoch_losses() -> Iterator[torch.Tensor]:
        """Soft-label cross-entropy of random batches (bars without a bin are left out)."""
        for idx in _batches(len(x_train), cfg.batch_size, cfg.samples_per_epoch, rng):
            logits = model(x_train[idx], p_train[idx], i_train[idx], c_train[idx])
            targets = y_train[idx]
            valid = targets >= 0
            q = soft_labels(targets[valid], n_classes, cfg.sigma)
            yield -(q * torch.log_softmax(logits[valid], -1)).sum(-1).mean()

    def evaluate() -> dict[str, float]:
        return ordered_metrics(model(x_val, p_val, i_val, c_val), y_val, cfg.sigma)

    fit(
        model,
        name,
        epoch_losses,
        evaluate,
        epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        eval_every=cfg.eval_every,
        history=history,
        deadline=deadline,
    )
    return model


def train_stream(train: Batch, val: Batch, cfg: TrainConfig, history: dict, deadline: float) -> StreamLSTM:
    model = StreamLSTM(
        StreamLSTMConfig(
            vocab_size=STREAM_VOCAB.size,
            hidden=cfg.stream_hidden,
            dropout=cfg.stream_dropout,
            plan_bars=max(train.bins.shape[1], 1),
        )
    )
    feats = torch.from_numpy(train.features[train.stream_rows])
    inputs, targets = torch.from_numpy(train.stream_inputs), torch.from_numpy(train.stream_targets)
    bars = torch.from_numpy(train.stream_bars)
    lengths = (train.stream_targets != STREAM_VOCAB.PAD).sum(1)
    val_feats = torch.from_numpy(val.features[val.stream_rows])
    val_in, val_tg = torch.from_numpy(val.stream_inputs), torch.from_numpy(val.stream_targets)
    val_bars = torch.from_numpy(val.stream_bars)
    rng = np.random.default_rng(cfg.seed + 1)

    def epoch_losses() -> Iterator[torch.Tensor]:
        """Next-token cross-entropy of a random subset, in batches of similar length (little time
        wasted on padding), the batches in random order."""
        subset = rng.permutation(len(feats))[: cfg.samples_per_epoch]
        subset = subset[np.argsort(lengths[subset], kind="stable")]
        chunks = [subset[i : i + cfg.stream_batch_size] for i in range(0, len(subset), cfg.stream_batch_size)]
        for c in rng.permutation(len(chunks)):
            idx = chunks[c]
            width = int(lengths[idx].max())
            logits = model(feats[idx], inputs[idx, :width], bars[idx, :width])
            yield nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                targets[idx, :width].reshape(-1),
                ignore_index=STREAM_VOCAB.PAD,
            )

    fit(
        model,
        "instruments_chords",
        epoch_losses,
        lambda: evaluate_stream(model, val_feats, val_in, val_tg, val_bars),
        epochs=cfg.stream_epochs,
        learning_rate=cfg.stream_learning_rate,
        eval_every=cfg.eval_every,
        history=history,
        deadline=deadline,
    )
    return model


def evaluate_stream(
    model: StreamLSTM, feats: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, bars: torch.Tensor
) -> dict[str, float]:
    """Stream metrics in chunks (bounded memory)."""
    model.eval()
    total_loss = correct = count = 0.0
    with torch.no_grad():
        for start in range(0, len(feats), 256):
            sl = slice(start, start + 256)
            logits = model(feats[sl], inputs[sl], bars[sl])
            m = stream_metrics(logits, targets[sl])
            total_loss += m["loss"] * m["n"]
            correct += m["accuracy"] * m["n"]
            count += m["n"]
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1), "n": int(count)}


def _stream_job(train_batch: Batch, val_batch: Batch, cfg: TrainConfig, deadline: float) -> tuple:
    """Child-process entry: train the stream model; return its weights, config and history."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(cfg.seed + 1)
    torch.set_num_threads(cfg.threads)
    history: dict = {}
    model = train_stream(train_batch, val_batch, cfg, history, deadline)
    return model.state_dict(), asdict(model.config), history


# -- plots ---------------------------------------------------------------------------------------


def plot_curves(history: dict, out: Path) -> list[Path]:
    """``loss_curves.png`` (train loss, val loss per model) and ``metric_curves.png`` (val accuracy
    and KL)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in (*ORDERED_CLASSES, "instruments_chords") if n in history]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rec = history[name]
        ax.plot(rec["epoch"], rec["train_loss"], label="train")
        ax.plot(rec["eval_epoch"], [m["loss"] for m in rec["val"]], "o-", label="held-out")
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (soft-label CE)" if name != "instruments_chords" else "loss (CE)")
        ax.legend()
    fig.tight_layout()
    loss_path = out / "loss_curves.png"
    fig.savefig(loss_path, dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rec = history[name]
        ax.plot(rec["eval_epoch"], [m["accuracy"] for m in rec["val"]], "o-", label="accuracy")
        if rec["val"] and "kl" in rec["val"][0]:
            ax.plot(rec["eval_epoch"], [m["kl"] for m in rec["val"]], "s-", label="KL")
        ax.set_title(name.replace("_", " ") + " (held-out)")
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    metric_path = out / "metric_curves.png"
    fig.savefig(metric_path, dpi=90)
    plt.close(fig)
    return [loss_path, metric_path]


# -- driver --------------------------------------------------------------------------------------


def train(
    train_examples: Sequence[PlannerExample],
    val_examples: Sequence[PlannerExample],
    cfg: TrainConfig,
    out: Path | None,
    provenance: dict | None = None,
) -> tuple[Planner, dict]:
    """Train all five models; write them (and curves) to ``out`` unless it is ``None``."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    started = time.monotonic()
    deadline = started + cfg.max_minutes * 60
    if cfg.val_limit and len(val_examples) > cfg.val_limit:
        chosen = np.random.default_rng(cfg.seed).choice(len(val_examples), cfg.val_limit, replace=False)
        val_examples = [val_examples[i] for i in sorted(chosen)]
    train_batch, val_batch = batch_examples(train_examples), batch_examples(val_examples)
    history: dict = {}
    ordered = {}
    if cfg.processes >= 2:
        # The stream model (the slow one) trains in its own process for the whole budget while the
        # four ordered models share the same budget here, one after the other.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            job = pool.submit(_stream_job, train_batch, val_batch, cfg, deadline)
            for i, name in enumerate(ORDERED_CLASSES):
                own_deadline = started + cfg.max_minutes * 60 * (i + 1) / len(ORDERED_CLASSES)
                ordered[name] = train_ordered(name, train_batch, val_batch, cfg, history, own_deadline)
            state, stream_config, stream_history = job.result()
        stream = StreamLSTM(StreamLSTMConfig(**stream_config))
        stream.load_state_dict(state)
        stream.eval()
        history.update(stream_history)
    else:
        # One process: the ordered models share ``ordered_share`` of the time; the stream gets the rest.
        for name in ORDERED_CLASSES:
            own_deadline = min(time.monotonic() + cfg.max_minutes * 60 * cfg.ordered_share / 4, deadline)
            ordered[name] = train_ordered(name, train_batch, val_batch, cfg, history, own_deadline)
        stream = train_stream(train_batch, val_batch, cfg, history, deadline)
    wall = time.monotonic() - started
    final = {name: history[name]["val"][-1] for name in history}
    summary = {
        "command": " ".join(["python -m training.planner.train", *sys.argv[1:]]),
        "config": asdict(cfg),
        "train_examples": len(train_examples),
        "val_examples": len(val_examples),
        "train_songs": len({e.song_id for e in train_examples}),
        "val_songs": len({e.song_id for e in val_examples}),
        "epochs_run": {name: history[name]["epoch"][-1] for name in history},
        "wall_time_s": round(wall, 1),
        "threads": cfg.threads,
        "processes": cfg.processes,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "final_val": final,
        **(provenance or {}),
    }
    planner = Planner(
        ordered,
        stream,
        feature_means=train_batch.features.mean(axis=0),
        steering=DEFAULT_STEERING,
        time_signatures=DEFAULT_TIME_SIGNATURES,
        metadata=summary,
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        planner.save(out, training=summary)
        (out / "training_history.json").write_text(json.dumps(history, indent=1) + "\n")
        plot_curves(history, out)
    return planner, history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path("data/dataset"), help="dataset folder (build_dataset)"
    )
    parser.add_argument("--out", type=Path, default=Path("models/planner"), help="output folder")
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs of each ordered model")
    parser.add_argument("--stream-epochs", type=int, default=defaults.stream_epochs)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument(
        "--samples-per-epoch", type=int, default=defaults.samples_per_epoch, help="segments drawn per epoch"
    )
    parser.add_argument("--sigma", type=float, default=defaults.sigma, help="soft-label width in bins")
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument(
        "--instrument-embedding",
        type=int,
        default=defaults.instrument_embedding,
        help="condition the ordered models on the bar's instruments (0: off)",
    )
    parser.add_argument(
        "--chain-context",
        action="store_true",
        help="show the ordered models the earlier classes of the same bar",
    )
    parser.add_argument("--layers", type=int, default=defaults.layers, help="LSTM layers (ordered models)")
    parser.add_argument("--stream-hidden", type=int, default=defaults.stream_hidden)
    parser.add_argument("--dropout", type=float, default=defaults.dropout, help="ordered models")
    parser.add_argument("--stream-dropout", type=float, default=defaults.stream_dropout)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads per process")
    parser.add_argument(
        "--processes",
        type=int,
        default=defaults.processes,
        choices=(1, 2),
        help="2: train the instruments/chords model in a second process",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=defaults.max_minutes,
        help="stop training (after the current epoch) when this much wall time has passed",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--ordered-share",
        type=float,
        default=defaults.ordered_share,
        help="with --processes 1: share of the time for the four ordered models",
    )
    parser.add_argument(
        "--val-limit", type=int, default=defaults.val_limit, help="held-out curves on N val segments (0: all)"
    )
    parser.add_argument(
        "--segment-stride",
        type=int,
        default=defaults.segment_stride,
        help="use only segments starting every N bars (12: non-overlapping windows; 0: all)",
    )
    parser.add_argument("--limit", type=int, default=0, help="use only the first N training segments (debug)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TrainConfig(
        epochs=args.epochs,
        stream_epochs=args.stream_epochs,
        eval_every=args.eval_every,
        sigma=args.sigma,
        hidden=args.hidden,
        stream_hidden=args.stream_hidden,
        dropout=args.dropout,
        stream_dropout=args.stream_dropout,
        threads=args.threads,
        processes=args.processes,
        max_minutes=args.max_minutes,
        seed=args.seed,
        samples_per_epoch=args.samples_per_epoch,
        instrument_embedding=args.instrument_embedding,
        layers=args.layers,
        segment_stride=args.segment_stride,
        ordered_share=args.ordered_share,
        val_limit=args.val_limit,
    )
    from training.data.dataset import DatasetError, read_manifest

    try:
        manifest = read_manifest(args.data)
        train_examples = load_examples(args.data, "train", args.segment_stride)
        val_examples = load_examples(args.data, "val", args.segment_stride)
    except DatasetError as error:
        print(f"train_planner: {error}", file=sys.stderr)
        return 2
    if args.limit:
        train_examples = train_examples[: args.limit]
    if not train_examples or not val_examples:
        print("train_planner: empty train or val split", file=sys.stderr)
        return 2
    provenance = {
        "dataset": str(args.data),
        "dataset_manifest": {k: manifest[k] for k in manifest if k != "files"},
    }
    _, history = train(train_examples, val_examples, cfg, args.out, provenance)
    for name, rec in history.items():
        m = rec["val"][-1]
        kl = f"  KL {m['kl']:.3f}" if "kl" in m else ""
        print(f"{name:20s} held-out accuracy {m['accuracy']:.3f}{kl}")
    if not math.isfinite(history["instruments_chords"]["val"][-1]["loss"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
