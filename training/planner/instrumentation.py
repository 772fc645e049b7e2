"""Plan-level measurement of instrumentation, danceability, tonic opening and cadence (issue 14).

    python -m training.planner.instrumentation [--seeds 10] [--json out.json] [--before]

Everything is measured on planned descriptions (no decoding), for the shipped planner and, with
``--before``, for the planner as it was before issue 14 (the new steering terms off: the stream
chooses the instruments, no danceability or cadence terms). Sweeps run each of danceability,
acousticness, instrumentalness over 0.1/0.3/0.5/0.7/0.9 on nine bases (the defaults and the eight
moods), ``--seeds`` seeds each. Printed tables:

* per level: share of sections with drums / with bass (in any bar), single-instrument share,
  acoustic share of the instrument slots, share of sections whose melody is a voice-like program
  (in at least half the bars), mean note density and mean duration bins, share of bars whose
  density bin repeats the previous bar's;
* Spearman rho of each feature against its plan statistic (the danceability statistic is the
  groove score: share of bars with drums + half the share with bass, the plan-level part of the
  analysis' drum-beat term);
* single-instrument share at the default features and per mood, and per mood the distribution of
  ensemble sizes (distinct instruments of the section, drums counted as one) and the share of sections
  with drums (``--learned``: also with the instruments chosen by the stream LSTM, ``auto_ensemble``
  off, i.e. what the models learned from the data);
* tonic in the first bar and a cadence (V or IV, iv in minor, then the tonic as the last chord)
  by key lock;
* every preset: the least share of bars any palette instrument plays, instruments outside the
  palette.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from e2m_live.arrangement import ENSEMBLES, Arrangement
from e2m_live.description.grammar import Description
from e2m_live.features import MOODS, EmotionFeatures
from e2m_live.planner import Planner, Steering
from e2m_live.planner.classes import BASS_PROGRAMS, VOICE_PROGRAMS, instrument_program
from training.planner.statistics import plan_statistics

LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: Swept features and their levels (loudness in dB); energy and loudness check what must not change.
SWEPT: dict[str, tuple[float, ...]] = {
    "danceability": LEVELS,
    "acousticness": LEVELS,
    "instrumentalness": LEVELS,
    "energy": LEVELS,
    "loudness": (-25.0, -18.0, -12.0, -7.0, -3.0),
}
BASES: dict[str, EmotionFeatures] = {"default": EmotionFeatures(), **MOODS}
KEY_LOCKS = (0.0, 0.5, 0.9, 1.0)
#: Steering fields that issue 14 added; ``--before`` turns them off.
NEW_TERMS = (
    "danceability_note_density",
    "danceability_mean_duration",
    "danceability_steady_density",
    "tonic_opening",
    "cadence",
    "auto_ensemble",
)


def section_stats(description: Description, key: int, mode: int) -> dict[str, float]:
    """Instrumentation and rhythm statistics of one planned section."""
    bars = description.bars
    n = len(bars)
    voice_bars = sum(
        any(name != "drum" and instrument_program(name) in VOICE_PROGRAMS for name in b.instruments)
        for b in bars
    )
    drum_bars = sum("drum" in b.instruments for b in bars)
    bass_bars = sum(any(_is_bass(name) for name in b.instruments) for b in bars)
    densities = [b.note_density for b in bars]
    base = plan_statistics(description, key, mode)
    return {
        "drums": float(drum_bars > 0),
        "bass": float(bass_bars > 0),
        "groove": (drum_bars + 0.5 * bass_bars) / n,
        "single": float(len({name for b in bars for name in b.instruments}) == 1),
        "size": float(len({name for b in bars for name in b.instruments})),
        "acoustic_share": base["acoustic_share"],
        "voice_lead": float(voice_bars >= n / 2),
        "note_density": base["note_density"],
        "mean_velocity": base["mean_velocity"],
        "mean_duration": base["mean_duration"],
        "steady_density": float(np.mean([a == b for a, b in itertools.pairwise(densities)] or [1.0])),
        "tonic_first": float(_is_tonic(bars[0].chords[0], key, mode)),
        "cadence": float(_has_cadence(description, key, mode)),
    }


def _is_bass(name: str) -> bool:
    return name != "drum" and instrument_program(name) in BASS_PROGRAMS


def _degree(chord: str, key: int) -> tuple[int | None, str]:
    root, _, quality = chord.partition(":")
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    return ((names.index(root) - key) % 12 if root in names else None), quality


def _is_tonic(chord: str, key: int, mode: int) -> bool:
    degree, quality = _degree(chord, key)
    return degree == 0 and quality in (("maj", "maj7") if mode else ("min", "min7"))


def _has_cadence(description: Description, key: int, mode: int) -> bool:
    """The last chord is the tonic and the last other chord before it is V or IV (iv)."""
    chords = [c for b in description.bars[-2:] for c in b.chords]
    if not chords or not _is_tonic(chords[-1], key, mode):
        return False
    before = [c for c in chords if not _is_tonic(c, key, mode)]
    if not before:
        return False
    degree, quality = _degree(before[-1], key)
    dominant = degree == 7 and quality in ("maj", "dom7")
    subdominant = degree == 5 and quality in (("maj", "maj7") if mode else ("min", "min7"))
    return dominant or subdominant


def plan_rows(
    planner: Planner, features: Sequence[EmotionFeatures], seeds: int, arrangement: Arrangement | None = None
) -> list[dict[str, float]]:
    """Section statistics of ``seeds`` plans per entry of ``features`` (one batch per seed)."""
    rows = []
    for seed in range(seeds):
        descriptions = planner.plan_many(features, seed=seed, arrangement=arrangement)
        for f, d in zip(features, descriptions, strict=True):
            rows.append(section_stats(d, f.key, f.mode))
    return rows


def sweep(planner: Planner, feature: str, seeds: int) -> dict[str, object]:
    """Per-level means and Spearman rho of the plan statistics over the bases."""
    levels_swept = SWEPT[feature]
    grid = [(level, base.replace(**{feature: level})) for level in levels_swept for base in BASES.values()]
    rows = plan_rows(planner, [f for _, f in grid], seeds)
    levels = np.array([level for _ in range(seeds) for level, _ in grid])
    table = {
        str(level): {
            k: float(np.mean([r[k] for r, lv in zip(rows, levels, strict=True) if lv == level]))
            for k in rows[0]
        }
        for level in levels_swept
    }
    rho = {
        k: float(spearmanr(levels, [r[k] for r in rows]).statistic)
        for k in (
            "drums",
            "bass",
            "groove",
            "acoustic_share",
            "voice_lead",
            "note_density",
            "mean_velocity",
            "mean_duration",
            "steady_density",
        )
        if np.ptp([r[k] for r in rows]) > 0
    }
    return {"levels": table, "spearman": rho}


SIZE_BINS = ("1", "2", "3", "4", "5+")


def ensemble_sizes(rows: Sequence[dict[str, float]]) -> dict[str, object]:
    """Share of sections by number of instruments (1, 2, 3, 4, 5+), the mean, and the share with drums."""
    sizes = np.array([r["size"] for r in rows])
    bins = np.clip(sizes, 1, 5).astype(int)
    return {
        "sizes": {label: float(np.mean(bins == k)) for k, label in enumerate(SIZE_BINS, start=1)},
        "mean_size": float(sizes.mean()),
        "drums": float(np.mean([r["drums"] for r in rows])),
    }


def measure(planner: Planner, seeds: int) -> dict[str, object]:
    out: dict[str, object] = {"seeds": seeds}
    out["sweeps"] = {feature: sweep(planner, feature, seeds) for feature in SWEPT}
    per_base = {name: plan_rows(planner, [f], seeds * 4) for name, f in BASES.items()}
    out["single_share"] = {name: float(np.mean([r["single"] for r in v])) for name, v in per_base.items()}
    out["ensembles"] = {name: ensemble_sizes(rows) for name, rows in per_base.items()}
    cadence = {}
    for lock in KEY_LOCKS:
        rows = plan_rows(planner, list(BASES.values()), seeds, Arrangement(key_lock=lock))
        cadence[str(lock)] = {k: float(np.mean([r[k] for r in rows])) for k in ("tonic_first", "cadence")}
    out["cadence"] = cadence
    presets = {}
    for name, palette in ENSEMBLES.items():
        share: dict[str, list[float]] = {p: [] for p in palette}
        outside = 0
        for seed in range(seeds):
            arrangement = Arrangement(ensemble=name)
            for d in planner.plan_many(list(BASES.values()), seed=seed, arrangement=arrangement):
                for p in palette:
                    share[p].append(np.mean([p in b.instruments for b in d.bars]))
                outside += sum(n not in palette for b in d.bars for n in b.instruments)
        presets[name] = {
            "least_bar_share": float(min(np.mean(v) for v in share.values())),
            "outside_palette": outside,
        }
    out["presets"] = presets
    return out


def print_report(result: dict[str, object], label: str) -> None:
    print(f"## {label} ({result['seeds']} seeds x 9 bases per level)\n")
    for feature, data in result["sweeps"].items():  # type: ignore[union-attr]
        print(
            f"{feature}: level | drums | bass | single | acoustic | voice lead | density | velocity | "
            "duration | steady"
        )
        for level, row in data["levels"].items():
            print(
                f"  {level} | {row['drums']:.2f} | {row['bass']:.2f} | {row['single']:.2f} | "
                f"{row['acoustic_share']:.2f} | {row['voice_lead']:.2f} | {row['note_density']:.2f} | "
                f"{row['mean_velocity']:.2f} | {row['mean_duration']:.2f} | {row['steady_density']:.2f}"
            )
        rho = ", ".join(f"{k} {v:+.2f}" for k, v in data["spearman"].items())
        print(f"  Spearman vs {feature}: {rho}\n")
    single = result["single_share"]
    print("single-instrument share: " + ", ".join(f"{k} {v:.2f}" for k, v in single.items()))  # type: ignore[union-attr]
    print("ensemble sizes per mood (share of sections with 1 / 2 / 3 / 4 / 5+ instruments; mean; drums):")
    for name, row in result["ensembles"].items():  # type: ignore[union-attr]
        sizes = " / ".join(f"{v:.2f}" for v in row["sizes"].values())
        print(f"  {name}: {sizes}; mean {row['mean_size']:.1f}; drums {row['drums']:.2f}")
    print(
        "tonic first bar / cadence by key lock: "
        + ", ".join(
            f"{lock}: {v['tonic_first']:.2f} / {v['cadence']:.2f}"
            for lock, v in result["cadence"].items()  # type: ignore[union-attr]
        )
    )
    print(
        "presets (least bar share of a palette instrument, slots outside the palette): "
        + ", ".join(
            f"{k} {v['least_bar_share']:.2f}/{v['outside_palette']}"
            for k, v in result["presets"].items()  # type: ignore[union-attr]
        )
    )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--before", action="store_true", help="also measure with the issue-14 terms off")
    parser.add_argument(
        "--learned", action="store_true", help="also measure with the stream choosing the instruments"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    planner = Planner.load(args.models)
    results = {"shipped": measure(planner, args.seeds)}
    if args.learned:
        shipped = planner.steering
        planner.set_steering(Steering.from_dict({**shipped.to_dict(), "auto_ensemble": False}))
        results["learned_instruments"] = measure(planner, args.seeds)
        planner.set_steering(shipped)
        print_report(results["learned_instruments"], "instruments chosen by the stream (auto_ensemble off)")
    if args.before:
        shipped = planner.steering
        old = {k: v for k, v in shipped.to_dict().items() if k not in NEW_TERMS}
        planner.set_steering(Steering.from_dict(old))
        results["before"] = measure(planner, args.seeds)
        planner.set_steering(shipped)
        print_report(results["before"], "before (issue-14 terms off)")
    print_report(results["shipped"], "shipped")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
