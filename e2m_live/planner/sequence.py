"""Planners that write the whole description as one token sequence (issue 19).

The original report trained, besides its five class LSTMs, one LSTM and a Transformer decoder over
the whole description, and dropped them because their output broke the grammar. Here both sample
through a grammar mask, so every plan is valid by construction, and they sit behind the same
interface as :class:`~e2m_live.planner.Planner` (``plan``, ``plan_many``, ``sample_bars``, ``load``).

**The sequence.** One token per description token, with two simplifications that carry no choice:
``Bar_k`` and ``Time Signature`` become one ``BAR`` token (the bar number follows from the position,
the time signature from the features), and chords are relative to the key, as in the class LSTMs'
stream (:mod:`e2m_live.planner.classes`). A bar is written instruments first, then chords, then the
four meta classes::

    BAR inst+ chord+ ND MV MP MD   BAR inst+ ...   MD END

That is FIGARO's bar with the meta tokens moved to the end: the same information order as the
class LSTMs (instruments and chords, then the meta classes in FIGARO's order, each seeing what
came before), so the comparison is between one model and five, not between orders; and the
instruments an arrangement fixes condition the meta tokens. The assembler writes FIGARO's order.

**The mask** (:func:`sample_sequences`) keeps what the class LSTMs' sampler keeps: instruments in
canonical order (no duplicates), 1..10, then 1..4 chords, the four meta classes, then ``BAR`` or,
after the requested number of bars, ``END``. The planner's arrangement handling is the shipped
planner's: the same palette / auto-ensemble draw and schedule (forced instrument tokens), muted
instruments masked out, and the same steering and cadence biases mapped onto this vocabulary.
:func:`sample_sequences` with ``masked=False`` samples the learned model alone, unconstrained
(validity without the mask, ``training/planner/compare.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from e2m_live.arrangement import Arrangement
from e2m_live.description.grammar import GrammarError, validate
from e2m_live.features import FEATURE_ORDER, EmotionFeatures
from e2m_live.planner.classes import (
    INSTRUMENT_NAMES,
    MAX_CHORDS_PER_BAR,
    MAX_INSTRUMENTS_PER_BAR,
    ORDERED_CLASS_SIZES,
    ORDERED_CLASSES,
    STREAM_VOCAB,
)
from e2m_live.planner.examples import PlannerExample
from e2m_live.planner.inference import LSTMStepper, single_threaded_blas
from e2m_live.planner.model import StreamLSTM, StreamLSTMConfig, load_model, save_model
from e2m_live.planner.planner import PlanError, PlannerBase, check_plan_arguments
from e2m_live.planner.sampling import BarPlan, InstrumentMasks
from e2m_live.planner.steering import Steering, SteeringBias

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CONFIG_FORMAT = 1
_MODELS = Path(__file__).resolve().parents[2] / "models"


class SequenceVocab:
    """Ids of the whole-description sequence: ``0`` padding, ``1`` ``BAR``, ``2`` ``END``, then 33
    bins of each meta class (FIGARO's order), the 129 instruments, the 97 relative chords."""

    PAD = 0
    BAR = 1
    END = 2
    FIRST_META = 3

    def __init__(self) -> None:
        self.meta_offset: dict[str, int] = {}
        offset = self.FIRST_META
        for name in ORDERED_CLASSES:
            self.meta_offset[name] = offset
            offset += ORDERED_CLASS_SIZES[name]
        self.first_instrument = offset
        self.n_instruments = len(INSTRUMENT_NAMES)
        self.first_chord = self.first_instrument + self.n_instruments
        self.chords = STREAM_VOCAB.chords
        self.size = self.first_chord + len(self.chords)
        ids = np.arange(self.size)
        self.is_instrument = (ids >= self.first_instrument) & (ids < self.first_chord)
        self.is_chord = ids >= self.first_chord
        #: Which meta class (0..3) a token is, -1 for others; and its bin.
        self.meta_class = np.full(self.size, -1, dtype=np.int64)
        self.meta_bin = np.zeros(self.size, dtype=np.int64)
        for k, name in enumerate(ORDERED_CLASSES):
            start = self.meta_offset[name]
            self.meta_class[start : start + ORDERED_CLASS_SIZES[name]] = k
            self.meta_bin[start : start + ORDERED_CLASS_SIZES[name]] = np.arange(ORDERED_CLASS_SIZES[name])
        #: Stream-vocabulary id -> sequence id (instruments and chords; -1 for the stream's markers).
        self.from_stream = np.full(STREAM_VOCAB.size, -1, dtype=np.int64)
        self.from_stream[STREAM_VOCAB.FIRST_INSTRUMENT : STREAM_VOCAB.first_chord] = np.arange(
            self.first_instrument, self.first_chord
        )
        self.from_stream[STREAM_VOCAB.first_chord :] = np.arange(self.first_chord, self.size)

    def __len__(self) -> int:
        return self.size

    def meta_slice(self, name: str) -> slice:
        start = self.meta_offset[name]
        return slice(start, start + ORDERED_CLASS_SIZES[name])

    def encode(self, example: PlannerExample) -> list[int] | None:
        """The example's sequence (``BAR`` ... ``END``), or ``None`` when it has no stream (unknown key:
        its chords cannot be made relative)."""
        if example.stream is None:
            return None
        out: list[int] = []
        bar = 0
        pending: list[int] = []
        for stream_id in example.stream:
            if stream_id == STREAM_VOCAB.END_BAR:
                out.append(self.BAR)
                out.extend(pending)
                out.extend(
                    self.meta_offset[name] + int(example.bins[bar, k])
                    for k, name in enumerate(ORDERED_CLASSES)
                )
                pending = []
                bar += 1
            elif stream_id != STREAM_VOCAB.END_INSTRUMENTS:
                pending.append(int(self.from_stream[stream_id]))
        out.append(self.END)
        return out

    def figaro_tokens(
        self, ids: Sequence[int], key: int, time_signature: tuple[int, int], first_bar: int = 1
    ) -> list[str]:
        """FIGARO tokens of a sampled sequence (the tokens after its first ``BAR``; ``END`` stops).

        ``BAR`` becomes ``Bar_k`` + ``Time Signature``, and each bar is rotated so that its tokens
        from the first meta token on come first: a bar written as this vocabulary's grammar wants
        (``inst* chord* ND MV MP MD``) becomes FIGARO's bar, and a bar that breaks it (a chord after a
        meta token, a meta token missing or out of order, an instrument twice) stays broken. Meant for
        checking unmasked output with the FIGARO grammar."""
        numerator, denominator = time_signature
        header = f"Time Signature_{numerator}/{denominator}"
        prefixes = {
            "note_density": "Note Density",
            "mean_velocity": "Mean Velocity",
            "mean_pitch": "Mean Pitch",
            "mean_duration": "Mean Duration",
        }
        bars: list[list[str]] = [[]]
        first_meta: list[int | None] = [None]
        for token_id in ids:
            token_id = int(token_id)
            if token_id == self.END:
                break
            if token_id == self.BAR:
                bars.append([])
                first_meta.append(None)
                continue
            if self.is_instrument[token_id]:
                text = f"Instrument_{INSTRUMENT_NAMES[token_id - self.first_instrument]}"
            elif self.is_chord[token_id]:
                text = f"Chord_{self.chords[token_id - self.first_chord].absolute(key)}"
            elif self.meta_class[token_id] >= 0:
                text = f"{prefixes[ORDERED_CLASSES[self.meta_class[token_id]]]}_{self.meta_bin[token_id]}"
                if first_meta[-1] is None:
                    first_meta[-1] = len(bars[-1])
            else:
                text = "<pad>"
            bars[-1].append(text)
        tokens: list[str] = []
        for offset, (body, cut) in enumerate(zip(bars, first_meta, strict=True)):
            rotated = body if cut is None else body[cut:] + body[:cut]
            tokens += [f"Bar_{first_bar + offset}", header, *rotated]
        return tokens

    def bar_plans(self, ids: Sequence[int], key: int) -> list[BarPlan]:
        """Per-bar plans of a sequence sampled under the mask (``BAR`` separators, ``END`` last)."""
        plans: list[BarPlan] = []
        instruments: list[str] = []
        chords: list[str] = []
        bins = [0, 0, 0, 0]
        for token_id in ids:
            token_id = int(token_id)
            if token_id in (self.BAR, self.END):
                density, velocity, pitch, duration = bins
                plans.append(BarPlan(density, velocity, pitch, duration, tuple(instruments), tuple(chords)))
                instruments, chords = [], []
                if token_id == self.END:
                    break
            elif self.is_instrument[token_id]:
                instruments.append(INSTRUMENT_NAMES[token_id - self.first_instrument])
            elif self.is_chord[token_id]:
                chords.append(self.chords[token_id - self.first_chord].absolute(key))
            else:
                bins[self.meta_class[token_id]] = int(self.meta_bin[token_id])
        return plans


SEQUENCE_VOCAB = SequenceVocab()
_V = SEQUENCE_VOCAB


def sequence_arrays(
    examples: Sequence[PlannerExample],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training arrays of the examples that have a stream: ``features [N, F]``, ``inputs [N, L]``
    (the sequence without ``END``), ``targets [N, L]`` (without the first ``BAR``; ``PAD`` past the
    end) and ``bars [N, L]`` (the bar each input token belongs to)."""
    encoded = [(e.features, s) for e in examples if (s := _V.encode(e)) is not None]
    if not encoded:
        raise ValueError("no example has a stream (every key unknown?)")
    length = max(len(s) for _, s in encoded) - 1
    inputs = np.zeros((len(encoded), length), dtype=np.int64)
    targets = np.zeros((len(encoded), length), dtype=np.int64)
    bars = np.zeros((len(encoded), length), dtype=np.int64)
    for row, (_, seq) in enumerate(encoded):
        seq_arr = np.asarray(seq, dtype=np.int64)
        n = len(seq_arr) - 1
        inputs[row, :n] = seq_arr[:-1]
        targets[row, :n] = seq_arr[1:]
        bars[row, :n] = np.cumsum(seq_arr[:-1] == _V.BAR) - 1
    features = np.stack([f for f, _ in encoded]).astype(np.float32)
    return features, inputs, targets, bars


# -- the grammar mask --------------------------------------------------------------------------
#
# The sampler's state per row is one index into a table of allowed-token rows; the index after a
# token follows from the token and two counters. Rows ``0..389``: the instrument phase,
# ``state * 130 + last + 1`` (state 0: no instrument yet, 1: some, 2: no more allowed; ``last``:
# index of the bar's last instrument, so later ones come after it in canonical order); ``390..393``:
# the chord phase after 1..4 chords; ``394..397``: the four meta classes; ``398`` ``BAR``; ``399``
# ``END``.

_N_INST_ROWS = _V.n_instruments + 1
_CHORD_ROW = 3 * _N_INST_ROWS
_META_ROW = _CHORD_ROW + MAX_CHORDS_PER_BAR
_BAR_ROW = _META_ROW + len(ORDERED_CLASSES)
_END_ROW = _BAR_ROW + 1
_NO_MORE_INSTRUMENTS_ROW = 2 * _N_INST_ROWS  # chords only


def _mask_table() -> np.ndarray:
    table = np.zeros((_END_ROW + 1, _V.size), dtype=bool)
    instrument_index = np.arange(_V.size) - _V.first_instrument
    for state in range(3):
        for last in range(-1, _V.n_instruments):
            row = table[state * _N_INST_ROWS + last + 1]
            if state < 2:
                row[_V.is_instrument & (instrument_index > last)] = True
            if state > 0:
                row[_V.is_chord] = True
    for count in range(1, MAX_CHORDS_PER_BAR + 1):
        row = table[_CHORD_ROW + count - 1]
        row[_V.is_chord] = count < MAX_CHORDS_PER_BAR
        row[_V.meta_slice(ORDERED_CLASSES[0])] = True
    for k, name in enumerate(ORDERED_CLASSES):
        table[_META_ROW + k, _V.meta_slice(name)] = True
    table[_BAR_ROW, _V.BAR] = True
    table[_END_ROW, _V.END] = True
    return table


def _row_after() -> np.ndarray:
    """The mask row after each token (chords: after the first; a bar's last meta class: ``BAR``)."""
    after = np.full(_V.size, _END_ROW, dtype=np.int64)
    after[_V.BAR] = 0
    after[_V.is_instrument] = _N_INST_ROWS + np.arange(_V.n_instruments) + 1
    after[_V.is_chord] = _CHORD_ROW
    for k in range(len(ORDERED_CLASSES)):
        after[_V.meta_class == k] = _META_ROW + k + 1  # the last one: _BAR_ROW
    return after


_MASKS = _mask_table()
_ROW_AFTER = _row_after()
_IS_LAST_META = _V.meta_class == len(ORDERED_CLASSES) - 1
_DENSITY_ROW = _META_ROW
_ANY_BUT_PAD = np.arange(_V.size) != _V.PAD


# -- the models' step interface ----------------------------------------------------------------


class Stepper(Protocol):
    """One model's incremental inference: a state per batch row, one token per step."""

    @property
    def max_tokens(self) -> int | None:
        """The longest sequence the model takes (``None``: no limit)."""

    def start(self, features: np.ndarray) -> Any: ...

    def step(self, state: Any, tokens: np.ndarray, bars: np.ndarray) -> tuple[np.ndarray, Any]: ...

    def select(self, state: Any, rows: np.ndarray) -> Any: ...


class LSTMSequenceStepper:
    """:class:`LSTMStepper` (the class LSTMs' NumPy inference) behind the :class:`Stepper` interface."""

    max_tokens = None

    def __init__(self, model: StreamLSTM) -> None:
        self.lstm = LSTMStepper(model)

    def start(self, features: np.ndarray) -> Any:
        return self.lstm.start(features)

    def step(self, state: Any, tokens: np.ndarray, bars: np.ndarray) -> tuple[np.ndarray, Any]:
        constant, lstm_state = state
        logits, lstm_state = self.lstm.step(constant, tokens, bars, lstm_state)
        return logits, (constant, lstm_state)

    def select(self, state: Any, rows: np.ndarray) -> Any:
        constant, lstm_state = state
        return constant[rows], [(h[rows], c[rows]) for h, c in lstm_state]


# -- biases ------------------------------------------------------------------------------------


class SequenceBias:
    """The shipped planner's steering (:class:`SteeringBias`) mapped onto the sequence vocabulary.

    Every row gets one bias over the whole vocabulary: the mask lets only the current phase's tokens
    through, so adding the biases of all classes at every step adds exactly the right one. The
    cadence biases depend on the bar and are added where they apply.
    """

    def __init__(self, steering: SteeringBias, features: np.ndarray, key_lock: float) -> None:
        batch = features.shape[0]
        full = np.zeros((batch, _V.size), dtype=np.float32)
        for name in ORDERED_CLASSES:
            bias = steering.ordered(name, features, ORDERED_CLASS_SIZES[name])
            if bias is not None:
                full[:, _V.meta_slice(name)] += bias
        stream = steering.stream(features)
        if stream is not None:
            full += self._mapped(stream)
        self.full = full if full.any() else None
        self.steady = steering.steady("note_density", features)
        cadence = steering.cadence(features, key_lock)
        self.first = self.approach = self.last = None
        if cadence is not None:
            self.first, self.approach = self._mapped(cadence.first), self._mapped(cadence.approach)
            self.last = self._mapped(cadence.last)
            # The stream's "end the bar's chords" bonus: here the chords end with the first meta token.
            end_bar = cadence.last[:, STREAM_VOCAB.END_BAR]
            self.last[:, _V.meta_slice(ORDERED_CLASSES[0])] += end_bar[:, None]

    @staticmethod
    def _mapped(stream_bias: np.ndarray) -> np.ndarray:
        out = np.zeros((stream_bias.shape[0], _V.size), dtype=np.float32)
        out[:, _V.first_instrument :] = stream_bias[:, STREAM_VOCAB.FIRST_INSTRUMENT :]
        return out

    def select(self, rows: np.ndarray) -> SequenceBias:
        other = SequenceBias.__new__(SequenceBias)
        for name in ("full", "steady", "first", "approach", "last"):
            value = getattr(self, name)
            setattr(other, name, None if value is None else value[rows])
        return other


# -- sampling ----------------------------------------------------------------------------------


def _permitted_tokens(masks: InstrumentMasks | None) -> np.ndarray | None:
    """The sequence tokens an arrangement's instrument restriction leaves (``None``: all)."""
    if masks is None or masks.permitted is None:
        return None
    permitted = np.ones(_V.size, dtype=bool)
    permitted[_V.first_instrument : _V.first_chord] = masks.permitted[
        STREAM_VOCAB.FIRST_INSTRUMENT : STREAM_VOCAB.first_chord
    ]
    return permitted


def _allowed(row: np.ndarray, permitted: np.ndarray | None) -> np.ndarray:
    """The grammar's mask for each row's position, less the tokens the arrangement rules out."""
    allowed = _MASKS[row]
    return allowed if permitted is None else allowed & permitted


def _masked_row(
    row: np.ndarray,
    token: np.ndarray,
    is_instrument: np.ndarray,
    n_inst: np.ndarray,
    bar: np.ndarray,
    bars: int,
) -> np.ndarray:
    """The mask rows after ``token`` under the plan's limits: no instrument past the most a bar
    holds, and ``END`` after the last bar's last meta token."""
    if is_instrument.any():
        full = is_instrument & (n_inst >= MAX_INSTRUMENTS_PER_BAR)
        row = np.where(full, _NO_MORE_INSTRUMENTS_ROW, row)
    closing = _IS_LAST_META[token]
    if closing.any():
        row = np.where(closing & (bar + 1 >= bars), _END_ROW, row)
    return row


def sample_sequences(
    stepper: Stepper,
    features: np.ndarray,
    bars: int,
    rng: np.random.Generator,
    temperature: float,
    bias: SequenceBias | None = None,
    masks: InstrumentMasks | None = None,
    masked: bool = True,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """Sample one sequence per row of ``features`` ``[B, F]``: the tokens after the first ``BAR``, up
    to and including ``END``.

    With ``masked`` (the planners) every sequence is a well-formed plan of exactly ``bars`` bars;
    ``masks`` fix or restrict the instruments (the arrangement), ``bias`` adds the steering. Without
    it the model samples alone, stopping at ``END`` or after ``max_tokens`` tokens (default: the
    longest masked plan), and the result may be anything. Rows leave the batch when they finish.
    Draws are Gumbel-max (exact samples of the softmax; one argmax per step).
    """
    batch = features.shape[0]
    longest = bars * (2 + MAX_INSTRUMENTS_PER_BAR + MAX_CHORDS_PER_BAR + len(ORDERED_CLASSES))
    limit = longest if max_tokens is None else max_tokens
    if stepper.max_tokens is not None:
        limit = min(limit, stepper.max_tokens - 1)
    state = stepper.start(features.astype(np.float32))
    rows = np.arange(batch)
    token = np.full(batch, _V.BAR, dtype=np.int64)
    bar = np.zeros(batch, dtype=np.int64)
    row = np.zeros(batch, dtype=np.int64)  # the mask row: what may come next
    n_inst = np.zeros(batch, dtype=np.int64)
    n_chords = np.zeros(batch, dtype=np.int64)
    previous_density = np.zeros(batch, dtype=np.int64)
    out = np.full((batch, limit), _V.PAD, dtype=np.int64)
    forced = masks.forced if (masks is not None and masked) else None
    permitted = _permitted_tokens(masks) if masked else None
    steady = bias is not None and masked and bias.steady is not None
    finished = False
    for step in range(limit):
        logits, state = stepper.step(state, token, bar)
        if temperature > 0:
            logits = logits / temperature
        choosing = None
        if masked:
            if bias is not None:
                logits = _biased(logits, bias, row, bar, n_chords, previous_density, bars)
            if forced is not None:
                in_instruments = row < _CHORD_ROW
                scheduled = forced[
                    rows, np.minimum(bar, forced.shape[1] - 1), np.minimum(n_inst, MAX_INSTRUMENTS_PER_BAR)
                ]
                choosing = in_instruments & (scheduled != STREAM_VOCAB.END_INSTRUMENTS)
                row = np.where(in_instruments & ~choosing, _NO_MORE_INSTRUMENTS_ROW, row)
            allowed = _allowed(row, permitted)
        else:
            allowed = _ANY_BUT_PAD
        logits = np.where(allowed, logits, -np.inf)
        if temperature > 0:
            logits = logits + rng.gumbel(size=logits.shape)
        token = logits.argmax(axis=1)
        if choosing is not None:
            token = np.where(choosing, _V.from_stream[scheduled], token)
        out[rows, step] = token
        is_bar = token == _V.BAR
        is_instrument = _V.is_instrument[token]
        is_chord = _V.is_chord[token]
        n_inst = np.where(is_bar, 0, n_inst + is_instrument)
        n_chords = np.where(is_bar, 0, n_chords + is_chord)
        row = _ROW_AFTER[token] + is_chord * (np.minimum(n_chords, MAX_CHORDS_PER_BAR) - 1)
        if masked:
            row = _masked_row(row, token, is_instrument, n_inst, bar, bars)
        if steady:
            previous_density = np.where(_V.meta_class[token] == 0, _V.meta_bin[token], previous_density)
        bar = bar + is_bar
        ended = token == _V.END
        if ended.any():
            if ended.all():
                finished = True
                break
            active = np.flatnonzero(~ended)
            rows, token, bar, row = rows[active], token[active], bar[active], row[active]
            n_inst, n_chords, previous_density = n_inst[active], n_chords[active], previous_density[active]
            state = stepper.select(state, active)
            if bias is not None:
                bias = bias.select(active)
    if masked and not finished:  # cannot happen: the mask ends every bar within its token budget
        raise RuntimeError("sequence sampler did not finish every plan")
    return [[t for t in out_row if t != _V.PAD] for out_row in out.tolist()]


def _biased(
    logits: np.ndarray,
    bias: SequenceBias,
    row: np.ndarray,
    bar: np.ndarray,
    n_chords: np.ndarray,
    previous_density: np.ndarray,
    bars: int,
) -> np.ndarray:
    if bias.full is not None:
        logits = logits + bias.full
    if bias.steady is not None:
        steady = (row == _DENSITY_ROW) & (bar > 0)
        if steady.any():
            logits = logits.copy()
            start = _V.meta_offset[ORDERED_CLASSES[0]]
            logits[np.arange(len(logits)), start + previous_density] += bias.steady * steady
    if bias.first is not None and (bar.min() == 0 or bar.max() >= bars - 2):
        chords = row < _META_ROW  # the instrument and chord phases: chords may come
        first = chords & (bar == 0) & (n_chords == 0)
        approach = chords & (bar == bars - 2) & (bars >= 3)
        closing = chords & (bar == bars - 1) & (bars >= 2)
        logits = (
            logits
            + first[:, None] * bias.first
            + approach[:, None] * bias.approach
            + closing[:, None] * bias.last
        )
    return logits


# -- the planner -------------------------------------------------------------------------------


class SequencePlanner(PlannerBase):
    """A planner over the whole-description sequence; subclasses give the model and its stepper.

    Same interface as :class:`~e2m_live.planner.Planner`, most of it shared through
    :class:`~e2m_live.planner.planner.PlannerBase` (``plan``, ``plan_many``, ``steering``,
    ``set_steering``, ``time_signature_for``, the instrument choice); ``sample_bars`` and
    ``load`` / ``save`` are its own.
    """

    kind: ClassVar[str] = ""
    default_dir: ClassVar[Path] = _MODELS

    def __init__(
        self,
        model: Any,
        *,
        feature_means: Sequence[float] | np.ndarray | None = None,
        steering: Steering | None = None,
        time_signatures: dict[int, tuple[int, int]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.stepper = self.make_stepper(self.model)
        self._set_up(feature_means, steering, time_signatures, metadata)
        #: Longest run of bars sampled as one sequence (``None``: any; a Transformer's positions end).
        self.section_bars: int | None = (
            None if self.stepper.max_tokens is None else int(self.model.config.plan_bars)
        )

    # -- to be given by subclasses --------------------------------------------------------------
    @staticmethod
    def make_stepper(model: Any) -> Stepper:
        raise NotImplementedError

    @staticmethod
    def save_weights(model: Any, path: Path) -> None:
        raise NotImplementedError

    @staticmethod
    def load_weights(path: Path) -> Any:
        raise NotImplementedError

    def sample_bars(
        self,
        features: Sequence[EmotionFeatures],
        bars: int = 12,
        seed: int | None = None,
        temperature: float = 1.0,
        first_bar: int = 1,
        arrangement: Arrangement | None = None,
        ensemble_seed: int | None = None,
    ) -> list[list[BarPlan]]:
        """The per-bar choices behind :meth:`plan_many`. The instruments are chosen as the shipped
        planner chooses them (same draws from the same seed), so for the same seed and arrangement
        both plan the same instruments and differ in what their models choose."""
        features, arrangement, vectors, rng, ensemble_rng = self._start_sampling(
            features, bars, seed, temperature, first_bar, arrangement, ensemble_seed
        )
        masks = self._instrument_masks(features, bars, arrangement, ensemble_rng, rng, temperature == 0)
        section = self.section_bars or bars
        plans: list[list[BarPlan]] = [[] for _ in features]
        with single_threaded_blas():
            for start in range(0, bars, section):
                count = min(section, bars - start)
                part = masks
                if masks is not None and masks.forced is not None:
                    part = InstrumentMasks(forced=masks.forced[:, start : start + count])
                bias = SequenceBias(self._bias, vectors, arrangement.key_lock)
                sequences = sample_sequences(
                    self.stepper, vectors, count, rng, float(temperature), bias, part
                )
                for row, (f, ids) in enumerate(zip(features, sequences, strict=True)):
                    plans[row] += _V.bar_plans(ids, int(f.key))
        return plans

    def sample_unmasked(
        self,
        features: Sequence[EmotionFeatures],
        bars: int = 12,
        seed: int | None = None,
        temperature: float = 1.0,
        max_tokens: int | None = None,
    ) -> list[list[str]]:
        """The learned model alone, no mask and no steering: FIGARO tokens of what it writes (may be
        invalid; check with :func:`unmasked_validity`)."""
        features = list(features)
        check_plan_arguments(features, bars, seed, temperature, 1)
        vectors = np.stack([f.to_vector() for f in features])
        rng = np.random.default_rng(seed)
        with single_threaded_blas():
            sequences = sample_sequences(
                self.stepper, vectors, bars, rng, float(temperature), masked=False, max_tokens=max_tokens
            )
        return [
            _V.figaro_tokens(ids, int(f.key), self.time_signature_for(f))
            + ([] if _V.END in ids else ["<cut>"])
            for f, ids in zip(features, sequences, strict=True)
        ]

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path, training: dict[str, Any] | None = None) -> None:
        """Write the weights and ``config.json`` to ``directory``."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        self.save_weights(self.model, root / WEIGHTS_NAME)
        config = {
            "format": CONFIG_FORMAT,
            "kind": self.kind,
            "feature_order": list(FEATURE_ORDER),
            "feature_means": [round(float(x), 6) for x in self.feature_means],
            "steering": self.steering.to_dict(),
            "time_signatures": {str(k): list(v) for k, v in sorted(self.time_signatures.items())},
            "training": dict(training if training is not None else self.metadata),
        }
        (root / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def load(
        cls, directory: str | Path | None = None, *, steering: Steering | None = None
    ) -> SequencePlanner:
        """Load a planner written by :meth:`save` (default: this kind's folder under ``models/``)."""
        root = Path(cls.default_dir if directory is None else directory)
        config_path = root / CONFIG_NAME
        if not config_path.is_file():
            raise PlanError(
                f"{config_path} not found: train with `python -m training.planner.train_sequence`"
            )
        try:
            config = json.loads(config_path.read_text())
        except ValueError as error:
            raise PlanError(f"{config_path}: invalid JSON ({error})") from None
        if config.get("format") != CONFIG_FORMAT or config.get("kind") != cls.kind:
            raise PlanError(
                f"{config_path}: not a {cls.kind!r} planner (format {config.get('format')!r}, "
                f"kind {config.get('kind')!r})"
            )
        if list(config.get("feature_order", [])) != list(FEATURE_ORDER):
            raise PlanError(f"{config_path}: trained on another feature order {config.get('feature_order')}")
        weights = root / WEIGHTS_NAME
        if not weights.is_file():
            raise PlanError(f"{weights} not found")
        try:
            model = cls.load_weights(weights)
        except (ValueError, RuntimeError, OSError, TypeError, KeyError) as error:
            raise PlanError(f"{weights}: {error}") from None
        return cls(
            model,
            feature_means=config.get("feature_means"),
            steering=steering if steering is not None else Steering.from_dict(config.get("steering", {})),
            time_signatures={int(k): tuple(v) for k, v in config.get("time_signatures", {}).items()} or None,
            metadata=config.get("training", {}),
        )


class SingleLSTMPlanner(SequencePlanner):
    """One LSTM over the whole description: a :class:`StreamLSTM` (the class LSTMs' stream model,
    features + previous token + bar position in, next token out) over :data:`SEQUENCE_VOCAB`."""

    kind = "single-lstm"
    default_dir = Path(os.environ.get("E2M_SINGLE_LSTM_DIR", _MODELS / "planner-single-lstm"))

    @staticmethod
    def make_stepper(model: StreamLSTM) -> Stepper:
        if model.config.vocab_size != _V.size:
            raise PlanError(f"model vocabulary {model.config.vocab_size}, the sequence has {_V.size}")
        return LSTMSequenceStepper(model)

    @staticmethod
    def save_weights(model: StreamLSTM, path: Path) -> None:
        save_model(model, path)

    @staticmethod
    def load_weights(path: Path) -> StreamLSTM:
        model = load_model(path)
        if not isinstance(model, StreamLSTM):
            raise ValueError("not a sequence LSTM")
        return model


def single_lstm(
    hidden: int = 128, embedding: int = 48, dropout: float = 0.1, plan_bars: int = 12, layers: int = 1
) -> StreamLSTM:
    """A fresh single LSTM over the whole description."""
    return StreamLSTM(
        StreamLSTMConfig(
            vocab_size=_V.size,
            embedding=embedding,
            hidden=hidden,
            layers=layers,
            dropout=dropout,
            plan_bars=plan_bars,
        )
    )


def unmasked_validity(tokens: Sequence[str], bars: int) -> dict[str, bool]:
    """How an unmasked sample fares: ``grammar`` (a complete, valid FIGARO description),
    ``bars`` (and exactly ``bars`` bars), ``planner`` (and every bar has 1..10 instruments and 1..4
    chords, what the planners promise)."""
    try:
        validate(tokens)
    except GrammarError:
        return {"grammar": False, "bars": False, "planner": False}
    from e2m_live.description.grammar import parse

    description = parse(tokens)
    right_length = len(description.bars) == bars
    fits = all(
        1 <= len(b.instruments) <= MAX_INSTRUMENTS_PER_BAR and 1 <= len(b.chords) <= MAX_CHORDS_PER_BAR
        for b in description.bars
    )
    return {"grammar": True, "bars": right_length, "planner": right_length and fits}
