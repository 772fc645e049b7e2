"""Batched sampling of the five class LSTMs into per-bar plans.

The stream model runs first; then the four ordered models each sample one bin per bar (those
conditioned on instruments see the bar's sampled instrument set). The stream model samples
instruments and
chords under hard masks that keep every bar well formed: instruments strictly in canonical order
(so no duplicates), at least one and at most :data:`MAX_INSTRUMENTS_PER_BAR`, then
``END_INSTRUMENTS``, then one to :data:`MAX_CHORDS_PER_BAR` chords, then ``END_BAR``. Optional
:class:`InstrumentMasks` narrow the instruments further, per plan and bar: only permitted ones,
and every required one (an ensemble's schedule, :mod:`e2m_live.planner.ensemble`). Many plans
are sampled at once (one row each), so a grid of features or thousands of seeds cost little more
than one plan. All randomness comes from one ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from e2m_live.planner.classes import (
    MAX_CHORDS_PER_BAR,
    MAX_INSTRUMENTS_PER_BAR,
    ORDERED_CLASSES,
    STREAM_VOCAB,
)
from e2m_live.planner.inference import LSTMStepper
from e2m_live.planner.steering import CadenceBias, SteeringBias


@dataclass(frozen=True, slots=True)
class BarPlan:
    """What the models chose for one bar: the four bins, instruments, chords (in the plan's key)."""

    note_density: int
    mean_velocity: int
    mean_pitch: int
    mean_duration: int
    instruments: tuple[str, ...]
    chords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InstrumentMasks:
    """What the stream may play: ``forced`` ``[B, bars, MAX_INSTRUMENTS_PER_BAR + 1]`` token ids,
    each bar's instruments in canonical order then ``END_INSTRUMENTS`` (padded with it), or
    ``permitted`` ``[vocab]``, the instruments the stream may choose from itself."""

    forced: np.ndarray | None = None
    permitted: np.ndarray | None = None

    @classmethod
    def from_schedules(cls, schedules: list[list[tuple[str, ...]]]) -> InstrumentMasks:
        """Exactly the scheduled instruments of every plan and bar (``schedules[b][bar]``, at most
        :data:`MAX_INSTRUMENTS_PER_BAR` each, at least one)."""
        bars = len(schedules[0])
        shape = (len(schedules), bars, MAX_INSTRUMENTS_PER_BAR + 1)
        forced = np.full(shape, _V.END_INSTRUMENTS, dtype=np.int64)
        for row, plan in enumerate(schedules):
            for bar, names in enumerate(plan):
                if not 1 <= len(names) <= MAX_INSTRUMENTS_PER_BAR:
                    raise ValueError(f"a bar needs 1..{MAX_INSTRUMENTS_PER_BAR} instruments: {names}")
                forced[row, bar, : len(names)] = sorted(_V.instrument_id(name) for name in names)
        return cls(forced=forced)

    @classmethod
    def excluding(cls, excluded: frozenset[str]) -> InstrumentMasks:
        """Any instrument but the ``excluded`` ones (at least one must remain)."""
        permitted = np.ones(_V.size, dtype=bool)
        permitted[[_V.instrument_id(name) for name in excluded]] = False
        if not permitted[_V.FIRST_INSTRUMENT : _V.first_chord].any():
            raise ValueError("every instrument is excluded")
        return cls(permitted=permitted)


def draw(
    logits: np.ndarray, temperature: float, rng: np.random.Generator, allowed: np.ndarray | None = None
) -> np.ndarray:
    """One draw per row of ``logits`` ``[B, C]`` among the ``allowed`` entries (``temperature`` 0:
    the most likely allowed entry). Never returns a disallowed index."""
    if allowed is not None:
        logits = np.where(allowed, logits, -np.inf)
    if temperature <= 0:
        return logits.argmax(axis=1)
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    weights = np.exp(scaled)  # exactly 0 where disallowed
    cumulative = np.cumsum(weights, axis=1)
    threshold = rng.random(len(logits)) * cumulative[:, -1]
    # First index whose cumulative weight exceeds the threshold: a zero-weight entry never does.
    return (cumulative <= threshold[:, None]).sum(axis=1).clip(max=logits.shape[1] - 1)


def sample_ordered(
    model: LSTMStepper,
    features: np.ndarray,
    bars: int,
    rng: np.random.Generator,
    temperature: float,
    bias: np.ndarray | None = None,
    instruments: np.ndarray | None = None,
    context: np.ndarray | None = None,
    steady: np.ndarray | None = None,
) -> np.ndarray:
    """Bins ``[B, bars]`` of one ordered class, bar by bar; ``bias`` ``[B, C]`` is added to the
    temperature-scaled logits; ``instruments`` ``[B, bars, 129]`` are the bars' instrument
    multi-hots (used if the model is conditioned on them); ``context`` ``[B, bars, k]`` the bars'
    bins of the model's context classes; ``steady`` ``[B]`` a bonus on repeating the previous
    bar's bin."""
    batch = features.shape[0]
    constant, state = model.start(features)
    n_classes = model.b_out.shape[0]
    previous = np.full(batch, n_classes, dtype=np.int64)  # the start id
    out = np.empty((batch, bars), dtype=np.int64)
    extra = None
    if model.uses_instruments:
        if instruments is None:
            raise ValueError("model is conditioned on instruments: pass them")
        extra = model.instrument_gates(instruments)
    if model.context_names:
        if context is None:
            raise ValueError("model is conditioned on other classes of the bar: pass them")
        gates = model.context_gates(context)
        extra = gates if extra is None else extra + gates
    for bar in range(bars):
        logits, state = model.step(constant, previous, bar, state, None if extra is None else extra[:, bar])
        logits = _scaled(logits, temperature, bias)
        if steady is not None and bar > 0:
            logits[np.arange(batch), previous] += steady
        previous = draw(logits, 1.0 if temperature > 0 else 0.0, rng)
        out[:, bar] = previous
    return out


def _scaled(logits: np.ndarray, temperature: float, bias: np.ndarray | None) -> np.ndarray:
    if temperature > 0:
        logits = logits / temperature
    if bias is not None:
        logits = logits + bias
    return logits


_V = STREAM_VOCAB


def _mask_tables() -> tuple[np.ndarray, np.ndarray, int]:
    """Allowed-token rows for the instrument phase (indexed by last instrument id + 1, plus one
    row for a full bar) and for the chord phase (indexed by the number of chords so far)."""
    ids = np.arange(_V.size)
    is_instrument = (ids >= _V.FIRST_INSTRUMENT) & (ids < _V.first_chord)
    instrument_rows = np.zeros((_V.size + 2, _V.size), dtype=bool)
    instrument_rows[0] = is_instrument  # no instrument yet: at least one must come
    for last in range(_V.size):
        instrument_rows[last + 1] = is_instrument & (ids > last)
        instrument_rows[last + 1, _V.END_INSTRUMENTS] = True
    full_row = _V.size + 1
    instrument_rows[full_row, _V.END_INSTRUMENTS] = True
    chord_rows = np.zeros((MAX_CHORDS_PER_BAR + 1, _V.size), dtype=bool)
    chord_rows[:MAX_CHORDS_PER_BAR, _V.first_chord :] = True
    chord_rows[1:, _V.END_BAR] = True
    return instrument_rows, chord_rows, full_row


_INSTRUMENT_ROWS, _CHORD_ROWS, _FULL_ROW = _mask_tables()
_IS_INSTRUMENT = _INSTRUMENT_ROWS[0]
_IS_CHORD = _CHORD_ROWS[0]
_ONLY_PAD = np.arange(_V.size) == _V.PAD


def sample_stream(
    model: LSTMStepper,
    features: np.ndarray,
    bars: int,
    rng: np.random.Generator,
    temperature: float,
    bias: np.ndarray | None = None,
    masks: InstrumentMasks | None = None,
    cadence: CadenceBias | None = None,
) -> list[list[list[int]]]:
    """Stream tokens per plan and bar, end markers excluded: ``[B][bars][tokens]``.

    ``masks`` restrict the instruments of each plan and bar; ``cadence`` biases the chords of the
    first, second-to-last and last bar. Plans that have finished their last bar leave the batch,
    so a batch costs about its mean plan length, not its longest.
    """
    batch = features.shape[0]
    constant, state = model.start(features)
    rows = np.arange(batch)  # original row of each active row
    previous = np.full(batch, _V.START, dtype=np.int64)
    bar = np.zeros(batch, dtype=np.int64)
    in_chords = np.zeros(batch, dtype=bool)
    last_instrument = np.full(batch, -1, dtype=np.int64)
    n_instruments = np.zeros(batch, dtype=np.int64)
    n_chords = np.zeros(batch, dtype=np.int64)
    plans: list[list[list[int]]] = [[[] for _ in range(bars)] for _ in range(batch)]
    forced = masks.forced if masks is not None else None
    permitted = masks.permitted if masks is not None else None
    sample_temperature = 1.0 if temperature > 0 else 0.0
    max_steps = bars * (MAX_INSTRUMENTS_PER_BAR + MAX_CHORDS_PER_BAR + 2)
    for _ in range(max_steps):
        logits, state = model.step(constant, previous, bar, state)
        logits = _scaled(logits, temperature, bias)
        if cadence is not None:
            logits = _add_cadence(logits, cadence, in_chords, bar, n_chords, bars)
        if forced is not None:
            # The ensemble's schedule fixes the instruments: no draw for rows still choosing them.
            scheduled = forced[rows, bar, np.minimum(n_instruments, MAX_INSTRUMENTS_PER_BAR)]
            token = scheduled
            if in_chords.any():
                chords = draw(logits, sample_temperature, rng, _CHORD_ROWS[n_chords])
                token = np.where(in_chords, chords, scheduled)
        else:
            # What may follow in each row's bar (the grammar of one bar of the stream).
            instrument_row = np.where(
                n_instruments >= MAX_INSTRUMENTS_PER_BAR, _FULL_ROW, last_instrument + 1
            )
            instrument_allowed = _INSTRUMENT_ROWS[instrument_row]
            if permitted is not None:
                instrument_allowed = instrument_allowed & permitted
            allowed = np.where(in_chords[:, None], _CHORD_ROWS[n_chords], instrument_allowed)
            token = draw(logits, sample_temperature, rng, allowed)

        instrument = _IS_INSTRUMENT[token]
        chord = _IS_CHORD[token]
        for i in np.flatnonzero(instrument | chord):
            plans[rows[i]][bar[i]].append(int(token[i]))
        end_bar = token == _V.END_BAR
        last_instrument = np.where(instrument, token, np.where(end_bar, -1, last_instrument))
        n_instruments = np.where(end_bar, 0, n_instruments + instrument)
        n_chords = np.where(end_bar, 0, n_chords + chord)
        in_chords = (in_chords | (token == _V.END_INSTRUMENTS)) & ~end_bar
        bar = bar + end_bar
        previous = token
        active = bar < bars
        if not active.any():
            return plans
        if not active.all():
            rows, previous, bar, in_chords = rows[active], previous[active], bar[active], in_chords[active]
            last_instrument, n_instruments = last_instrument[active], n_instruments[active]
            n_chords, constant = n_chords[active], constant[active]
            state = [(h[active], c[active]) for h, c in state]
            if bias is not None:
                bias = bias[active]
            if cadence is not None:
                cadence = cadence.select(active)
    # Cannot happen: the masks end every bar within its token budget.
    raise RuntimeError("stream sampler did not finish every bar")


def _add_cadence(
    logits: np.ndarray,
    cadence: CadenceBias,
    in_chords: np.ndarray,
    bar: np.ndarray,
    n_chords: np.ndarray,
    bars: int,
) -> np.ndarray:
    """``logits`` plus the cadence biases of the rows choosing a chord where they apply."""
    if not (in_chords & ((bar == 0) | (bar >= bars - 2))).any():  # the usual case: a middle bar
        return logits
    first = in_chords & (bar == 0) & (n_chords == 0)
    last = in_chords & (bar == bars - 1) & (bars >= 2)
    approach = in_chords & (bar == bars - 2) & (bars >= 3)
    return (
        logits
        + first[:, None] * cadence.first
        + last[:, None] * cadence.last
        + approach[:, None] * cadence.approach
    )


def sample_plans(
    ordered: Mapping[str, LSTMStepper],
    stream: LSTMStepper,
    features: np.ndarray,
    keys: list[int],
    bars: int,
    rng: np.random.Generator,
    temperature: float,
    steering: SteeringBias | None = None,
    masks: InstrumentMasks | None = None,
    key_lock: float = 0.0,
) -> list[list[BarPlan]]:
    """Sample ``B`` plans of ``bars`` bars for the normalised features ``[B, n_features]``;
    ``keys[b]`` is the pitch class the relative chords of plan ``b`` are transposed to; ``masks``
    restrict the instruments; ``key_lock`` scales the tonic opening and cadence biases."""
    features = np.asarray(features, dtype=np.float32)
    stream_bias = steering.stream(features) if steering else None
    cadence = steering.cadence(features, key_lock) if steering else None
    streams = sample_stream(stream, features, bars, rng, temperature, stream_bias, masks, cadence)
    instruments = np.zeros((len(features), bars, STREAM_VOCAB.n_instruments), dtype=np.float32)
    for row, plan in enumerate(streams):
        for bar, ids in enumerate(plan):
            for token_id in ids:
                if token_id < STREAM_VOCAB.first_chord:
                    instruments[row, bar, token_id - STREAM_VOCAB.FIRST_INSTRUMENT] = 1.0
    sampled: dict[str, np.ndarray] = {}
    for name in ORDERED_CLASSES:  # FIGARO's order: a model's context classes come before it
        model = ordered[name]
        n_classes = model.b_out.shape[0]
        bias = steering.ordered(name, features, n_classes) if steering else None
        context = (
            np.stack([sampled[c] for c in model.context_names], axis=-1) if model.context_names else None
        )
        steady = steering.steady(name, features) if steering else None
        sampled[name] = sample_ordered(
            model, features, bars, rng, temperature, bias, instruments, context, steady
        )
    bins = {name: values.tolist() for name, values in sampled.items()}
    plans: list[list[BarPlan]] = []
    for row, key in enumerate(keys):
        bar_plans = []
        for bar in range(bars):
            bar_instruments, chords = STREAM_VOCAB.decode_bar(streams[row][bar], key)
            bar_plans.append(
                BarPlan(
                    note_density=bins["note_density"][row][bar],
                    mean_velocity=bins["mean_velocity"][row][bar],
                    mean_pitch=bins["mean_pitch"][row][bar],
                    mean_duration=bins["mean_duration"][row][bar],
                    instruments=bar_instruments,
                    chords=chords,
                )
            )
        plans.append(bar_plans)
    return plans
