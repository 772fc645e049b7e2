"""Description fidelity of a FIGARO model on validation songs, against a baseline and a ceiling.

    python -m training.figaro.evaluate --model models/figaro-compact --data data/dataset \\
        --out runs/eval-figaro [--limit 32] [--bars 12] [--card models/figaro-compact]

For each validation segment (one per song first, then more, in a fixed order) three systems turn the
segment's description into REMI+ tokens:

* ``model``: the FIGARO model, decoded bar by bar (grammar-constrained, ``--temperature``/``--top-p``,
  the decode rules on or off with ``--rules``, the chord-tone bias set by ``--chord-bias``);
* ``baseline``: :mod:`training.figaro.baseline`, random notes from the described chords at the described
  density;
* ``ceiling``: the segment's own REMI+ (the ground truth), i.e. extract -> REMI -> MIDI.

Every output goes the same way: REMI+ -> MIDI -> :func:`e2m_live.description.extract.extract`, and the
extracted notes and description are compared bar by bar with the segment
(:mod:`training.figaro.fidelity`). ``--card DIR`` then writes the model card and piano rolls there
(:mod:`training.figaro.card`), so evaluation and card are one command.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from e2m_live.description.extract import MidiError, extract
from e2m_live.description.remi import bars_to_midi, tokens_to_bars, tokens_to_midi
from e2m_live.music import Bar
from training.figaro import fidelity
from training.figaro.baseline import baseline_remi
from training.figaro.card import write_card
from training.figaro.segments import EvalSegment, load_eval_segments, select_segments
from training.figaro.speed import measure_speed
from training.figaro.tables import corpus_table, metrics_table


def reference_facts(segment: EvalSegment) -> list[fidelity.BarFacts]:
    """The segment's own bars with the chords its description names."""
    return fidelity.bar_facts(_pad_bars(tokens_to_bars(segment.remi), segment.n_bars), segment.description)


def _pad_bars(bars: list[Bar], n: int) -> list[Bar]:
    while len(bars) < n:
        prev = bars[-1] if bars else Bar()
        bars.append(Bar(notes=[], numerator=prev.numerator, denominator=prev.denominator, index=len(bars)))
    return bars[:n]


def facts_through_midi(remi: Sequence[str]) -> list[fidelity.BarFacts]:
    """What extraction finds in the MIDI of ``remi``: notes and described chords per bar.

    Extraction drops leading and trailing bars without notes; leading ones are put back as empty
    bars so bar ``i`` of the result is bar ``i`` of ``remi``.
    """
    bars = tokens_to_bars(remi)
    if not any(bar.notes for bar in bars):
        return [fidelity.BarFacts((), b.numerator, b.denominator) for b in bars]
    leading = next(i for i, bar in enumerate(bars) if bar.notes)
    try:
        # notes as given (exact layout): the clean writer would drop the data's own repeated notes
        found = extract(bars_to_midi(bars, exact=True))
    except MidiError:
        return [fidelity.BarFacts((), b.numerator, b.denominator) for b in bars]
    facts = [fidelity.BarFacts((), b.numerator, b.denominator) for b in bars[:leading]]
    return facts + fidelity.bar_facts(tokens_to_bars(found.remi), found.description)


@dataclass
class GenerationSettings:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = 0.95
    max_tokens_per_bar: int = 512
    constrained: bool = True
    quantize: str | None = None
    rules: bool = True  # the decode rules (DecodeRules()) or the grammar alone (DecodeRules.off())
    chord_bias: float | None = None  # None: the rules' default (CHORD_BIAS on, 0 off)
    rule_overrides: dict[str, Any] = field(default_factory=dict)  # other DecodeRules fields

    def decode_rules(self) -> Any:
        """The :class:`~e2m_live.figaro.constraints.DecodeRules` these settings decode with."""
        from e2m_live.figaro.constraints import DecodeRules

        rules = DecodeRules() if self.rules else DecodeRules.off()
        if self.chord_bias is not None:
            rules = replace(rules, chord_bias=self.chord_bias)
        try:
            return replace(rules, **self.rule_overrides)
        except TypeError as err:  # an unknown field
            raise ValueError(f"bad --rule: {err}") from err

    def label(self) -> str:
        """A short name for tables, e.g. ``t=1.0 p=0.95 constrained rules chord-bias 1``."""
        p = "-" if self.top_p is None else f"{self.top_p:g}"
        text = f"t={self.temperature:g} p={p}" + (f" k={self.top_k}" if self.top_k else "")
        if self.constrained:
            text += f" constrained, rules {'on' if self.rules else 'off'}"
            text += f", chord bias {self.decode_rules().chord_bias:g}"
            text += "".join(f", {k} {v}" for k, v in sorted(self.rule_overrides.items()))
        else:
            text += " free"
        return text + (f" {self.quantize}" if self.quantize else "")


