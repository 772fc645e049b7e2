"""Compare the three planners on equal terms (issue 19): class LSTMs, one LSTM, a Transformer.

    python -m training.planner.compare --data data/dataset [--control-seeds 2 --control-bars 4]

Every part uses the same data, seeds and features for all three:

1. **Table 1** (the report's): teacher-forced accuracy and KL per class on the held-out songs
   (``--split``, by default the corpora the shipped planner was trained on), with
   :func:`training.planner.evaluate.heldout_metrics` for the class LSTMs and
   :func:`training.planner.train_sequence.heldout_metrics` for the others. The class LSTMs' stream
   is also scored on instrument and chord targets alone (its end markers have no counterpart in the
   sequence models), which is what the sequence models' figure counts.
2. **Validity**: ``--plans`` plans over random features with the mask (the planners as shipped: all
   must be valid) and without it: the sequence models sampled alone, and the class LSTMs' stream
   sampled without its bar masks (assembled as the planner would; the meta bins cannot be invalid).
3. **Speed**: one 12-bar plan at a time on one thread, the planners interleaved so the machine's
   load falls on all alike; median CPU and wall time per plan.
4. **Plan-level control**: :func:`training.planner.evaluate.controllability` (Spearman over the
   1,944-point grid).
5. **End to end** (``--control-seeds`` > 0): the reduced grid of :mod:`training.evaluation.control`
   generated through the FIGARO decoder with each planner (same rows and seeds; rows interleaved),
   estimated and counted by :func:`training.evaluation.control.summarise` (features, key, chord
   tones, pathology counters).

Writes ``--out`` (JSON with everything) and prints the Markdown tables (``--markdown`` saves them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from e2m_live.description.grammar import GrammarError, validate
from e2m_live.features import MOODS, EmotionFeatures
from e2m_live.planner.assemble import assemble
from e2m_live.planner.classes import STREAM_VOCAB
from e2m_live.planner.examples import batch_examples
from e2m_live.planner.inference import LSTMStepper, single_threaded_blas
from e2m_live.planner.registry import PLANNER_NAMES, load_planner
from e2m_live.planner.sampling import BarPlan
from e2m_live.planner.sequence import SequencePlanner, sequence_arrays, unmasked_validity

CLASS_ROWS = ("mean_pitch", "note_density", "mean_velocity", "mean_duration", "instruments_chords")


# -- 1. held-out accuracy ------------------------------------------------------------------------


def stream_item_accuracy(planner: Any, val: Any) -> float:
    """The class LSTMs' stream accuracy on instrument and chord targets only."""
    model = planner.stream_model
    correct = count = 0
    with torch.no_grad():
        for start in range(0, len(val.stream_rows), 256):
            rows = val.stream_rows[start : start + 256]
            logits = model(
                torch.from_numpy(val.features[rows]),
                torch.from_numpy(val.stream_inputs[start : start + 256]),
                torch.from_numpy(val.stream_bars[start : start + 256]),
            )
            target = torch.from_numpy(val.stream_targets[start : start + 256])
            items = target >= STREAM_VOCAB.FIRST_INSTRUMENT
            correct += int((logits[items].argmax(-1) == target[items]).sum())
            count += int(items.sum())
    return correct / max(count, 1)


def heldout(
    planners: dict[str, Any], data: Path, split: str, corpora: list[str] | None, baseline_stride: int
) -> dict[str, dict]:
    from training.planner.evaluate import heldout_metrics as class_metrics
    from training.planner.train import load_examples
    from training.planner.train_sequence import fit_positions
    from training.planner.train_sequence import heldout_metrics as sequence_metrics

    val_examples = load_examples(data, split, 0, corpora)
    out: dict[str, dict] = {
        "_data": {
            "split": split,
            "corpora": corpora,
            "segments": len(val_examples),
            "songs": len({e.song_id for e in val_examples}),
        }
    }
    arrays = sequence_arrays(val_examples)
    for name, planner in planners.items():
        started = time.monotonic()
        if isinstance(planner, SequencePlanner):
            fitted = arrays
            if planner.stepper.max_tokens is not None:
                fitted = fit_positions(arrays, planner.stepper.max_tokens)
            out[name] = sequence_metrics(planner.model, *fitted)
        else:
            # The baselines (majority class) come from the train split; a stride keeps the parse short.
            train_batch = batch_examples(load_examples(data, "train", baseline_stride, corpora))
            val_batch = batch_examples(val_examples)
            sigma = float(planner.metadata.get("config", {}).get("sigma", 1.0))
            out[name] = class_metrics(planner, train_batch, val_batch, sigma)
            out[name]["instruments_chords"]["item_accuracy"] = stream_item_accuracy(planner, val_batch)
        out[name]["_seconds"] = round(time.monotonic() - started, 1)
        print(f"held-out {name}: {time.monotonic() - started:.0f} s", flush=True)
    return out


