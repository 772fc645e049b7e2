"""One fidelity table from several ``training.figaro.evaluate`` runs on the same segments.

    python -m training.figaro.fidelity_table \\
        "shipped, rules off=runs/fid/off" "shipped, rules on=runs/fid/on" \\
        --targets --by-corpus chord_f1 chroma_sim

Each ``LABEL=DIR`` is a run folder with ``metrics.json``; the table has one column per run (its ``model``
system), then the chord-tone baseline and the ground truth of the first run. Runs must cover the same
segments (same data, split, selection and bars), which is checked. ``--by-corpus METRIC ...`` adds one
table per metric with a row per corpus and the pooled row.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.figaro.fidelity import SUMMARY_METRICS
from training.figaro.tables import cell

#: Targets of issue 15: instrument F1, chord F1, density, pitch, chroma and groove.
ISSUE_TARGETS = {
    "inst_f1": 0.95,
    "chord_f1": 0.65,
    "note_density_oa": 0.70,
    "pitch_oa": 0.75,
    "chroma_sim": 0.80,
    "groove_sim": 0.70,
}
#: Metrics where lower is better.
LOWER_IS_BETTER = frozenset({"note_density_nrmse"})


def load_runs(items: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """``["label=dir", ...]`` -> ``[(label, metrics.json), ...]``; the runs must share their segments."""
    runs = []
    for item in items:
        label, sep, folder = item.rpartition("=")
        if not sep or not label:
            raise ValueError(f"expected LABEL=DIR, got {item!r}")
        runs.append((label, json.loads((Path(folder) / "metrics.json").read_text())))
    if not runs:
        raise ValueError("no runs given")
    first = runs[0][1]["segments"]
    for label, run in runs[1:]:
        if run["segments"] != first:
            raise ValueError(f"run {label!r} scored other segments than {runs[0][0]!r}")
    return runs


def pooled_table(runs: list[tuple[str, dict[str, Any]]], targets: bool = True) -> str:
    """Metric rows; a column per run's model, then the baseline and the ground truth."""
    columns = [(label, run["summaries"].get("model", {})) for label, run in runs]
    columns += [(name, runs[0][1]["summaries"].get(name, {})) for name in ("baseline", "ceiling")]
    head = "| metric | " + " | ".join(label for label, _ in columns) + (" | target |" if targets else " |")
    lines = [head, "|---" * (len(columns) + 1 + targets) + "|"]
    for key in SUMMARY_METRICS:
        cells = [cell(summary.get(key)) for _, summary in columns]
        row = f"| {key} | " + " | ".join(cells)
        if targets:
            target = ISSUE_TARGETS.get(key)
            row += f" | {'>= ' + str(target) if target is not None else ''}"
        lines.append(row + " |")
    return "\n".join(lines)


def corpus_table(runs: list[tuple[str, dict[str, Any]]], metric: str) -> str:
    """One metric: a row per corpus (segments, every run's model, the baseline), then the pooled row."""
    by_corpus = runs[0][1]["by_corpus"]
    counts: dict[str, int] = {}
    for seg in runs[0][1]["segments"]:
        counts[seg["corpus"]] = counts.get(seg["corpus"], 0) + 1
    labels = [label for label, _ in runs]
    lines = [
        f"| {metric} | segments | " + " | ".join(labels) + " | baseline |",
        "|---" * (len(labels) + 3) + "|",
    ]
    for corpus in sorted(by_corpus):
        cells = [cell(run["by_corpus"][corpus].get("model", {}).get(metric)) for _, run in runs]
        base = cell(by_corpus[corpus].get("baseline", {}).get(metric))
        lines.append(f"| {corpus} | {counts.get(corpus, 0)} | " + " | ".join(cells) + f" | {base} |")
    pooled = [cell(run["summaries"].get("model", {}).get(metric)) for _, run in runs]
    base = cell(runs[0][1]["summaries"].get("baseline", {}).get(metric))
    lines.append(f"| **pooled** | {len(runs[0][1]['segments'])} | " + " | ".join(pooled) + f" | {base} |")
    return "\n".join(lines)


def against_baseline(run: dict[str, Any]) -> dict[str, str]:
    """Metric -> "win", "tie" (equal to 3 decimals) or "loss" of the run's model against the baseline
    (higher is better, lower for NRMSE)."""
    model, base = run["summaries"].get("model", {}), run["summaries"].get("baseline", {})
    out = {}
    for key in SUMMARY_METRICS:
        m, b = model.get(key), base.get(key)
        if m is None or b is None or math.isnan(m) or math.isnan(b):
            continue
        if round(m, 3) == round(b, 3):
            out[key] = "tie"
        else:
            out[key] = "win" if (m < b if key in LOWER_IS_BETTER else m > b) else "loss"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.figaro.fidelity_table", description=__doc__.split("\n")[0]
    )
    p.add_argument("runs", nargs="+", metavar="LABEL=DIR", help="evaluate_figaro output folders")
    p.add_argument("--by-corpus", nargs="*", default=[], metavar="METRIC", help="per-corpus tables")
    p.add_argument("--no-targets", action="store_true")
    args = p.parse_args(argv)
    try:
        runs = load_runs(args.runs)
        unknown = [m for m in args.by_corpus if m not in SUMMARY_METRICS]
        if unknown:
            raise ValueError(f"unknown metrics: {unknown}")
    except (OSError, ValueError, KeyError) as err:
        print(f"fidelity_table: error: {err}", file=sys.stderr)
        return 2
    print(pooled_table(runs, targets=not args.no_targets))
    for metric in args.by_corpus:
        print()
        print(corpus_table(runs, metric))
    print()
    for label, run in runs:
        result = against_baseline(run)
        by = {r: sorted(k for k, v in result.items() if v == r) for r in ("win", "tie", "loss")}
        print(
            f"{label} against the baseline: better on {len(by['win'])}, equal on {len(by['tie'])}, "
            f"worse on {len(by['loss'])} of {len(result)} metrics"
            + (f" ({', '.join(by['loss'])})" if by["loss"] else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
