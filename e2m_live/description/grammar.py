"""The grammar of FIGARO descriptions as a finite-state machine.

A description is a sequence of bars; each bar is exactly::

    Bar_k  Time Signature_n/d  Note Density_i  Mean Velocity_i  Mean Pitch_i  Mean Duration_i
    Instrument_* (zero or more, all different, any order)
    Chord_*      (zero or more, repeats allowed)

with these rules, all read off FIGARO's ``InputRepresentation.get_description`` (``v4``) and
checked against its reference outputs (``docs/grammar.md`` gives the reasons):

* bar numbers are consecutive: ``Bar_k`` is followed by ``Bar_{k+1}``; the first bar may be any
  ``Bar_1`` .. ``Bar_511`` (FIGARO numbers from 1, windows keep their numbers; ``Bar_0`` never occurs);
* a bar without instruments has no notes, so its four means are all bin 0;
* once a bar has had a chord, every later bar has at least one (FIGARO carries the last chord on);
* nothing follows the last bar (no ``<eos>``, unless a ``DescriptionState`` is made with ``eos=True``).

``DescriptionState`` is the incremental machine (``advance`` / ``allowed`` / ``allowed_mask`` /
``is_complete``); ``validate`` and ``parse`` run it over a whole sequence. Its state is finite: a
phase, the next bar number, three flags and the set of instruments used in the current bar.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from e2m_live.description.vocab import (
    BAR_KEY,
    CHORD_KEY,
    EOS_TOKEN,
    INSTRUMENT_KEY,
    MAX_BARS,
    MEAN_DURATION_BINS,
    MEAN_DURATION_KEY,
    MEAN_PITCH_BINS,
    MEAN_PITCH_KEY,
    MEAN_VELOCITY_BINS,
    MEAN_VELOCITY_KEY,
    NOTE_DENSITY_BINS,
    NOTE_DENSITY_KEY,
    TIME_SIGNATURE_KEY,
    Vocab,
    chord_tokens,
    instrument_names,
    time_signature_tokens,
    token,
)

__all__ = [
    "CHORDS",
    "FIRST_BAR_INDEX",
    "INSTRUMENTS",
    "MAX_BAR_INDEX",
    "N_MEAN_BINS",
    "TIME_SIGNATURES",
    "BarDescription",
    "Description",
    "DescriptionState",
    "GrammarError",
    "parse",
    "validate",
]

# --- the alphabet -------------------------------------------------------------------------

#: Smallest bar number FIGARO emits.
FIRST_BAR_INDEX = 1
#: Largest bar number with a token (``Bar_511``).
MAX_BAR_INDEX = MAX_BARS - 1
#: Number of bins of each of the four bar means (indices 0..32).
N_MEAN_BINS = len(NOTE_DENSITY_BINS)
assert N_MEAN_BINS == len(MEAN_VELOCITY_BINS) == len(MEAN_PITCH_BINS) == len(MEAN_DURATION_BINS)

#: Time signatures with a token, in vocabulary order.
TIME_SIGNATURES: tuple[tuple[int, int], ...] = tuple(
    (int(n), int(d))
    for n, d in (t.removeprefix(TIME_SIGNATURE_KEY + "_").split("/") for t in time_signature_tokens())
)
#: Instrument names with a token (128 General MIDI names, then ``"drum"``), in vocabulary order.
INSTRUMENTS: tuple[str, ...] = tuple(instrument_names())
#: Chord names with a token (``"C:maj"`` .. ``"B:None"``, ``"N:N"``), in vocabulary order.
CHORDS: tuple[str, ...] = tuple(t.removeprefix(CHORD_KEY + "_") for t in chord_tokens())

# Token kinds; a bar's header is BAR, TS, ND, MV, MP, MD in this order.
_BAR, _TS, _ND, _MV, _MP, _MD, _INSTR, _CHORD, _EOS = range(9)
_HEADER_KEYS = (
    BAR_KEY,
    TIME_SIGNATURE_KEY,
    NOTE_DENSITY_KEY,
    MEAN_VELOCITY_KEY,
    MEAN_PITCH_KEY,
    MEAN_DURATION_KEY,
)
_KIND_NAMES = (*_HEADER_KEYS, INSTRUMENT_KEY, CHORD_KEY, EOS_TOKEN)


def _token_table() -> dict[str, tuple[int, Any]]:
    """token -> (kind, value): bar number, (num, den), bin index, instrument number or chord name."""
    table: dict[str, tuple[int, Any]] = {}
    for k in range(MAX_BARS):
        table[token(BAR_KEY, k)] = (_BAR, k)
    for ts in TIME_SIGNATURES:
        table[token(TIME_SIGNATURE_KEY, f"{ts[0]}/{ts[1]}")] = (_TS, ts)
    for kind, key in zip((_ND, _MV, _MP, _MD), _HEADER_KEYS[2:], strict=True):
        for i in range(N_MEAN_BINS):
            table[token(key, i)] = (kind, i)
    for i, name in enumerate(INSTRUMENTS):
        table[token(INSTRUMENT_KEY, name)] = (_INSTR, i)
    for name in CHORDS:
        table[token(CHORD_KEY, name)] = (_CHORD, name)
    table[EOS_TOKEN] = (_EOS, None)
    return table


_TOKEN_INFO = _token_table()
_INSTRUMENT_TOKENS = tuple(token(INSTRUMENT_KEY, name) for name in INSTRUMENTS)
_INSTRUMENT_INDEX = {name: i for i, name in enumerate(INSTRUMENTS)}
_TIME_SIGNATURE_SET = frozenset(TIME_SIGNATURES)
_CHORD_SET = frozenset(CHORDS)
_ALL_INSTRUMENTS_USED = (1 << len(INSTRUMENTS)) - 1
_INSTRUMENT_SET = frozenset(_INSTRUMENT_TOKENS)

_TS_TOKENS = frozenset(t for t, (k, _) in _TOKEN_INFO.items() if k == _TS)
_CHORD_TOKENS = frozenset(t for t, (k, _) in _TOKEN_INFO.items() if k == _CHORD)
_MEAN_TOKENS = {
    kind: frozenset(t for t, (k, _) in _TOKEN_INFO.items() if k == kind) for kind in (_ND, _MV, _MP, _MD)
}
_BAR_TOKENS = tuple(token(BAR_KEY, k) for k in range(MAX_BARS))


class GrammarError(ValueError):
    """A token sequence (or record) that is not a valid FIGARO description."""


# --- the incremental machine --------------------------------------------------------------

# Phases: what the machine waits for.
_P_BAR = 0  # the first Bar_ token
_P_TS, _P_ND, _P_MV, _P_MP, _P_MD = 1, 2, 3, 4, 5  # the rest of the header
_P_INSTR = 6  # header done: instruments, chords or the next bar
_P_CHORD = 7  # chords or the next bar
_P_DONE = 8  # after <eos>

_HEADER_NEXT = {_P_TS: (_TS, _P_ND), _P_ND: (_ND, _P_MV), _P_MV: (_MV, _P_MP), _P_MP: (_MP, _P_MD)}
_HEADER_SETS = {_P_TS: _TS_TOKENS, _P_ND: _MEAN_TOKENS[_ND], _P_MV: _MEAN_TOKENS[_MV]}
_HEADER_SETS |= {_P_MP: _MEAN_TOKENS[_MP], _P_MD: _MEAN_TOKENS[_MD]}

_CACHE_LIMIT = 1 << 16
_allowed_cache: dict[tuple, frozenset[str]] = {}
_mask_cache: weakref.WeakKeyDictionary[Vocab, _VocabTables] = weakref.WeakKeyDictionary()


class DescriptionState:
    """Incremental recogniser of descriptions: feed tokens with ``advance``, ask what may come next.

    ``first_bar`` pins the number of the first bar (default: any of 1..511). With ``eos=True``
    the machine also accepts one final ``<eos>`` once the prefix is complete (for decoders).
    """

    __slots__ = (
        "_bar_has_chord",
        "_bar_token_index",
        "_chord_seen",
        "_eos",
        "_first_bar",
        "_means_zero",
        "_n_bars",
        "_next_bar",
        "_phase",
        "_position",
        "_used",
    )

    def __init__(self, first_bar: int | None = None, eos: bool = False) -> None:
        if first_bar is not None and not (
            isinstance(first_bar, int)
            and not isinstance(first_bar, bool)
            and FIRST_BAR_INDEX <= first_bar <= MAX_BAR_INDEX
        ):
            raise ValueError(
                f"first_bar must be an int in {FIRST_BAR_INDEX}..{MAX_BAR_INDEX}, got {first_bar!r}"
            )
        self._first_bar = first_bar
        self._eos = bool(eos)
        self._phase = _P_BAR
        self._next_bar = first_bar  # None: any first bar
        self._n_bars = 0
        self._position = 0  # tokens accepted so far
        self._bar_token_index = -1
        self._means_zero = True  # all four means of the current bar are bin 0
        self._used = 0  # bitmask over INSTRUMENTS used in the current bar
        self._bar_has_chord = False
        self._chord_seen = False  # some earlier bar had a chord

    # -- inspection ------------------------------------------------------------------------

    @property
    def position(self) -> int:
        """Number of tokens accepted so far (the index the next token will have)."""
        return self._position

    @property
    def n_bars(self) -> int:
        """Number of ``Bar_`` tokens accepted so far."""
        return self._n_bars

    @property
    def next_bar_index(self) -> int | None:
        """The number the next ``Bar_`` token must carry (``None`` before a free first bar)."""
        return self._next_bar

    def copy(self) -> DescriptionState:
        """An independent copy (for beam search or backtracking)."""
        other = DescriptionState.__new__(DescriptionState)
        for name in DescriptionState.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    def _bar_can_end(self) -> bool:
        return (
            self._phase in (_P_INSTR, _P_CHORD)
            and (self._used != 0 or self._means_zero)
            and (self._bar_has_chord or not self._chord_seen)
        )

    def is_complete(self) -> bool:
        """True when the tokens so far form a whole, valid description (at least one bar)."""
        return self._phase == _P_DONE or self._bar_can_end()

    def _key(self) -> tuple:
        phase = self._phase
        if phase == _P_BAR:
            return (phase, self._next_bar)
        if phase < _P_INSTR:
            return (phase,)
        if phase == _P_DONE:
            return (phase,)
        can_end = self._bar_can_end()
        next_bar = self._next_bar
        if not can_end or next_bar is None or next_bar > MAX_BAR_INDEX:
            next_bar = None
        need_instrument = self._used == 0 and not self._means_zero
        used = self._used if phase == _P_INSTR else _ALL_INSTRUMENTS_USED
        return (phase, used, need_instrument, next_bar, can_end and self._eos)

    def allowed(self) -> frozenset[str]:
        """The tokens that may come next (empty only after ``<eos>``)."""
        key = self._key()
        found = _allowed_cache.get(key)
        if found is None:
            found = _allowed_for(key)
            if len(_allowed_cache) >= _CACHE_LIMIT:
                _allowed_cache.clear()
            _allowed_cache[key] = found
        return found

    def _vocab_entry(self, vocab: Vocab) -> list:
        tables = _mask_cache.get(vocab)
        if tables is None:
            tables = _mask_cache[vocab] = _VocabTables(vocab)
        key = self._key()
        entry = tables.entries.get(key)
        if entry is None:
            mask = tables.mask_for(key)
            mask.flags.writeable = False
            if len(tables.entries) >= _CACHE_LIMIT:
                tables.entries.clear()
            entry = tables.entries[key] = [mask, None]
        return entry

    def allowed_mask(self, vocab: Vocab) -> np.ndarray:
        """Boolean mask over ``vocab`` ids of the allowed tokens.

        Cached and shared, hence read-only: copy it before changing it (``torch.from_numpy``
        wants ``mask.copy()``).
        """
        return self._vocab_entry(vocab)[0]

    def allowed_ids(self, vocab: Vocab) -> list[int]:
        """Ids in ``vocab`` of the allowed tokens, ascending (a fresh list)."""
        entry = self._vocab_entry(vocab)
        if entry[1] is None:
            entry[1] = tuple(np.flatnonzero(entry[0]).tolist())
        return list(entry[1])

    def expected(self) -> str:
        """Human-readable summary of what may come next (used in error messages)."""
        key = self._key()
        phase = key[0]
        if phase == _P_BAR:
            if self._next_bar is None:
                return f"Bar_{FIRST_BAR_INDEX}..Bar_{MAX_BAR_INDEX}"
            return _BAR_TOKENS[self._next_bar]
        if phase < _P_INSTR:
            return f"{_KIND_NAMES[phase]}_*"
        if phase == _P_DONE:
            return "nothing (the description ended with <eos>)"
        _, _, need_instrument, next_bar, eos = key
        if need_instrument:
            return "an Instrument_* (a bar with a non-zero mean has notes, hence an instrument)"
        parts = []
        if phase == _P_INSTR:
            parts.append("an Instrument_* not yet used in this bar")
        if self._chord_seen and not self._bar_has_chord:
            parts.append("a Chord_* (an earlier bar had a chord, so every later bar has one)")
        else:
            parts.append("a Chord_*")
            if next_bar is not None:
                parts.append(_BAR_TOKENS[next_bar])
            if eos:
                parts.append(EOS_TOKEN)
            if next_bar is None and not eos:
                parts.append("the end of the description")
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]

    def _where(self) -> str:
        if self._n_bars == 0:
            return "before the first bar"
        number = self._next_bar - 1 if self._next_bar is not None else "?"
        return f"in bar Bar_{number} (bar {self._n_bars}, from index {self._bar_token_index})"

    def _fail(self, tok: object, why: str | None = None) -> GrammarError:
        reason = why or f"expected {self.expected()}"
        return GrammarError(f"token {tok!r} at index {self._position} {self._where()}: {reason}")

    # -- transitions -----------------------------------------------------------------------

    # The token state machine: one branch per grammar phase, inline because it runs for every
    # token the decoder samples (C901 counts the branches).
    def advance(self, tok: str) -> None:  # noqa: C901
        """Accept one token or raise ``GrammarError`` (the state is then unchanged)."""
        try:
            info = _TOKEN_INFO.get(tok)
        except TypeError:  # unhashable
            info = None
        if info is None:
            if not isinstance(tok, str):
                raise self._fail(tok, f"tokens are strings, got {type(tok).__name__}")
            raise self._fail(tok, f"not a description token; expected {self.expected()}")
        kind, value = info
        phase = self._phase

        if phase in (_P_INSTR, _P_CHORD):
            if kind == _CHORD:
                if self._used == 0 and not self._means_zero:
                    raise self._fail(tok)
                self._phase = _P_CHORD
                self._bar_has_chord = True
            elif kind == _INSTR and phase == _P_INSTR:
                bit = 1 << value
                if self._used & bit:
                    raise self._fail(tok, "this instrument is already listed in this bar")
                self._used |= bit
            elif kind == _BAR and self._bar_can_end() and value == self._next_bar:
                self._start_bar(value)
            elif kind == _EOS and self._eos and self._bar_can_end():
                self._phase = _P_DONE
            else:
                raise self._fail(tok)
        elif phase == _P_MD:
            if kind != _MD:
                raise self._fail(tok)
            self._means_zero = self._means_zero and value == 0
            self._phase = _P_INSTR
        elif phase in _HEADER_NEXT:
            want, nxt = _HEADER_NEXT[phase]
            if kind != want:
                raise self._fail(tok)
            if kind != _TS:
                self._means_zero = self._means_zero and value == 0
            self._phase = nxt
        elif phase == _P_BAR:
            if kind != _BAR or not (
                value == self._next_bar if self._next_bar is not None else value >= FIRST_BAR_INDEX
            ):
                raise self._fail(tok)
            self._start_bar(value)
        else:  # _P_DONE
            raise self._fail(tok)
        self._position += 1

    def _start_bar(self, number: int) -> None:
        self._chord_seen = self._chord_seen or self._bar_has_chord
        self._bar_has_chord = False
        self._used = 0
        self._means_zero = True
        self._n_bars += 1
        self._next_bar = number + 1
        self._bar_token_index = self._position
        self._phase = _P_TS

    def feed(self, tokens: Iterable[str]) -> DescriptionState:
        """``advance`` every token in turn; returns ``self``."""
        for tok in tokens:
            self.advance(tok)
        return self


def _used_indices(used: int) -> list[int]:
    """Bit positions set in ``used`` (instrument numbers already in the bar)."""
    out = []
    while used:
        low = used & -used
        out.append(low.bit_length() - 1)
        used ^= low
    return out


def _allowed_for(key: tuple) -> frozenset[str]:
    phase = key[0]
    if phase == _P_BAR:
        first = key[1]
        if first is None:
            return frozenset(_BAR_TOKENS[FIRST_BAR_INDEX:])
        return frozenset([_BAR_TOKENS[first]])
    if phase < _P_INSTR:
        return _HEADER_SETS[phase]
    if phase == _P_DONE:
        return frozenset()
    _, used, need_instrument, next_bar, eos = key
    instruments = _INSTRUMENT_SET.difference(_INSTRUMENT_TOKENS[i] for i in _used_indices(used))
    if need_instrument:
        return frozenset(instruments)
    extras = [_BAR_TOKENS[next_bar]] if next_bar is not None else []
    if eos:
        extras.append(EOS_TOKEN)
    return instruments.union(_CHORD_TOKENS, extras)


class _VocabTables:
    """Ids of the grammar's token classes in one vocabulary, and the masks built from them."""

    def __init__(self, vocab: Vocab) -> None:
        stoi = vocab.stoi
        missing = [tok for tok in _TOKEN_INFO if tok not in stoi and tok != EOS_TOKEN]
        if missing:
            raise KeyError(f"tokens {missing[:3]} are not in the vocabulary {type(vocab).__name__}")
        self.size = len(vocab)
        self.bar_ids = np.array([stoi[t] for t in _BAR_TOKENS])
        self.instrument_ids = np.array([stoi[t] for t in _INSTRUMENT_TOKENS])
        self.eos_id = stoi.get(EOS_TOKEN)
        self.chord_mask = self._mask_of(stoi, _CHORD_TOKENS)
        self.header_masks = {phase: self._mask_of(stoi, toks) for phase, toks in _HEADER_SETS.items()}
        self.entries: dict[tuple, list] = {}  # key -> [mask, ids (filled lazily)]

    def _mask_of(self, stoi: dict[str, int], tokens: Iterable[str]) -> np.ndarray:
        mask = np.zeros(self.size, dtype=bool)
        mask[[stoi[t] for t in tokens]] = True
        return mask

    def mask_for(self, key: tuple) -> np.ndarray:
        phase = key[0]
        if phase in self.header_masks:
            return self.header_masks[phase].copy()
        mask = np.zeros(self.size, dtype=bool)
        if phase == _P_BAR:
            mask[self.bar_ids[FIRST_BAR_INDEX:] if key[1] is None else self.bar_ids[key[1]]] = True
        elif phase in (_P_INSTR, _P_CHORD):
            _, used, need_instrument, next_bar, eos = key
            if phase == _P_INSTR:
                mask[self.instrument_ids] = True
                mask[self.instrument_ids[_used_indices(used)]] = False
            if not need_instrument:
                mask |= self.chord_mask
                if next_bar is not None:
                    mask[self.bar_ids[next_bar]] = True
                if eos:
                    if self.eos_id is None:
                        raise KeyError(f"{EOS_TOKEN} is not in the vocabulary {type(self).__name__}")
                    mask[self.eos_id] = True
        return mask


