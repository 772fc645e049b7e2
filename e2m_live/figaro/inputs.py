"""Model inputs exactly as FIGARO's dataset builds them (``src/datasets.py`` of dvruette/figaro).

* REMI bar ids count ``Bar_*`` tokens (the first bar is 1); position ids carry the value of
  the last ``Position_*`` token, a ``Bar_*`` token resets it to 0. ``<bos>``, ``<eos>`` and
  ``<pad>`` get bar 0 and position 0.
* Description bar ids likewise count ``Bar_*`` tokens; specials get 0.
* A training example is one window of ``context_size + 1`` tokens of
  ``<bos> events <eos>`` (windows do not overlap; the last is aligned to the end), with the
  description starting at the window's first bar and cut to ``context_size + 1`` tokens
  (the collator cuts it again to ``context_size``). See docs/figaro.md.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor

from e2m_live.description.vocab import (
    BAR_KEY,
    BOS_TOKEN,
    CHORD_KEY,
    EOS_TOKEN,
    INSTRUMENT_KEY,
    MEAN_DURATION_KEY,
    MEAN_PITCH_KEY,
    MEAN_VELOCITY_KEY,
    NOTE_DENSITY_KEY,
    PAD_TOKEN,
    POSITION_KEY,
    TIME_SIGNATURE_KEY,
    DescriptionVocab,
    RemiVocab,
)

IdsLike = Sequence[int] | Tensor


@lru_cache(maxsize=1)
def remi_vocab() -> RemiVocab:
    return RemiVocab()


@lru_cache(maxsize=1)
def description_vocab() -> DescriptionVocab:
    return DescriptionVocab()


@lru_cache(maxsize=1)
def _remi_tables() -> tuple[Tensor, Tensor]:
    """Per REMI id: is it a bar token; its position value (-1 for non-position tokens)."""
    itos = remi_vocab().itos
    is_bar = torch.tensor([t.startswith(BAR_KEY + "_") for t in itos])
    position = torch.tensor([int(t.split("_")[-1]) if t.startswith(POSITION_KEY + "_") else -1 for t in itos])
    position[is_bar] = 0
    return is_bar, position


@lru_cache(maxsize=1)
def _description_bar_table() -> Tensor:
    return torch.tensor([t.startswith(BAR_KEY + "_") for t in description_vocab().itos])


def _as_ids(ids: IdsLike, vocab_size: int, what: str) -> Tensor:
    t = torch.as_tensor(ids, dtype=torch.long)
    if t.dim() != 1:
        raise ValueError(f"{what} must be a 1-d sequence of ids, got shape {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vocab_size):
        raise ValueError(f"{what} contains ids outside the vocabulary (0..{vocab_size - 1})")
    return t


def _special_mask(ids: Tensor, vocab: RemiVocab | DescriptionVocab) -> Tensor:
    return (ids == vocab.bos_id) | (ids == vocab.eos_id) | (ids == vocab.pad_id)


def remi_model_inputs(remi_ids: IdsLike) -> tuple[Tensor, Tensor]:
    """``(bar_ids, position_ids)`` of a REMI id sequence, as FIGARO's dataset computes them."""
    vocab = remi_vocab()
    ids = _as_ids(remi_ids, len(vocab), "remi_ids")
    is_bar, position = _remi_tables()
    bar_ids = torch.cumsum(is_bar[ids].long(), dim=0)
    pos = position[ids]
    # forward-fill the last seen position (the first token defaults to 0)
    index = torch.arange(len(ids))
    seen = torch.where(pos >= 0, index, torch.zeros_like(index))
    last = torch.cummax(seen, dim=0).values
    position_ids = pos.clamp(min=0)[last]
    special = _special_mask(ids, vocab)
    bar_ids[special] = 0
    position_ids[special] = 0
    return bar_ids, position_ids


def description_model_inputs(desc_ids: IdsLike) -> Tensor:
    """Bar ids of a description id sequence (first bar = 1, specials 0), as FIGARO computes them."""
    vocab = description_vocab()
    ids = _as_ids(desc_ids, len(vocab), "desc_ids")
    bar_ids = torch.cumsum(_description_bar_table()[ids].long(), dim=0)
    bar_ids[_special_mask(ids, vocab)] = 0
    return bar_ids


_DESCRIPTION_CLASSES = {
    INSTRUMENT_KEY: "instruments",
    CHORD_KEY: "chords",
    TIME_SIGNATURE_KEY: "meta",
    NOTE_DENSITY_KEY: "meta",
    MEAN_PITCH_KEY: "meta",
    MEAN_VELOCITY_KEY: "meta",
    MEAN_DURATION_KEY: "meta",
}


