"""FIGARO's two vocabularies (REMI+ and description) and the bins behind their tokens.

Token strings and ids are exactly those of FIGARO's ``RemiVocab`` and ``DescriptionVocab``
(``src/vocab.py`` of dvruette/figaro), so official checkpoints map one to one. The lists
are built from the same constants in the same order; ``tests/test_vocab.py`` compares them
token by token with the reference dump in ``shared/reference/figaro_vocab.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property

import numpy as np
import pretty_midi

# --- bins (FIGARO src/constants.py) -------------------------------------------------------

#: Quantisation grid: positions per quarter note.
POSITIONS_PER_QUARTER = 12
#: Ticks per quarter of the MIDI files we write.
DEFAULT_RESOLUTION = 480
#: Velocity bins (33 edges -> tokens Velocity_0..32 index into this array).
VELOCITY_BINS = np.linspace(0, 128, 32 + 1, dtype=int)
#: Duration bins in positions (58 values -> Duration_0..57).
DURATION_BINS = np.sort(
    np.concatenate(
        [
            np.arange(1, 13),  # smallest units up to a quarter
            np.arange(12, 24, 3)[1:],  # 16ths up to a half
            np.arange(13, 24, 4)[1:],  # triplets
            np.arange(24, 48, 6),  # 8ths up to a bar
            np.arange(48, 4 * 48, 12),  # quarters up to 4 bars
            np.arange(4 * 48, 16 * 48 + 1, 24),  # halves up to 16 bars
        ]
    )
)
#: Tempo bins in BPM (Tempo_0..32).
TEMPO_BINS = np.linspace(0, 240, 32 + 1, dtype=int)
#: Description bins: notes per quarter, mean velocity, mean pitch, mean duration (positions).
NOTE_DENSITY_BINS = np.linspace(0, 12, 32 + 1)
MEAN_VELOCITY_BINS = np.linspace(0, 128, 32 + 1)
MEAN_PITCH_BINS = np.linspace(0, 128, 32 + 1)
MEAN_DURATION_BINS = np.logspace(0, 7, 32 + 1, base=2)

MAX_BARS = 512
MAX_N_BARS = MAX_BARS  # alias used by FIGARO's code

# --- token name prefixes ------------------------------------------------------------------

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
MASK_TOKEN = "<mask>"
SPECIALS = [PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, MASK_TOKEN]

TIME_SIGNATURE_KEY = "Time Signature"
BAR_KEY = "Bar"
POSITION_KEY = "Position"
INSTRUMENT_KEY = "Instrument"
PITCH_KEY = "Pitch"
VELOCITY_KEY = "Velocity"
DURATION_KEY = "Duration"
TEMPO_KEY = "Tempo"
CHORD_KEY = "Chord"
NOTE_DENSITY_KEY = "Note Density"
MEAN_PITCH_KEY = "Mean Pitch"
MEAN_VELOCITY_KEY = "Mean Velocity"
MEAN_DURATION_KEY = "Mean Duration"

DRUM_INSTRUMENT = "drum"
PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
CHORD_QUALITIES = ["maj", "min", "dim", "aug", "dom7", "maj7", "min7", "None"]
NO_CHORD = "N:N"


def token(key: str, value: object) -> str:
    """Format a token the way FIGARO does: ``f"{key}_{value}"``."""
    return f"{key}_{value}"


def split_bars(tokens: Iterable[str], what: str | None = None) -> list[list[str]]:
    """Split a token list at its ``Bar_*`` tokens: one list a bar, each starting with its ``Bar_`` token.

    Without ``what``, tokens before the first bar (``<bos>``) are dropped. With it the list must start
    with a bar and hold one, else a ``ValueError`` names ``what`` (``"prime"``, ``"a description"``).
    """
    prefix = BAR_KEY + "_"
    bars: list[list[str]] = []
    for tok in tokens:
        if tok.startswith(prefix):
            bars.append([tok])
        elif bars:
            bars[-1].append(tok)
        elif what is not None:
            raise ValueError(f"{what} must start with a {BAR_KEY}_* token, got {tok!r}")
    if not bars and what is not None:
        raise ValueError(f"{what} is empty")
    return bars


def time_signature_tokens() -> list[str]:
    """``Time Signature_n/d`` for d in 2, 4, 8, 16 and n up to 3 d, in FIGARO's order."""
    denoms = [2, 4, 8, 16]
    return [token(TIME_SIGNATURE_KEY, f"{n}/{d}") for d in denoms for n in range(1, 3 * d + 1)]


