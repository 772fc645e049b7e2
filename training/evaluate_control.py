"""The measure of control: generate over a grid of requested features, estimate the features of the
output, and compare.

    python -m training.evaluate_control                  # full grid (by hand; tens of minutes on 2 CPUs)
    python -m training.evaluate_control --quick          # reduced grid for CI (about a minute)

Grid: each continuous feature at low, mid and high (10th, 50th and 90th percentile of Spotify's
distribution, from the shipped feature calibration; instrumentalness 0 / 0.5 / 0.9 because its
Spotify distribution sits at 0) with the others at their Spotify median, in C major, 4/4, 120 BPM,
over ``--seeds`` seeds; plus a key sweep (every key in major and minor) whose samples also cycle the
time signature through 3..7 beats and the tempo through 60..180 BPM, so the same generations sweep
key, mode, time signature and tempo. Each sample is generated with the shipped models through
:mod:`e2m_live.pipeline` and estimated with :func:`e2m_live.analysis.estimate_features` on the
decoded bars.

Reports, per continuous feature, the Spearman correlation between requested and estimated values
(over that feature's sweep) and, for valence and energy, the normalised L1 error (mean absolute
error over the range, as midi-emotion reports 0.195); exact-match rates for key, mode, key + mode
(key sweep), time signature and tempo (all samples; tempo within 0.5 BPM); and how well the
decoded notes follow the plan's chords: the share of pitched note time whose pitch class belongs to
a chord the plan gives that bar, beside the same share against the chords a tritone away (chance).
Writes ``control.json``, ``control_table.md`` and ``control_features.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# isort: off
from e2m_live.pipeline import DecodingOptions, Pipeline  # first: sets OpenMP's wait policy

# isort: on
import numpy as np
from scipy.stats import spearmanr

from e2m_live.analysis import estimate_features, load_calibration
from e2m_live.features import KEY_NAMES, RANGES, EmotionFeatures
from e2m_live.music import Bar

CONTINUOUS = ("energy", "valence", "loudness", "danceability", "acousticness", "instrumentalness")
TARGET_RHO = {
    "energy": 0.7,
    "valence": 0.7,
    "loudness": 0.7,
    "danceability": 0.7,
    "acousticness": 0.5,
    "instrumentalness": 0.5,
}
FIXED_LEVELS = {"instrumentalness": (0.0, 0.5, 0.9)}
TIME_SIGNATURES = (3, 4, 5, 6, 7)
TEMPOS = (60.0, 90.0, 120.0, 150.0, 180.0)
MIDI_EMOTION_L1 = 0.195
CHORD_INTERVALS = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "dom7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
}


def chord_pitch_classes(value: str) -> set[int]:
    """Pitch classes of a FIGARO chord value (``"A:min7"``); empty for ``N:N`` and rootless chords."""
    root, _, quality = value.partition(":")
    if root not in KEY_NAMES or quality not in CHORD_INTERVALS:
        return set()
    return {(KEY_NAMES.index(root) + step) % 12 for step in CHORD_INTERVALS[quality]}


@dataclass
class Sample:
    """One generation: what was asked, what came out, what the estimator heard."""

    sweep: str  # a continuous feature's name, or "key"
    seed: int
    requested: EmotionFeatures
    estimated: EmotionFeatures | None
    chord_share: float
    chance_share: float
    seconds: float
    music_seconds: float
    notes: int


def spotify_levels(feature: str) -> tuple[float, float, float]:
    """Low, mid and high values of ``feature``: Spotify's 10th, 50th and 90th percentiles."""
    if feature in FIXED_LEVELS:
        return FIXED_LEVELS[feature]
    quantiles = load_calibration().spotify_quantiles[feature]
    at = np.linspace(0, 1, len(quantiles))
    return tuple(round(float(np.interp(q, at, quantiles)), 4) for q in (0.1, 0.5, 0.9))  # type: ignore[return-value]


def median_features() -> EmotionFeatures:
    """Every continuous feature at its Spotify median; C major, 4/4, 120 BPM."""
    return EmotionFeatures(
        **{name: spotify_levels(name)[1] for name in CONTINUOUS}, key=0, mode=1, time_signature=4, tempo=120.0
    )


