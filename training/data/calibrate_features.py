"""Calibrate the feature estimator: quantile-match raw MIDI composites onto Spotify's marginals.

    python -m training.data.calibrate_features [--datasets DIR] [--jobs 2] [--descriptors OUT.npz]
    python -m training.data.calibrate_features --refit-from data/dataset [--report refit.json]

Cuts every piece of the shared MIDI corpora into 12-bar segments (up to ``--per-piece`` of them,
evenly spaced; shorter pieces whole), measures :func:`e2m_live.analysis.describe_segment` on each,
and writes ``e2m_live/data/feature_calibration.json``: the median/IQR of each composite term and,
for each continuous feature, 101 quantiles of the raw composite beside 101 quantiles of the Spotify
feature. Every corpus gets the same total weight, so the big ones do not set the scale alone.
Spotify energy and valence come from ``lakh_msd_spotify_features.csv`` (21k Lakh/MSD songs), the
others from ``seed_matched_tracks.csv`` (the only table that has them). ``--corpus rpbot`` (and the
other ``multi`` zips) reads the pieces in place from the zips.

``--refit-from DATASET`` instead refits the valence and energy composites on the real labels stored in a
built dataset (Spotify's for the matched rpbot songs, EMOPIA's and VGMIDI's quadrants) and installs them
only where they beat the current ones on the validation songs: see :mod:`training.data.refit_estimator`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi

from e2m_live.analysis import (
    CALIBRATED_FEATURES,
    CALIBRATION_FILE,
    DESCRIPTOR_NAMES,
    Calibration,
    composite_scores,
    describe_segment,
    features_from_descriptors,
    term_statistics,
    weighted_quantiles,
)
from training.common import REPO
from training.data.corpora import CorpusError, Piece, read_pop909_downbeats, scan_corpora

DEFAULT_DATASETS = REPO.parent / "shared" / "datasets"
DEFAULT_OUT = REPO / "e2m_live" / "data" / CALIBRATION_FILE
SEGMENT_BARS = 12
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)

#: Which Spotify table gives each calibrated feature's target distribution.
SPOTIFY_SOURCES = {
    "energy": "lakh_msd_spotify_features.csv",
    "valence": "lakh_msd_spotify_features.csv",
    "loudness": "seed_matched_tracks.csv",
    "instrumentalness": "seed_matched_tracks.csv",
    "danceability": "seed_matched_tracks.csv",
    "acousticness": "seed_matched_tracks.csv",
}


@dataclass(frozen=True)
class SegmentTable:
    """Descriptors of many segments: one array per descriptor, plus corpus and song of each row."""

    descriptors: dict[str, np.ndarray]
    corpus: np.ndarray
    song: np.ndarray
    seconds_per_segment: float = float("nan")

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path, corpus=self.corpus, song=self.song, **{f"d_{k}": v for k, v in self.descriptors.items()}
        )

    @classmethod
    def load(cls, path: Path) -> SegmentTable:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                {k[2:]: data[k] for k in data.files if k.startswith("d_")}, data["corpus"], data["song"]
            )


def segment_bounds(midi: pretty_midi.PrettyMIDI, piece: Piece, per_piece: int) -> list[tuple[float, float]]:
    """Up to ``per_piece`` evenly spaced 12-bar windows (seconds); the whole piece if shorter."""
    downbeats: Sequence[float] | None = None
    if piece.beats_file is not None:
        try:
            downbeats = read_pop909_downbeats(piece.beats_file)
        except CorpusError:
            downbeats = None
    if downbeats is None:
        downbeats = midi.get_downbeats()
    grid = np.asarray(downbeats, dtype=float)
    end = midi.get_end_time()
    if len(grid) <= SEGMENT_BARS:
        return [(0.0, end)]
    starts = np.unique(np.linspace(0, len(grid) - SEGMENT_BARS - 1, per_piece).round().astype(int))
    return [(float(grid[i]), float(grid[i + SEGMENT_BARS])) for i in starts]


def _describe_piece(job: tuple[Piece, int]) -> tuple[str, str, list[list[float]], float]:
    piece, per_piece = job
    warnings.filterwarnings("ignore")
    rows: list[list[float]] = []
    seconds = 0.0
    try:
        if piece.member is not None:  # a multi corpus: read in place from its zip
            from e2m_live.description.extract import load_midi
            from training.data.corpora import read_piece_bytes

            midi = load_midi(read_piece_bytes(piece))
            if not midi.time_signature_changes:  # 4/4 by the MIDI standard, as the build assumes
                midi.time_signature_changes = [pretty_midi.TimeSignature(4, 4, 0.0)]
        else:
            midi = pretty_midi.PrettyMIDI(str(piece.path))
        for start, end in segment_bounds(midi, piece, per_piece):
            began = time.perf_counter()
            try:
                descriptors = describe_segment(midi, start=start, end=end)
            except ValueError:  # empty segment
                continue
            seconds += time.perf_counter() - began
            rows.append([descriptors[name] for name in DESCRIPTOR_NAMES])
    except Exception as error:  # corrupt files in the corpora: skip and count
        print(f"skip {piece.path.name}: {type(error).__name__}: {error}", file=sys.stderr)
    return piece.corpus, piece.song_id, rows, seconds


def describe_corpora(
    datasets: Path, *, per_piece: int = 3, jobs: int = 2, corpora: Iterable[str] | None = None
) -> SegmentTable:
    """Descriptors of segments of every shared MIDI corpus (the folders; the ``multi`` zips when named)."""
    from training.data.multi_corpora import MULTI_CORPORA

    names = list(corpora) if corpora else None
    folders = [n for n in names if n not in MULTI_CORPORA] if names else None
    groups = scan_corpora(datasets, folders).values() if folders is None or folders else []
    pieces = [p for group in groups for p in group]
    for name in [n for n in names or () if n in MULTI_CORPORA]:
        pieces += MULTI_CORPORA[name].scan(datasets / MULTI_CORPORA[name].folder)
    rows: list[list[float]] = []
    corpus_of: list[str] = []
    song_of: list[str] = []
    seconds = 0.0
    jobs_list = [(piece, per_piece) for piece in pieces]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for corpus, song, piece_rows, piece_seconds in pool.map(_describe_piece, jobs_list, chunksize=16):
            rows.extend(piece_rows)
            corpus_of.extend([corpus] * len(piece_rows))
            song_of.extend([song] * len(piece_rows))
            seconds += piece_seconds
    matrix = np.asarray(rows, dtype=np.float64).reshape(-1, len(DESCRIPTOR_NAMES))
    return SegmentTable(
        {name: matrix[:, i] for i, name in enumerate(DESCRIPTOR_NAMES)},
        np.asarray(corpus_of),
        np.asarray(song_of),
        seconds / max(len(rows), 1),
    )


def corpus_weights(corpus: np.ndarray) -> np.ndarray:
    """Weights giving each corpus the same total (1 / number of its segments)."""
    names, inverse, counts = np.unique(corpus, return_inverse=True, return_counts=True)
    del names
    return 1.0 / counts[inverse]


def read_spotify_column(path: Path, column: str) -> np.ndarray:
    """Finite values of one column of a Spotify table."""
    values = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                value = float(row[column])
            except (KeyError, TypeError, ValueError):
                continue
            if np.isfinite(value):
                values.append(value)
    if not values:
        raise ValueError(f"{path}: no values in column {column!r}")
    return np.asarray(values)


def spotify_quantiles(spotify_dir: Path) -> dict[str, np.ndarray]:
    return {
        feature: np.quantile(read_spotify_column(spotify_dir / table, feature), QUANTILE_LEVELS)
        for feature, table in SPOTIFY_SOURCES.items()
    }


def calibrate(table: SegmentTable, spotify_dir: Path) -> Calibration:
    """Term statistics and quantile tables from a segment table and the Spotify tables."""
    weights = corpus_weights(table.corpus)
    stats = term_statistics(table.descriptors, weights=weights)
    raw = composite_scores(table.descriptors, stats)
    corpora, counts = np.unique(table.corpus, return_counts=True)
    info = {
        "made_by": "python -m training.data.calibrate_features",
        "segment_bars": SEGMENT_BARS,
        "segments": {str(c): int(n) for c, n in zip(corpora, counts, strict=True)},
        "corpus_weighting": "equal total weight per corpus",
        "spotify_sources": SPOTIFY_SOURCES,
    }
    return Calibration(
        stats=stats,
        raw_quantiles={
            name: weighted_quantiles(raw[name], weights, QUANTILE_LEVELS) for name in CALIBRATED_FEATURES
        },
        spotify_quantiles=spotify_quantiles(spotify_dir),
        info=info,
    )


def estimated_features(table: SegmentTable, calibration: Calibration) -> list[dict[str, float]]:
    """The estimated features of every segment of a table, as dicts."""
    rows = []
    for i in range(len(table.corpus)):
        descriptors = {name: float(values[i]) for name, values in table.descriptors.items()}
        rows.append(features_from_descriptors(descriptors, calibration).to_dict())
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.data.calibrate_features", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS, help="shared datasets folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="calibration JSON to write")
    parser.add_argument("--per-piece", type=int, default=3, help="12-bar segments per piece (default 3)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--descriptors", type=Path, help="also save the segment descriptors (.npz)")
    parser.add_argument("--corpus", action="append", help="only this corpus (repeatable)")
    parser.add_argument(
        "--from-descriptors", type=Path, help="reuse descriptors saved by --descriptors instead of the MIDI"
    )
    parser.add_argument(
        "--refit-from",
        type=Path,
        help="refit valence and energy on the real labels of this built dataset"
        " (training.data.refit_estimator)",
    )
    parser.add_argument("--report", type=Path, help="with --refit-from: write the before/after report (JSON)")
    args = parser.parse_args(argv)
    if args.refit_from:
        return _refit(args.refit_from, args.out, args.report)
    if not args.datasets.is_dir():
        print(f"error: datasets folder not found: {args.datasets}", file=sys.stderr)
        return 2
    if args.per_piece < 1 or args.jobs < 1:
        print("error: --per-piece and --jobs must be at least 1", file=sys.stderr)
        return 2
    began = time.perf_counter()
    if args.from_descriptors:
        table = SegmentTable.load(args.from_descriptors)
    else:
        table = describe_corpora(args.datasets, per_piece=args.per_piece, jobs=args.jobs, corpora=args.corpus)
    if len(table.corpus) == 0:
        print("error: no segment could be described", file=sys.stderr)
        return 1
    calibration = calibrate(table, args.datasets / "spotify")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(calibration.to_dict(), indent=1) + "\n", encoding="utf-8")
    if args.descriptors and not args.from_descriptors:
        table.save(args.descriptors)
    print(f"{len(table.corpus)} segments from {dict(calibration.info['segments'])}")
    if np.isfinite(table.seconds_per_segment):
        print(f"describe_segment: {1000 * table.seconds_per_segment:.2f} ms per segment (mean)")
    print(f"wrote {args.out} in {time.perf_counter() - began:.0f} s")
    return 0


def _refit(dataset: Path, out: Path, report_path: Path | None) -> int:
    from e2m_live.analysis import load_calibration
    from training.data.dataset import DatasetError
    from training.data.refit_estimator import format_report, load_labelled, refit

    began = time.perf_counter()
    try:
        splits = {split: load_labelled(dataset, split) for split in ("train", "val", "test")}
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    current = load_calibration(str(out)) if out.is_file() else load_calibration()
    calibration, report = refit(current, splits["train"], splits["val"], splits["test"])
    report["dataset"] = str(dataset)
    report["seconds"] = round(time.perf_counter() - began, 1)
    print(format_report(report))
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if calibration is current:
        print(f"no refit beat the current composites on the validation songs: {out} unchanged")
        return 0
    manifest = json.loads((dataset / "manifest.json").read_text())
    used = sum(s.get("files_used", 0) for c in manifest["corpora"].values() for s in c["splits"].values())
    calibration.info["refit"]["dataset"] = {"path": str(dataset), "files_used": used}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(calibration.to_dict(), indent=1) + "\n", encoding="utf-8")
    print(
        f"wrote {out} in {report['seconds']:.0f} s; "
        "relabel the dataset: python -m training.data.build --relabel"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
