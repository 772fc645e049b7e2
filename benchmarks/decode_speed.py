"""FIGARO decoding speed: incremental (KV cache) vs FIGARO's full-recompute sampler.

For each model size (official ``figaro-expert`` and our ``compact`` default) and thread count,
one worker process builds a model with random weights (no trained model is needed for speed),
generates 12 bars with the constrained incremental decoder, the token count fixed at
``--tokens-per-bar`` per bar (2,800 tokens ~ a 12-bar segment of multi-instrument pop), and
times FIGARO's own sampler (the whole 256-token window recomputed per token) on a few tokens
at a full window, in the same process, on the same weights. Reports tokens/s, the real-time
factor (generation time / playing time of 12 bars of 4/4 at 120 BPM = 24 s), the time to the
first bar, peak RSS, and what the grammar mask alone costs per token (``--rules on|off``, the
clean-note rules of issue 14; ``--key-lock``).

    .venv/bin/python benchmarks/decode_speed.py                 # both sizes, 1 and 2 threads
    .venv/bin/python benchmarks/decode_speed.py --sizes compact --threads 2 --device cuda
    .venv/bin/python benchmarks/decode_speed.py --sizes compact --threads 1 --quantize int8 --rules off
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SIZES = ("expert", "compact")


def description(n_bars: int) -> list[str]:
    """A plausible 12-bar pop description (4/4, drums, bass, piano, guitar, strings)."""
    instruments = [
        "Instrument_drum",
        "Instrument_Electric Bass (finger)",
        "Instrument_Acoustic Grand Piano",
        "Instrument_Electric Guitar (clean)",
        "Instrument_String Ensemble 1",
    ]
    chords = ["Chord_C:maj", "Chord_A:min", "Chord_F:maj", "Chord_G:maj"]
    tokens: list[str] = []
    for i in range(n_bars):
        tokens += [
            f"Bar_{i + 1}",
            "Time Signature_4/4",
            "Note Density_12",
            "Mean Velocity_24",
            "Mean Pitch_15",
            "Mean Duration_14",
            *instruments,
            chords[i % 4],
        ]
    return tokens


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> dict:
    import torch

    from e2m_live.description.vocab import split_bars
    from e2m_live.figaro.config import FigaroConfig
    from e2m_live.figaro.constraints import DecodeRules
    from e2m_live.figaro.decode import (
        IncrementalDecoder,
        figaro_reference_decode,
        prepare_description,
    )
    from e2m_live.figaro.model import FigaroModel

    torch.set_num_threads(args.worker_threads)
    rss_before_model = peak_rss_mb()
    config = FigaroConfig.expert() if args.size == "expert" else FigaroConfig.compact()
    torch.manual_seed(0)
    model = FigaroModel(config).eval()
    desc_tokens = description(args.bars)
    budget = args.tokens_per_bar
    decoder = IncrementalDecoder(model, device=args.device, quantize=args.quantize)
    rules = DecodeRules() if args.rules == "on" else DecodeRules.off()

    def run(n_bars: int) -> tuple[float, float, int]:
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
        cpu_start = time.process_time()
        start = time.perf_counter()
        first = None
        stream = decoder.generate_bars(
            desc_tokens[: len(desc_tokens) * n_bars // args.bars],
            seed=0,
            max_tokens_per_bar=budget,
            min_tokens_per_bar=budget - 5,
            rules=rules,
            scale=(0, 1),
            key_lock=args.key_lock,
        )
        for _ in stream:
            sync()
            first = first or time.perf_counter() - start
        sync()
        run.cpu_seconds = time.process_time() - cpu_start  # type: ignore[attr-defined]
        return time.perf_counter() - start, first or 0.0, decoder.tokens_generated

    run(1)  # warm-up (allocator, first-call dispatch, mask cache)
    wall, first_bar, tokens = run(args.bars)
    cpu_seconds = run.cpu_seconds  # type: ignore[attr-defined]
    seconds_of_music = args.bars * 4 * 60 / 120
    result = {
        "size": args.size,
        "threads": args.worker_threads,
        "device": args.device,
        "quantize": args.quantize,
        "parameters": model.num_parameters(),
        "tokens": tokens,
        "seconds": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "first_bar_s": round(first_bar, 3),
        "cpu_seconds": round(cpu_seconds, 3),  # all threads; on a busy machine wall time includes waiting
        "load_average_1min": round(os.getloadavg()[0], 2),
        "real_time_factor": round(wall / seconds_of_music, 3),
        "windows": decoder.windows_started,
        "rules": args.rules,
        "key_lock": args.key_lock,
        "mask_us_per_token": mask_cost(decoder, desc_tokens, budget, rules, args.key_lock),
    }
    if args.reference_tokens > 0:
        # FIGARO's sampler at a full window: start from a history of context_size tokens
        ref_model = decoder.model
        desc = prepare_description(split_bars(desc_tokens, "description"))
        prefix = decoder.token_ids[: config.context_size]
        figaro_reference_decode(ref_model, desc, 1, prefix=prefix, device=args.device)  # warm-up
        start = time.perf_counter()
        figaro_reference_decode(ref_model, desc, args.reference_tokens, prefix=prefix, device=args.device)
        ref_wall = time.perf_counter() - start
        result["reference_tokens_per_s"] = round(args.reference_tokens / ref_wall, 2)
        result["speedup"] = round(result["tokens_per_s"] / result["reference_tokens_per_s"], 1)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["rss_before_model_mb"] = round(rss_before_model, 1)
    return result


def mask_cost(decoder, desc_tokens: list[str], budget: int, rules, key_lock: float) -> float:
    """CPU microseconds per token of the grammar alone (state update, mask lookup, the add), replaying
    the last run's tokens: what the rules of issue 14 cost, apart from the model."""
    import torch

    from e2m_live.description.vocab import split_bars
    from e2m_live.figaro.constraints import GrammarState, ScaleLock
    from e2m_live.figaro.decode import bar_plan

    plans = {k: bar_plan(bar, True) for k, bar in enumerate(split_bars(desc_tokens, "description"), start=1)}
    logits = torch.zeros(decoder.grammar.size, device=decoder.device)
    lock = ScaleLock(0, 1, key_lock) if key_lock > 0 else None
    best = float("inf")
    for _ in range(3):
        state = GrammarState(
            decoder.grammar,
            plans=plans,
            final_bar=len(plans),
            budget=budget,
            minimum=budget - 5,
            rules=rules,
            lock=lock,
        )
        start = time.process_time()
        for token_id in decoder.token_ids:
            _ = logits + state.mask()
            state.advance(token_id)
        best = min(best, (time.process_time() - start) / len(decoder.token_ids) * 1e6)
    return round(best, 2)