def build_grid(quick: bool, seeds: int) -> list[tuple[str, int, EmotionFeatures]]:
    """(sweep, seed, features) of every sample."""
    base = median_features()
    grid = []
    levels_used = (0, 2) if quick else (0, 1, 2)
    for feature in CONTINUOUS:
        levels = spotify_levels(feature)
        for seed in range(seeds):
            for level in levels_used:
                grid.append((feature, seed, base.replace(**{feature: levels[level]})))
    keys = [(k, m) for m in (1, 0) for k in range(12)]
    if quick:
        keys = [(0, 1), (9, 0), (7, 1), (2, 0), (5, 1)]
    for i, (key, mode) in enumerate(keys):
        grid.append(
            (
                "key",
                i,
                base.replace(
                    key=key, mode=mode, time_signature=TIME_SIGNATURES[i % 5], tempo=TEMPOS[(i * 2) % 5]
                ),
            )
        )
    return grid


def chord_shares(bars: list[Bar], description_bars: list[list[str]]) -> tuple[float, float]:
    """Share of pitched note time on a pitch class of the bar's planned chords, and against the
    chords a tritone away (what unrelated chords would score)."""
    on = off = total = 0.0
    for bar, desc in zip(bars, description_bars, strict=False):
        classes: set[int] = set()
        for tok in desc:
            if tok.startswith("Chord_"):
                classes |= chord_pitch_classes(tok.removeprefix("Chord_"))
        if not classes:
            continue
        tritone = {(c + 6) % 12 for c in classes}
        for note in bar.notes:
            if note.is_drum:
                continue
            total += note.duration
            on += note.duration * (note.pitch % 12 in classes)
            off += note.duration * (note.pitch % 12 in tritone)
    return (on / total, off / total) if total else (float("nan"), float("nan"))


def generate_sample(
    pipeline: Pipeline, sweep: str, seed: int, features: EmotionFeatures, bars: int, options: DecodingOptions
) -> Sample:
    started = time.perf_counter()
    generated = list(
        pipeline.generate(
            features,
            bars=bars,
            seed=1000 * seed + 17,
            options=options,
        )
    )
    seconds = time.perf_counter() - started
    decoded = [g.bar for g in generated]
    try:
        estimated = estimate_features(decoded)
    except (ValueError, IndexError):  # no notes at all: nothing to estimate
        estimated = None
    on, off = chord_shares(decoded, [g.description for g in generated])
    music = sum(b.quarters * 60.0 / (b.tempo or 120.0) for b in decoded)
    notes = sum(len(b.notes) for b in decoded)
    return Sample(sweep, seed, features, estimated, on, off, seconds, music, notes)


def _rate(hits: list[bool]) -> float:
    return float(np.mean(hits)) if hits else float("nan")


def summarise(samples: list[Sample]) -> dict:
    """The figures of the report from the samples."""
    out: dict = {"features": {}, "exact": {}, "chords": {}, "speed": {}}
    for feature in CONTINUOUS:
        rows = [s for s in samples if s.sweep == feature and s.estimated is not None]
        req = np.array([getattr(s.requested, feature) for s in rows], dtype=float)
        est = np.array([getattr(s.estimated, feature) for s in rows], dtype=float)
        low, high = RANGES[feature]
        rho = (
            float(spearmanr(req, est).statistic)
            if len(rows) >= 2 and np.ptp(req) > 0 and np.ptp(est) > 0
            else float("nan")
        )
        entry = {
            "rho": rho,
            "target": TARGET_RHO[feature],
            "n": len(rows),
            "l1": float(np.mean(np.abs(req - est)) / (high - low)) if len(rows) else float("nan"),
            "by_level": {f"{v:g}": float(np.mean(est[req == v])) for v in sorted(set(req.tolist()))},
        }
        out["features"][feature] = entry
    estimated = [s for s in samples if s.estimated is not None]
    keyed = [s for s in estimated if s.sweep == "key"]
    out["exact"] = {
        "key": _rate([s.estimated.key == s.requested.key for s in keyed]),
        "mode": _rate([s.estimated.mode == s.requested.mode for s in keyed]),
        "key_mode": _rate(
            [(s.estimated.key, s.estimated.mode) == (s.requested.key, s.requested.mode) for s in keyed]
        ),
        "time_signature": _rate(
            [s.estimated.time_signature == s.requested.time_signature for s in estimated]
        ),
        "tempo": _rate([abs(s.estimated.tempo - s.requested.tempo) <= 0.5 for s in estimated]),
        "n_key": len(keyed),
        "n_all": len(estimated),
        "no_notes": len(samples) - len(estimated),
    }
    shares = np.array([[s.chord_share, s.chance_share] for s in samples], dtype=float)
    shares = shares[~np.isnan(shares).any(axis=1)]
    out["chords"] = {
        "on_plan_chords": float(shares[:, 0].mean()) if len(shares) else float("nan"),
        "tritone_chance": float(shares[:, 1].mean()) if len(shares) else float("nan"),
    }
    wall = sum(s.seconds for s in samples)
    music = sum(s.music_seconds for s in samples)
    out["speed"] = {
        "generation_s": wall,
        "music_s": music,
        "realtime_factor": music / wall if wall else 0.0,
        "samples": len(samples),
        "notes": sum(s.notes for s in samples),
    }
    return out


