"""How far apart the moods' auto ensembles are, drawn with the same uniform draws.

    python -m training.evaluation.ensemble_spread            # 400 draws, seed 0
    python -m training.evaluation.ensemble_spread --draws 1000 --seed 3

Live, the daemon keeps one ensemble seed for a session, so a mood change moves the band only
through the features' probabilities and option weights: two moods that give the identical band
for the same draws sound alike whatever else changes. For every pair of
:data:`~e2m_live.features.MOODS` this reports how often the same draws give the identical band and
the mean Jaccard distance between the two bands, then the temperature-0 (greedy) band of each mood.
Pure Python over :func:`~e2m_live.planner.ensemble.choose_ensemble`: no model is loaded.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from e2m_live.features import MOODS
from e2m_live.planner.ensemble import DRAWS_PER_PLAN, choose_ensemble

SHOWN_PAIRS = (
    ("happy", "angry"),
    ("happy", "tense"),
    ("triumphant", "angry"),
    ("angry", "tense"),
    ("sad", "calm"),
    ("sad", "dreamy"),
    ("calm", "melancholic"),
)


def jaccard_distance(a: set[str], b: set[str]) -> float:
    return 1.0 - len(a & b) / len(a | b)


def spread(draws: np.ndarray) -> dict[tuple[str, str], tuple[float, float]]:
    """(share of identical bands, mean Jaccard distance) for every pair of moods over ``draws``."""
    bands = {name: [set(choose_ensemble(f, u).instruments) for u in draws] for name, f in MOODS.items()}
    result = {}
    for first, second in itertools.combinations(MOODS, 2):
        pairs = list(zip(bands[first], bands[second], strict=True))
        identical = float(np.mean([a == b for a, b in pairs]))
        distance = float(np.mean([jaccard_distance(a, b) for a, b in pairs]))
        result[(first, second)] = (identical, distance)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=400, help="uniform draw vectors per mood (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    args = parser.parse_args(argv)
    draws = np.random.default_rng(args.seed).random((args.draws, DRAWS_PER_PLAN))
    pairs = spread(draws)
    identical = np.mean([v[0] for v in pairs.values()])
    distance = np.mean([v[1] for v in pairs.values()])
    print(
        f"same draws, two moods ({len(pairs)} pairs): identical bands {identical:.3f}, "
        f"mean Jaccard distance {distance:.3f}"
    )
    for first, second in SHOWN_PAIRS:
        key = (first, second) if (first, second) in pairs else (second, first)
        print(f"  {first}/{second}: identical {pairs[key][0]:.3f}, distance {pairs[key][1]:.3f}")
    greedy = {name: choose_ensemble(f, draws[0], greedy=True).instruments for name, f in MOODS.items()}
    print(f"greedy bands: {len(set(greedy.values()))} distinct for {len(greedy)} moods")
    for name, band in greedy.items():
        print(f"  {name:12s} {', '.join(band)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
