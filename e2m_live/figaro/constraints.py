"""REMI+ grammar for constrained decoding.

The order of events in FIGARO's REMI+ (checked on the reference outputs):

    Bar_i, Time Signature_n/d, { Position_p, ( Instrument_x, Pitch_y, Velocity_v, Duration_d
                                             | Chord_c | Tempo_t ) }*

with ``Pitch_drum_*`` after ``Instrument_drum`` and ``Pitch_0..127`` after any other
instrument. On top of the grammar the mask enforces: bars numbered one after another,
positions that never go backwards and stay inside the bar, the bar's time signature and
instruments from its description (when the description has them), and a token budget per
bar (no new event starts unless a whole note still fits).

:class:`DecodeRules` add what makes the notes clean (issue 14), each measured on FIGARO's own REMI+
of the 100 reference files (``shared/reference``, 191,101 notes) and documented in ``docs/figaro.md``:

* **rising pitches**: within one instrument at one position pitches strictly rise. The reference
  REMI lists notes of one instrument at one position in ascending pitch order (0 falls in 83,173
  pairs; 4,462 pitched and 100 drum pairs repeat a pitch, i.e. doubled MIDI tracks), drums included.
  An instrument that plays again at the same position continues above its last pitch there.
* **section end and note cap**: no ``Duration_*`` carries a note past the end of the last bar, and
  none is longer than :data:`MAX_NOTE_POSITIONS` (8 quarters, 99.3rd percentile of pitched notes).
* **note budget**: at most ``margin`` x the notes that the bar's ``Note Density_*`` bin allows
  (its upper edge x positions in the bar; no reference bar exceeds 1x).
* **coverage**: a bar ends only after every instrument of its description has played (while the
  token and note budgets leave room for one note each).

and three rules for instruments and groove (issue 14, follow-up):

* **pitch ranges**: every instrument keeps to its family's range (:func:`pitch_range`): drums to the
  GM keys 35..81, basses to 28..67, voices to 48..84, synth leads to 48..96, the rest to the piano.
* **voices sing**: a voice-like program (:data:`VOICE_PROGRAMS`) is monophonic, one pitch at a time:
  no new note of it while its last one still sounds (tracked in positions across bars).
* **groove** (strength ``g`` 0..1 from danceability, see :class:`GrammarState`): in bars with drums a
  drum note on every beat and bass (if in the bar) on the downbeat, drum pitches biased by beat role
  (kick on the strong beats, snare on the back beats, closed hat on the eighths), positions off the
  sixteenth grid quantised to it with probability ``g`` (:meth:`GrammarState.snap`). ``g`` 0 changes
  nothing.

and, from the description's chords (issue 15):

* **chord tones**: pitched notes get ``chord_bias`` on the logits of the pitch classes of the chord the
  description names for that part of the bar (:func:`chord_timeline`; chords spread evenly over the
  bar, the one carried over from the bar before dropped when the bar names others).

A :class:`ScaleLock` adds a logit penalty to out-of-scale pitches of pitched instruments (drums are
never touched) and a small tilt towards the key's Krumhansl-Kessler profile (the tonic most).

Masks are additive float tensors over the vocabulary (0 allowed, -inf forbidden, key-lock penalties
in between), built from precomputed id sets and cached per grammar situation, so a step costs one
tensor add.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np
import pretty_midi
import torch
from torch import Tensor

from e2m_live.description.vocab import (
    BAR_KEY,
    CHORD_KEY,
    DRUM_INSTRUMENT,
    DURATION_BINS,
    DURATION_KEY,
    EOS_TOKEN,
    INSTRUMENT_KEY,
    NO_CHORD,
    NOTE_DENSITY_BINS,
    PITCH_CLASSES,
    PITCH_KEY,
    POSITION_KEY,
    POSITIONS_PER_QUARTER,
    TEMPO_KEY,
    TIME_SIGNATURE_KEY,
    VELOCITY_KEY,
    RemiVocab,
)
from e2m_live.key_profiles import KK_MAJOR, KK_MINOR

#: Tokens of one complete note event (Position, Instrument, Pitch, Velocity, Duration).
NOTE_LENGTH = 5
#: The smallest useful per-bar budget: Bar, Time Signature and one note.
MIN_TOKENS_PER_BAR = 2 + NOTE_LENGTH
#: Longest note in positions (12 per quarter): 8 quarters, two bars of 4/4. On the reference REMI+,
#: 99 % of pitched notes last at most 84 positions and 99.5 % at most 108; 96 keeps >99 % of real
#: notes as they are and ends the stuck notes of issue 14 (held for up to 16 bars).
MAX_NOTE_POSITIONS = 96
#: Notes a bar may hold, as a multiple of what its ``Note Density_*`` bin allows (the bin's upper edge
#: x the bar's positions). No reference bar exceeds 1x; the margin leaves the model room to phrase.
NOTE_BUDGET_MARGIN = 1.5
#: Fewest notes the note budget ever allows in a bar (a sparse bin still lets a chord sound).
MIN_NOTES_PER_BAR = 4
#: Out-of-scale pitches get ``KEY_LOCK_SHARPNESS * ln(1 - key_lock)`` added to their logit: their
#: probability is multiplied by ``(1 - key_lock) ** 2`` (0.5 -> x0.25, 0.9 -> x0.01, 1 -> forbidden).
KEY_LOCK_SHARPNESS = 2.0
#: Tonal tilt at full key lock (scaled by the lock): pitch class ``c`` gets ``TONAL_TILT * lock *
#: z(c)``, ``z`` the z-scored Krumhansl-Kessler profile of the requested key (major: tonic +2.2, fifth
#: +1.3, third +0.7, fourth +0.5 ...). The model otherwise often centres a scale on its dominant or
#: relative (issue 14: key + mode re-estimated 0.42; 0.79 with a +0.5 tonic-triad bonus instead).
TONAL_TILT = 0.5
#: Scale degrees by mode (1 major, 0 minor: natural plus the harmonic raised 7th), as the planner's.
SCALE_DEGREES = {1: frozenset({0, 2, 4, 5, 7, 9, 11}), 0: frozenset({0, 2, 3, 5, 7, 8, 10, 11})}
#: GM percussion keys a drum note may use (Acoustic Bass Drum .. Open Triangle).
DRUM_RANGE = (35, 81)
#: Bass programs (Acoustic .. Synth Bass 2, Contrabass): E1..G4, the 4-string bass and a little above.
BASS_PROGRAMS = frozenset({*range(32, 40), 43})
BASS_RANGE = (28, 67)
#: Voice-like programs (Choir Aahs, Voice Oohs, Synth Choir, Lead 6 (voice)): sung, so monophonic and in
#: the C3..C6 range the re-estimator hears as vocal (``analysis._VOCAL_RANGE``).
VOICE_PROGRAMS = frozenset({52, 53, 54, 85})
VOICE_RANGE = (48, 84)
#: Synth leads (80-87 but the voice): a melody register, C3..C7.
LEAD_PROGRAMS = frozenset(range(80, 88)) - VOICE_PROGRAMS
LEAD_RANGE = (48, 96)
#: Every other instrument: the piano's A0..C8.
DEFAULT_RANGE = (21, 108)
#: Pile guard: notes one instrument may sound at one position, and all instruments together. The model
#: sometimes stays at one position and stacks 30-40 notes up to the top of the range (a lost ordering);
#: a two-handed piano chord has up to ~10 notes (chosen, not yet measured on the reference).
MAX_CHORD_NOTES = 10
MAX_NOTES_AT_POSITION = 16
#: Drum keys by beat role for the groove bias: kick on beats 1 and 3, snare on 2 and 4, closed / pedal
#: hi-hat on the other eighths.
KICK_KEYS = (35, 36)
SNARE_KEYS = (38, 40)
HAT_KEYS = (42, 44)
#: Logit bonus of the beat role's drum keys at groove 1 (scaled by ``g``): x e^3 = x20 odds.
GROOVE_DRUM_BIAS = 3.0
#: Logit bonus of the described chord's tones for pitched notes (x e^2 = x7.4 odds). Chosen on 32 validation
#: segments the fidelity table does not use: chord F1 0.48 (0) -> 0.53 (2) (docs/figaro.md, "Chord tones").
CHORD_BIAS = 2.0
#: Semitones above the root of each chord quality of the description (its chord recogniser's).
CHORD_INTERVALS: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "dom7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
    "None": (0,),
}
#: Positions of a sixteenth (12 per quarter).
SIXTEENTH = POSITIONS_PER_QUARTER // 4
EIGHTH = POSITIONS_PER_QUARTER // 2


def pitch_range(program: int | None) -> tuple[int, int]:
    """Lowest and highest pitch of a GM ``program`` (``None``: drums), both inclusive."""
    if program is None:
        return DRUM_RANGE
    if program in BASS_PROGRAMS:
        return BASS_RANGE
    if program in VOICE_PROGRAMS:
        return VOICE_RANGE
    if program in LEAD_PROGRAMS:
        return LEAD_RANGE
    return DEFAULT_RANGE


def beat_length(time_signature: str) -> int | None:
    """Positions of one beat of ``Time Signature_n/d``: the denominator's note, a dotted quarter in
    6/8, 7/8, 9/8 and 12/8 (compound and the 7/8 of dance music), or None if unparsable."""
    try:
        num, den = (int(x) for x in time_signature.split("_", 1)[1].split("/"))
        note = 4 * POSITIONS_PER_QUARTER // den
    except (IndexError, ValueError, ZeroDivisionError):
        return None
    if den == 8 and num in (6, 7, 9, 12):
        return 3 * note
    return note if note % SIXTEENTH == 0 else None


def groove_strength(danceability: float) -> float:
    """Groove ``g`` for a requested danceability: 0 up to 0.4, rising linearly to 1 at 0.8."""
    return float(min(max((danceability - 0.4) / 0.4, 0.0), 1.0))


@dataclass(frozen=True)
class DecodeRules:
    """The clean-note rules of the grammar mask (each can be switched off, for measurements)."""

    rising_pitches: bool = True  # within one instrument at one position, pitches strictly rise
    section_end: bool = True  # no note lasts past the end of the last bar
    max_duration: int | None = MAX_NOTE_POSITIONS  # positions; None: uncapped
    note_budget_margin: float | None = NOTE_BUDGET_MARGIN  # None: no note budget
    coverage: bool = True  # every described instrument plays in its bar
    pitch_ranges: bool = True  # every instrument in its family's range (pitch_range)
    monophonic_voices: bool = True  # voice-like programs play one note at a time
    groove: bool = True  # apply the decode's groove strength (0 changes nothing either way)
    pile_guard: bool = True  # per position: MAX_CHORD_NOTES an instrument, MAX_NOTES_AT_POSITION in all
    chord_bias: float = CHORD_BIAS  # logit bonus of the described chord's tones (0: off)

    @classmethod
    def off(cls) -> DecodeRules:
        """The grammar alone, as before issue 14."""
        return cls(
            rising_pitches=False,
            section_end=False,
            max_duration=None,
            note_budget_margin=None,
            coverage=False,
            pitch_ranges=False,
            monophonic_voices=False,
            groove=False,
            pile_guard=False,
            chord_bias=0.0,
        )

    def __post_init__(self) -> None:
        if not (math.isfinite(self.chord_bias) and self.chord_bias >= 0):
            raise ValueError(f"chord_bias must be a finite number >= 0, got {self.chord_bias!r}")
        if self.max_duration is not None and self.max_duration < 1:
            raise ValueError("max_duration must be >= 1 position (or None)")
        if self.note_budget_margin is not None and not self.note_budget_margin > 0:
            raise ValueError("note_budget_margin must be > 0 (or None)")


@dataclass(frozen=True)
class ScaleLock:
    """Keep pitched instruments to the scale of ``key`` (0 = C .. 11 = B) in ``mode`` (1 major, 0 minor).

    ``lock`` 0..1: 0 changes nothing, 1 allows scale tones only; in between out-of-scale pitches get
    ``KEY_LOCK_SHARPNESS * ln(1 - lock)`` on their logit, and every pitch class a tilt towards the key's
    profile, ``TONAL_TILT * lock * z``.
    """

    key: int
    mode: int
    lock: float

    def __post_init__(self) -> None:
        if not (isinstance(self.key, int) and 0 <= self.key < 12):
            raise ValueError(f"key must be an integer in 0..11, got {self.key!r}")
        if self.mode not in (0, 1):
            raise ValueError(f"mode must be 0 (minor) or 1 (major), got {self.mode!r}")
        if not (isinstance(self.lock, int | float) and 0.0 <= self.lock <= 1.0):
            raise ValueError(f"key_lock must be in 0..1, got {self.lock!r}")

    @property
    def active(self) -> bool:
        return self.lock > 0

    def pitch_classes(self) -> frozenset[int]:
        return frozenset((self.key + d) % 12 for d in SCALE_DEGREES[self.mode])

    def bias(self) -> np.ndarray:
        """Additive logits for pitches 0..127 (-inf outside the scale at lock 1)."""
        scale = self.pitch_classes()
        profile = np.roll(KK_MAJOR if self.mode == 1 else KK_MINOR, self.key)
        z = (profile - profile.mean()) / profile.std()
        penalty = -math.inf if self.lock >= 1 else KEY_LOCK_SHARPNESS * math.log1p(-self.lock)
        pcs = np.arange(128) % 12
        bias = np.where(np.isin(pcs, list(scale)), 0.0, penalty)
        return bias + TONAL_TILT * self.lock * z[pcs]

    def highest_allowed(self) -> int:
        """The highest pitch the lock never forbids."""
        if self.lock < 1:
            return 127
        scale = self.pitch_classes()
        return max(p for p in range(128) if p % 12 in scale)


class TokenClass(IntEnum):
    OTHER = 0
    BAR = 1
    TIME_SIGNATURE = 2
    POSITION = 3
    INSTRUMENT = 4
    PITCH = 5
    DRUM_PITCH = 6
    VELOCITY = 7
    DURATION = 8
    CHORD = 9
    TEMPO = 10
    EOS = 11


def classify(token: str) -> TokenClass:
    """The grammar class of one REMI+ token."""
    if token == EOS_TOKEN:
        return TokenClass.EOS
    key = token.split("_")[0]
    if key == PITCH_KEY:
        return TokenClass.DRUM_PITCH if token.startswith(f"{PITCH_KEY}_drum_") else TokenClass.PITCH
    return {
        BAR_KEY: TokenClass.BAR,
        TIME_SIGNATURE_KEY: TokenClass.TIME_SIGNATURE,
        POSITION_KEY: TokenClass.POSITION,
        INSTRUMENT_KEY: TokenClass.INSTRUMENT,
        VELOCITY_KEY: TokenClass.VELOCITY,
        DURATION_KEY: TokenClass.DURATION,
        CHORD_KEY: TokenClass.CHORD,
        TEMPO_KEY: TokenClass.TEMPO,
    }.get(key, TokenClass.OTHER)


def bar_length_in_positions(time_signature: str) -> int | None:
    """Positions in a bar of ``Time Signature_n/d`` (12 per quarter), or None if unparsable."""
    try:
        num, den = time_signature.split("_", 1)[1].split("/")
        return int(num) * 4 * POSITIONS_PER_QUARTER // int(den)
    except (IndexError, ValueError, ZeroDivisionError):
        return None


@dataclass(frozen=True)
class BarPlan:
    """What the description says about one bar: its time signature, instruments (REMI ids) and how
    many notes its ``Note Density_*`` bin allows (the bin's upper edge x the bar's positions)."""

    time_signature_id: int | None = None
    instrument_ids: frozenset[int] | None = None  # None: unrestricted
    density_notes: float | None = None  # None: no density in the description
    #: the pitches (0..127) of the chord in force in each equal part of the bar (:func:`chord_timeline`);
    #: an empty tuple for a part without a chord (``N:N``)
    chords: tuple[tuple[int, ...], ...] = ()

    def chord_pitches(self, position: int, bar_positions: int) -> tuple[int, ...]:
        """The pitches of the described chord at ``position`` of a bar of ``bar_positions``."""
        if not self.chords or bar_positions <= 0:
            return ()
        n = len(self.chords)
        return self.chords[min(n - 1, max(0, position) * n // bar_positions)]


def chord_pitch_classes(label: str) -> frozenset[int]:
    """Pitch classes of a chord label such as ``"F#:min7"``; empty for ``N:N`` or an unknown label."""
    root, _, quality = label.partition(":")
    if label == NO_CHORD or root not in PITCH_CLASSES or quality not in CHORD_INTERVALS:
        return frozenset()
    r = PITCH_CLASSES.index(root)
    return frozenset((r + i) % 12 for i in CHORD_INTERVALS[quality])


def chord_timeline(chords: Sequence[str], previous: str | None) -> list[str]:
    """The chords that sound in a bar, in order, from the labels its description names.

    The description repeats the chord carried over from the bar before first, also when a new chord
    starts on the downbeat (in the data: ``0:A:dom7 0:D:maj 24:G:maj``), so a first label equal to
    ``previous`` is dropped when others follow. A bar naming none keeps ``previous``."""
    labels = list(chords)
    if len(labels) > 1 and labels[0] == previous:
        labels = labels[1:]
    if not labels:
        return [previous] if previous else []
    return labels


def steer_plans(plans: dict[int, BarPlan], description: Sequence[str]) -> dict[int, BarPlan]:
    """``plans`` with the chords of ``description`` (its bars numbered like the plans'
    keys: the ``i``-th ``Bar_*`` is bar ``i``)."""
    out = dict(plans)
    previous: str | None = None
    bars: list[list[str]] = []
    for tok in description:
        key, _, value = tok.partition("_")
        if key == BAR_KEY:
            bars.append([])
        elif bars and key == CHORD_KEY:
            bars[-1].append(value)
    for number, labels in enumerate(bars, start=1):
        timeline = chord_timeline(labels, previous)
        if labels:
            previous = labels[-1]
        classes = [chord_pitch_classes(c) for c in timeline]
        pitches = tuple(tuple(p for p in range(128) if p % 12 in pcs) for pcs in classes)
        out[number] = replace(out.get(number, BarPlan()), chords=pitches)
    return out


def density_notes(density_bin: int, positions: int) -> float:
    """Most notes a bar of ``positions`` positions holds in ``Note Density_{density_bin}``: the
    description stores notes per position, rounded to the nearest bin."""
    step = float(NOTE_DENSITY_BINS[1] - NOTE_DENSITY_BINS[0])
    return (float(NOTE_DENSITY_BINS[min(density_bin, len(NOTE_DENSITY_BINS) - 1)]) + step / 2) * positions


class RemiGrammar:
    """Vocabulary-level tables for the REMI+ grammar; one instance serves many decodes."""

    MAX_CACHED_MASKS = 512

    def __init__(self, vocab: RemiVocab | None = None, device: str | torch.device = "cpu") -> None:
        self.vocab = vocab or RemiVocab()
        self.device = torch.device(device)
        itos = self.vocab.itos
        self.size = len(itos)
        self.token_class: list[TokenClass] = [classify(t) for t in itos]
        pairs = list(zip(itos, self.token_class, strict=True))
        self.position_value = [int(t.split("_")[1]) if c == TokenClass.POSITION else -1 for t, c in pairs]
        self.bar_number = [int(t.split("_")[1]) if c == TokenClass.BAR else -1 for t, c in pairs]
        self.pitch_value = [
            int(t.rsplit("_", 1)[1]) if c in (TokenClass.PITCH, TokenClass.DRUM_PITCH) else -1
            for t, c in pairs
        ]
        self.bar_id = {n: i for i, n in enumerate(self.bar_number) if n >= 0}
        self.position_id = {v: i for i, v in enumerate(self.position_value) if v >= 0}
        self.bar_positions: list[int | None] = [
            bar_length_in_positions(t) if c == TokenClass.TIME_SIGNATURE else None for t, c in pairs
        ]
        self.beat_positions: list[int | None] = [
            beat_length(t) if c == TokenClass.TIME_SIGNATURE else None for t, c in pairs
        ]
        self.duration_value = [
            int(DURATION_BINS[int(t.split("_")[1])]) if c == TokenClass.DURATION else 0 for t, c in pairs
        ]
        self.drum_instrument_id = self.vocab[f"{INSTRUMENT_KEY}_{DRUM_INSTRUMENT}"]
        self.eos_id = self.vocab.eos_id
        names = {pretty_midi.program_to_instrument_name(p): p for p in range(128)}
        prefix = len(INSTRUMENT_KEY) + 1
        #: GM program of each pitched ``Instrument_*`` id (the drum id is not in it).
        self.program = {
            i: names[t[prefix:]]
            for i, (t, c) in enumerate(pairs)
            if c == TokenClass.INSTRUMENT and t[prefix:] in names
        }
        self.voice_ids = frozenset(i for i, p in self.program.items() if p in VOICE_PROGRAMS)
        self.bass_ids = frozenset(i for i, p in self.program.items() if p in BASS_PROGRAMS)
        classes = torch.tensor([int(c) for c in self.token_class])
        self._class_ids = {c: torch.nonzero(classes == int(c)).flatten() for c in TokenClass}
        self.instrument_ids = frozenset(int(i) for i in self._class_ids[TokenClass.INSTRUMENT])
        self._positions = torch.tensor(self.position_value)
        # Duration_i and Pitch_i ids are in value order (checked here: the masks below slice them)
        durations = self._class_ids[TokenClass.DURATION]
        assert [itos[int(i)] for i in durations] == [f"{DURATION_KEY}_{k}" for k in range(len(DURATION_BINS))]
        for cls in (TokenClass.PITCH, TokenClass.DRUM_PITCH):
            assert [self.pitch_value[int(i)] for i in self._class_ids[cls]] == list(range(128))
        self._cache: dict[tuple, Tensor] = {}
        self._highest: dict[tuple, int] = {}

    def ids(self, cls: TokenClass) -> Tensor:
        return self._class_ids[cls]

    def pitch_range(self, instrument: int, ranges: bool) -> tuple[int, int]:
        """Lowest and highest pitch ``instrument`` (an id) may play (0..127 without ``ranges``)."""
        if not ranges:
            return 0, 127
        return pitch_range(None if instrument == self.drum_instrument_id else self.program.get(instrument))

    def highest(self, instrument: int, ranges: bool, lock: ScaleLock | None) -> int:
        """The highest pitch ``instrument`` may play under its range and (pitched) the key lock."""
        full_lock = lock if lock is not None and lock.lock >= 1 else None  # only a full lock moves the top
        key = (instrument, ranges, full_lock)  # bounded: not one entry per fader value
        cached = self._highest.get(key)
        if cached is None:
            lo, hi = self.pitch_range(instrument, ranges)
            if full_lock is not None and instrument != self.drum_instrument_id:
                scale = full_lock.pitch_classes()
                hi = max((p for p in range(lo, hi + 1) if p % 12 in scale), default=lo - 1)
            cached = self._highest[key] = hi
        return cached

    def _store(self, key: tuple, mask: Tensor) -> Tensor:
        mask = mask.to(self.device)
        if len(self._cache) >= self.MAX_CACHED_MASKS:  # a long live session meets many instrument sets
            self._cache.clear()
        self._cache[key] = mask
        return mask

    def _mask(self, key: tuple, allowed: Tensor) -> Tensor:
        mask = torch.full((self.size,), float("-inf"))
        mask[allowed] = 0.0
        return self._store(key, mask)

    def mask(self, key: tuple) -> Tensor:
        """The additive mask for a grammar situation ``key`` (see :class:`GrammarState`)."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        kind = key[0]
        if kind == "ids":  # an explicit set of ids
            return self._mask(key, torch.tensor(sorted(key[1]), dtype=torch.long))
        if kind == "class":
            return self._mask(key, self.ids(key[1]))
        if kind == "after_position":  # instruments (maybe restricted), chords and tempi (unless only notes)
            _, instrument_set, notes_only = key
            instruments = (
                self.ids(TokenClass.INSTRUMENT)
                if instrument_set is None
                else torch.tensor(sorted(instrument_set), dtype=torch.long)
            )
            parts = (
                [instruments]
                if notes_only
                else [instruments, self.ids(TokenClass.CHORD), self.ids(TokenClass.TEMPO)]
            )
            return self._mask(key, torch.cat(parts).long())
        if kind == "position":  # positions in [lo, hi), plus the given terminators
            _, lo, hi, terminators = key
            pos = self.ids(TokenClass.POSITION)
            values = self._positions[pos]
            allowed = pos[(values >= lo) & (values < hi)]
            return self._mask(key, torch.cat([allowed, torch.tensor(sorted(terminators), dtype=torch.long)]))
        if kind == "pitch":  # pitches lo..hi, key lock (pitched), favoured drum keys (groove) or chord tones
            _, drum, lo, hi, lock, favoured = key
            ids = self.ids(TokenClass.DRUM_PITCH if drum else TokenClass.PITCH)
            mask = torch.full((self.size,), float("-inf"))
            mask[ids[lo : hi + 1]] = 0.0
            if lock is not None and lock.active:
                mask[ids[lo : hi + 1]] += torch.tensor(lock.bias()[lo : hi + 1], dtype=mask.dtype)
            if favoured is not None:
                pitches, bonus = favoured
                chosen = ids[[p for p in pitches if lo <= p <= hi]]
                mask[chosen] += bonus
            return self._store(key, mask)
        if kind == "duration":  # the first n duration bins (bins ascend)
            return self._mask(key, self.ids(TokenClass.DURATION)[: key[1]])
        raise KeyError(key)


