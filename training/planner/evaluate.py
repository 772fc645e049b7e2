"""Evaluate the planner: per-class accuracy and KL on held-out songs, baselines, controllability.

    python -m training.planner.evaluate [--data data/dataset] [--models models/planner] [--split val]

Prints (and writes to ``<models>/evaluation.json``):

1. Teacher-forced accuracy of the most likely bin/token on the held-out songs of ``--split``
   (``val``: 10 % of the songs, never trained on) and, for the four ordered classes, the KL
   divergence from the Gaussian soft label (the training ``sigma``) to the predicted distribution,
   side by side with the original report's Table 1; plus two baselines: the majority class of the
   training split, and "same bin as the previous bar" (the majority class for the first bar).
2. Controllability: plans over a full-factorial grid of features; the Spearman correlation between
   each requested feature and the plan statistic it should move, with the shipped steering and
   with the learned models alone (``Steering.off()``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from e2m_live.features import EmotionFeatures
from e2m_live.planner import PlanError, Planner, Steering
from e2m_live.planner.classes import ORDERED_CLASSES, STREAM_VOCAB
from e2m_live.planner.examples import Batch, batch_examples
from training.planner.statistics import STATISTIC_FOR_FEATURE, plan_statistics
from training.planner.train import (
    context_inputs,
    evaluate_stream,
    load_examples,
    ordered_inputs,
    ordered_metrics,
)

#: The original report's Table 1 (accuracy, KL) for the class LSTMs.
REPORT_TABLE1: dict[str, tuple[float, float | None]] = {
    "mean_pitch": (0.49, 0.47),
    "note_density": (0.53, 0.36),
    "mean_velocity": (0.46, 0.60),
    "mean_duration": (0.66, 0.50),
    "instruments_chords": (0.07, None),
}
_REPORT_NAMES = {
    "mean_pitch": "Pitch",
    "note_density": "Density",
    "mean_velocity": "Velocity",
    "mean_duration": "Duration",
    "instruments_chords": "Misc. (instruments + chords)",
}

#: The controllability grid (full factorial): 3^5 x 2 x 4 = 1,944 feature vectors.
GRID: dict[str, tuple] = {
    "energy": (0.1, 0.5, 0.9),
    "valence": (0.1, 0.5, 0.9),
    "loudness": (-20.0, -10.0, -4.0),
    "acousticness": (0.05, 0.5, 0.95),
    "instrumentalness": (0.0, 0.5, 1.0),
    "mode": (0, 1),
    "key": (0, 3, 6, 9),
}


def heldout_metrics(planner: Planner, train: Batch, val: Batch, sigma: float) -> dict[str, dict]:
    """Accuracy / KL per class on ``val``, and the two baselines fitted on ``train``."""
    results: dict[str, dict] = {}
    features = torch.from_numpy(val.features)
    for column, name in enumerate(ORDERED_CLASSES):
        model = planner.ordered_models[name]
        n_classes = model.config.n_classes
        targets = val.bins[:, :, column]
        with torch.no_grad():
            context = context_inputs(val.bins, model.config.context, n_classes)
            instruments = torch.from_numpy(val.instruments)
            logits = model(features, ordered_inputs(targets, n_classes), instruments, context)
        metrics = ordered_metrics(logits, torch.from_numpy(targets), sigma)
        first = ordered_metrics(logits[:, :1], torch.from_numpy(targets[:, :1]), sigma)
        train_targets = train.bins[:, :, column]
        majority = Counter(train_targets[train_targets >= 0].tolist()).most_common(1)[0][0]
        valid = targets >= 0
        previous = np.where(np.arange(targets.shape[1])[None, :] == 0, majority, np.roll(targets, 1, axis=1))
        results[name] = {
            "accuracy": metrics["accuracy"],
            "kl": metrics["kl"],
            "first_bar_accuracy": first["accuracy"],
            "majority_accuracy": float(np.mean(targets[valid] == majority)),
            "previous_bar_accuracy": float(np.mean((targets == previous)[valid])),
            "n": metrics["n"],
        }
    v = STREAM_VOCAB
    stream = evaluate_stream(
        planner.stream_model,
        torch.from_numpy(val.features[val.stream_rows]),
        torch.from_numpy(val.stream_inputs),
        torch.from_numpy(val.stream_targets),
        torch.from_numpy(val.stream_bars),
    )
    train_tokens = train.stream_targets[train.stream_targets != v.PAD]
    majority_token = Counter(train_tokens.tolist()).most_common(1)[0][0]
    val_tokens = val.stream_targets[val.stream_targets != v.PAD]
    results["instruments_chords"] = {
        "accuracy": stream["accuracy"],
        "majority_accuracy": float(np.mean(val_tokens == majority_token)),
        "n": stream["n"],
    }
    return results


def grid_features() -> list[EmotionFeatures]:
    names = list(GRID)
    grid = itertools.product(*GRID.values())
    return [EmotionFeatures(**dict(zip(names, values, strict=True))) for values in grid]


def controllability(planner: Planner, seed: int = 0, bars: int = 12) -> dict[str, dict]:
    """Spearman correlation of each (feature, statistic) pair over the grid."""
    features = grid_features()
    descriptions = planner.plan_many(features, bars=bars, seed=seed)
    stats = [plan_statistics(d, f.key, f.mode) for d, f in zip(descriptions, features, strict=True)]
    out: dict[str, dict] = {}
    for feature, statistic in STATISTIC_FOR_FEATURE:
        x = np.array([getattr(f, feature) for f in features], dtype=float)
        y = np.array([s[statistic] for s in stats], dtype=float)
        ok = np.isfinite(y)
        rho = spearmanr(x[ok], y[ok]).statistic if np.ptp(y[ok]) > 0 else 0.0
        low, high = x[ok] == x.min(), x[ok] == x.max()
        out[f"{feature} -> {statistic}"] = {
            "spearman": float(rho),
            "mean_at_low": float(np.mean(y[ok][low])),
            "mean_at_high": float(np.mean(y[ok][high])),
        }
    in_scale = [s["in_scale_share"] for s in stats if np.isfinite(s["in_scale_share"])]
    out["chords in the requested key's scale"] = {"share": float(np.mean(in_scale))}
    # The chords are transposed to the key exactly; the Spearman above is limited by how well a
    # 12-bar progression names its key. How often the best-fitting key is the requested one:
    match = [s["chord_key"] == f.key for s, f in zip(stats, features, strict=True)]
    out["plans whose chords fit the requested key best"] = {"share": float(np.mean(match))}
    return out


def format_report(heldout: dict, control_on: dict, control_off: dict, split: str) -> str:
    lines = [
        f"Held-out songs ({split} split), teacher-forced, accuracy of the most likely class:",
        "",
        "| model | report acc | report KL | our acc | our KL | majority acc | previous-bar acc"
        " | first-bar acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("mean_pitch", "note_density", "mean_velocity", "mean_duration", "instruments_chords"):
        r_acc, r_kl = REPORT_TABLE1[name]
        m = heldout[name]
        kl = f"{m['kl']:.2f}" if "kl" in m else "-"
        prev = f"{m['previous_bar_accuracy']:.2f}" if "previous_bar_accuracy" in m else "-"
        first = f"{m['first_bar_accuracy']:.2f}" if "first_bar_accuracy" in m else "-"
        lines.append(
            f"| {_REPORT_NAMES[name]} | {r_acc:.2f} | {'-' if r_kl is None else f'{r_kl:.2f}'} | "
            f"{m['accuracy']:.2f} | {kl} | {m['majority_accuracy']:.2f} | {prev} | {first} |"
        )
    if not control_on:
        return "\n".join(lines)
    lines += [
        "",
        "Controllability (Spearman over the grid; steered | learned models alone):",
        "",
        "| feature -> plan statistic | rho (shipped) | rho (no steering) | low -> high (shipped) |",
        "|---|---|---|---|",
    ]
    for key, value in control_on.items():
        if "spearman" not in value:
            continue
        off = control_off[key]["spearman"]
        lines.append(
            f"| {key} | {value['spearman']:+.2f} | {off:+.2f} | "
            f"{value['mean_at_low']:.2f} -> {value['mean_at_high']:.2f} |"
        )
    key = "chords in the requested key's scale"
    lines.append(
        f"\nShare of chords whose root is in the requested key's scale: "
        f"{control_on[key]['share']:.2f} (shipped), {control_off[key]['share']:.2f} (no steering)"
    )
    key = "plans whose chords fit the requested key best"
    lines.append(
        f"Share of plans whose chords fit the requested key best: "
        f"{control_on[key]['share']:.2f} (shipped), {control_off[key]['share']:.2f} (no steering)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/dataset"))
    parser.add_argument("--models", type=Path, default=None, help="planner folder (default models/planner)")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="do not write evaluation.json")
    parser.add_argument(
        "--segment-stride",
        type=int,
        default=None,
        help="only segments starting every N bars (default: the training's, from the model's config)",
    )
    parser.add_argument("--corpora", nargs="+", default=None, help="only the segments of these corpora")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here instead")
    parser.add_argument("--no-control", action="store_true", help="held-out metrics only (no grid)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from training.data.dataset import DatasetError

    try:
        planner = Planner.load(args.models)
        stride = args.segment_stride
        if stride is None:
            stride = int(planner.metadata.get("config", {}).get("segment_stride", 0))
        train_examples = load_examples(args.data, "train", stride, args.corpora)
        heldout_examples = load_examples(args.data, args.split, stride, args.corpora)
    except (PlanError, DatasetError) as error:
        print(f"evaluate_planner: {error}", file=sys.stderr)
        return 2
    sigma = float(planner.metadata.get("config", {}).get("sigma", 1.0))
    started = time.monotonic()
    train_batch, heldout_batch = batch_examples(train_examples), batch_examples(heldout_examples)
    heldout = heldout_metrics(planner, train_batch, heldout_batch, sigma)
    shipped = planner.steering
    control_on: dict = {}
    control_off: dict = {}
    if not args.no_control:
        control_on = controllability(planner, seed=args.seed)
        planner.set_steering(Steering.off())
        control_off = controllability(planner, seed=args.seed)
        planner.set_steering(shipped)
    report = format_report(heldout, control_on, control_off, args.split)
    print(report)
    result = {
        "split": args.split,
        "data": str(args.data),
        "corpora": args.corpora,
        "segment_stride": stride,
        "songs": len({e.song_id for e in heldout_examples}),
        "segments": len(heldout_examples),
        "sigma": sigma,
        "heldout": heldout,
        "controllability_shipped": control_on,
        "controllability_learned_only": control_off,
        "grid": {k: list(v) for k, v in GRID.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    elif not args.no_write:
        from e2m_live.planner.planner import DEFAULT_MODEL_DIR

        out = (args.models or DEFAULT_MODEL_DIR) / f"evaluation_{args.split}.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
