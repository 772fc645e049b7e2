"""Emotion-feature labelling speed: ``estimate_features`` on one 12-bar segment (target < 10 ms).

    .venv/bin/python benchmarks/label_speed.py [--repeat 5] [--budget-ms 10]

A dataset build labels ~20,000 12-bar segments, so each must take well under 10 ms. The piece is a
dense 96-bar arrangement (4 instruments plus drums, 16 onsets a beat), labelled in 42 overlapping
12-bar windows after one warm-up call (which builds the cached note table). Prints the per-segment
wall and CPU time (best and median of ``--repeat`` passes); exit code 1 if the best CPU time per
segment exceeds ``--budget-ms``. Moved here from tests/test_analysis.py (a timing bound in a test
fails on a loaded machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from e2m_live.analysis import estimate_features  # noqa: E402
from e2m_live.description.remi import bars_to_midi  # noqa: E402
from e2m_live.music import Bar, Note  # noqa: E402


def dense_piece(n_bars: int = 96):
    """A dense 4-instrument arrangement with drums, 16 onsets a beat, as a PrettyMIDI."""
    rng = np.random.default_rng(1)
    bars = []
    for index in range(n_bars):
        notes = [
            Note(int(rng.integers(36, 90)), int(rng.integers(40, 120)), float(k) / 4, 0.25, program)
            for k in range(16)
            for program in (0, 33, 48, 25)
        ]
        notes += [Note(36 + (k % 3), 100, float(k) / 4, 0.1, 0, True) for k in range(16)]
        bars.append(Bar(notes, 4, 4, 120.0 if index == 0 else None, index))
    return bars_to_midi(bars)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed passes over the 42 segments")
    parser.add_argument("--budget-ms", type=float, default=10.0)
    args = parser.parse_args(argv)
    midi = dense_piece()
    estimate_features(midi, start=0.0, end=24.0)  # the first call builds the cached note table
    bounds = [(2.0 * b, 2.0 * (b + 12)) for b in range(0, 84, 2)]
    wall, cpu = [], []
    for _ in range(args.repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        for start, end in bounds:
            estimate_features(midi, start=start, end=end)
        wall.append((time.perf_counter() - began) / len(bounds) * 1000)
        cpu.append((time.process_time() - began_cpu) / len(bounds) * 1000)
    print(
        f"estimate_features, one 12-bar segment of a dense 96-bar piece ({len(bounds)} segments x "
        f"{args.repeat} passes, budget {args.budget_ms:g} ms):"
    )
    for label, values in (("CPU time", cpu), ("wall time", wall)):
        print(f"  {label:9s} best {min(values):6.2f} ms  median {statistics.median(values):6.2f} ms")
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0 if min(cpu) <= args.budget_ms else 1


if __name__ == "__main__":
    sys.exit(main())