# --- typed records ------------------------------------------------------------------------


def _check_bin(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < N_MEAN_BINS:
        raise GrammarError(f"{name} must be a bin index 0..{N_MEAN_BINS - 1}, got {value!r}")


@dataclass(frozen=True)
class BarDescription:
    """One bar of a description. Bins are indices into the ``*_BINS`` arrays of ``vocab``."""

    time_signature: tuple[int, int]
    note_density: int
    mean_velocity: int
    mean_pitch: int
    mean_duration: int
    instruments: tuple[str, ...] = ()
    chords: tuple[str, ...] = ()
    index: int | None = None

    def __post_init__(self) -> None:
        ts = tuple(self.time_signature) if isinstance(self.time_signature, (tuple, list)) else None
        if ts is None or ts not in _TIME_SIGNATURE_SET:
            raise GrammarError(f"time_signature {self.time_signature!r} has no token")
        object.__setattr__(self, "time_signature", (int(ts[0]), int(ts[1])))
        for name in ("note_density", "mean_velocity", "mean_pitch", "mean_duration"):
            _check_bin(name, getattr(self, name))
            object.__setattr__(self, name, int(getattr(self, name)))
        instruments = tuple(self.instruments)
        for name in instruments:
            if name not in _INSTRUMENT_INDEX:
                raise GrammarError(
                    f"unknown instrument {name!r} (names as in the vocabulary, drums are 'drum')"
                )
        if len(set(instruments)) != len(instruments):
            raise GrammarError(f"instruments repeat within a bar: {instruments!r}")
        chords = tuple(self.chords)
        for name in chords:
            if name not in _CHORD_SET:
                raise GrammarError(f"unknown chord {name!r} (e.g. 'A:min', 'N:N')")
        object.__setattr__(self, "instruments", instruments)
        object.__setattr__(self, "chords", chords)
        if self.index is not None and (
            isinstance(self.index, bool)
            or not isinstance(self.index, (int, np.integer))
            or not FIRST_BAR_INDEX <= self.index <= MAX_BAR_INDEX
        ):
            raise GrammarError(
                f"bar index must be in {FIRST_BAR_INDEX}..{MAX_BAR_INDEX} or None, got {self.index!r}"
            )
        if self.index is not None:
            object.__setattr__(self, "index", int(self.index))

    @property
    def is_silent(self) -> bool:
        """No instruments, i.e. no notes (then all four means are bin 0)."""
        return not self.instruments

    def tokens(self, index: int | None = None) -> list[str]:
        """The bar's tokens; ``index`` overrides (or supplies) the ``Bar_`` number."""
        number = self.index if index is None else index
        if number is None:
            raise GrammarError("bar has no index: pass one, or serialise it within a Description")
        num, den = self.time_signature
        return [
            _BAR_TOKENS[number],
            f"{TIME_SIGNATURE_KEY}_{num}/{den}",
            f"{NOTE_DENSITY_KEY}_{self.note_density}",
            f"{MEAN_VELOCITY_KEY}_{self.mean_velocity}",
            f"{MEAN_PITCH_KEY}_{self.mean_pitch}",
            f"{MEAN_DURATION_KEY}_{self.mean_duration}",
            *(f"{INSTRUMENT_KEY}_{name}" for name in self.instruments),
            *(f"{CHORD_KEY}_{name}" for name in self.chords),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "time_signature": list(self.time_signature),
            "note_density": self.note_density,
            "mean_velocity": self.mean_velocity,
            "mean_pitch": self.mean_pitch,
            "mean_duration": self.mean_duration,
            "instruments": list(self.instruments),
            "chords": list(self.chords),
        }

    @classmethod
    def from_json(cls, data: Any) -> BarDescription:
        fields = ("time_signature", "note_density", "mean_velocity", "mean_pitch", "mean_duration")
        if not isinstance(data, dict):
            raise GrammarError(f"a bar must be a JSON object, got {type(data).__name__}")
        missing = [name for name in fields if name not in data]
        unknown = sorted(set(data) - {*fields, "instruments", "chords", "index"})
        if missing or unknown:
            raise GrammarError(f"bar object: missing fields {missing}, unknown fields {unknown}")
        for name in ("instruments", "chords"):
            if not isinstance(data.get(name, []), list):
                raise GrammarError(f"bar field {name!r} must be a list")
        # Anything but a list becomes None, which the validation below rejects with its message.
        ts: Any = tuple(data["time_signature"]) if isinstance(data["time_signature"], list) else None
        return cls(
            time_signature=ts,
            note_density=data["note_density"],
            mean_velocity=data["mean_velocity"],
            mean_pitch=data["mean_pitch"],
            mean_duration=data["mean_duration"],
            instruments=tuple(data.get("instruments", [])),
            chords=tuple(data.get("chords", [])),
            index=data.get("index"),
        )


@dataclass
class Description:
    """A whole description: its bars in order. Built from tokens it is validated; built from bars,
    bars without an index are numbered on from the previous bar (the first from 1), and the result
    is validated.
    """

    bars: list[BarDescription]

    def __post_init__(self) -> None:
        self.bars = list(self.bars)
        previous: int | None = None
        for i, bar in enumerate(self.bars):
            if not isinstance(bar, BarDescription):
                raise GrammarError(f"bar {i} is a {type(bar).__name__}, not a BarDescription")
            if bar.index is None:
                number = FIRST_BAR_INDEX if previous is None else previous + 1
                if number > MAX_BAR_INDEX:
                    raise GrammarError(
                        f"bar {i} would be Bar_{number}; the last bar token is Bar_{MAX_BAR_INDEX}"
                    )
                bar = self.bars[i] = replace(bar, index=number)
            previous = bar.index
        validate(self.tokens())

    @classmethod
    def _trusted(cls, bars: list[BarDescription]) -> Description:
        obj = cls.__new__(cls)
        obj.bars = bars
        return obj

    def __len__(self) -> int:
        return len(self.bars)

    def numbers(self) -> list[int]:
        """Each bar's number (its ``Bar_`` index; a description numbers every bar)."""
        return [bar.index for bar in self.bars if bar.index is not None]

    def tokens(self) -> list[str]:
        """The token sequence (``parse(d.tokens()) == d``)."""
        out: list[str] = []
        for bar in self.bars:
            out.extend(bar.tokens())
        return out

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> Description:
        """Parse and validate a token sequence."""
        return parse(tokens)

    def to_json(self) -> dict[str, Any]:
        return {"bars": [bar.to_json() for bar in self.bars]}

    @classmethod
    def from_json(cls, data: Any) -> Description:
        if not isinstance(data, dict) or not isinstance(data.get("bars"), list):
            raise GrammarError("a description must be a JSON object with a list 'bars'")
        return cls([BarDescription.from_json(bar) for bar in data["bars"]])


# --- whole sequences ----------------------------------------------------------------------


def _run(tokens: Sequence[str], build: bool) -> list[BarDescription]:
    if isinstance(tokens, (str, bytes)):
        raise GrammarError("a description is a sequence of token strings, not one string")
    state = DescriptionState()
    bars: list[BarDescription] = []
    header: list[Any] = []
    instruments: list[str] = []
    chords: list[str] = []
    for tok in tokens:
        state.advance(tok)
        if not build:
            continue
        kind, value = _TOKEN_INFO[tok]
        if kind == _BAR:
            if header:
                bars.append(_make_bar(header, instruments, chords))
            header, instruments, chords = [value], [], []
        elif kind == _INSTR:
            instruments.append(INSTRUMENTS[value])
        elif kind == _CHORD:
            chords.append(value)
        else:
            header.append(value)
    if not state.is_complete():
        where = "empty sequence" if state.position == 0 else f"bar Bar_{(state.next_bar_index or 1) - 1}"
        raise GrammarError(
            f"description ends early at index {state.position} ({where}): expected {state.expected()}"
        )
    if build:
        bars.append(_make_bar(header, instruments, chords))
    return bars


def _make_bar(header: list[Any], instruments: list[str], chords: list[str]) -> BarDescription:
    index, ts, nd, mv, mp, md = header
    return BarDescription(ts, nd, mv, mp, md, tuple(instruments), tuple(chords), index)


def validate(tokens: Sequence[str]) -> None:
    """Raise ``GrammarError`` (naming the token, its index and the bar) unless ``tokens`` is a
    complete description."""
    _run(tokens, build=False)


def parse(tokens: Sequence[str]) -> Description:
    """Validate ``tokens`` and return the typed ``Description``."""
    return Description._trusted(_run(tokens, build=True))
