"""`e2m-live plan`: print a description planned from emotion features.

e2m-live plan --mood sad --time-signature 3 --seed 7
e2m-live plan --energy 0.8 --valence 0.3 --key A --mode minor --json
e2m-live plan --mood happy --ensemble jazz --mute drums
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from e2m_live.commands.errors import UsageError
from e2m_live.commands.feature_flags import (
    add_arrangement_arguments,
    add_feature_arguments,
    arrangement_from_args,
    features_from_args,
)
from e2m_live.planner.registry import DEFAULT_PLANNER, PLANNER_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_feature_arguments(parser)
    add_arrangement_arguments(parser)
    parser.add_argument("--bars", type=int, default=12, help="number of bars (default 12)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (same seed, same plan)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature; 0 = most likely tokens (default 1.0)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="planner models (default: the planner's folder under models/)",
    )
    parser.add_argument(
        "--planner",
        choices=PLANNER_NAMES,
        default=DEFAULT_PLANNER,
        help=f"which planner (default {DEFAULT_PLANNER}; see docs/planner_comparison.md)",
    )
    parser.add_argument(
        "--json", action="store_true", help='print {"features", "arrangement", "tokens", "bars"} as JSON'
    )


def run(args: argparse.Namespace) -> int:
    from e2m_live.planner import PlanError
    from e2m_live.planner.registry import load_planner

    features = features_from_args(args)
    arrangement = arrangement_from_args(args)
    try:
        planner = load_planner(args.planner, args.model_dir)
        description = planner.plan(
            features, bars=args.bars, seed=args.seed, temperature=args.temperature, arrangement=arrangement
        )
    except PlanError as error:
        raise UsageError(str(error)) from None
    if args.json:
        print(
            json.dumps(
                {
                    "features": features.to_dict(),
                    "arrangement": arrangement.to_dict(),
                    "tokens": description.tokens(),
                    "bars": description.to_json()["bars"],
                }
            )
        )
        return 0
    print(
        f"# {features.key_label}, {features.time_signature} beats per bar, "
        f"energy {features.energy:g}, valence {features.valence:g}"
    )
    for bar in description.bars:
        num, den = bar.time_signature
        print(
            f"Bar {bar.index:>3}  {num}/{den}  density {bar.note_density:>2}  velocity {bar.mean_velocity:>2}"
            f"  pitch {bar.mean_pitch:>2}  duration {bar.mean_duration:>2}  | {', '.join(bar.instruments)}"
            f"  | {' '.join(bar.chords)}"
        )
    return 0