@dataclass
class GrammarState:
    """Where a decode stands in the REMI+ grammar; ``advance`` it with every token.

    ``groove`` 0..1 (used when ``rules.groove``): in bars whose description has drums every beat
    (:func:`beat_length`) gets a drum note and positions may not move past a beat without one, nor
    the bar end before all have one; bass (if described) plays on the downbeat; both while the token
    and note budgets leave room. Drum keys are biased by beat role (``GROOVE_DRUM_BIAS * g``) and
    sampled positions off the sixteenth grid quantised with probability ``g`` (:meth:`snap`).
    """

    grammar: RemiGrammar
    plans: dict[int, BarPlan] = field(default_factory=dict)  # bar number -> plan
    last_bar: int = 0  # number of the last generated bar (the prime counts)
    final_bar: int = 0  # no bar after this one; its end is Bar_{final+1} or <eos>
    budget: int = 512
    minimum: int = 0  # a bar may end only after this many tokens
    rules: DecodeRules = field(default_factory=DecodeRules.off)
    lock: ScaleLock | None = None
    groove: float = 0.0  # groove strength g, 0..1
    last_class: TokenClass = TokenClass.OTHER
    bar: int = 0
    tokens_in_bar: int = 0
    position: int = 0
    bar_positions: int | None = None
    drum: bool = False
    instrument: int = -1
    notes_in_bar: int = 0
    max_notes: int | None = None  # this bar's note budget
    played: set[int] = field(default_factory=set)  # instruments that played in this bar
    top_pitch: dict[int, int] = field(default_factory=dict)  # instrument -> last pitch at this position
    chord_size: dict[int, int] = field(default_factory=dict)  # instrument -> notes at this position
    positions_after: int = 0  # positions of the bars after this one, up to the final bar
    offset: int = 0  # positions from the first bar's start to this bar's
    sounding: dict[int, int] = field(default_factory=dict)  # voice id -> end of its last note (from offset 0)
    beat: int = POSITIONS_PER_QUARTER  # positions of a beat in this bar
    beats: tuple[int, ...] = ()  # groove: beat positions of this bar that need a drum note
    covered: set[int] = field(default_factory=set)  # groove: beats that have one
    downbeat: frozenset[int] = frozenset()  # groove: basses of this bar, until one plays on position 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.groove <= 1.0:
            raise ValueError(f"groove must be in 0..1, got {self.groove!r}")
        if not self.rules.groove:
            self.groove = 0.0

    def advance(self, token_id: int) -> None:
        g = self.grammar
        cls = g.token_class[token_id]
        if cls == TokenClass.BAR:
            self.offset += self.bar_positions or 0
            self.bar = g.bar_number[token_id]
            self.tokens_in_bar = 0
            self.position = 0
            self.bar_positions = None
            self.notes_in_bar = 0
            self.played = set()
            self.top_pitch, self.chord_size = {}, {}
            self.beats, self.covered, self.downbeat = (), set(), frozenset()
        elif cls == TokenClass.TIME_SIGNATURE:
            self.bar_positions = g.bar_positions[token_id]
            self._start_bar(g.beat_positions[token_id])
        elif cls == TokenClass.POSITION:
            if g.position_value[token_id] != self.position:
                self.top_pitch, self.chord_size = {}, {}
            self.position = g.position_value[token_id]
        elif cls == TokenClass.INSTRUMENT:
            self.drum = token_id == g.drum_instrument_id
            self.instrument = token_id
        elif cls in (TokenClass.PITCH, TokenClass.DRUM_PITCH):
            self.top_pitch[self.instrument] = g.pitch_value[token_id]
            self.chord_size[self.instrument] = self.chord_size.get(self.instrument, 0) + 1
            self.played.add(self.instrument)
            self.notes_in_bar += 1
            if self.drum:
                self.covered.add(self.position)
            elif self.position == 0 and self.instrument in self.downbeat:
                self.downbeat = frozenset()
        elif cls == TokenClass.DURATION and self.instrument in g.voice_ids and self.rules.monophonic_voices:
            self.sounding[self.instrument] = self.offset + self.position + g.duration_value[token_id]
        self.tokens_in_bar += 1
        self.last_class = cls

    def _start_bar(self, beat: int | None) -> None:
        """Per-bar quantities, once the bar's length is known."""
        g = self.grammar
        plan = self.plans.get(self.bar, BarPlan())
        margin = self.rules.note_budget_margin
        self.beat = beat or POSITIONS_PER_QUARTER
        described = len(plan.instrument_ids) if plan.instrument_ids else 0
        if self.groove > 0 and plan.instrument_ids and self.bar_positions:
            if beat and g.drum_instrument_id in plan.instrument_ids:
                self.beats = tuple(range(0, self.bar_positions, beat))
            self.downbeat = plan.instrument_ids & g.bass_ids
        if margin is None or plan.density_notes is None:
            self.max_notes = None
        else:
            # the groove's beats fit in the budget (energy still sets the notes between them)
            self.max_notes = max(
                math.ceil(margin * plan.density_notes), described + len(self.beats), MIN_NOTES_PER_BAR
            )
        # a voice still sounding from the bar before is heard in this bar
        self.played |= {v for v, end in self.sounding.items() if end > self.offset}
        length = self.bar_positions or 0
        after = 0
        for number in range(self.bar + 1, self.final_bar + 1):
            ts = self.plans.get(number, BarPlan()).time_signature_id
            after += (g.bar_positions[ts] if ts is not None else None) or length
        self.positions_after = after

    def _terminators(self) -> frozenset[int]:
        g = self.grammar
        next_bar = self.bar + 1
        ends = {g.bar_id[next_bar]} if next_bar in g.bar_id else set()
        if self.bar >= self.final_bar:
            ends.add(g.eos_id)
        return frozenset(ends)

    def _room(self) -> int:
        """Notes that still fit in this bar (token and note budgets)."""
        room = (self.budget - self.tokens_in_bar) // NOTE_LENGTH
        if self.max_notes is not None:
            room = min(room, self.max_notes - self.notes_in_bar)
        return room

    def _duties(self) -> list[tuple[int, frozenset[int]]]:
        """Groove notes still due in this bar, (position, instruments one of which plays there), if the
        budgets leave room for them (and the described instruments still missing)."""
        if not self.beats and not self.downbeat:
            return []
        drum = frozenset({self.grammar.drum_instrument_id})
        duties = [(b, drum) for b in self.beats if b >= self.position and b not in self.covered]
        if self.downbeat and self.position == 0:
            duties.append((0, self.downbeat))
        if not duties:
            return []
        need = len(duties)
        plan = self.plans.get(self.bar, BarPlan())
        if self.rules.coverage and plan.instrument_ids:
            need += len(plan.instrument_ids - self.played - drum - self.downbeat)
        return duties if need <= self._room() else []

    def _missing(self, plan: BarPlan, reserved: int = 0) -> frozenset[int]:
        """Described instruments that have not played yet, if the budgets leave room for them all."""
        if not self.rules.coverage or not plan.instrument_ids:
            return frozenset()
        missing = plan.instrument_ids - self.played
        return missing if len(missing) <= self._room() - reserved else frozenset()

    def _blocked(self) -> frozenset[int]:
        """Instruments that may not play now: at the top of their range (rising pitches), with
        :data:`MAX_CHORD_NOTES` at this position, or, for a monophonic voice, still sounding."""
        g = self.grammar
        blocked: set[int] = set()
        if self.rules.pile_guard:
            blocked |= {i for i, n in self.chord_size.items() if n >= MAX_CHORD_NOTES}
        if self.rules.rising_pitches:
            blocked |= {
                i for i, p in self.top_pitch.items() if p >= g.highest(i, self.rules.pitch_ranges, self.lock)
            }
        if self.sounding:
            now = self.offset + self.position
            blocked |= {v for v, end in self.sounding.items() if end > now}
        return frozenset(blocked)

    def _after_position(self, plan: BarPlan) -> tuple:
        allowed = plan.instrument_ids
        notes_only = False
        duties = self._duties()
        drum = self.grammar.drum_instrument_id
        # a beat without its drum: the drum first (FIGARO lists drums first at a position); a downbeat
        # without its bass keeps the position (see _positions) and forces the bass only when room is short
        here = frozenset().union(
            *(
                ids
                for pos, ids in duties
                if pos == self.position and (drum in ids or self._room() <= len(duties))
            )
        )
        if here:
            allowed, notes_only = here, True
        else:
            missing = self._missing(plan, len(duties))
            if missing and self._room() - len(duties) <= len(missing):
                allowed, notes_only = missing, True  # only just enough room left: they play now
        blocked = self._blocked()
        if blocked:
            allowed = (self.grammar.instrument_ids if allowed is None else allowed) - blocked
            if notes_only and not allowed:
                allowed, notes_only = plan.instrument_ids, False
                allowed = (self.grammar.instrument_ids if allowed is None else allowed) - blocked
        return ("after_position", allowed, notes_only)

    def _pitch(self) -> tuple:
        g = self.grammar
        lo, hi = g.pitch_range(self.instrument, self.rules.pitch_ranges)
        if self.rules.rising_pitches:
            lo = max(lo, self.top_pitch.get(self.instrument, -1) + 1)
        favoured: tuple[tuple[int, ...], float] | None = None
        if self.drum and self.groove > 0 and self.bar_positions:
            beat = self.beat
            if self.position % beat == 0:
                keys = KICK_KEYS if (self.position // beat) % 2 == 0 else SNARE_KEYS
            elif self.position % EIGHTH == 0:
                keys = HAT_KEYS
            else:
                keys = None
            favoured = (keys, GROOVE_DRUM_BIAS * self.groove) if keys else None
        elif not self.drum and self.rules.chord_bias > 0 and self.bar_positions:
            pitches = self.plans.get(self.bar, BarPlan()).chord_pitches(self.position, self.bar_positions)
            favoured = (pitches, self.rules.chord_bias) if pitches else None
        return ("pitch", self.drum, lo, min(hi, 127), None if self.drum else self.lock, favoured)

    def _duration(self) -> tuple:
        limit = self.rules.max_duration or 10**9
        if self.rules.section_end and self.bar_positions:
            limit = min(limit, self.bar_positions - self.position + self.positions_after)
        if limit >= DURATION_BINS[-1]:
            return ("class", TokenClass.DURATION)
        return ("duration", max(1, int(np.searchsorted(DURATION_BINS, limit, side="right"))))

    def _positions(self, hi: int, may_end: bool) -> tuple:
        duties = self._duties()
        if duties:  # not past a beat that still needs its drum; no bar end before
            hi, may_end = min(hi, min(pos for pos, _ in duties) + 1), False
        lo = self.position
        if (
            self.rules.pile_guard
            and sum(self.chord_size.values()) >= MAX_NOTES_AT_POSITION
            and lo + 1 < hi
            and not any(pos == lo for pos, _ in duties)
        ):
            lo += 1  # this position is full: move on
        return ("position", lo, hi, self._terminators() if may_end else frozenset())

    def snap(self, token_id: int, u: float) -> int:
        """The groove's sixteenth grid: a sampled ``Position_*`` off the grid moves, with probability
        ``g`` (``u`` uniform in 0..1), to the nearest grid position the mask allows (the later on a
        tie), after the current one once notes were played there. Any other token is returned as is.

        Quantising keeps the model's timing; masking the off-grid positions instead (tried first) left
        their probability to "stay at this position", and notes piled up at one position (a chord of
        30 notes up to the range's top)."""
        g = self.grammar
        value = g.position_value[token_id]
        if self.groove <= 0 or value < 0 or value % SIXTEENTH == 0 or u >= self.groove:
            return token_id
        _, _, hi, _ = self._positions(self.bar_positions or 10**6, False)
        lo = self.position
        down, up = value - value % SIXTEENTH, value - value % SIXTEENTH + SIXTEENTH
        targets = [t for t in (up, down) if lo <= t < hi]
        if self.last_class != TokenClass.TIME_SIGNATURE:  # moving on, not back to the notes just played
            targets = [t for t in targets if t > lo] or targets
        if not targets:
            return token_id
        return g.position_id[min(targets, key=lambda t: (abs(t - value), -t))]

    def mask_key(self) -> tuple:
        """The situation that decides which tokens may come next."""
        c = self.last_class
        plan = self.plans.get(self.bar, BarPlan())
        hi = self.bar_positions or 10**6
        if c in (TokenClass.OTHER, TokenClass.EOS):  # start of a sequence: the next bar
            return ("ids", self._terminators() - {self.grammar.eos_id} or self._terminators())
        if c == TokenClass.BAR:
            if plan.time_signature_id is not None:
                return ("ids", frozenset({plan.time_signature_id}))
            return ("class", TokenClass.TIME_SIGNATURE)
        if c == TokenClass.TIME_SIGNATURE:
            return self._positions(hi, False)
        if c == TokenClass.POSITION:
            return self._after_position(plan)
        if c == TokenClass.INSTRUMENT:
            return self._pitch()
        if c in (TokenClass.PITCH, TokenClass.DRUM_PITCH):
            return ("class", TokenClass.VELOCITY)
        if c == TokenClass.VELOCITY:
            return self._duration()
        # after a complete event (Duration, Chord, Tempo): another position or the end of the bar
        if self.tokens_in_bar + NOTE_LENGTH > self.budget:
            return ("ids", self._terminators())
        if self.max_notes is not None and self.notes_in_bar >= self.max_notes:
            return ("ids", self._terminators())
        may_end = self.tokens_in_bar >= self.minimum and not self._missing(plan)
        return self._positions(hi, may_end)

    def mask(self) -> Tensor:
        return self.grammar.mask(self.mask_key())
