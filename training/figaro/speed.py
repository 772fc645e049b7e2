"""How fast an exported FIGARO model decodes: the real-time factor of 12 dense bars.

Used by :mod:`training.figaro.evaluate` (``--speed``) and :mod:`training.figaro.card` (``--speed``, and
the yardstick the card quotes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training.figaro.segments import EvalSegment, densest

#: 12 bars of 2,800 tokens at 120 BPM in 4/4 last 24 s: the real-time yardstick of issue 5.
REFERENCE_TOKENS, REFERENCE_SECONDS = 2800, 24.0


def measure_realtime(
    model_dir: str | Path,
    description: Sequence[str],
    threads: int = 2,
    tokens_per_bar: int = REFERENCE_TOKENS // 12,
    quantize: str | None = None,
    repeats: int = 2,
) -> dict[str, Any]:
    """Time the incremental decoder of the exported model on ``description`` (12 bars), the token
    count pinned near ``tokens_per_bar`` per bar so every run decodes ~2,800 tokens.

    Returns the best of ``repeats`` runs (after a one-bar warm-up): tokens, wall and CPU seconds,
    time to the first bar, tokens/s and the real-time factor (wall time / 24 s of 12 bars at 120 BPM;
    scaled to ``REFERENCE_TOKENS`` when the count differs), with the 1-minute load average.
    """
    import time

    import torch

    from e2m_live.figaro.decode import IncrementalDecoder
    from training.figaro.export import load_exported

    if threads < 1 or repeats < 1:
        raise ValueError("threads and repeats must be >= 1")
    torch.set_num_threads(threads)
    decoder = IncrementalDecoder(load_exported(model_dir), quantize=quantize)
    first_bar = [t for t in description if t.startswith("Bar_")][:2]
    warm_up = description[: description.index(first_bar[1])] if len(first_bar) > 1 else description
    list(decoder.generate_bars(warm_up, seed=0))
    runs = []
    for seed in range(repeats):
        cpu_start, start = time.process_time(), time.perf_counter()
        first = 0.0
        for _bar in decoder.generate_bars(
            description,
            seed=seed,
            temperature=1.0,
            top_p=0.95,
            max_tokens_per_bar=tokens_per_bar + 3,
            min_tokens_per_bar=tokens_per_bar - 3,
        ):
            first = first or time.perf_counter() - start
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        tokens = decoder.tokens_generated
        runs.append(
            {
                "tokens": tokens,
                "seconds": round(wall, 2),
                "cpu_seconds": round(cpu, 2),
                "first_bar_seconds": round(first, 3),
                "tokens_per_s": round(tokens / wall, 1),
                "real_time_factor": round(wall * REFERENCE_TOKENS / tokens / REFERENCE_SECONDS, 3),
                # CPU time summed over threads: what the run costs without other processes competing
                "cpu_real_time_factor": round(cpu * REFERENCE_TOKENS / tokens / REFERENCE_SECONDS, 3),
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        )
    best = min(runs, key=lambda r: r["real_time_factor"])
    return {**best, "threads": threads, "quantize": quantize, "runs": runs}


def measure_speed(
    model_dir: str, segments: Sequence[EvalSegment], threads: int, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Real-time factor of 12 bars of the densest segment's description, float32 and int8 weights."""
    seg = densest(segments)
    out = {}
    for fmt, quantize in ((f"float32, {threads} threads", None), (f"int8, {threads} threads", "int8")):
        out[fmt] = {
            "song_id": seg.song_id,
            **measure_realtime(model_dir, seg.description, threads, quantize=quantize),
        }
        log(f"[speed] {fmt}: {out[fmt]}")
    return out