def markdown_table(summary: dict) -> str:
    """The results as the Markdown table of docs/generate.md."""
    lines = ["| feature | measure | result | target |", "|---|---|---|---|"]
    for feature, entry in summary["features"].items():
        ok = "" if np.isnan(entry["rho"]) else (" ✓" if entry["rho"] >= entry["target"] else " ✗")
        lines.append(
            f"| {feature} | Spearman ρ (n = {entry['n']}) | {entry['rho']:.2f}{ok} | ≥ {entry['target']} |"
        )
    for feature in ("valence", "energy"):
        entry = summary["features"][feature]
        lines.append(
            f"| {feature} | normalised L1 error | {entry['l1']:.3f} | midi-emotion: {MIDI_EMOTION_L1} |"
        )
    exact = summary["exact"]
    rows = (
        ("key_mode", "key + mode exact", 0.8),
        ("key", "key exact", None),
        ("mode", "mode exact", None),
        ("time_signature", "time signature exact", 0.98),
        ("tempo", "tempo exact (±0.5 BPM)", 0.98),
    )
    for name, label, target in rows:
        n = exact["n_key"] if name in ("key", "mode", "key_mode") else exact["n_all"]
        ok = "" if target is None else (" ✓" if exact[name] >= target else " ✗")
        wanted = f"≥ {target}" if target else ""
        lines.append(f"| {label} | rate (n = {n}) | {exact[name]:.2f}{ok} | {wanted} |")
    chords = summary["chords"]
    lines.append(
        f"| chords | pitched note time on the plan's chord tones | {chords['on_plan_chords']:.2f} | "
        f"chance (tritone-shifted chords): {chords['tritone_chance']:.2f} |"
    )
    return "\n".join(lines) + "\n"