def filter_description(tokens: Sequence[str], options: dict[str, bool] | None) -> list[str]:
    """Drop the description token classes an ablation model was trained without
    (FIGARO's ``description_options``: ``instruments``, ``chords``, ``meta``)."""
    if not options:
        return list(tokens)
    return [t for t in tokens if options.get(_DESCRIPTION_CLASSES.get(t.split("_")[0], ""), True)]


def training_windows(n_events: int, context_size: int) -> list[tuple[int, int]]:
    """FIGARO's ``(start, end)`` windows over ``<bos> events <eos>`` (``n_events + 2`` ids)."""
    total = n_events + 2
    span = context_size + 1
    starts = list(range(0, total, span))
    if len(starts) == 1:
        return [(0, span)]
    return [(s, s + span) for s in starts[:-1]] + [(total - span, total)]


def make_training_example(
    desc_ids: IdsLike,
    remi_ids: IdsLike,
    context_size: int,
    rng: random.Random | None = None,
    *,
    window: int | None = None,
) -> dict[str, Tensor]:
    """One FIGARO training example from a whole piece.

    ``desc_ids`` and ``remi_ids`` are the piece's description and REMI ids without
    ``<bos>``/``<eos>``. The window is ``window`` (an index into :func:`training_windows`) or
    drawn with ``rng``. Returns ``input_ids``, ``labels`` (inputs shifted by one),
    ``bar_ids``, ``position_ids`` (length <= ``context_size``), and ``description``,
    ``desc_bar_ids`` (length <= ``context_size``), as FIGARO's dataset + collator produce them
    for a batch of one. Pad with ``<pad>`` = 0 (ids) and 0 (bar/position ids) to batch.
    """
    rv, dv = remi_vocab(), description_vocab()
    events = _as_ids(remi_ids, len(rv), "remi_ids")
    desc = _as_ids(desc_ids, len(dv), "desc_ids")
    if context_size < 1:
        raise ValueError("context_size must be positive")
    bar_ids, position_ids = remi_model_inputs(events)
    zero = torch.zeros(1, dtype=torch.long)
    seq = torch.cat([torch.tensor([rv.bos_id]), events, torch.tensor([rv.eos_id])])
    bar_ids = torch.cat([zero, bar_ids, zero])
    position_ids = torch.cat([zero, position_ids, zero])

    windows = training_windows(len(events), context_size)
    if window is None:
        window = (rng or random.Random()).randrange(len(windows))
    start, end = windows[window]
    src, b_ids, p_ids = seq[start:end], bar_ids[start:end], position_ids[start:end]

    desc_bars = torch.nonzero(_description_bar_table()[desc]).flatten().tolist()
    if not desc_bars:
        raise ValueError("description has no Bar tokens")
    min_bar = int(b_ids[0])
    start_idx = desc_bars[min(max(0, min_bar - 1), len(desc_bars) - 1)]
    d_bar_ids = description_model_inputs(desc)
    eos = torch.tensor([dv.eos_id])
    if min_bar == 0:
        d_ids = torch.cat([torch.tensor([dv.bos_id]), desc, eos])
        d_bar_ids = torch.cat([zero, d_bar_ids, zero])
    else:
        d_ids = torch.cat([desc, eos])
        d_bar_ids = torch.cat([d_bar_ids, zero])
    d_ids = d_ids[start_idx : start_idx + context_size + 1][:context_size]
    d_bar_ids = d_bar_ids[start_idx : start_idx + context_size + 1][:context_size]

    src = src[: context_size + 1]
    return {
        "input_ids": src[:-1],
        "labels": src[1:],
        "bar_ids": b_ids[: len(src) - 1],
        "position_ids": p_ids[: len(src) - 1],
        "description": d_ids,
        "desc_bar_ids": d_bar_ids,
    }


def encode_remi(tokens: Sequence[str]) -> list[int]:
    """REMI tokens -> ids; unknown tokens are an error (not silently ``<unk>``)."""
    vocab = remi_vocab()
    unknown = [t for t in tokens if t not in vocab]
    if unknown:
        raise ValueError(f"unknown REMI tokens: {unknown[:5]}")
    return vocab.encode(tokens)


def encode_description(tokens: Sequence[str]) -> list[int]:
    """Description tokens -> ids; unknown tokens are an error."""
    vocab = description_vocab()
    unknown = [t for t in tokens if t not in vocab]
    if unknown:
        raise ValueError(f"unknown description tokens: {unknown[:5]}")
    return vocab.encode(tokens)


__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "description_model_inputs",
    "encode_description",
    "encode_remi",
    "filter_description",
    "make_training_example",
    "remi_model_inputs",
    "training_windows",
]
