"""The rule-based generator: weight-free composition driven directly by the features.

The fallback when the models are missing, and the generator the tests use for speed. It honours
the performer's :class:`~e2m_live.arrangement.Arrangement` (key lock, ensemble, instruments, muted).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pretty_midi

from e2m_live.arrangement import Arrangement
from e2m_live.description.vocab import DRUM_INSTRUMENT
from e2m_live.features import EmotionFeatures
from e2m_live.generators.base import SECTION_BARS
from e2m_live.music import Bar, Note

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Progressions as scale degrees (0 = tonic), four bars each; the section cycles three times.
_PROGRESSIONS = {
    1: ((0, 4, 5, 3), (0, 3, 4, 4), (0, 5, 3, 4), (0, 3, 0, 4)),
    0: ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4), (0, 3, 6, 4)),
}

KICK, SNARE, CLOSED_HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 42, 46, 49, 51


@dataclass(frozen=True, slots=True)
class Band:
    """GM programs of the four parts (``None``: the part is silent) and whether drums play."""

    lead: int | None
    chords: int | None
    bass: int | None
    pad: int | None
    drums: bool = True


def choose_band(features: EmotionFeatures) -> Band:
    """Acoustic or electric instruments; a voice-like lead unless instrumental."""
    acoustic = features.acousticness >= 0.5
    vocal = features.instrumentalness < 0.5
    # voice oohs / lead 6 (voice) when vocal, else flute / square lead
    lead = (53 if acoustic else 85) if vocal else (73 if acoustic else 80)
    return Band(
        lead=lead,
        chords=0 if acoustic else 4,  # acoustic grand / electric piano
        bass=32 if acoustic else 38,  # acoustic bass / synth bass 1
        pad=48 if acoustic else 89,  # string ensemble / warm pad
    )


# Preference orders when a palette is given (GM programs).
_BASS_PROGRAMS = (*range(32, 40), 43, 58, 42, 70, 57)  # basses, contrabass, tuba, cello, bassoon, trombone
_LEAD_PROGRAMS = (*range(52, 88), 40, 41, 104, 105, 109, 110, 111)  # voices, brass, reeds, pipes, leads
# keys, guitars, strings (not timpani), pads
_COMPING_PROGRAMS = (*range(0, 32), 44, 45, 46, *range(48, 52), *range(88, 96), 104, 105)


def _program(name: str) -> int:
    return int(pretty_midi.instrument_name_to_program(name))


def arranged_band(features: EmotionFeatures, arrangement: Arrangement | None) -> Band:
    """The band for ``arrangement``, kept simple: in ``auto`` :func:`choose_band` minus the muted
    parts; with a palette, drums only if it has them, the bass, melody and comping each from the
    palette's instruments that suit the part (else whatever is left, else the bass's program).
    A palette of drums alone plays drums alone."""
    band = choose_band(features)
    arrangement = arrangement or Arrangement()
    palette = arrangement.palette()
    if palette is None:
        muted = {_program(n) for n in arrangement.excluded() if n != DRUM_INSTRUMENT}

        def keep(program: int | None) -> int | None:
            return None if program in muted else program

        return Band(
            keep(band.lead),
            keep(band.chords),
            keep(band.bass),
            keep(band.pad),
            drums=DRUM_INSTRUMENT not in arrangement.excluded(),
        )
    drums = DRUM_INSTRUMENT in palette
    programs = [_program(n) for n in palette if n != DRUM_INSTRUMENT]
    if not programs:
        return Band(None, None, None, None, drums=drums)
    bass = next((p for p in _BASS_PROGRAMS if p in programs), programs[0])
    others = [p for p in programs if p != bass] or [bass]
    lead = next((p for p in others if p in _LEAD_PROGRAMS), others[-1])
    rest = [p for p in others if p != lead] or [others[0]]
    chords = next((p for p in rest if p in _COMPING_PROGRAMS), rest[0])
    pad = next((p for p in reversed(rest) if p in _COMPING_PROGRAMS), chords)
    return Band(lead=lead, chords=chords, bass=bass, pad=pad, drums=drums)


def velocity_for(features: EmotionFeatures, accent: float = 0.0) -> int:
    """Loudness -60..0 dB -> velocity 30..115, energy adds accent."""
    base = 30 + (features.loudness + 60.0) / 60.0 * 75 + 10 * features.energy + accent
    return int(min(127, max(1, round(base))))


class RuleBasedGenerator:
    """A weight-free, musically sensible generator driven directly by the features.

    chords of the key/mode; note density and drums from energy/danceability; velocities from
    loudness; register from valence; instruments from acousticness/instrumentalness; bar length
    from time_signature (x/4).
    """

    def __init__(self, seconds_per_bar: float = 0.0) -> None:
        self.seconds_per_bar = seconds_per_bar  # optional artificial decode time (tests)

    def generate(
        self,
        features: EmotionFeatures,
        *,
        prime: Bar | None = None,
        seed: int | None = None,
        arrangement: Arrangement | None = None,
    ) -> Iterator[Bar]:
        rng = random.Random(seed)
        scale = _MAJOR if features.mode == 1 else _MINOR
        progression = rng.choice(_PROGRESSIONS[features.mode])
        band = arranged_band(features, arrangement)
        beats = int(features.time_signature)
        lead_pitch = self._start_pitch(features, prime, band)
        for index in range(SECTION_BARS):
            if self.seconds_per_bar:
                time.sleep(self.seconds_per_bar)
            degree = progression[index % len(progression)]
            if index == SECTION_BARS - 1:
                degree = 4  # dominant: leads back into the next section
            notes: list[Note] = []
            chord = self._chord(features, scale, degree)
            # Every part draws from the rng whether it plays or not: muting one leaves the others alone.
            notes += self._bass(features, band, chord[0], beats, rng)
            notes += self._comping(features, band, chord, beats, rng)
            lead_notes, lead_pitch = self._melody(features, band, scale, chord, beats, lead_pitch, rng)
            notes += lead_notes if band.lead is not None else []
            drums = self._drums(features, beats, index, rng)
            notes += drums if band.drums else []
            notes.sort(key=lambda n: (n.start, n.pitch))
            yield Bar(notes=notes, numerator=beats, denominator=4, tempo=float(features.tempo), index=index)

    # -- parts ---------------------------------------------------------------------------------
    @staticmethod
    def _start_pitch(features: EmotionFeatures, prime: Bar | None, band: Band) -> int:
        center = 64 + round(features.valence * 10)
        if prime is not None:
            leads = [n for n in prime.notes if not n.is_drum and n.pitch >= 55]
            if leads:
                # Continue from where the bar being played left its highest voice.
                return max(leads, key=lambda n: (n.start, n.pitch)).pitch
        return center

    @staticmethod
    def _chord(features: EmotionFeatures, scale: tuple[int, ...], degree: int) -> list[int]:
        """Triad on ``degree``; root in the bass register, which rises with valence."""
        root_octave = 36 + (12 if features.valence > 0.66 else 0)
        pcs = [scale[(degree + step) % 7] + 12 * ((degree + step) // 7) for step in (0, 2, 4)]
        return [root_octave + features.key + pc for pc in pcs]

    @staticmethod
    def _bass(features: EmotionFeatures, band: Band, root: int, beats: int, rng: random.Random) -> list[Note]:
        vel = velocity_for(features, 5)
        if band.bass is None:
            return []
        if features.energy < 0.3:
            return [Note(root, vel, 0.0, beats - 0.05, band.bass)]
        step = 1.0 if features.energy < 0.7 else 0.5
        notes = []
        t = 0.0
        while t < beats - 1e-9:
            pitch = root + (12 if (features.danceability > 0.6 and int(t / step) % 2) else 0)
            notes.append(Note(pitch, vel, t, step * 0.9, band.bass))
            t += step
        return notes

    @staticmethod
    def _comping(
        features: EmotionFeatures, band: Band, chord: list[int], beats: int, rng: random.Random
    ) -> list[Note]:
        lift = 12 + (12 if features.valence > 0.4 else 0)
        voicing = [p + lift for p in chord]
        vel = velocity_for(features, -8)
        if features.energy < 0.4:
            program = band.pad
            return [] if program is None else [Note(p, vel, 0.0, float(beats), program) for p in voicing]
        hits = [float(b) for b in range(beats)]
        if features.energy > 0.75:
            hits += [b + 0.5 for b in range(beats) if rng.random() < features.danceability]
        if band.chords is None:
            return []
        return [Note(p, vel, t, 0.45, band.chords) for t in sorted(hits) for p in voicing]

    @staticmethod
    def _melody(
        features: EmotionFeatures,
        band: Band,
        scale: tuple[int, ...],
        chord: list[int],
        beats: int,
        pitch: int,
        rng: random.Random,
    ) -> tuple[list[Note], int]:
        # Notes per beat grows with energy: 0.5 at rest, up to 4 (sixteenths) at full energy.
        per_beat = 0.5 + 3.5 * features.energy
        step = 1.0 / (2 ** round(max(0.0, min(2.0, per_beat / 1.5))))  # 1, 0.5 or 0.25 quarters
        count = max(1, round(beats * per_beat))
        slots = [i * step for i in range(int(beats / step))]
        starts = sorted(rng.sample(slots, min(count, len(slots))))
        if 0.0 not in starts:
            starts[0] = 0.0
        pitch_classes = {(features.key + s) % 12 for s in scale}
        chord_pcs = {p % 12 for p in chord}
        center = 64 + round(features.valence * 12)
        notes = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else float(beats)
            move = rng.choice((-2, -1, -1, 1, 1, 2, 0))
            pitch = pitch + move + (1 if pitch < center - 7 else -1 if pitch > center + 7 else 0)
            while pitch % 12 not in pitch_classes:
                pitch += 1
            if start == float(int(start)) and pitch % 12 not in chord_pcs:
                # Strong beats land on chord tones.
                pitch = min(
                    (p for p in range(pitch - 4, pitch + 5) if p % 12 in chord_pcs),
                    key=lambda p: abs(p - pitch),
                )
            accent = 8 if start == 0.0 else 0
            notes.append(
                Note(
                    pitch,
                    velocity_for(features, accent),
                    start,
                    max(0.1, (end - start) * 0.95),
                    band.lead or 0,
                )
            )
        return notes, pitch

    @staticmethod
    def _drums(features: EmotionFeatures, beats: int, index: int, rng: random.Random) -> list[Note]:
        if features.energy < 0.25:
            return []
        vel = velocity_for(features)
        notes: list[Note] = []

        def hit(pitch: int, t: float, accent: float = 0.0) -> None:
            notes.append(Note(pitch, min(127, max(1, vel + int(accent))), t, 0.1, 0, True))

        if index % 4 == 0 and features.energy > 0.6:
            hit(CRASH, 0.0, 5)
        for b in range(beats):
            if b == 0 or features.danceability > 0.55 or (b == beats // 2 + 1 and beats >= 4):
                hit(KICK, float(b), 5)
            if b % 2 == 1:
                hit(SNARE, float(b), 3)
        sub = 0.25 if features.energy > 0.8 else 0.5
        t = 0.0
        while t < beats - 1e-9:
            hit(
                OPEN_HAT if (features.danceability > 0.7 and t % 1 == 0.5) else CLOSED_HAT,
                t,
                -15 if t % 1 else -8,
            )
            t += sub
        if features.danceability < 0.4 and features.energy > 0.5:
            hit(KICK, beats - 0.5 if rng.random() < 0.5 else beats - 0.25, -5)  # looser, syncopated
        return notes
