"""Which instruments a plan plays: the auto-ensemble chooser and the per-bar schedule.

The stream LSTM learned its instrumentation from corpora that are ~80 % solo piano, so left
alone it plans piano; logit steering moves it only a little. The planner therefore decides the
instruments of a section here and makes the stream sampler keep to them with hard masks:

* a **palette**: the preset or explicit list of an :class:`~e2m_live.arrangement.Arrangement`,
  or, in ``auto``, one drawn by :func:`choose_ensemble` from the features (table below);
* a **schedule** (:func:`schedule`): which palette instruments play in each bar. The core (drums,
  bass, the first harmony instrument) plays every bar; every other instrument rests, with
  probability :data:`REST_PROBABILITY`, for one contiguous run of at most
  :data:`MAX_REST_SHARE` of the bars (a late entry or a break, never in the last bar), so each
  palette instrument plays in at least 80 % of the bars (12 bars: at least 10).

``auto`` roles, drawn in this order; each uses its own uniform draws, so a plan's palette is fixed
by its seed and features (``temperature`` 0 takes the likelier branch everywhere and no rests);
options are listed acoustic / electric:

* harmony, always: piano, steel or nylon guitar / clean or jazz guitar, electric piano, rock organ;
* bass, with ``sigmoid(7 (danceability - 0.35))``: acoustic bass, contrabass / finger, fretless,
  pick bass; acoustic whenever acousticness >= :data:`ACOUSTIC_BASS_FROM` (no draw: an electric
  bass under acoustic instruments is what the re-estimator heard as "not acoustic" most);
* drums, with ``sigmoid(12 (danceability - 0.5))``: the drum kit;
* melody: a voice with ``sigmoid(10 (0.5 - instrumentalness))`` (voice oohs, choir aahs / synth
  choir); an instrumental lead (flute, alto sax, trumpet, clarinet, violin, harmonica / overdriven
  or distortion guitar, sawtooth lead) without a voice with ``0.15 + 0.7 energy``, beside one with
  ``sigmoid(10 (energy - 0.8))``;
* colour, with ``sigmoid(8 (energy - 0.55))``: string ensemble, steel guitar, brass section / muted guitar,
  rock organ, synth strings, synth brass.

Each other role is acoustic with probability ``sigmoid(5 (acousticness - 0.3))`` (drawn per role), then
one option by weight, tilted by valence and energy (:data:`TIMBRE`: bright timbres for pleasant
moods, dark or strained ones for unpleasant, soft ones for calm). Muted instruments are never
drawn (a role whose options are all muted is left out; a muted harmony falls back to any other
unmuted instrument). Options are common in the
corpora FIGARO was trained on: the Beatles Lakh transcriptions, its only multi-instrument corpus,
have piano, the guitars, the basses, voice oohs and choir aahs each in 70-165 of 472 files, the
leads and colours in 17-95 (rarer programs such as voice lead or warm pad are left out).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from e2m_live.description.vocab import DRUM_INSTRUMENT
from e2m_live.features import EmotionFeatures
from e2m_live.planner.classes import BASS_PROGRAMS, INSTRUMENT_NAMES, MAX_INSTRUMENTS_PER_BAR

#: Chance that a non-core instrument rests for a run of bars in a section.
REST_PROBABILITY = 0.5
#: Longest rest of a non-core instrument, as a share of the section's bars (rounded down).
MAX_REST_SHARE = 0.2

Options = tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Role:
    """One part of an auto ensemble: its acoustic and electric options (name, weight)."""

    name: str
    acoustic: Options
    electric: Options


HARMONY = Role(
    "harmony",
    acoustic=(
        ("Acoustic Grand Piano", 3.0),
        ("Acoustic Guitar (steel)", 1.5),
        ("Acoustic Guitar (nylon)", 1.0),
    ),
    electric=(
        ("Electric Guitar (clean)", 2.0),
        ("Electric Guitar (jazz)", 1.5),
        ("Electric Piano 1", 1.0),
        ("Rock Organ", 1.0),
    ),
)
BASS = Role(
    "bass",
    acoustic=(("Acoustic Bass", 2.0), ("Contrabass", 1.0)),
    electric=(("Electric Bass (finger)", 2.0), ("Fretless Bass", 1.5), ("Electric Bass (pick)", 0.5)),
)
VOICE = Role("voice", acoustic=(("Voice Oohs", 2.0), ("Choir Aahs", 1.0)), electric=(("Synth Choir", 1.0),))
LEAD = Role(
    "lead",
    acoustic=(
        ("Flute", 2.0),
        ("Alto Sax", 1.0),
        ("Trumpet", 1.0),
        ("Clarinet", 0.5),
        ("Violin", 0.5),
        ("Harmonica", 0.5),
    ),
    electric=(("Overdriven Guitar", 2.0), ("Distortion Guitar", 1.0), ("Lead 2 (sawtooth)", 0.5)),
)
COLOUR = Role(
    "colour",
    acoustic=(("String Ensemble 1", 2.0), ("Acoustic Guitar (steel)", 1.0), ("Brass Section", 1.0)),
    electric=(
        ("Electric Guitar (muted)", 1.5),
        ("Rock Organ", 1.0),
        ("Synth Strings 1", 1.0),
        ("Synth Brass 1", 0.5),
    ),
)
#: Where each option sits on the circumplex, as the affinity of its timbre for (valence, energy),
#: each in -1..1: bright, open timbres (trumpet, brass, clean guitar, flute) for pleasant moods, dark
#: or strained ones (distortion, organ, bowed strings, choir aahs) for unpleasant ones, soft ones
#: (nylon guitar, electric piano, fretless, pads) for calm. Options not listed are neutral.
#: :func:`timbre_weight` tilts an option's weight by it, so valence picks instruments too (it
#: picked none: the eight moods made two ensembles, one per side of acousticness).
TIMBRE: dict[str, tuple[float, float]] = {
    "Acoustic Guitar (steel)": (0.5, 0.2),
    "Acoustic Guitar (nylon)": (-0.2, -0.6),
    "Electric Guitar (clean)": (0.6, 0.2),
    "Electric Guitar (jazz)": (0.0, -0.6),
    "Electric Piano 1": (0.3, -0.7),
    "Rock Organ": (-0.5, 0.6),
    "Fretless Bass": (0.0, -0.6),
    "Electric Bass (pick)": (-0.2, 0.7),
    "Contrabass": (-0.4, -0.2),
    "Voice Oohs": (0.3, -0.4),
    "Choir Aahs": (-0.6, 0.2),
    "Synth Choir": (-0.1, -0.5),
    "Flute": (0.5, -0.4),
    "Alto Sax": (-0.2, 0.2),
    "Trumpet": (0.7, 0.6),
    "Clarinet": (0.1, -0.5),
    "Violin": (-0.7, -0.1),
    "Harmonica": (0.3, 0.0),
    "Overdriven Guitar": (-0.3, 0.7),
    "Distortion Guitar": (-0.7, 0.9),
    "Lead 2 (sawtooth)": (-0.1, 0.5),
    "String Ensemble 1": (-0.6, -0.3),
    "Brass Section": (0.6, 0.7),
    "Electric Guitar (muted)": (-0.3, 0.4),
    "Synth Strings 1": (-0.3, -0.4),
    "Synth Brass 1": (0.5, 0.6),
}
#: How strongly valence and energy tilt the option weights: ``exp(TILT * (affinity . offset))``
#: with the features' offsets from 0.5 doubled (-1..1), so a mood at a corner of the circumplex
#: weighs an option that sits there up to ~6x and one at the opposite corner down as much.
TIMBRE_TILT = 1.5
#: Acousticness from which the bass is always acoustic (below it always electric).
ACOUSTIC_BASS_FROM = 0.35
#: Uniform draws :func:`choose_ensemble` takes per plan (fixed, so plans stay aligned with seeds).
DRAWS_PER_PLAN = 16


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def role_probabilities(features: EmotionFeatures) -> dict[str, float]:
    """The chance of each auto role (and of an acoustic option) for ``features``."""
    dance, instrumental = features.danceability, features.instrumentalness
    return {
        "bass": _sigmoid(7.0 * (dance - 0.35)),
        "drums": _sigmoid(12.0 * (dance - 0.5)),
        "voice": _sigmoid(10.0 * (0.5 - instrumental)),
        # Energy brings in the band's upper layers (a lead, a colour layer), so a busier, fuller
        # ensemble is heard as more energetic, as the re-estimator (onset rate) hears it too.
        "lead": 0.15 + 0.7 * features.energy,
        # Beside a voice, only a high-energy band has a lead too (the guitar of a rock song).
        "lead_with_voice": _sigmoid(10.0 * (features.energy - 0.8)),
        "colour": _sigmoid(8.0 * (features.energy - 0.55)),
        "acoustic": _sigmoid(5.0 * (features.acousticness - 0.3)),
    }


@dataclass(frozen=True, slots=True)
class Ensemble:
    """A section's instruments (vocabulary order) and its core (those that play every bar)."""

    instruments: tuple[str, ...]
    core: frozenset[str]


