"""Refit the valence and energy composites of ``e2m_live.analysis`` on the real labels of the dataset.

    python -m training.data.calibrate_features --refit-from data/dataset [--report refit.json]

The a-priori composites (``analysis.COMPOSITES``) agree badly with Spotify on band music (valence
rho -0.06 on 299 matched rpbot songs). Three kinds of real labels are in the built dataset: Spotify's
valence and energy of the rpbot songs matched by ``training.data.label_rpbot``, and the valence / arousal
quadrant labels of EMOPIA (piano) and VGMIDI (game music). For each feature this fits the weights of
all standardised terms (``analysis._terms``) by ridge regression on the TRAIN songs of the three
sources at once (each source centred on its own, Spotify half the weight, EMOPIA and VGMIDI a quarter
each; every song weighs the same), shrunk toward the a-priori weights rather than toward zero, so
what the data do not contradict (major mode sounds happier) stays. The shrinkage is chosen on the VAL
songs by the mean held-out rank agreement of the three sources (Spearman rho for Spotify, 2 AUC - 1
for the quadrant labels); the refit replaces the a-priori weights only if it beats them there. TEST
songs are only reported. The raw composite is then quantile-matched to Spotify's marginal as before,
on every corpus's train segments (each corpus the same weight).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from e2m_live.analysis import (
    COMPOSITES,
    DESCRIPTOR_NAMES,
    Calibration,
    _terms,
    composite_scores,
    feature_matrix,
    term_statistics,
    weighted_quantiles,
)
from e2m_live.features import FEATURE_ORDER

REFIT_FEATURES = ("valence", "energy")
#: Terms a refit may not use: raw velocity level. A file with one velocity everywhere carries no
#: performance dynamics (``expressive_velocity`` is NaN there), so its energy and valence must not
#: depend on that velocity; loudness is the feature that does.
EXCLUDED_TERMS = ("level_db",)
#: Corpus label column of each feature: EMOPIA / VGMIDI give (valence, arousal).
EMOTION_COLUMN = {"valence": 0, "energy": 1}
SOURCE_WEIGHTS = {"spotify": 0.5, "emopia": 0.25, "vgmidi": 0.25}
LAMBDAS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)


@dataclass
class Labelled:
    """Descriptor rows of one split with what the refit needs about each segment."""

    descriptors: np.ndarray  # [n, len(DESCRIPTOR_NAMES)]
    corpus: np.ndarray
    song: np.ndarray
    file: np.ndarray
    spotify: np.ndarray  # [n, 10] Spotify's values where the song was matched, NaN elsewhere
    emotion: np.ndarray  # [n, 2] corpus labels, NaN where none

    @classmethod
    def from_split(cls, segments: object) -> Labelled:
        """From a ``training.data.dataset.SegmentList``."""
        source = np.asarray(segments.features_source)  # type: ignore[attr-defined]
        spotify = np.where((source != "estimated")[:, None], segments.features, np.nan)  # type: ignore[attr-defined]
        return cls(
            descriptors=np.asarray(segments.descriptors, np.float64),  # type: ignore[attr-defined]
            corpus=np.asarray(segments.corpora),  # type: ignore[attr-defined]
            song=np.asarray(segments.song_ids),  # type: ignore[attr-defined]
            file=np.asarray(segments.files),  # type: ignore[attr-defined]
            spotify=np.asarray(spotify, np.float64),
            emotion=np.asarray(segments.emotions, np.float64),  # type: ignore[attr-defined]
        )

    def columns(self) -> dict[str, np.ndarray]:
        return {name: self.descriptors[:, i] for i, name in enumerate(DESCRIPTOR_NAMES)}

    def source_rows(self, feature: str) -> dict[str, np.ndarray]:
        """Row indices of each label source that has a finite label for ``feature``."""
        value = self.spotify[:, FEATURE_ORDER.index(feature)]
        emotion = self.emotion[:, EMOTION_COLUMN[feature]]
        return {
            "spotify": np.flatnonzero(np.isfinite(value)),
            "emopia": np.flatnonzero((self.corpus == "emopia") & np.isfinite(emotion)),
            "vgmidi": np.flatnonzero((self.corpus == "vgmidi") & np.isfinite(emotion)),
        }

    def label(self, feature: str, source: str, rows: np.ndarray) -> np.ndarray:
        if source == "spotify":
            return self.spotify[rows, FEATURE_ORDER.index(feature)]
        return self.emotion[rows, EMOTION_COLUMN[feature]]


# --- agreement measures -------------------------------------------------------------------------


def _ranks(values: np.ndarray) -> np.ndarray:
    from training.data.spotify_agreement import rankdata

    return rankdata(values)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 4:
        return math.nan
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive outranks a negative (ties half)."""
    ranks = _ranks(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _group_means(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    return keys, sums / np.bincount(inverse)


def agreement(data: Labelled, feature: str, estimate: np.ndarray) -> dict[str, dict[str, float]]:
    """Held-out agreement of a per-segment ``estimate`` with each label source: Spotify at the song level
    (mean of the song's segments; also per segment and on each song's first segment), EMOPIA / VGMIDI
    per file (AUC of the positive vs the negative label)."""
    out: dict[str, dict[str, float]] = {}
    for source, rows in data.source_rows(feature).items():
        if len(rows) == 0:
            continue
        label = data.label(feature, source, rows)
        if source == "spotify":
            songs, mean = _group_means(estimate[rows], data.song[rows])
            _, truth = _group_means(label, data.song[rows])
            _, first = np.unique(data.song[rows], return_index=True)
            out[source] = {
                "songs": len(songs),
                "rho_song": spearman(mean, truth),
                "rho_segment": spearman(estimate[rows], label),
                "rho_first_segment": spearman(estimate[rows][first], label[first]),
            }
        else:
            files, mean = _group_means(estimate[rows], data.file[rows])
            _, truth = _group_means(label, data.file[rows])
            value = auc(mean, truth > 0)
            out[source] = {"files": len(files), "auc": value, "somers_d": 2 * value - 1}
    return out


def score(result: Mapping[str, Mapping[str, float]]) -> float:
    """Mean rank agreement over the sources: Spotify's song-level rho, the corpora's 2 AUC - 1."""
    values = [r["rho_song"] if "rho_song" in r else r["somers_d"] for r in result.values()]
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


# --- the fit ------------------------------------------------------------------------------------


def standardised_terms(descriptors: Mapping[str, np.ndarray], stats: Mapping) -> tuple[list[str], np.ndarray]:
    """Every term of ``analysis._terms`` standardised with ``stats`` (missing -> 0, the median)."""
    terms = _terms(descriptors)
    names = sorted(name for name in terms if name in stats and name not in EXCLUDED_TERMS)
    columns = []
    for name in names:
        z = (terms[name] - stats[name]["median"]) / stats[name]["scale"]
        columns.append(np.where(np.isfinite(z), z, 0.0))
    return names, np.column_stack(columns)


def _song_weights(groups: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return weights / weights.sum()


def design(data: Labelled, feature: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacked (X, y, w) of the three sources, each centred on its own and its label scaled to unit
    variance, weighted ``SOURCE_WEIGHTS`` (every song the same within a source)."""
    xs, ys, ws = [], [], []
    for source, rows in data.source_rows(feature).items():
        if len(rows) < 10:
            continue
        x, y = z[rows], data.label(feature, source, rows)
        groups = data.song[rows] if source == "spotify" else data.file[rows]
        w = _song_weights(groups)
        x = x - w @ x
        y = y - w @ y
        y = y / max(math.sqrt(float(w @ y**2)), 1e-9)
        xs.append(x)
        ys.append(y)
        ws.append(SOURCE_WEIGHTS[source] * w)
    if not xs:
        raise ValueError(f"no labelled segments for {feature}")
    w = np.concatenate(ws)
    return np.vstack(xs), np.concatenate(ys), w / w.sum()


def ridge_toward(x: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float, prior: np.ndarray) -> np.ndarray:
    """argmin_c sum w (y - x c)^2 + lam / k * |c - prior|^2 (k terms)."""
    k = x.shape[1]
    a = x.T @ (w[:, None] * x) + (lam / k) * np.eye(k)
    return np.linalg.solve(a, x.T @ (w * y) + (lam / k) * prior)


def prior_weights(
    feature: str, names: Sequence[str], x: np.ndarray, y: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """The a-priori weights of ``feature`` in the fit's units (scaled by least squares to the labels)."""
    prior = np.array([COMPOSITES[feature].get(name, 0.0) for name in names])
    fitted = x @ prior
    scale = float((w * fitted) @ y / max((w * fitted) @ fitted, 1e-12))
    return prior * max(scale, 1e-3)


def with_composites(
    calibration: Calibration, composites: Mapping[str, Mapping[str, float]], train: Labelled
) -> Calibration:
    """``calibration`` with the given composites and their raw quantiles re-matched on ``train`` (all
    corpora, each the same weight)."""
    merged = {**(calibration.composites or {}), **composites}
    probe = Calibration(
        calibration.stats, calibration.raw_quantiles, calibration.spotify_quantiles, {}, merged
    )
    raw = composite_scores(train.columns(), probe.stats, merged)
    _, inverse, counts = np.unique(train.corpus, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    quantiles = dict(calibration.raw_quantiles)
    for feature in composites:
        quantiles[feature] = weighted_quantiles(raw[feature], weights, QUANTILE_LEVELS)
    return Calibration(
        calibration.stats, quantiles, calibration.spotify_quantiles, dict(calibration.info), merged
    )


def extend_stats(calibration: Calibration, train: Labelled) -> Calibration:
    """Term statistics for the terms the calibration lacks (each corpus the same weight); the existing
    ones are kept, so the other features' estimates do not move."""
    _, inverse, counts = np.unique(train.corpus, return_inverse=True, return_counts=True)
    fresh = term_statistics(train.columns(), weights=1.0 / counts[inverse])
    stats = {**fresh, **calibration.stats}
    return Calibration(
        stats,
        calibration.raw_quantiles,
        calibration.spotify_quantiles,
        dict(calibration.info),
        calibration.composites,
    )


def refit(
    calibration: Calibration, train: Labelled, val: Labelled, test: Labelled | None = None
) -> tuple[Calibration, dict]:
    """The refitted calibration (a-priori weights kept for a feature whose refit does not beat them on
    ``val``) and a report: chosen shrinkage, weights, before/after agreement on val and test."""
    base = extend_stats(calibration, train)
    names, z_train = standardised_terms(train.columns(), base.stats)
    before = {"val": feature_matrix(val.descriptors, calibration)}
    if test is not None:
        before["test"] = feature_matrix(test.descriptors, calibration)
    report: dict = {"sources": dict(SOURCE_WEIGHTS), "lambdas": list(LAMBDAS), "features": {}}
    chosen: dict[str, dict[str, float]] = {}
    for feature in REFIT_FEATURES:
        column = FEATURE_ORDER.index(feature)
        x, y, w = design(train, feature, z_train)
        prior = prior_weights(feature, names, x, y, w)
        val_before = agreement(val, feature, before["val"][:, column])
        trials = []
        for lam in LAMBDAS:
            weights = ridge_toward(x, y, w, lam, prior)
            composite = {n: round(float(c), 6) for n, c in zip(names, weights, strict=True) if abs(c) > 1e-6}
            candidate = with_composites(base, {feature: composite}, train)
            result = agreement(val, feature, feature_matrix(val.descriptors, candidate)[:, column])
            trials.append((score(result), lam, composite, result))
        best = max(trials, key=lambda t: t[0] if math.isfinite(t[0]) else -math.inf)
        accepted = math.isfinite(best[0]) and best[0] > score(val_before)
        entry = {
            "train_labels": {s: len(r) for s, r in train.source_rows(feature).items()},
            "val_before": val_before,
            "val_score_before": score(val_before),
            "val_score_by_lambda": {str(t[1]): t[0] for t in trials},
            "lambda": best[1],
            "val_after": best[3],
            "val_score_after": best[0],
            "accepted": accepted,
            "weights": best[2],
        }
        if accepted:
            chosen[feature] = best[2]
        report["features"][feature] = entry
    refitted = with_composites(base, chosen, train) if chosen else calibration
    if chosen:
        refitted.info["refit"] = {
            "made_by": "python -m training.data.calibrate_features --refit-from DATASET",
            "features": sorted(chosen),
            "lambda": {f: report["features"][f]["lambda"] for f in chosen},
            "source_weights": dict(SOURCE_WEIGHTS),
            "train_labels": {f: report["features"][f]["train_labels"] for f in chosen},
            "quantiles": "matched on every corpus's train segments, each corpus the same weight",
        }
    if test is not None:
        after = feature_matrix(test.descriptors, refitted)
        for feature in REFIT_FEATURES:
            column = FEATURE_ORDER.index(feature)
            entry = report["features"][feature]
            entry["test_before"] = agreement(test, feature, before["test"][:, column])
            entry["test_after"] = agreement(test, feature, after[:, column])
    return refitted, report


def load_labelled(root: object, split: str) -> Labelled:
    from training.data.dataset import load_split

    return Labelled.from_split(load_split(root, split))  # type: ignore[arg-type]


def format_report(report: Mapping) -> str:
    """A plain before/after table."""
    lines = []
    for feature, entry in report["features"].items():
        lines.append(
            f"{feature}: lambda {entry['lambda']}, {'installed' if entry['accepted'] else 'NOT installed'}; "
            f"val score {entry['val_score_before']:+.3f} -> {entry['val_score_after']:+.3f}"
        )
        for split in ("val", "test"):
            if f"{split}_before" not in entry:
                continue
            b, a = entry[f"{split}_before"], entry[f"{split}_after"]
            for source in b:
                if source == "spotify":
                    rhos = ", ".join(
                        f"{kind} {b[source][f'rho_{kind}']:+.3f} -> {a[source][f'rho_{kind}']:+.3f}"
                        for kind in ("song", "segment", "first_segment")
                    )
                    lines.append(f"  {split:4s} spotify ({b[source]['songs']} songs): rho {rhos}")
                else:
                    lines.append(
                        f"  {split:4s} {source} ({b[source]['files']} files): AUC {b[source]['auc']:.3f}"
                        f" -> {a[source]['auc']:.3f}"
                    )
        top = sorted(entry["weights"].items(), key=lambda kv: -abs(kv[1]))[:8]
        lines.append("  weights: " + ", ".join(f"{k} {v:+.3f}" for k, v in top))
    return "\n".join(lines)