def instrument_names() -> list[str]:
    """The 128 General MIDI program names and ``drum``, in FIGARO's order."""
    return [pretty_midi.program_to_instrument_name(p) for p in range(128)] + [DRUM_INSTRUMENT]


def chord_tokens() -> list[str]:
    """``Chord_root:quality`` for every root and quality, then the no-chord token."""
    return [token(CHORD_KEY, f"{r}:{q}") for r in PITCH_CLASSES for q in CHORD_QUALITIES] + [
        token(CHORD_KEY, NO_CHORD)
    ]


def remi_tokens() -> list[str]:
    """The 1,357 REMI+ tokens in FIGARO's id order."""
    return [
        *SPECIALS,
        *time_signature_tokens(),
        *(token(TEMPO_KEY, i) for i in range(len(TEMPO_BINS))),
        *(token(INSTRUMENT_KEY, name) for name in instrument_names()),
        *(token(PITCH_KEY, i) for i in range(128)),
        *(token(PITCH_KEY, f"drum_{i}") for i in range(128)),
        *(token(VELOCITY_KEY, i) for i in range(len(VELOCITY_BINS))),
        *(token(DURATION_KEY, i) for i in range(len(DURATION_BINS))),
        *(token(BAR_KEY, i) for i in range(MAX_BARS)),
        *(token(POSITION_KEY, i) for i in range(4 * 3 * POSITIONS_PER_QUARTER)),
        *chord_tokens(),
    ]


def description_tokens() -> list[str]:
    """The 965 description tokens in FIGARO's id order."""
    return [
        *SPECIALS,
        *time_signature_tokens(),
        *(token(INSTRUMENT_KEY, name) for name in instrument_names()),
        *chord_tokens(),
        *(token(NOTE_DENSITY_KEY, i) for i in range(len(NOTE_DENSITY_BINS))),
        *(token(MEAN_VELOCITY_KEY, i) for i in range(len(MEAN_VELOCITY_BINS))),
        *(token(MEAN_PITCH_KEY, i) for i in range(len(MEAN_PITCH_BINS))),
        *(token(MEAN_DURATION_KEY, i) for i in range(len(MEAN_DURATION_BINS))),
        *(token(BAR_KEY, i) for i in range(MAX_BARS)),
    ]


class Vocab:
    """A fixed token <-> id table. Unknown tokens map to ``<unk>``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._itos = list(tokens)
        self._stoi = {t: i for i, t in enumerate(self._itos)}
        if len(self._stoi) != len(self._itos):
            raise ValueError("duplicate tokens in vocabulary")

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, tok: object) -> bool:
        return tok in self._stoi

    def __getitem__(self, tok: str) -> int:
        return self._stoi.get(tok, self._stoi[UNK_TOKEN])

    @property
    def itos(self) -> list[str]:
        """Tokens in id order (a copy)."""
        return list(self._itos)

    @cached_property
    def stoi(self) -> dict[str, int]:
        """Token -> id (a copy)."""
        return dict(self._stoi)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Tokens -> ids (unknown tokens become ``<unk>``)."""
        unk = self._stoi[UNK_TOKEN]
        return [self._stoi.get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> tokens."""
        return [self._itos[int(i)] for i in ids]

    def ids_with_prefix(self, key: str) -> list[int]:
        """Ids of every token of one class, e.g. ``ids_with_prefix("Pitch")`` (drum pitches included)."""
        prefix = key + "_"
        return [i for i, t in enumerate(self._itos) if t.startswith(prefix)]

    @property
    def pad_id(self) -> int:
        return self._stoi[PAD_TOKEN]

    @property
    def bos_id(self) -> int:
        return self._stoi[BOS_TOKEN]

    @property
    def eos_id(self) -> int:
        return self._stoi[EOS_TOKEN]

    @property
    def unk_id(self) -> int:
        return self._stoi[UNK_TOKEN]

    @property
    def mask_id(self) -> int:
        return self._stoi[MASK_TOKEN]


class RemiVocab(Vocab):
    """FIGARO's REMI+ vocabulary (1,357 tokens)."""

    def __init__(self) -> None:
        super().__init__(remi_tokens())


class DescriptionVocab(Vocab):
    """FIGARO's description vocabulary (965 tokens)."""

    def __init__(self) -> None:
        super().__init__(description_tokens())


REMI_VOCAB_SIZE = 1357
DESCRIPTION_VOCAB_SIZE = 965
