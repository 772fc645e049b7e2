"""The segments a FIGARO evaluation scores: chosen so any limit covers every corpus, cut to N bars.

Used by :mod:`training.figaro.evaluate` (the fidelity run) and :mod:`training.figaro.card` (``--speed``
re-measures on the densest segment of the same selection).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from e2m_live.description.vocab import BAR_KEY, DescriptionVocab, RemiVocab


@dataclass(frozen=True)
class EvalSegment:
    """A validation segment as tokens, bars numbered from 1."""

    song_id: str
    corpus: str
    description: list[str]
    remi: list[str]

    @property
    def n_bars(self) -> int:
        return sum(t.startswith(BAR_KEY + "_") for t in self.description)


def first_bars(tokens: Sequence[str], keep: int) -> list[str]:
    """The first ``keep`` bars of ``tokens``, numbered from 1 (tokens before the first bar dropped)."""
    out: list[str] = []
    n = 0
    for tok in tokens:
        if tok.startswith(BAR_KEY + "_"):
            n += 1
            if n > keep:
                break
            out.append(f"{BAR_KEY}_{n}")
        elif n:
            out.append(tok)
    return out


def select_segments(
    segments: Sequence[Any], limit: int | None, bars: int, skip: int = 0
) -> list[EvalSegment]:
    """One segment per song first, then second segments, ...; within a round the corpora take
    turns (songs in sorted order within a corpus), so any ``limit`` covers every corpus. The
    first ``bars`` bars of each segment, renumbered from 1. ``skip`` drops the first segments of
    that order (to tune a setting on segments the table does not use)."""
    desc_vocab, remi_vocab = DescriptionVocab(), RemiVocab()
    by_song: dict[str, list[Any]] = {}
    corpus_of: dict[str, str] = {}
    for seg in segments:
        by_song.setdefault(str(seg.song_id), []).append(seg)
        corpus_of.setdefault(str(seg.song_id), str(getattr(seg, "corpus", "")))
    order: list[Any] = []
    rounds = max((len(v) for v in by_song.values()), default=0)
    for r in range(rounds):
        queues: dict[str, list[str]] = {}
        for song in sorted(by_song):
            if r < len(by_song[song]):
                queues.setdefault(corpus_of[song], []).append(song)
        lists = [queues[c] for c in sorted(queues)]
        for k in range(max((len(q) for q in lists), default=0)):
            order += [by_song[q[k]][r] for q in lists if k < len(q)]
    out: list[EvalSegment] = []
    for seg in order[skip:][: limit if limit else None]:
        desc = [t for t in desc_vocab.decode(seg.description_ids) if not t.startswith("<")]
        remi = [t for t in remi_vocab.decode(seg.remi_ids) if not t.startswith("<")]
        out.append(
            EvalSegment(
                str(seg.song_id),
                str(getattr(seg, "corpus", "")),
                first_bars(desc, bars),
                first_bars(remi, bars),
            )
        )
    return out


def load_eval_segments(data: str, split: str) -> list[Any]:
    """Validation segments (non-overlapping) from a dataset directory or a pack."""
    from training.figaro.train import load_segments

    return load_segments(data, split)


def densest(segments: Sequence[EvalSegment]) -> EvalSegment:
    """The segment with the most REMI+ tokens (the hardest real-time case among them)."""
    return max(segments, key=lambda s: len(s.remi))
