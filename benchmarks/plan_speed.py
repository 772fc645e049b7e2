"""How long one 12-bar plan takes on one CPU thread (target: <= 30 ms).

    python benchmarks/plan_speed.py [--plans 200] [--bars 12] [--models models/planner]

Pins every math library to one thread before importing it, warms up, then times ``Planner.plan``
for the mood presets with a new seed each call, and prints the median, 90th percentile and
maximum of the wall time and of the thread's CPU time (on a shared machine the CPU time is the
cost of a plan, the wall time adds the waits for a core). Exit code 1 if the median CPU time
exceeds ``--budget-ms``.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from e2m_live.features import MOODS  # noqa: E402
from e2m_live.planner import Planner  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=200)
    parser.add_argument("--bars", type=int, default=12)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--budget-ms", type=float, default=30.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    planner = Planner.load(args.models)
    moods = list(MOODS.values())
    for seed in range(5):
        planner.plan(moods[seed % len(moods)], bars=args.bars, seed=seed)
    wall, cpu, tokens = [], [], []
    for i in range(args.plans):
        start, start_cpu = time.perf_counter(), time.thread_time()
        description = planner.plan(moods[i % len(moods)], bars=args.bars, seed=1000 + i)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
        tokens.append(len(description.tokens()))
    print(
        f"{args.plans} plans of {args.bars} bars on 1 thread, {np.mean(tokens):.0f} tokens per plan "
        f"(budget {args.budget_ms:g} ms):"
    )
    for label, values in (("CPU time", np.array(cpu)), ("wall time", np.array(wall))):
        print(
            f"  {label:9s} median {np.median(values):5.1f} ms  p90 {np.percentile(values, 90):5.1f} ms"
            f"  max {values.max():5.1f} ms"
        )
    try:
        load = os.getloadavg()[0]
        print(f"  load average {load:.1f} on {os.cpu_count()} cores")
    except OSError:
        pass
    return 0 if np.median(cpu) <= args.budget_ms else 1


if __name__ == "__main__":
    sys.exit(main())