def plot(samples: list[Sample], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    rng = np.random.default_rng(0)
    for ax, feature in zip(axes.flat, CONTINUOUS, strict=False):
        rows = [s for s in samples if s.sweep == feature and s.estimated is not None]
        req = np.array([getattr(s.requested, feature) for s in rows], dtype=float)
        est = np.array([getattr(s.estimated, feature) for s in rows], dtype=float)
        low, high = RANGES[feature]
        if feature == "loudness":
            low = min(-25.0, float(est.min()) if len(est) else -25.0)
        jitter = (high - low) * 0.01 * rng.standard_normal(len(req))
        ax.scatter(req + jitter, est, s=14, alpha=0.6)
        ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_title(f"{feature}: ρ = {summary['features'][feature]['rho']:.2f}")
        ax.set_xlabel("requested")
        ax.set_ylabel("estimated")
    tempo_ax, key_ax = axes.flat[6], axes.flat[7]
    rows = [s for s in samples if s.estimated is not None]
    tempo_ax.scatter([s.requested.tempo for s in rows], [s.estimated.tempo for s in rows], s=14)
    tempo_ax.plot([40, 240], [40, 240], color="grey", lw=0.8, ls="--")
    tempo_ax.set_title(f"tempo: exact {summary['exact']['tempo']:.2f}")
    tempo_ax.set_xlabel("requested BPM")
    tempo_ax.set_ylabel("estimated BPM")
    exact = summary["exact"]
    names = ["key", "mode", "key+mode", "time sig.", "tempo", "chord tones", "chance"]
    values = [
        exact["key"],
        exact["mode"],
        exact["key_mode"],
        exact["time_signature"],
        exact["tempo"],
        summary["chords"]["on_plan_chords"],
        summary["chords"]["tritone_chance"],
    ]
    key_ax.bar(names, values, color=["C0"] * 5 + ["C2", "C7"])
    key_ax.set_ylim(0, 1)
    key_ax.set_title("exact-match rates; chord-tone share")
    key_ax.tick_params(axis="x", rotation=45)
    fig.suptitle("Requested vs estimated features of generated music (e2m_live.analysis on the decoded bars)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="reduced grid for CI (low/high, one seed, 2 bars)"
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds per setting (default 3; quick 1)")
    parser.add_argument("--bars", type=int, default=None, help="bars per sample (default 12; quick 2)")
    parser.add_argument("--max-tokens-per-bar", type=int, default=512, help="decoder budget per bar")
    parser.add_argument("--top-p", type=float, default=None, help="decoder nucleus sampling (default off)")
    parser.add_argument(
        "--sweeps",
        nargs="+",
        default=None,
        choices=(*CONTINUOUS, "key"),
        help="only these sweeps (default: all)",
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="models/ folder (default: shipped)")
    parser.add_argument("--threads", type=int, default=2, help="decoder threads (default 2)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N samples (debug, tests)")
    parser.add_argument(
        "--out", type=Path, default=Path("training/reports"), help="where to write the report"
    )
    args = parser.parse_args(argv)
    seeds = args.seeds or (1 if args.quick else 3)
    bars = args.bars or (2 if args.quick else 12)
    if seeds < 1 or not 1 <= bars <= 64:
        parser.error("--seeds must be >= 1 and --bars in 1..64")
    try:
        pipeline = Pipeline.load(args.model_dir, threads=args.threads)
    except (FileNotFoundError, ValueError) as error:
        print(f"evaluate_control: {error}", file=sys.stderr)
        return 2
    grid = build_grid(args.quick, seeds)
    if args.sweeps:
        grid = [row for row in grid if row[0] in args.sweeps]
    options = DecodingOptions(top_p=args.top_p, max_tokens_per_bar=args.max_tokens_per_bar)
    if args.limit:
        grid = grid[: args.limit]
    samples = []
    started = time.perf_counter()
    for i, (sweep, seed, features) in enumerate(grid, 1):
        sample = generate_sample(pipeline, sweep, seed, features, bars, options)
        samples.append(sample)
        est = sample.estimated
        shown = (
            getattr(est, sweep)
            if est is not None and sweep != "key"
            else (f"{est.key}/{est.mode}/{est.time_signature}" if est is not None else "-")
        )
        print(
            f"[{i}/{len(grid)}] {sweep} seed {seed}: requested "
            f"{getattr(features, sweep) if sweep != 'key' else (features.key, features.mode)}, "
            f"estimated {shown}; {sample.notes} notes, {sample.seconds:.1f} s",
            flush=True,
        )
    summary = summarise(samples)
    summary["grid"] = {
        "quick": args.quick,
        "seeds": seeds,
        "bars": bars,
        "samples": len(samples),
        "threads": args.threads,
        "top_p": args.top_p,
        "wall_s": time.perf_counter() - started,
        "levels": {f: spotify_levels(f) for f in CONTINUOUS},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(summary)
    (args.out / "control.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "samples": [
                    {
                        "sweep": s.sweep,
                        "seed": s.seed,
                        "requested": s.requested.to_dict(),
                        "estimated": s.estimated.to_dict() if s.estimated else None,
                        "chord_share": s.chord_share,
                        "chance_share": s.chance_share,
                        "seconds": s.seconds,
                        "music_seconds": s.music_seconds,
                        "notes": s.notes,
                    }
                    for s in samples
                ],
            },
            indent=1,
            default=float,
        )
        + "\n"
    )
    (args.out / "control_table.md").write_text(table)
    plot(samples, summary, args.out / "control_features.png")
    print(table)
    speed = summary["speed"]
    print(
        f"{len(samples)} samples, {speed['music_s']:.0f} s of music generated in "
        f"{speed['generation_s']:.0f} s "
        f"({speed['realtime_factor']:.2f}x real time); wrote {args.out}/control.json, control_table.md, "
        "control_features.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
