"""Decoding speed of the live model generator under the worker's native-heap settings.

    .venv/bin/python benchmarks/worker_heap.py                 # shipped settings vs 128 KiB vs none

Each variant runs in its own process (the heap settings are process-wide and must come before the
weights load): ``ModelGenerator`` with the shipped weights, as the generation worker builds it, makes
the first 6 bars of two sections (a dense band at 132 BPM and a sparse one), same seeds, so every
variant decodes the same tokens. Reports tokens/s, seconds a bar and CPU time per variant, and each
variant's speed as a ratio to the shipped one (same command, same machine). The variants:

* ``shipped``: ``bound_native_heap`` as the worker calls it (``heap.MMAP_THRESHOLD``);
* ``128k``: the mmap threshold of session 4 (128 KiB), which sent the attention's per-step temporaries
  to mmap: every one an mmap, page faults and an munmap;
* ``none``: glibc's defaults (the sliding threshold; the worker's memory then grows, docs/live.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("shipped", "128k", "none")

RUN = r"""
import json, sys, time
import e2m_live.generators.heap as heap
import e2m_live.generators.model as generation
variant = sys.argv[1]
if variant == "128k":
    heap.MMAP_THRESHOLD = 128 * 1024
elif variant == "none":
    generation.bound_native_heap = lambda: None
import torch
torch.set_num_threads(1)
from e2m_live.features import EmotionFeatures
model = generation.ModelGenerator(threads=1, warm_start=False, ensemble_seed=3)
pipeline = model.pipeline
sections = [
    EmotionFeatures(energy=0.8, valence=0.7, danceability=0.8, instrumentalness=0.5, tempo=132),
    EmotionFeatures(energy=0.3, valence=0.3, danceability=0.3, instrumentalness=0.8, tempo=96),
]
def run(bars):
    tokens = wall = cpu = 0.0
    for features in sections:
        start, start_cpu = time.monotonic(), time.process_time()
        made = model.generate(features, seed=5)
        for n, _ in enumerate(made, start=1):
            if n == bars:
                break
        made.close()
        wall += time.monotonic() - start
        cpu += time.process_time() - start_cpu
        tokens += pipeline.decoder.tokens_generated
    return {"tokens": tokens, "wall_s": wall, "cpu_s": cpu, "bars": bars * len(sections)}
run(1)  # warm-up: first-call allocations, mask cache
print(json.dumps(run(int(sys.argv[2]))))
"""


def measure(variant: str, bars: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", RUN, variant, str(bars)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"{variant}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--bars", type=int, default=6, help="bars of each of the two sections")
    args = parser.parse_args(argv)
    results = {variant: measure(variant, args.bars) for variant in args.variants}
    reference = results.get("shipped")
    for variant, r in results.items():
        speed = r["tokens"] / r["wall_s"]
        ratio = f", {speed / (reference['tokens'] / reference['wall_s']):.2f}x shipped" if reference else ""
        print(
            f"{variant:8s} {speed:6.1f} tok/s, {r['wall_s'] / r['bars']:.2f} s a bar, "
            f"{int(r['tokens'])} tokens, CPU {r['cpu_s']:.1f} s{ratio}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