def core_of(instruments: Sequence[str]) -> frozenset[str]:
    """The core of a preset or explicit palette: drums, bass instruments and the first other
    instrument in vocabulary order (the harmony of piano-led and guitar-led line-ups)."""
    core = {name for name in instruments if name == DRUM_INSTRUMENT or _is_bass(name)}
    others = [name for name in instruments if name not in core]
    if others:
        core.add(others[0])
    return frozenset(core)


def _is_bass(name: str) -> bool:
    index = INSTRUMENT_NAMES.index(name)
    return index < 128 and index in BASS_PROGRAMS


def _order(names: Collection[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=INSTRUMENT_NAMES.index))


def timbre_weight(name: str, features: EmotionFeatures) -> float:
    """The factor on an option's weight for ``features``' valence and energy (see :data:`TIMBRE`)."""
    valence_affinity, energy_affinity = TIMBRE.get(name, (0.0, 0.0))
    valence, energy = 2.0 * features.valence - 1.0, 2.0 * features.energy - 1.0
    offset = valence_affinity * valence + energy_affinity * energy
    return math.exp(TIMBRE_TILT * offset)


def _tilted(options: Options, features: EmotionFeatures) -> Options:
    return tuple((name, weight * timbre_weight(name, features)) for name, weight in options)


def _pick(options: Options, taken: Collection[str], u: float, greedy: bool) -> str | None:
    free = [(name, weight) for name, weight in options if name not in taken]
    if not free:
        return None
    if greedy:
        return max(free, key=lambda item: item[1])[0]
    weights = np.array([weight for _, weight in free])
    index = int(np.searchsorted(np.cumsum(weights) / weights.sum(), u, side="right"))
    return free[min(index, len(free) - 1)][0]


