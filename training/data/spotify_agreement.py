"""How well the MIDI feature estimate (``e2m_live.analysis``) agrees with Spotify on real songs.

The rpbot files matched to the Lakh/MSD Spotify table (:mod:`training.data.label_rpbot`) give, for the first
time, MIDI files with Spotify's valence, energy and tempo. For a seeded sample of matched songs (one
file each) this measures the first ``--bars`` bars (from the bar holding the first note; 4/4 assumed
where the file has no time signature), estimates the features with the installed calibration, and
reports Spearman's rho against Spotify with a 95 % interval (Fisher z), plus for tempo the share within
4 % of Spotify's and within 4 % of its half or double (MIDI tempo often counts another beat level).

Run: ``python -m training.data.spotify_agreement --songs 300 --workers 2 --out report.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FIELDS = ("valence", "energy", "tempo")


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their mean rank (as ``scipy.stats.rankdata``)."""
    values = np.asarray(values, dtype=float)
    sorter = np.argsort(values, kind="mergesort")
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[sorter] = np.arange(len(values))
    ordered = values[sorter]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    dense = np.cumsum(first)[inverse]
    bounds = np.r_[np.flatnonzero(first), len(values)]
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def spearman(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Spearman's rho of paired values and its 95 % interval (Fisher z); NaN pairs are dropped."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 4:
        return math.nan, math.nan, math.nan
    rho = float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])
    z, half = math.atanh(max(min(rho, 0.999999), -0.999999)), 1.96 / math.sqrt(len(x) - 3)
    return rho, math.tanh(z - half), math.tanh(z + half)


def first_segment_features(data: bytes, bars: int) -> dict[str, float]:
    """Estimated valence, energy and tempo of the first ``bars`` bars of a MIDI file's bytes, and the raw
    descriptors they come from (``descriptor:<name>``)."""
    import pretty_midi

    from e2m_live.analysis import describe_segment, features_from_descriptors
    from e2m_live.description.extract import load_midi

    midi = load_midi(data)
    if not midi.time_signature_changes:
        midi.time_signature_changes = [pretty_midi.TimeSignature(4, 4, 0.0)]
    starts = [n.start for inst in midi.instruments for n in inst.notes]
    if not starts:
        raise ValueError("no notes")
    downbeats = np.asarray(midi.get_downbeats())
    first = max(0, int(np.searchsorted(downbeats, min(starts), side="right")) - 1)
    t0 = float(downbeats[first]) if len(downbeats) else 0.0
    t1 = float(downbeats[first + bars]) if first + bars < len(downbeats) else None
    descriptors = describe_segment(midi, start=t0, end=t1)
    features = features_from_descriptors(descriptors).to_dict()
    raw = {f"descriptor:{name}": float(value) for name, value in descriptors.items()}
    return {**{name: float(features[name]) for name in FIELDS}, **raw}


def _measure(job: tuple[str, str, int]) -> tuple[str, dict[str, float] | None, str]:
    archive, member, bars = job
    import zipfile

    try:
        with zipfile.ZipFile(archive) as z:
            data = z.read(member)
        return member, first_segment_features(data, bars), ""
    except Exception as exc:  # a bad file is counted, not fatal
        return member, None, f"{type(exc).__name__}"


def sample_matched(datasets: Path, songs: int, seed: int, how: str) -> list[tuple[str, dict[str, float]]]:
    """(member, Spotify values) of ``songs`` matched songs (one file each), seeded."""
    from training.data.label_rpbot import TABLE, match_index, read_index, read_labels
    from training.data.match_spotify import match_key

    rows = read_index(datasets / "multi" / "rpbot.index.csv")
    labels, skipped = read_labels(datasets / TABLE)
    matched, _ = match_index(rows, labels, table_rows_skipped=skipped)
    by_song: dict[tuple[str, str], tuple[str, dict[str, float]]] = {}
    for row in sorted(rows, key=lambda r: r.file):
        found = matched.get(row.file)
        if found is None or (how != "any" and found[1] != how):
            continue
        by_song.setdefault(match_key(row.artist, row.title), (row.file, found[0].values()))
    keys = sorted(by_song)
    order = np.random.default_rng(seed).permutation(len(keys))[:songs]
    return [by_song[keys[i]] for i in sorted(order)]


def agreement(datasets: Path, *, songs: int, bars: int, seed: int, workers: int, how: str) -> dict:
    chosen = sample_matched(datasets, songs, seed, how)
    archive = str(datasets / "multi" / "rpbot.zip")
    jobs = [(archive, member, bars) for member, _ in chosen]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_measure, jobs, chunksize=4)
    else:
        results = [_measure(job) for job in jobs]
    spotify = {member: values for member, values in chosen}
    estimated = {member: values for member, values, _ in results if values is not None}
    failures: dict[str, int] = {}
    for _, values, reason in results:
        if values is None:
            failures[reason] = failures.get(reason, 0) + 1
    members = sorted(estimated)
    report: dict[str, object] = {
        "songs_sampled": len(chosen),
        "songs_measured": len(members),
        "failed": failures,
        "bars": bars,
        "seed": seed,
        "match": how,
    }
    for name in FIELDS:
        ours = [estimated[m][name] for m in members]
        theirs = [spotify[m][name] for m in members]
        rho, low, high = spearman(ours, theirs)
        n = int(np.sum(np.isfinite(ours) & np.isfinite(theirs)))
        report[name] = {"spearman": round(rho, 3), "ci95": [round(low, 3), round(high, 3)], "n": n}
    # which raw descriptors carry each Spotify label (what a refit of the estimator could use)
    names = sorted(k for k in estimated[members[0]] if k.startswith("descriptor:")) if members else []
    for name in FIELDS:
        theirs = [spotify[m][name] for m in members]
        ranked = sorted(
            ((spearman([estimated[m][d] for m in members], theirs)[0], d.partition(":")[2]) for d in names),
            key=lambda item: -abs(item[0]) if math.isfinite(item[0]) else 0.0,
        )
        report[name]["best_descriptors"] = {d: round(r, 3) for r, d in ranked[:5]}  # type: ignore[index]
    ours_t = np.asarray([estimated[m]["tempo"] for m in members], float)
    theirs_t = np.asarray([spotify[m]["tempo"] for m in members], float)
    ok = np.isfinite(ours_t) & np.isfinite(theirs_t) & (theirs_t > 0)
    ratio = ours_t[ok] / theirs_t[ok]
    report["tempo"]["within_4pct"] = round(float(np.mean(np.abs(ratio - 1) <= 0.04)), 3)  # type: ignore[index]
    octave = np.min(np.abs(np.stack([ratio, 2 * ratio, ratio / 2]) - 1), axis=0) <= 0.04
    report["tempo"]["within_4pct_or_octave"] = round(float(np.mean(octave)), 3)  # type: ignore[index]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    from training.common import default_datasets_root

    parser = argparse.ArgumentParser(
        prog="python -m training.data.spotify_agreement", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--datasets", type=Path, default=None)
    parser.add_argument("--songs", type=int, default=300)
    parser.add_argument("--bars", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--match", choices=("exact", "fuzzy", "any"), default="any")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    args = parser.parse_args(argv)
    datasets = args.datasets or default_datasets_root()
    if not (datasets / "multi" / "rpbot.zip").is_file():
        print(f"error: {datasets / 'multi' / 'rpbot.zip'} not found", file=sys.stderr)
        return 2
    report = agreement(
        datasets, songs=args.songs, bars=args.bars, seed=args.seed, workers=args.workers, how=args.match
    )
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
