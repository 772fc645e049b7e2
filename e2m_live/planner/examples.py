"""Training examples for the class LSTMs, made from descriptions and their features.

One :class:`PlannerExample` holds a segment's normalised feature vector, the four ordered bins of
each bar and the instruments + chords stream (chords relative to the segment's key).
:func:`batch_examples` stacks them into the padded arrays the training loop wants.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from e2m_live.description.grammar import Description, GrammarError, parse
from e2m_live.features import FEATURE_ORDER, RANGES, clamp
from e2m_live.planner.classes import ORDERED_CLASSES, STREAM_VOCAB

_KEY = FEATURE_ORDER.index("key")


def normalise_raw_features(raw: Sequence[float] | np.ndarray) -> tuple[np.ndarray, int | None]:
    """Features in Spotify's units (``FEATURE_ORDER``) -> ``(model vector, key or None)``.

    Values are clamped into range (the vector is what ``EmotionFeatures.to_vector`` gives for the
    clamped features); an unknown key (``-1`` in Spotify's tables, or NaN) becomes ``None`` and
    key 0 in the vector.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if raw.shape != (len(FEATURE_ORDER),):
        raise ValueError(f"expected {len(FEATURE_ORDER)} features, got shape {raw.shape}")
    key_value = raw[_KEY]
    key = round(float(key_value)) % 12 if np.isfinite(key_value) and key_value >= 0 else None
    vector = np.empty(len(FEATURE_ORDER), dtype=np.float32)
    for i, name in enumerate(FEATURE_ORDER):
        low, high = RANGES[name]
        value = raw[i]
        if name == "key":
            value = 0 if key is None else key
        elif not np.isfinite(value):
            value = (low + high) / 2
        value, _ = clamp(name, float(value))
        vector[i] = (value - low) / (high - low)
    return vector, key


@dataclass(frozen=True)
class PlannerExample:
    """One segment: features, per-bar ordered bins ``[bars, 4]`` and the stream (``None`` when the
    key is unknown, so relative chords cannot be formed)."""

    features: np.ndarray
    key: int | None
    bins: np.ndarray
    stream: tuple[int, ...] | None
    song_id: str
    #: Instrument indices (0..128, FIGARO order) of each bar.
    instruments: tuple[tuple[int, ...], ...] = ()


def example_from_description(
    description: Description, raw_features: Sequence[float] | np.ndarray, song_id: str
) -> PlannerExample:
    """Build an example from a parsed description and its features (Spotify units)."""
    vector, key = normalise_raw_features(raw_features)
    bins = np.array([[getattr(bar, name) for name in ORDERED_CLASSES] for bar in description.bars], np.int64)
    stream: tuple[int, ...] | None = None
    if key is not None:
        ids: list[int] = []
        for bar in description.bars:
            ids.extend(STREAM_VOCAB.encode_bar(bar.instruments, bar.chords, key))
        stream = tuple(ids)
    first = STREAM_VOCAB.FIRST_INSTRUMENT
    instruments = tuple(
        tuple(sorted(STREAM_VOCAB.instrument_id(name) - first for name in set(bar.instruments)))
        for bar in description.bars
    )
    return PlannerExample(vector, key, bins, stream, song_id, instruments)


def example_from_tokens(
    tokens: Sequence[str], raw_features: Sequence[float] | np.ndarray, song_id: str
) -> PlannerExample:
    """Like :func:`example_from_description`, from description tokens (raises ``GrammarError``)."""
    return example_from_description(parse(tokens), raw_features, song_id)


def examples_from_segments(segments: Iterable) -> tuple[list[PlannerExample], int]:
    """Examples of ``training.data.dataset.Segment`` objects; returns ``(examples, n_skipped)`` where
    skipped segments are those whose description does not parse."""
    examples: list[PlannerExample] = []
    skipped = 0
    for segment in segments:
        try:
            tokens = segment.description_tokens()
            examples.append(example_from_tokens(tokens, segment.features, segment.song_id))
        except (GrammarError, ValueError):
            skipped += 1
    return examples, skipped


@dataclass
class Batch:
    """Stacked examples. ``bins`` is ``[N, T, 4]`` with ``-1`` past a segment's last bar,
    ``instruments`` ``[N, T, 129]`` each bar's instrument multi-hot (uint8); stream
    arrays are ``[M, L]`` for the ``M`` examples with a stream (``stream_rows`` index them)."""

    features: np.ndarray
    bins: np.ndarray
    instruments: np.ndarray
    stream_rows: np.ndarray
    stream_inputs: np.ndarray
    stream_targets: np.ndarray
    stream_bars: np.ndarray
    song_ids: list[str]


def batch_examples(examples: Sequence[PlannerExample]) -> Batch:
    """Stack examples; stream inputs are ``START`` + the stream shifted right, targets the stream
    (``PAD`` = 0 past its end, ignored by the loss), bars the bar index of each target."""
    if not examples:
        raise ValueError("no examples")
    n_bars = max(len(e.bins) for e in examples)
    bins = np.full((len(examples), n_bars, len(ORDERED_CLASSES)), -1, dtype=np.int64)
    instruments = np.zeros((len(examples), n_bars, STREAM_VOCAB.n_instruments), dtype=np.uint8)
    for i, example in enumerate(examples):
        bins[i, : len(example.bins)] = example.bins
        for bar, members in enumerate(example.instruments):
            instruments[i, bar, list(members)] = 1
    rows = np.array([i for i, e in enumerate(examples) if e.stream is not None], dtype=np.int64)
    length = max((len(examples[i].stream) for i in rows), default=1)
    inputs = np.zeros((len(rows), length), dtype=np.int64)
    targets = np.zeros((len(rows), length), dtype=np.int64)
    bar_index = np.zeros((len(rows), length), dtype=np.int64)
    for j, i in enumerate(rows):
        stream = np.asarray(examples[i].stream, dtype=np.int64)
        targets[j, : len(stream)] = stream
        inputs[j, 0] = STREAM_VOCAB.START
        inputs[j, 1 : len(stream)] = stream[:-1]
        ends = np.cumsum(stream == STREAM_VOCAB.END_BAR)
        bar_index[j, : len(stream)] = np.concatenate([[0], ends[:-1]])
    return Batch(
        features=np.stack([e.features for e in examples]).astype(np.float32),
        bins=bins,
        instruments=instruments,
        stream_rows=rows,
        stream_inputs=inputs,
        stream_targets=targets,
        stream_bars=bar_index,
        song_ids=[e.song_id for e in examples],
    )