def steered_decoder_class() -> type:
    """:class:`~e2m_live.figaro.decode.IncrementalDecoder` whose grammar state knows the description's
    chords (:func:`~e2m_live.figaro.constraints.steer_plans`), for the chord-tone bias.

    A stopgap while ``decode.bar_plan`` does not fill ``BarPlan.chords`` itself: once it does, the plans
    arrive with chords and this adds nothing."""
    from e2m_live.figaro.constraints import steer_plans
    from e2m_live.figaro.decode import IncrementalDecoder

    class SteeredDecoder(IncrementalDecoder):
        def _run(
            self, desc: Any, state: Any, prime: list[str], n_bars: int, sampler: Any, interrupt: Any = None
        ) -> Any:
            if not any(plan.chords for plan in state.plans.values()):
                state.plans = steer_plans(state.plans, desc.tokens)
            return super()._run(desc, state, prime, n_bars, sampler, interrupt)

    return SteeredDecoder


def model_generator(
    model_dir: str | Path, settings: GenerationSettings, threads: int | None = 2
) -> tuple[Callable[[EvalSegment, int], list[str]], Any]:
    """A function (segment, seed) -> generated REMI+ tokens, and the decoder (for statistics)."""
    import torch

    from training.figaro.export import load_exported

    if threads:
        torch.set_num_threads(threads)
    decoder = steered_decoder_class()(
        load_exported(model_dir), device="cpu", constrained=settings.constrained, quantize=settings.quantize
    )
    rules = settings.decode_rules()

    def generate(segment: EvalSegment, seed: int) -> list[str]:
        bars = decoder.generate_bars(
            segment.description,
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            seed=seed,
            max_tokens_per_bar=settings.max_tokens_per_bar,
            rules=rules,
        )
        return [tok for bar in bars for tok in bar]

    return generate, decoder


Generator = Callable[[EvalSegment, int], list[str]]


def _systems(generate: Generator | None) -> dict[str, Generator]:
    systems: dict[str, Generator] = {
        "baseline": lambda seg, s: baseline_remi(seg.description, seed=s),
        "ceiling": lambda seg, s: list(seg.remi),
    }
    return {"model": generate, **systems} if generate is not None else systems


def score_segment(segment: EvalSegment, systems: dict[str, Generator], seed: int) -> dict[str, Any]:
    """Every system's metrics row, output tokens, seconds and failure message on one segment."""
    reference = reference_facts(segment)
    scored: dict[str, Any] = {}
    for name, system in systems.items():
        started, error = time.perf_counter(), ""
        try:
            out = system(segment, seed)
        except (ValueError, RuntimeError) as err:  # a failed generation scores as silence
            out, error = [], str(err)
        seconds = time.perf_counter() - started
        row = fidelity.segment_metrics(reference, facts_through_midi(out))
        row["tokens"] = float(len(out))
        scored[name] = {"row": row, "tokens": out, "seconds": seconds, "error": error}
    return scored


_WORKER_SYSTEMS: dict[str, Generator] = {}


def _worker_init(model_dir: str, settings: GenerationSettings, threads: int | None) -> None:
    _WORKER_SYSTEMS.update(_systems(model_generator(model_dir, settings, threads)[0]))


def _worker_score(job: tuple[EvalSegment, int]) -> dict[str, Any]:
    return score_segment(job[0], _WORKER_SYSTEMS, job[1])


