"""Markdown tables of fidelity summaries, shared by the evaluation, the model card and
:mod:`training.figaro.fidelity_table`."""

from __future__ import annotations

import math

from training.figaro import fidelity

SYSTEMS = ("model", "baseline", "ceiling")

CORPUS_METRICS = (
    "inst_f1",
    "chord_f1",
    "time_sig_acc",
    "note_density_oa",
    "pitch_oa",
    "velocity_oa",
    "chroma_sim",
    "groove_sim",
)


def cell(value: float | None) -> str:
    """A table cell: 3 decimals, ``n/a`` for a missing or NaN value (JSON stores NaN as null)."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def corpus_table(
    by_corpus: dict[str, dict[str, dict[str, float]]], counts: dict[str, int], system: str = "model"
) -> str:
    """A markdown table of ``system``'s main metrics per corpus (one row per corpus)."""
    lines = [
        "| corpus | segments | " + " | ".join(CORPUS_METRICS) + " |",
        "|---" * (len(CORPUS_METRICS) + 2) + "|",
    ]
    for corpus, systems in by_corpus.items():
        if system not in systems:
            continue
        cells = [cell(systems[system].get(k)) for k in CORPUS_METRICS]
        lines.append(f"| {corpus or '?'} | {counts.get(corpus, 0)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metrics_table(summaries: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per metric, one column per system, plus the target."""
    names = [n for n in SYSTEMS if n in summaries]
    lines = ["| metric | " + " | ".join(names) + " | target |", "|---" * (len(names) + 2) + "|"]
    for key in fidelity.SUMMARY_METRICS:
        cells = []
        for n in names:
            cells.append(cell(summaries[n].get(key)))
        target = fidelity.TARGETS.get(key)
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {'>= ' + str(target) if target else ''} |")
    return "\n".join(lines)
