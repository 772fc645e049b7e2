"""Key lock and clean-note rules with the shipped models: scale share, key re-estimate, pathologies.

For every key lock given, generates ``--bars`` bars for each of the 24 keys x modes x ``--seeds``
seeds with :class:`e2m_live.pipeline.Pipeline` (features at their Spotify medians, as
``training.evaluation.control``'s key sweep) and reports:

* pitched note time in the requested scale: ``scale`` as the key lock defines it (minor = natural +
  the harmonic raised 7th) and ``natural`` (minor = natural minor, as ``training.evaluation.pathology``);
* key, mode and key + mode re-estimated with :func:`e2m_live.analysis.estimate_features`;
* pathologies per piece (``training.evaluation.pathology``): repeated notes, longest note (bars),
  overhang past the last bar line (bars), notes per piece.

``--rules off`` decodes with the grammar alone (``DecodeRules.off()``), the state before issue 14.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/key_lock.py --key-lock 0 0.5 0.9 1 --seeds 2
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/key_lock.py --key-lock 0 --rules off --seeds 1
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_PIPELINE = None


def _init(models: str | None, device: str) -> None:
    global _PIPELINE
    from e2m_live.pipeline import Pipeline

    _PIPELINE = Pipeline.load(models, threads=1, device=device)


def _one(task: tuple[int, int, int, float, str, int]) -> dict:
    from e2m_live.analysis import estimate_features
    from e2m_live.arrangement import Arrangement
    from e2m_live.figaro.constraints import SCALE_DEGREES, DecodeRules
    from e2m_live.pipeline import DecodingOptions
    from training.evaluation.control import median_features
    from training.evaluation.pathology import count_piece

    key, mode, seed, lock, rules, bars = task
    features = median_features().replace(key=key, mode=mode)
    options = DecodingOptions(rules=DecodeRules() if rules == "on" else DecodeRules.off())
    assert _PIPELINE is not None
    start = time.perf_counter()
    generated = list(
        _PIPELINE.generate(
            features,
            bars=bars,
            seed=1000 * seed + 17,
            options=options,
            arrangement=Arrangement(key_lock=lock),
        )
    )
    seconds = time.perf_counter() - start
    decoded = [g.bar for g in generated]
    counts = count_piece(decoded, key, mode)
    scale = {(key + d) % 12 for d in SCALE_DEGREES[mode]}
    pitched = [n for b in decoded for n in b.notes if not n.is_drum]
    total = sum(n.duration for n in pitched)
    inside = sum(n.duration for n in pitched if n.pitch % 12 in scale)
    try:
        est = estimate_features(decoded)
        estimated = (int(est.key), int(est.mode))
    except (ValueError, IndexError):
        estimated = None
    return {
        "key": key,
        "mode": mode,
        "seed": seed,
        "lock": lock,
        "rules": rules,
        "seconds": round(seconds, 2),
        "tokens": sum(len(g.tokens) for g in generated),
        "scale_share": inside / total if total else math.nan,
        "natural_share": counts.in_scale_share,
        "estimated": estimated,
        "notes": counts.notes,
        "repeated": counts.repeated_notes,
        "longest_bars": counts.longest_note_bars,
        "overhang_bars": counts.overhang_bars,
        "instruments": list(counts.instruments),
    }


def summarise(rows: list[dict]) -> dict:
    import numpy as np

    est = [r for r in rows if r["estimated"] is not None]
    mean = lambda name: float(np.nanmean([r[name] for r in rows]))  # noqa: E731
    return {
        "pieces": len(rows),
        "scale_share": mean("scale_share"),
        "natural_share": mean("natural_share"),
        "key": float(np.mean([r["estimated"][0] == r["key"] for r in est])) if est else math.nan,
        "mode": float(np.mean([r["estimated"][1] == r["mode"] for r in est])) if est else math.nan,
        "key_mode": float(np.mean([tuple(r["estimated"]) == (r["key"], r["mode"]) for r in est]))
        if est
        else math.nan,
        "repeated_per_piece": mean("repeated"),
        "longest_bars_max": float(np.max([r["longest_bars"] for r in rows])),
        "longest_bars_p50": float(np.median([r["longest_bars"] for r in rows])),
        "overhang_bars_max": float(np.max([r["overhang_bars"] for r in rows])),
        "pieces_with_overhang": float(np.mean([r["overhang_bars"] > 0 for r in rows])),
        "notes_per_piece": mean("notes"),
        "tokens_per_s": float(sum(r["tokens"] for r in rows) / sum(r["seconds"] for r in rows)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--key-lock", type=float, nargs="+", default=[0.0, 0.5, 0.9, 1.0])
    p.add_argument("--rules", choices=["on", "off"], default="on")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--bars", type=int, default=12)
    p.add_argument("--keys", type=int, default=24, help="the first N of the 24 keys x modes")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--models", help="models/ folder (default: the shipped models)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="also write every piece's figures here")
    args = p.parse_args(argv)

    keys = [(k, m) for m in (1, 0) for k in range(12)][: args.keys]
    tasks = [
        (k, m, s, lock, args.rules, args.bars)
        for lock in args.key_lock
        for s in range(args.seeds)
        for k, m in keys
    ]
    if args.workers > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers, _init, (args.models, args.device)) as pool:
            rows = pool.map(_one, tasks, chunksize=1)
    else:
        _init(args.models, args.device)
        rows = [_one(t) for t in tasks]
    print(
        f"rules {args.rules}, {len(keys)} keys x {args.seeds} seeds, {args.bars} bars, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    header = (
        "key lock",
        "in scale",
        "natural",
        "key",
        "mode",
        "key+mode",
        "repeated/piece",
        "longest p50 / max (bars)",
        "overhang max",
        "notes/piece",
        "tok/s",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    summaries = {}
    for lock in args.key_lock:
        s = summarise([r for r in rows if r["lock"] == lock])
        summaries[str(lock)] = s
        print(
            f"| {lock:g} | {s['scale_share']:.4f} | {s['natural_share']:.4f} | {s['key']:.2f} "
            f"| {s['mode']:.2f} | {s['key_mode']:.2f} | {s['repeated_per_piece']:.1f} "
            f"| {s['longest_bars_p50']:.2f} / "
            f"{s['longest_bars_max']:.2f} | {s['overhang_bars_max']:.2f} | {s['notes_per_piece']:.0f} "
            f"| {s['tokens_per_s']:.0f} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "summary": summaries, "pieces": rows},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