def evaluate(
    segments: Sequence[EvalSegment],
    generate: Generator | None,
    seed: int = 0,
    keep_tokens: int = 0,
    log: Callable[[str], None] = print,
    workers: int = 1,
    model: tuple[str, GenerationSettings, int | None] | None = None,
    time_budget: float | None = None,
) -> dict[str, Any]:
    """Metrics of every system on every segment, and their summaries.

    ``generate`` is the model (``None`` skips it). With ``workers > 1`` and ``model`` =
    ``(model_dir, settings, threads)`` instead, that many processes each load the model and score
    segments in parallel (same seeds, same results as one process). The first ``keep_tokens``
    outputs of each system are returned under ``"tokens"`` (to write MIDI files). After
    ``time_budget`` seconds no further segment is scored and the result covers those done.
    """
    started = time.monotonic()
    jobs = [(seg, seed + i) for i, seg in enumerate(segments)]
    if workers > 1 and model is not None:
        import multiprocessing

        names = ["model", *_systems(None)]
        pool = multiprocessing.get_context("spawn").Pool(workers, _worker_init, model)
        results: Any = pool.imap(_worker_score, jobs)
    else:
        systems = _systems(generate)
        names, pool = list(systems), None
        results = (score_segment(seg, systems, s) for seg, s in jobs)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    tokens: dict[str, list[list[str]]] = {name: [] for name in names}
    timing = {"model_seconds": 0.0, "model_tokens": 0}
    try:
        for i, (seg, scored) in enumerate(zip(segments, results, strict=True)):
            for name in names:
                item = scored[name]
                if item["error"]:
                    log(f"[eval] {name} failed on {seg.song_id}: {item['error']}")
                if name == "model" and (i >= max(workers, 1) or len(segments) == 1):  # first runs warm up
                    timing["model_seconds"] += item["seconds"]
                    timing["model_tokens"] += len(item["tokens"])
                rows[name].append(item["row"])
                if len(tokens[name]) < keep_tokens:
                    tokens[name].append(item["tokens"])
            shown = " ".join(
                f"{n}:inst_f1={rows[n][-1]['inst_f1']:.2f},chord_f1={rows[n][-1]['chord_f1']:.2f}"
                for n in names
            )
            log(f"[eval] {i + 1}/{len(segments)} {seg.song_id} ({seg.n_bars} bars) {shown}")
            if time_budget is not None and time.monotonic() - started > time_budget and i + 1 < len(segments):
                log(f"[eval] time budget spent: stopping after {i + 1} of {len(segments)} segments")
                segments = segments[: i + 1]
                break
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    summaries = {name: fidelity.summarize(r) for name, r in rows.items() if r}
    return {
        "summaries": summaries,
        "by_corpus": summaries_by_corpus(segments, rows),
        "segments": [{"song_id": s.song_id, "corpus": s.corpus, "bars": s.n_bars} for s in segments],
        "rows": rows,
        "timing": timing,
        "tokens": tokens,
    }


