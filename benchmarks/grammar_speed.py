"""Description-grammar speed: planner-like plans walked through the FSM with masks, then parsed.

    .venv/bin/python benchmarks/grammar_speed.py [--plans 10000]

The planner samples 10,000 plans of 12 bars for an evaluation; each step asks the grammar for its
mask. Prints wall and CPU time, per plan and per token. Moved here from tests/test_grammar.py
(the test keeps the functional part: the plans parse into 12 bars). Reference: about 3 s of CPU for
10,000 plans on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from e2m_live.description.grammar import parse  # noqa: E402
from e2m_live.testing.plans import plan_like_the_planner  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=10_000)
    args = parser.parse_args(argv)
    rng = random.Random(0)
    wall, cpu = time.perf_counter(), time.process_time()
    n_tokens = 0
    for _ in range(args.plans):
        n_tokens += len(parse(plan_like_the_planner(rng)).tokens())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{args.plans} plans, {n_tokens} tokens: wall {wall:.2f} s, CPU {cpu:.2f} s "
        f"({cpu / args.plans * 1e3:.3f} ms CPU per plan, {cpu / n_tokens * 1e6:.2f} us per token)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
