"""Plots of the training labels beside Spotify's, and validation of the estimator on human labels.

    python -m training.data.report [--descriptors SEGMENTS.npz | --labels LABELS.{npy,json}] [--validate]

Writes to ``training/reports/``:

* ``feature_distributions.png``: histogram of each of the ten features, labels vs Spotify tables;
* ``feature_correlations.png``: Pearson correlation heatmaps, labels beside Spotify;
* with ``--validate``: ``validation.json`` and ``emopia_quadrants.png`` (EMOPIA and VGMIDI AUCs
  of estimated energy/valence against human arousal/valence, POP909 key accuracy).

Labels default to the features estimated on the shared MIDI corpora (12-bar segments, as in
``training.data.calibrate_features``; ``--descriptors`` reuses the ones it saved). The dataset builder can
pass its own labels: an ``(N, 10)`` array in ``FEATURE_ORDER`` (``.npy``) or a JSON list of feature
dicts; from Python, call :func:`write_feature_plots` with a list of dicts, ``EmotionFeatures`` or an
array.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import warnings
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from e2m_live.analysis import describe_segment, estimate_features, load_calibration
from e2m_live.features import FEATURE_ORDER, RANGES, EmotionFeatures, parse_key
from training.common import REPO

DEFAULT_DATASETS = REPO.parent / "shared" / "datasets"
DEFAULT_OUT = REPO / "training" / "reports"

Labels = np.ndarray | Sequence[Any]


# --------------------------------------------------------------------------------------------
# Feature tables
# --------------------------------------------------------------------------------------------
def as_feature_array(labels: Labels) -> np.ndarray:
    """``(N, 10)`` float array in :data:`FEATURE_ORDER` from an array, dicts or ``EmotionFeatures``."""
    if isinstance(labels, np.ndarray):
        array = np.asarray(labels, dtype=np.float64)
    else:
        rows = []
        for item in labels:
            if isinstance(item, EmotionFeatures):
                item = item.to_dict()
            if isinstance(item, dict):
                missing = [name for name in FEATURE_ORDER if name not in item]
                if missing:
                    raise ValueError(f"label dict lacks {', '.join(missing)}")
                rows.append([float(item[name]) for name in FEATURE_ORDER])
            else:
                rows.append([float(value) for value in item])
        array = np.asarray(rows, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(FEATURE_ORDER) or len(array) == 0:
        raise ValueError(f"labels must be N x {len(FEATURE_ORDER)} in FEATURE_ORDER, got shape {array.shape}")
    return array


def read_spotify_features(spotify_dir: Path) -> np.ndarray:
    """The seed table's ten features, ``(N, 10)`` in :data:`FEATURE_ORDER` (rows with gaps dropped)."""
    rows = []
    with (spotify_dir / "seed_matched_tracks.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                rows.append([float(row[name]) for name in FEATURE_ORDER])
            except (KeyError, TypeError, ValueError):
                continue
    return np.asarray(rows, dtype=np.float64)


def corpus_labels(
    datasets: Path, descriptors: Path | None = None, jobs: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Estimated features of the shared corpora's 12-bar segments, and each row's corpus."""
    from training.data.calibrate_features import SegmentTable, describe_corpora, estimated_features

    if descriptors is not None:
        table = SegmentTable.load(descriptors)
    else:
        table = describe_corpora(datasets, jobs=jobs)
    return as_feature_array(estimated_features(table, load_calibration())), table.corpus


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------
def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bins(name: str) -> np.ndarray:
    low, high = RANGES[name]
    if name == "key":
        return np.arange(-0.5, 12.5)
    if name in ("mode", "time_signature"):
        return np.arange(low - 0.5, high + 1.5) if name == "mode" else np.arange(0.5, 8.5)
    if name == "loudness":
        return np.linspace(-35.0, 0.0, 36)
    return np.linspace(low, high, 41)


def write_feature_plots(
    labels: Labels, spotify: np.ndarray, out_dir: Path, *, label_name: str = "estimated (MIDI corpora)"
) -> list[Path]:
    """Distribution grid and correlation heatmaps of ``labels`` beside the Spotify seed table."""
    plt = _pyplot()
    estimated = as_feature_array(labels)
    out_dir.mkdir(parents=True, exist_ok=True)

    figure, axes = plt.subplots(2, 5, figsize=(20, 7.5))
    for axis, (index, name) in zip(axes.flat, enumerate(FEATURE_ORDER), strict=True):
        bins = _bins(name)
        axis.hist(
            np.clip(estimated[:, index], bins[0], bins[-1]),
            bins=bins,
            density=True,
            alpha=0.55,
            color="tab:blue",
            label=f"{label_name} (n={len(estimated)})",
        )
        axis.hist(
            np.clip(spotify[:, index], bins[0], bins[-1]),
            bins=bins,
            density=True,
            alpha=0.55,
            color="tab:orange",
            label=f"Spotify seed tracks (n={len(spotify)})",
        )
        axis.set_title(name)
    axes.flat[0].legend(loc="upper left", fontsize=8)
    figure.suptitle("Feature distributions: training labels vs Spotify")
    figure.tight_layout()
    distributions = out_dir / "feature_distributions.png"
    figure.savefig(distributions, dpi=90)
    plt.close(figure)

    figure, axes = plt.subplots(1, 2, figsize=(19, 8))
    figure.subplots_adjust(left=0.09, right=0.9, bottom=0.2, wspace=0.42)
    for axis, (title, data) in zip(
        axes, ((label_name, estimated), ("Spotify seed tracks", spotify)), strict=True
    ):
        with np.errstate(invalid="ignore", divide="ignore"):
            matrix = np.corrcoef(data.T)
        image = axis.imshow(matrix, vmin=-1, vmax=1, cmap="coolwarm")
        axis.set_xticks(range(len(FEATURE_ORDER)), FEATURE_ORDER, rotation=60, ha="right")
        axis.set_yticks(range(len(FEATURE_ORDER)), FEATURE_ORDER)
        for i in range(len(FEATURE_ORDER)):
            for j in range(len(FEATURE_ORDER)):
                if np.isfinite(matrix[i, j]):
                    axis.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7)
        axis.set_title(f"{title} (n={len(data)})")
    figure.colorbar(image, ax=axes, shrink=0.8, label="Pearson r")
    correlations = out_dir / "feature_correlations.png"
    figure.savefig(correlations, dpi=90)
    plt.close(figure)
    return [distributions, correlations]


# --------------------------------------------------------------------------------------------
# Validation against human labels
# --------------------------------------------------------------------------------------------
def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: chance that a positive scores above a negative (ties count half)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative examples")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def key_score(truth: tuple[int, int], estimate: tuple[int, int], *, mirex: bool = False) -> float:
    """1 for the right key and mode; partial credit for near misses.

    Default (as the project's issue asks): fifth errors (same mode, tonic a fifth up or down),
    relative and parallel errors score 0.5. ``mirex=True``: MIREX weights (fifth 0.5,
    relative 0.3, parallel 0.2).
    """
    (true_key, true_mode), (key, mode) = truth, estimate
    if (true_key, true_mode) == (key, mode):
        return 1.0
    if mode == true_mode and (key - true_key) % 12 in (5, 7):
        return 0.5
    relative = (key - true_key) % 12 == (9 if true_mode == 1 else 3)
    if mode != true_mode and relative:
        return 0.3 if mirex else 0.5
    if mode != true_mode and key == true_key:
        return 0.2 if mirex else 0.5
    return 0.0


def emopia_files(datasets: Path, *, every: int = 1) -> list[Path]:
    """EMOPIA clips, sorted; ``every=2`` keeps every second one (a deterministic subset)."""
    return sorted((datasets / "emopia").glob("Q[1-4]_*.mid"))[::every]


def emopia_half(path: Path) -> str:
    """'A' (the half used to choose the composite weights) or 'B', by a hash of the song id."""
    song = path.stem.split("_", 1)[1].rsplit("_", 1)[0]
    return "A" if zlib.crc32(song.encode()) % 2 == 0 else "B"


def _energy_valence(path: str) -> tuple[float, float]:
    warnings.filterwarnings("ignore")
    features = estimate_features(path)
    return features.energy, features.valence


def _map(function: Any, items: Sequence[Any], jobs: int) -> list[Any]:
    if jobs <= 1:
        return [function(item) for item in items]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(function, items, chunksize=8))


def validate_emopia(datasets: Path, *, every: int = 1, jobs: int = 1) -> dict[str, Any]:
    """AUC of estimated energy (arousal: Q1, Q2 high) and valence (Q1, Q4 positive), per half."""
    files = emopia_files(datasets, every=every)
    estimates = np.array(_map(_energy_valence, [str(f) for f in files], jobs))
    quadrant = np.array([int(f.name[1]) for f in files])
    half = np.array([emopia_half(f) for f in files])
    result: dict[str, Any] = {"clips": len(files), "every": every}
    for name, members in (
        ("all", half != ""),
        ("half_A_tuning", half == "A"),
        ("half_B_held_out", half == "B"),
    ):
        result[name] = {
            "clips": int(members.sum()),
            "energy_auc_arousal": auc(estimates[members, 0], np.isin(quadrant[members], (1, 2))),
            "valence_auc_valence": auc(estimates[members, 1], np.isin(quadrant[members], (1, 4))),
        }
    result["_estimates"] = estimates
    result["_quadrant"] = quadrant
    return result


def validate_vgmidi(datasets: Path, *, jobs: int = 1) -> dict[str, Any]:
    """AUC of estimated energy/valence against VGMIDI's labelled phrases (label +1 vs -1)."""
    rows = list(csv.DictReader((datasets / "vgmidi" / "vgmidi_labelled.csv").open(encoding="utf-8")))
    paths = [str(datasets / "vgmidi" / row["midi"]) for row in rows]
    estimates = np.array(_map(_energy_valence, paths, jobs))
    arousal = np.array([float(row["arousal"]) > 0 for row in rows])
    valence = np.array([float(row["valence"]) > 0 for row in rows])
    return {
        "phrases": len(rows),
        "energy_auc_arousal": auc(estimates[:, 0], arousal),
        "valence_auc_valence": auc(estimates[:, 1], valence),
    }


def pop909_truth(song_dir: Path) -> tuple[tuple[int, int], int]:
    """The longest annotated key of a POP909 song as (pitch class, mode), and how many keys it has."""
    regions = []
    for line in (song_dir / "key_audio.txt").read_text().splitlines():
        fields = line.split()
        if len(fields) == 3:
            tonic, _, quality = fields[2].partition(":")
            regions.append(
                (float(fields[1]) - float(fields[0]), parse_key(tonic), 1 if quality == "maj" else 0)
            )
    if not regions:
        raise ValueError(f"{song_dir}: no key annotation")
    _, key, mode = max(regions)
    return (key, mode), len(regions)


def _pop909_estimate(song_dir: str) -> tuple[int, int]:
    warnings.filterwarnings("ignore")
    path = Path(song_dir) / f"{Path(song_dir).name}.mid"
    descriptors = describe_segment(path)
    return int(descriptors["key"]), int(descriptors["mode"])


def pop909_dirs(datasets: Path, *, limit: int | None = None) -> list[Path]:
    dirs = sorted(d for d in (datasets / "pop909").iterdir() if (d / "key_audio.txt").is_file())
    return dirs[:limit] if limit else dirs


def validate_pop909(datasets: Path, *, limit: int | None = None, jobs: int = 1) -> dict[str, Any]:
    """Key + mode accuracy of whole-song key finding against the longest annotated key."""
    dirs = pop909_dirs(datasets, limit=limit)
    truths = [pop909_truth(d) for d in dirs]
    estimates = _map(_pop909_estimate, [str(d) for d in dirs], jobs)
    exact = np.array([truth == est for (truth, _), est in zip(truths, estimates, strict=True)])
    single = np.array([count == 1 for _, count in truths])
    return {
        "songs": len(dirs),
        "key_mode_accuracy": float(exact.mean()),
        "weighted_half_credit": float(
            np.mean([key_score(t, e) for (t, _), e in zip(truths, estimates, strict=True)])
        ),
        "weighted_mirex": float(
            np.mean([key_score(t, e, mirex=True) for (t, _), e in zip(truths, estimates, strict=True)])
        ),
        "single_key_songs": int(single.sum()),
        "single_key_accuracy": float(exact[single].mean()) if single.any() else float("nan"),
    }


def plot_emopia(result: dict[str, Any], out_dir: Path) -> Path:
    """Estimated valence vs energy of the EMOPIA clips, coloured by annotated quadrant."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 6.5))
    estimates, quadrant = result["_estimates"], result["_quadrant"]
    names = {1: "Q1 +V +A", 2: "Q2 -V +A", 3: "Q3 -V -A", 4: "Q4 +V -A"}
    for q, colour in zip((1, 2, 3, 4), ("tab:orange", "tab:red", "tab:blue", "tab:green"), strict=True):
        chosen = quadrant == q
        axis.scatter(estimates[chosen, 1], estimates[chosen, 0], s=8, alpha=0.6, color=colour, label=names[q])
    axis.set_xlabel("estimated valence")
    axis.set_ylabel("estimated energy")
    everything = result["all"]
    axis.set_title(
        f"EMOPIA (n={result['clips']}): AUC energy {everything['energy_auc_arousal']:.3f}, "
        f"valence {everything['valence_auc_valence']:.3f}"
    )
    axis.legend()
    path = out_dir / "emopia_quadrants.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def validate(datasets: Path, out_dir: Path, *, jobs: int = 2) -> dict[str, Any]:
    """Run every validation, write ``validation.json`` and the EMOPIA plot, return the numbers."""
    emopia = validate_emopia(datasets, jobs=jobs)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_emopia(emopia, out_dir)
    results = {
        "command": "python -m training.data.report --validate",
        "emopia": {k: v for k, v in emopia.items() if not k.startswith("_")},
        "vgmidi": validate_vgmidi(datasets, jobs=jobs),
        "pop909": validate_pop909(datasets, jobs=jobs),
    }
    (out_dir / "validation.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def load_labels(path: Path) -> np.ndarray:
    """Labels from ``.npy`` (N x 10) or ``.json`` (list of feature dicts or of 10-value lists)."""
    if path.suffix == ".npy":
        return as_feature_array(np.load(path, allow_pickle=False))
    if path.suffix == ".json":
        return as_feature_array(json.loads(path.read_text(encoding="utf-8")))
    raise ValueError(f"labels must be .npy or .json, got {path.name}")


def _describe_labels(labels: np.ndarray) -> str:
    lines = [
        f"{'feature':18s} {'min':>8s} {'p5':>8s} {'median':>8s} {'p95':>8s} {'max':>8s} {'distinct':>8s}"
    ]
    for index, name in enumerate(FEATURE_ORDER):
        column = labels[:, index]
        p = np.percentile(column, [0, 5, 50, 95, 100])
        lines.append(f"{name:18s} " + " ".join(f"{v:8.3f}" for v in p) + f" {len(np.unique(column)):8d}")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.data.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS, help="shared datasets folder")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for the PNGs (training/reports)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--descriptors", type=Path, help="segment descriptors saved by training.data.calibrate_features"
    )
    source.add_argument("--labels", type=Path, help="labels to plot: .npy (N x 10) or .json list of dicts")
    parser.add_argument("--label-name", default=None, help="legend name of the labels")
    parser.add_argument("--validate", action="store_true", help="also validate on EMOPIA, VGMIDI and POP909")
    parser.add_argument(
        "--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)), help="worker processes"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not (args.datasets / "spotify").is_dir():
        print(f"error: Spotify tables not found under {args.datasets}", file=sys.stderr)
        return 2
    try:
        if args.labels:
            labels = load_labels(args.labels)
            name = args.label_name or args.labels.name
        else:
            labels, _ = corpus_labels(args.datasets, args.descriptors, args.jobs)
            name = args.label_name or "estimated (MIDI corpora)"
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in write_feature_plots(
        labels, read_spotify_features(args.datasets / "spotify"), args.out, label_name=name
    ):
        print(f"wrote {path}")
    print(_describe_labels(labels))
    if args.validate:
        results = validate(args.datasets, args.out, jobs=args.jobs)
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