def summaries_by_corpus(
    segments: Sequence[EvalSegment], rows: dict[str, list[dict[str, float]]]
) -> dict[str, dict[str, dict[str, float]]]:
    """``{corpus: {system: summary}}`` over the segments of each corpus."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for corpus in sorted({s.corpus for s in segments}):
        picked = [i for i, s in enumerate(segments) if s.corpus == corpus]
        out[corpus] = {
            name: fidelity.summarize([r[i] for i in picked])
            for name, r in rows.items()
            if len(r) == len(segments)
        }
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def parse_rule_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["note_budget_margin=1.0", ...]`` as ``{"note_budget_margin": 1.0, ...}`` (values are JSON)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--rule takes FIELD=JSON, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ValueError(f"--rule {item!r}: the value is not JSON ({err})") from err
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.figaro.evaluate", description=__doc__.split("\n")[0])
    p.add_argument(
        "--model",
        help="exported model directory (config.json + safetensors); omit to "
        "evaluate only the baseline and the ceiling",
    )
    p.add_argument("--data", default="data/dataset", help="dataset directory or pack (.npz)")
    p.add_argument("--split", default="val")
    p.add_argument("--limit", type=int, default=32, help="number of segments (0: all)")
    p.add_argument("--bars", type=int, default=12, help="bars of each segment to generate")
    p.add_argument("--out", default="runs/eval-figaro", help="where metrics.json/metrics.md and MIDI go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--top-k", type=int)
    p.add_argument("--unconstrained", action="store_true", help="decode without the REMI+ grammar mask")
    p.add_argument(
        "--rules", choices=["on", "off"], default="on", help="the decode rules, or the grammar alone"
    )
    p.add_argument(
        "--chord-bias",
        type=float,
        help="logit bonus of the described chord's tones (default: CHORD_BIAS with the rules, 0 without)",
    )
    p.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="set a DecodeRules field, e.g. --rule note_budget_margin=1.0 --rule quarter_spread=null",
    )
    p.add_argument("--skip", type=int, default=0, help="skip the first N segments of the selection order")
    p.add_argument("--quantize", choices=["int8"], help="int8 weights for decoding (CPU)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for generation (per worker)")
    p.add_argument("--workers", type=int, default=1, help="processes that score segments in parallel")
    p.add_argument(
        "--time-budget", type=float, metavar="MINUTES", help="stop scoring new segments after this long"
    )
    p.add_argument("--max-tokens-per-bar", type=int, default=512, help="a bar that reaches it is closed")
    p.add_argument(
        "--speed",
        action="store_true",
        help="first time 12 dense bars (~2,800 tokens) of the densest selected segment, float32 and int8",
    )
    p.add_argument("--card", metavar="MODEL_DIR", help="also write MODEL_CARD.md and piano rolls there")
    p.add_argument("--examples", type=int, default=3, help="12-bar examples rendered for the card")
    p.add_argument("--notes", help="a text file of listening notes to put in the card")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    try:
        if args.bars < 1:
            raise ValueError("--bars must be at least 1")
        if args.card and not args.model:
            raise ValueError("--card needs --model")
        if args.skip < 0:
            raise ValueError("--skip must be >= 0")
        segments = select_segments(
            load_eval_segments(args.data, args.split), args.limit or None, args.bars, args.skip
        )
        if not segments:
            raise ValueError(f"no segments in split {args.split!r} of {args.data}")
        notes = Path(args.notes).read_text() if args.notes else ""
        settings = GenerationSettings(
            args.temperature,
            args.top_k,
            args.top_p if args.top_p < 1 else None,
            constrained=not args.unconstrained,
            quantize=args.quantize,
            max_tokens_per_bar=args.max_tokens_per_bar,
            rules=args.rules == "on",
            chord_bias=args.chord_bias,
            rule_overrides=parse_rule_overrides(args.rule),
        )
        settings.decode_rules()  # a bad --chord-bias fails here, before anything is decoded
        speed = measure_speed(args.model, segments, args.threads, log) if args.speed and args.model else {}
        if args.workers < 1:
            raise ValueError("--workers must be at least 1")
        parallel = args.workers > 1 and bool(args.model)
        generate = (
            model_generator(args.model, settings, args.threads)[0] if args.model and not parallel else None
        )
        result = evaluate(
            segments,
            generate,
            seed=args.seed,
            keep_tokens=args.examples,
            log=log,
            workers=args.workers,
            model=(args.model, settings, args.threads) if parallel else None,
            time_budget=args.time_budget * 60 if args.time_budget else None,
        )
        segments = segments[: len(result["segments"])]
    except (ValueError, OSError) as err:
        print(f"evaluate_figaro: error: {err}", file=sys.stderr)
        return 2

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, outputs in result["tokens"].items():
        for i, toks in enumerate(outputs):
            tokens_to_midi(toks).write(str(out / f"{name}_{i}.mid"))
    report = {
        "model": args.model,
        "data": args.data,
        "split": args.split,
        "n_segments": len(segments),
        "n_requested": args.limit,
        "command": "python -m training.figaro.evaluate " + " ".join(sys.argv[1:] if argv is None else argv),
        "bars": args.bars,
        "seed": args.seed,
        "workers": args.workers,
        "threads": args.threads,
        "settings": {**settings.__dict__, "label": settings.label()},
        "summaries": result["summaries"],
        "by_corpus": result["by_corpus"],
        "timing": result["timing"],
        "speed": speed,
        "segments": result["segments"],
        "rows": result["rows"],
    }
    (out / "metrics.json").write_text(json.dumps(_json_safe(report), indent=1) + "\n")
    examples = {
        "descriptions": [s.description for s in segments[: args.examples]],
        "tokens": result["tokens"].get("model", []),
    }
    (out / "examples.json").write_text(json.dumps(examples) + "\n")  # to rewrite the card later
    counts: dict[str, int] = {}
    for seg in segments:
        counts[seg.corpus] = counts.get(seg.corpus, 0) + 1
    table = metrics_table(result["summaries"])
    if "model" in result["summaries"]:
        table += "\n\nModel by corpus:\n\n" + corpus_table(result["by_corpus"], counts)
    (out / "metrics.md").write_text(f"Settings: {settings.label()}\n\n" + table + "\n")
    print(table)
    t = result["timing"]
    if t["model_tokens"]:
        print(
            f"model: {t['model_tokens']} tokens in {t['model_seconds']:.1f} s "
            f"({t['model_tokens'] / max(t['model_seconds'], 1e-9):.0f} tokens/s, {args.threads} threads)"
        )
    if args.card:
        examples = result["tokens"].get("model", [])
        path = write_card(
            args.card,
            report,
            examples,
            [s.description for s in segments[: len(examples)]],
            out,
            notes=notes,
            log=log,
        )
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