def ablation(args: argparse.Namespace) -> dict:
    """Per-token time of one decoder step at a half-full window, for each optimisation in turn."""
    import torch

    from e2m_live.figaro.config import FigaroConfig
    from e2m_live.figaro.model import FigaroModel
    from e2m_live.figaro.quantize import quantize_int8

    torch.set_num_threads(args.worker_threads)
    config = FigaroConfig.expert() if args.size == "expert" else FigaroConfig.compact()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = FigaroModel(config).eval().to(dev)
    context = config.context_size
    half = context // 2
    desc = torch.randint(0, config.description_vocab_size, (1, context), device=dev)
    desc_bars = torch.zeros(1, context, dtype=torch.long, device=dev)
    ids = torch.randint(0, config.remi_vocab_size, (1, half + 1), device=dev)
    zeros = torch.zeros(1, half + 1, dtype=torch.long, device=dev)

    cpu_ms: dict[str, float] = {}

    def timed(fn, n: int, name: str) -> float:
        fn()
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        cpu_ms[name] = round((time.process_time() - cpu) / n * 1e3, 2)  # all threads together
        return (time.perf_counter() - start) / n * 1e3

    def cached_step(m, fast: bool):
        with torch.inference_mode():
            memory = m.encode(desc, desc_bars)
            cache = m.start_cache(memory)
            m.decode_cached(ids[:, :half], zeros[:, :half], zeros[:, :half], cache)

        def step():
            with torch.inference_mode():
                cache.length = half
                m.decode_cached(ids[:, half:], zeros[:, half:], zeros[:, half:], cache, fast=fast)

        return step

    def full_window(m):
        with torch.inference_mode():
            memory = m.encode(desc, desc_bars)  # FIGARO re-encodes only when the first bar changes
        window, bars = ids.repeat(1, 2)[:, :context], zeros.repeat(1, 2)[:, :context]

        def step():
            with torch.inference_mode():
                m.decode(window, memory, bars, bars)

        return step

    reps = 40 if args.size == "compact" else 15
    variants = {
        "FIGARO sampler (whole 256-token window per token)": (full_window(model), 3),
        "KV cache, general attention code": (cached_step(model, fast=False), reps),
        "+ one-token path (fused QKV, SDPA + relative mask, table slices)": (cached_step(model, True), reps),
    }
    if dev.type == "cpu":
        variants["+ int8 weights"] = (cached_step(quantize_int8(model), True), reps)
    rows = {name: timed(fn, n, name) for name, (fn, n) in variants.items()}
    return {
        "size": args.size,
        "threads": args.worker_threads,
        "device": args.device,
        "ms_per_token": {k: round(v, 2) for k, v in rows.items()},
        "cpu_ms_per_token": cpu_ms,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--quantize", choices=["int8"], default=None, help="int8 weights (CPU only)")
    parser.add_argument("--bars", type=int, default=12)
    parser.add_argument("--tokens-per-bar", type=int, default=234, help="12 x 234 ~ 2,800 tokens")
    parser.add_argument(
        "--reference-tokens",
        type=int,
        default=8,
        help="tokens timed with FIGARO's full-recompute sampler (0: skip)",
    )
    parser.add_argument(
        "--omp-wait-policy",
        choices=["ACTIVE", "PASSIVE"],
        help="OMP_WAIT_POLICY for the workers (PASSIVE: idle OpenMP threads sleep instead of "
        "spinning, which keeps 2 threads usable on a busy 2-core machine)",
    )
    parser.add_argument(
        "--rules",
        choices=["on", "off"],
        default="on",
        help="the clean-note rules of the grammar mask (DecodeRules), or the grammar alone",
    )
    parser.add_argument("--key-lock", type=float, default=0.0, help="key lock to C major (0: none)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="per-token step time of each optimisation instead of whole 12-bar runs",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=SIZES, help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(ablation(args) if args.ablation else worker(args)))
        return 0

    results = []
    root = Path(__file__).resolve().parents[1]
    for size in args.sizes:
        for threads in args.threads:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                "--size",
                size,
                "--worker-threads",
                str(threads),
                "--device",
                args.device,
                "--bars",
                str(args.bars),
                "--tokens-per-bar",
                str(args.tokens_per_bar),
                "--reference-tokens",
                str(args.reference_tokens),
                "--rules",
                args.rules,
                "--key-lock",
                str(args.key_lock),
            ]
            if args.quantize:
                cmd += ["--quantize", args.quantize]
            if args.ablation:
                cmd.append("--ablation")
            env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": str(threads)}
            if args.omp_wait_policy:
                env["OMP_WAIT_POLICY"] = args.omp_wait_policy
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(result)
            if args.ablation:
                wait = env.get("OMP_WAIT_POLICY", "")
                print(
                    f"{size} {threads} thread(s) {args.device} {wait}, load {result['load_average_1min']}, "
                    "per token (wall, CPU of all threads):"
                )
                for name, ms in result["ms_per_token"].items():
                    cpu = result["cpu_ms_per_token"][name]
                    print(f"  {ms:9.2f} ms {cpu:9.2f} ms  {1000 / ms:8.1f} tok/s  {name}", flush=True)
                continue
            ref = (
                f", FIGARO sampler {result['reference_tokens_per_s']} tok/s (x{result['speedup']})"
                if "speedup" in result
                else ""
            )
            policy = f" OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']}" if "OMP_WAIT_POLICY" in env else ""
            print(
                f"{size:8s} {threads} thread(s) {args.device}{' int8' if args.quantize else ''}{policy}: "
                f"{result['tokens_per_s']:7.1f} tok/s, {result['tokens']} tokens in {result['seconds']} s, "
                f"RTF {result['real_time_factor']}, first bar {result['first_bar_s']} s{ref}, "
                f"peak RSS {result['peak_rss_mb']} MB, CPU {result['cpu_seconds']} s, "
                f"rules {args.rules}, key lock {args.key_lock:g}, "
                f"mask {result['mask_us_per_token']} us/token, "
                f"load {result['load_average_1min']}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