def _role(
    role: Role,
    p_acoustic: float,
    taken: Collection[str],
    u: Sequence[float],
    greedy: bool,
    features: EmotionFeatures,
) -> str | None:
    acoustic = p_acoustic >= 0.5 if greedy else u[0] < p_acoustic
    first, second = (role.acoustic, role.electric) if acoustic else (role.electric, role.acoustic)
    first, second = _tilted(first, features), _tilted(second, features)
    return _pick(first, taken, u[1], greedy) or _pick(second, taken, u[1], greedy)


def choose_ensemble(
    features: EmotionFeatures, u: Sequence[float], excluded: Collection[str] = (), greedy: bool = False
) -> Ensemble:
    """The auto ensemble for ``features`` from :data:`DRAWS_PER_PLAN` uniform draws ``u``; never
    an ``excluded`` instrument. ``greedy`` takes each role's likelier branch and heaviest option.
    Raises ``ValueError`` if every instrument is excluded."""
    p = role_probabilities(features)
    taken: set[str] = set(excluded)
    chosen: list[str] = []
    core: set[str] = set()

    def take(name: str | None, is_core: bool) -> None:
        if name is not None:
            chosen.append(name)
            taken.add(name)
            if is_core:
                core.add(name)

    def plays(role: str, draw: float) -> bool:
        return p[role] >= 0.5 if greedy else draw < p[role]

    harmony = _role(HARMONY, p["acoustic"], taken, u[0:2], greedy, features)
    if harmony is None:  # every harmony option muted: any other unmuted instrument leads
        free = [name for name in INSTRUMENT_NAMES if name not in taken]
        if not free:
            raise ValueError("every instrument is muted")
        harmony = free[0]
    take(harmony, True)
    if plays("bass", u[2]):
        acoustic_bass = 1.0 if features.acousticness >= ACOUSTIC_BASS_FROM else 0.0
        take(_role(BASS, acoustic_bass, taken, u[3:5], greedy, features), True)
    if plays("drums", u[5]) and DRUM_INSTRUMENT not in taken:
        take(DRUM_INSTRUMENT, True)
    voice = plays("voice", u[6])
    if voice:
        take(_role(VOICE, p["acoustic"], taken, u[7:9], greedy, features), False)
    if plays("lead_with_voice" if voice else "lead", u[9]):
        take(_role(LEAD, p["acoustic"], taken, u[10:12], greedy, features), False)
    if plays("colour", u[12]):
        take(_role(COLOUR, p["acoustic"], taken, u[13:15], greedy, features), False)
    return Ensemble(_order(chosen), frozenset(core))


def schedule(ensemble: Ensemble, bars: int, u: np.ndarray | None) -> list[tuple[str, ...]]:
    """The instruments of each of ``bars`` bars (vocabulary order). ``u`` ``[n_instruments, 3]``
    uniform draws place the rests (see the module doc); ``None`` means no rests. A palette larger
    than :data:`MAX_INSTRUMENTS_PER_BAR` plays that many per bar, core first, the rest in rotation.
    """
    names = ensemble.instruments
    playing = np.ones((bars, len(names)), dtype=bool)
    longest = int(MAX_REST_SHARE * bars)
    if u is not None and longest > 0:
        for j, name in enumerate(names):
            if name in ensemble.core or u[j, 0] >= REST_PROBABILITY:
                continue
            length = 1 + int(u[j, 1] * longest)
            start = int(u[j, 2] * (bars - length))  # the last bar is never a rest
            playing[start : start + length, j] = False
    if len(names) > MAX_INSTRUMENTS_PER_BAR:
        for bar in range(bars):
            order = sorted(
                np.flatnonzero(playing[bar]),
                key=lambda j: (names[j] not in ensemble.core, (j - bar) % len(names)),
            )
            playing[bar] = False
            playing[bar, order[:MAX_INSTRUMENTS_PER_BAR]] = True
    return [tuple(name for name, on in zip(names, row, strict=True) if on) for row in playing]