# -- 2. validity -----------------------------------------------------------------------------------


def random_features(n: int, seed: int) -> list[EmotionFeatures]:
    rng = np.random.default_rng(seed)
    return [
        EmotionFeatures(
            energy=rng.random(),
            valence=rng.random(),
            loudness=-30 * rng.random(),
            instrumentalness=rng.random(),
            danceability=rng.random(),
            acousticness=rng.random(),
            key=int(rng.integers(12)),
            mode=int(rng.integers(2)),
            time_signature=int(rng.integers(3, 8)),
            tempo=60 + 120 * rng.random(),
        )
        for _ in range(n)
    ]


def class_lstm_unmasked(planner: Any, features: list[EmotionFeatures], bars: int, seed: int) -> list[dict]:
    """The class LSTMs' stream sampled with no mask (the ordered bins cannot be invalid), each bar's
    instruments and chords collected as the planner's assembler collects them, then validated."""
    stepper = LSTMStepper(planner.stream_model)
    v = STREAM_VOCAB
    rng = np.random.default_rng(seed)
    vectors = np.stack([f.to_vector() for f in features]).astype(np.float32)
    constant, state = stepper.start(vectors)
    batch = len(features)
    previous = np.full(batch, v.START)
    bar = np.zeros(batch, dtype=np.int64)
    streams: list[list[list[int]]] = [[[] for _ in range(bars)] for _ in range(batch)]
    for _ in range(bars * 40):
        logits, state = stepper.step(constant, previous, np.minimum(bar, bars - 1), state)
        logits[:, v.PAD] = -np.inf
        token = (logits + rng.gumbel(size=logits.shape)).argmax(1)
        for row in np.flatnonzero(bar < bars):
            streams[row][bar[row]].append(int(token[row]))
        bar = bar + (token == v.END_BAR)
        previous = token
        if (bar >= bars).all():
            break
    results = []
    for row, f in enumerate(features):
        plans = []
        for ids in streams[row]:
            instruments, chords = [], []
            for token_id in ids:  # as decode_bar, but keeping duplicates for the grammar to judge
                if v.is_instrument(token_id):
                    instruments.append(v.instrument_name(token_id))
                elif v.is_chord(token_id):
                    chords.append(v.chord(token_id).absolute(int(f.key)))
            plans.append(BarPlan(1, 1, 1, 1, tuple(instruments), tuple(chords)))
        finished = bool(bar[row] >= bars)
        try:
            description = assemble(plans, planner.time_signature_for(f))
            validate(description.tokens())
            grammar = finished
        except GrammarError:
            grammar = False
        fits = grammar and all(1 <= len(p.instruments) <= 10 and 1 <= len(p.chords) <= 4 for p in plans)
        results.append({"grammar": grammar, "bars": grammar, "planner": fits})
    return results


def validity(planners: dict[str, Any], n: int, bars: int, seed: int) -> dict[str, dict]:
    features = random_features(n, seed)
    out: dict[str, dict] = {}
    for name, planner in planners.items():
        masked_valid = 0
        for start in range(0, n, 1000):
            chunk = features[start : start + 1000]
            for description in planner.plan_many(chunk, bars=bars, seed=seed + start):
                validate(description.tokens())
                masked_valid += len(description.bars) == bars
        if isinstance(planner, SequencePlanner):
            checks = []
            for start in range(0, n, 1000):
                chunk = features[start : start + 1000]
                samples = planner.sample_unmasked(chunk, bars=bars, seed=seed + start)
                checks += [unmasked_validity(s, bars) for s in samples]
        else:
            checks = class_lstm_unmasked(planner, features, bars, seed)
        out[name] = {
            "plans": n,
            "masked_valid": masked_valid,
            **{
                f"unmasked_{k}": float(np.mean([c[k] for c in checks]))
                for k in ("grammar", "bars", "planner")
            },
        }
        print(f"validity {name}: {out[name]}", flush=True)
    return out


# -- 3. speed --------------------------------------------------------------------------------------


def speed(planners: dict[str, Any], plans: int, bars: int = 12) -> dict[str, dict]:
    torch.set_num_threads(1)
    moods = list(MOODS.values())
    for planner in planners.values():  # warm-up
        for i in range(3):
            planner.plan(moods[i % len(moods)], bars=bars, seed=i)
    cpu: dict[str, list[float]] = {name: [] for name in planners}
    wall: dict[str, list[float]] = {name: [] for name in planners}
    tokens: dict[str, list[int]] = {name: [] for name in planners}
    with single_threaded_blas():
        for i in range(plans):
            for name, planner in planners.items():
                c0, w0 = time.process_time(), time.perf_counter()
                description = planner.plan(moods[i % len(moods)], bars=bars, seed=100 + i)
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - w0)
                tokens[name].append(len(description.tokens()))
    load = _load_average()
    return {
        name: {
            "cpu_ms_median": 1000 * float(np.median(cpu[name])),
            "wall_ms_median": 1000 * float(np.median(wall[name])),
            "wall_ms_p90": 1000 * float(np.percentile(wall[name], 90)),
            "tokens_mean": float(np.mean(tokens[name])),
            "plans": plans,
            "load_average": load,
        }
        for name in planners
    }


def _load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


# -- 4./5. control ---------------------------------------------------------------------------------


def plan_control(planners: dict[str, Any], seed: int) -> dict[str, dict]:
    from training.planner.evaluate import controllability

    return {name: controllability(planner, seed=seed) for name, planner in planners.items()}


def end_to_end_from_samples(path: Path) -> dict[str, dict]:
    """The end-to-end summary of the samples an earlier (perhaps interrupted) run wrote; only the grid
    rows every planner completed count, so all are judged on the same rows."""
    from e2m_live.arrangement import DEFAULT_KEY_LOCK
    from training.evaluation.control import sample_from_record, summarise

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_planner: dict[str, list] = {}
    for record in records:
        by_planner.setdefault(record["planner"], []).append(record)
    complete = min(len(rows) for rows in by_planner.values())
    return {
        name: summarise([sample_from_record(r) for r in rows[:complete]], DEFAULT_KEY_LOCK)
        for name, rows in by_planner.items()
    }


def end_to_end(
    planners: dict[str, Any],
    seeds: int,
    bars: int,
    sweeps: list[str],
    samples_path: Path | None,
    max_tokens_per_bar: int,
) -> dict[str, dict]:
    from e2m_live.arrangement import DEFAULT_KEY_LOCK
    from e2m_live.pipeline import DecodingOptions, Pipeline
    from training.evaluation.control import (
        build_grid,
        generate_sample,
        sample_record,
        summarise,
    )

    pipeline = Pipeline.load(threads=1)
    grid = [row for row in build_grid(True, seeds) if row.sweep in sweeps]
    options = DecodingOptions(max_tokens_per_bar=max_tokens_per_bar)
    samples: dict[str, list] = {name: [] for name in planners}
    handle = samples_path.open("w") if samples_path else None
    started = time.monotonic()
    try:
        for i, row in enumerate(grid):
            for name, planner in planners.items():  # interleaved: the load falls on all alike
                pipeline.planner = planner
                sample = generate_sample(pipeline, row, bars, options, DEFAULT_KEY_LOCK)
                samples[name].append(sample)
                if handle:
                    handle.write(json.dumps({"planner": name, **sample_record(sample)}, default=float) + "\n")
                    handle.flush()
            print(
                f"[{i + 1}/{len(grid)}] {row.sweep} seed {row.seed}: {time.monotonic() - started:.0f} s",
                flush=True,
            )
    finally:
        if handle:
            handle.close()
    return {name: summarise(rows, DEFAULT_KEY_LOCK) for name, rows in samples.items()}


# -- Markdown --------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 2) -> str:
    try:
        return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"
    except TypeError:
        return str(value)


def markdown(results: dict) -> str:
    names = [n for n in PLANNER_NAMES if n in results.get("planners", [])]
    lines: list[str] = []
    if "heldout" in results:
        from training.planner.evaluate import REPORT_TABLE1

        h = results["heldout"]
        lines += [
            "| class | report acc / KL | " + " | ".join(f"{n} acc / KL" for n in names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for cls in CLASS_ROWS:
            acc, kl = REPORT_TABLE1[cls]
            cells = []
            for n in names:
                m = h[n][cls]
                if cls == "instruments_chords":
                    item = m.get("item_accuracy", m["accuracy"])
                    cells.append(
                        f"{_f(item)}"
                        + (f" ({_f(m['accuracy'])} with end markers)" if "item_accuracy" in m else "")
                    )
                else:
                    cells.append(f"{_f(m['accuracy'])} / {_f(m['kl'])}")
            lines.append(f"| {cls.replace('_', ' ')} | {acc:.2f} / {_f(kl)} | " + " | ".join(cells) + " |")
        lines.append("")
    if "validity" in results:
        v = results["validity"]
        lines += [
            "| planner | with the mask: valid | without: grammar-valid | without: valid, right bar "
            "count | without: also 1-10 instruments, 1-4 chords a bar |",
            "|---|---|---|---|---|",
        ]
        for n in names:
            r = v[n]
            lines.append(
                f"| {n} | {r['masked_valid']} / {r['plans']} | {_f(r['unmasked_grammar'], 3)} | "
                f"{_f(r['unmasked_bars'], 3)} | {_f(r['unmasked_planner'], 3)} |"
            )
        lines.append("")
    if "speed" in results:
        s = results["speed"]
        base = s.get("class-lstm", {}).get("cpu_ms_median")
        lines += [
            "| planner | CPU ms / 12-bar plan (median) | wall ms (median, p90) | ratio to class-lstm | "
            "tokens / plan |",
            "|---|---|---|---|---|",
        ]
        for n in names:
            r = s[n]
            ratio = r["cpu_ms_median"] / base if base else float("nan")
            lines.append(
                f"| {n} | {_f(r['cpu_ms_median'], 1)} | {_f(r['wall_ms_median'], 1)}, "
                f"{_f(r['wall_ms_p90'], 1)} | {_f(ratio)} | {_f(r['tokens_mean'], 0)} |"
            )
        lines.append(f"\nLoad average during the speed run: {_f(s[names[0]]['load_average'], 1)}.\n")
    if "plan_control" in results:
        c = results["plan_control"]
        keys = [k for k in c[names[0]] if "spearman" in c[names[0]][k]]
        lines += [
            "| feature -> plan statistic (Spearman, 1,944 plans) | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for k in keys:
            lines.append(f"| {k} | " + " | ".join(f"{c[n][k]['spearman']:+.2f}" for n in names) + " |")
        for k in ("chords in the requested key's scale", "plans whose chords fit the requested key best"):
            lines.append(f"| {k} (share) | " + " | ".join(_f(c[n][k]["share"]) for n in names) + " |")
        lines.append("")
    if "end_to_end" in results:
        e = results["end_to_end"]
        lines += [
            "| end to end (decoded, re-estimated) | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        features = [f for f in e[names[0]]["features"] if e[names[0]]["features"][f]["n"]]
        for f in features:
            lines.append(
                f"| {f}: estimated at low -> high request (Spearman) | "
                + " | ".join(
                    " -> ".join(_f(x) for x in e[n]["features"][f]["by_level"].values())
                    + f" ({_f(e[n]['features'][f]['rho'])})"
                    for n in names
                )
                + " |"
            )
        rows = (
            ("key + mode exact", lambda r: r["exact"]["key_mode"]),
            (
                "pitched time on the plan's chord tones (tritone chance)",
                lambda r: f"{_f(r['chords']['on_plan_chords'])} ({_f(r['chords']['tritone_chance'])})",
            ),
            ("in-scale share", lambda r: r["key_lock"]["in_scale_share"]),
            ("repeated notes per piece", lambda r: r["pathology"]["repeated_per_piece"]),
            ("longest note, bars (p90)", lambda r: r["pathology"]["longest_p90"]),
            ("overhang max, bars", lambda r: r["pathology"]["overhang_max"]),
            ("tracks per instrument, max", lambda r: r["pathology"]["tracks_per_instrument_max"]),
            (
                "solo / drum / bass share",
                lambda r: " / ".join(
                    _f(r["pathology"][k]) for k in ("solo_share", "drum_share", "bass_share")
                ),
            ),
            ("notes per sample", lambda r: r["speed"]["notes"] / max(r["speed"]["samples"], 1)),
            ("real-time factor of decoding", lambda r: r["speed"]["realtime_factor"]),
        )
        for label, get in rows:
            lines.append(f"| {label} | " + " | ".join(_f(get(e[n])) for n in names) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/dataset"))
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument(
        "--corpora",
        nargs="+",
        default=None,
        help="held-out corpora (default: those the class-lstm planner was trained on)",
    )
    parser.add_argument("--planners", nargs="+", default=list(PLANNER_NAMES), choices=PLANNER_NAMES)
    parser.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a planner's folder (default: its folder under models/)",
    )
    parser.add_argument(
        "--parts", nargs="+", default=["heldout", "validity", "speed", "plan_control", "end_to_end"]
    )
    parser.add_argument("--plans", type=int, default=10_000, help="plans for the validity check")
    parser.add_argument("--speed-plans", type=int, default=40)
    parser.add_argument("--baseline-stride", type=int, default=12, help="train segments for the baselines")
    parser.add_argument("--control-seeds", type=int, default=1)
    parser.add_argument("--control-bars", type=int, default=4)
    parser.add_argument(
        "--control-sweeps",
        nargs="+",
        default=["energy", "valence", "loudness", "danceability", "default", "key"],
    )
    parser.add_argument("--max-tokens-per-bar", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("training/reports/planner_comparison.json"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dirs = dict(item.split("=", 1) for item in args.dir)
    planners = {name: load_planner(name, dirs.get(name)) for name in args.planners}
    corpora = args.corpora
    if corpora is None and "class-lstm" in planners:
        corpora = planners["class-lstm"].metadata.get("dataset_manifest", {}).get("config", {}).get("corpora")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"planners": list(planners), "dirs": dirs, "command": " ".join(sys.argv)}
    if args.out.is_file():  # parts run earlier are kept, so the parts can run one at a time
        previous = json.loads(args.out.read_text())
        if previous.get("planners") == results["planners"]:
            results = {**previous, **{k: v for k, v in results.items() if k != "command"}}
    parts = {
        "heldout": lambda: heldout(planners, args.data, args.split, corpora, args.baseline_stride),
        "validity": lambda: validity(planners, args.plans, 12, args.seed),
        "speed": lambda: speed(planners, args.speed_plans),
        "plan_control": lambda: plan_control(planners, args.seed),
        "end_to_end_from_samples": lambda: end_to_end_from_samples(args.out.with_suffix(".samples.jsonl")),
        "end_to_end": lambda: end_to_end(
            planners,
            args.control_seeds,
            args.control_bars,
            args.control_sweeps,
            args.out.with_suffix(".samples.jsonl"),
            args.max_tokens_per_bar,
        ),
    }
    for part in args.parts:
        started = time.monotonic()
        results[part.removesuffix("_from_samples")] = parts[part]()
        results.setdefault("seconds", {})[part] = round(time.monotonic() - started, 1)
        args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    table = markdown(results)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
