"""Section generators: emotion features -> the bars of the next 12-bar section.

The engine only knows :class:`SectionGenerator` and picks one by name from :data:`GENERATORS`
(``--generator rules|model``). :class:`RuleBasedGenerator` needs no weights: it is the fallback
when models are missing and the generator the tests use for speed. :class:`ModelGenerator`
(``--generator model``) runs the planner + FIGARO decoder through :mod:`e2m_live.pipeline`.
Both take the performer's :class:`~e2m_live.arrangement.Arrangement` (key lock, ensemble,
instruments, muted) beside the features.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pretty_midi

from e2m_live.arrangement import Arrangement
from e2m_live.description.vocab import DRUM_INSTRUMENT
from e2m_live.features import EmotionFeatures
from e2m_live.music import Bar, Note

log = logging.getLogger(__name__)

SECTION_BARS = 12


class SectionGenerator(Protocol):
    """Makes music one 12-bar section at a time."""

    def generate(
        self, features: EmotionFeatures, *, prime: Bar | None = None, seed: int | None = None,
        arrangement: Arrangement | None = None,
    ) -> Iterator[Bar]:
        """Yield the bars of the next section one by one, as soon as each is ready.

        ``prime`` is the bar being played when the request was made: the section continues
        from it. Bars are numbered ``index = 0..11`` within the section. ``arrangement``
        (``None``: the default :class:`Arrangement`) says which instruments may play.
        """
        ...


class GeneratorUnavailable(RuntimeError):
    """A generator cannot be created here (e.g. its weights are missing); says how to fix it."""


@dataclass(frozen=True, slots=True)
class GeneratorEntry:
    """A registered generator: ``check()`` is cheap and returns why it is unavailable (or None)."""

    name: str
    create: Callable[..., SectionGenerator]
    check: Callable[[], str | None]
    description: str


GENERATORS: dict[str, GeneratorEntry] = {}


def register(entry: GeneratorEntry) -> None:
    """Add (or replace) a generator in the registry."""
    GENERATORS[entry.name] = entry


def unavailable_reason(name: str) -> str | None:
    """Why generator ``name`` cannot be used here, or None if it can."""
    entry = GENERATORS.get(name)
    if entry is None:
        return f"no generator named {name!r} (known: {', '.join(GENERATORS)})"
    return entry.check()


def resolve_generator(name: str, fallback: str = "rules") -> tuple[str, str | None]:
    """The generator to use for ``name``: ``(name, None)`` or ``(fallback, warning)``."""
    reason = unavailable_reason(name)
    if reason is None:
        return name, None
    if name == fallback or unavailable_reason(fallback) is not None:
        raise GeneratorUnavailable(reason)
    return fallback, f"generator {name!r} unavailable ({reason}); falling back to {fallback!r}"


def create_generator(name: str, **options: Any) -> SectionGenerator:
    """Instantiate a registered generator (in the worker process)."""
    reason = unavailable_reason(name)
    if reason is not None:
        raise GeneratorUnavailable(reason)
    return GENERATORS[name].create(**options)


# ---- the worker's native heap ------------------------------------------------------------------------

#: glibc's ``mallopt`` parameter numbers (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks from this size up are mmap()ed and go back to the system when freed.
MMAP_THRESHOLD = 128 * 1024


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only (musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def bound_native_heap() -> bool:
    """Keep glibc from holding on to the memory a long decoding session frees (Linux, glibc).

    Measured (issue 20): the worker's RSS grew by about 1 MB per abandoned section, with no growth in
    Python objects (``tracemalloc``: +0.5 MB over 34 sections). glibc raises its mmap threshold to the
    largest block freed so far (up to 32 MB; loading the weights frees large ones), so the decoder's
    per-window buffers (KV cache, cross-attention keys and values: 0.25-2 MB each) then come from the
    heap, which fragments as they are freed and reallocated. A fixed threshold (setting it turns the
    sliding one off) sends them back to mmap; the worker also trims after every section
    (:func:`trim_native_heap`). Returns False where this is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return libc.mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD) == 1 and ok


def trim_native_heap() -> None:
    """Return free heap pages to the system (glibc ``malloc_trim``; a no-op elsewhere)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


# ---- the rule-based generator ---------------------------------------------------------------------

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
    return pretty_midi.instrument_name_to_program(name)


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

        return Band(keep(band.lead), keep(band.chords), keep(band.bass), keep(band.pad),
                    drums=DRUM_INSTRUMENT not in arrangement.excluded())
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
        self, features: EmotionFeatures, *, prime: Bar | None = None, seed: int | None = None,
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
    def _comping(features: EmotionFeatures, band: Band, chord: list[int], beats: int,
                 rng: random.Random) -> list[Note]:
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
    def _melody(features: EmotionFeatures, band: Band, scale: tuple[int, ...], chord: list[int], beats: int,
                pitch: int, rng: random.Random) -> tuple[list[Note], int]:
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
                pitch = min((p for p in range(pitch - 4, pitch + 5) if p % 12 in chord_pcs),
                            key=lambda p: abs(p - pitch))
            accent = 8 if start == 0.0 else 0
            notes.append(Note(pitch, velocity_for(features, accent), start, max(0.1, (end - start) * 0.95),
                              band.lead or 0))
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
            hit(OPEN_HAT if (features.danceability > 0.7 and t % 1 == 0.5) else CLOSED_HAT, t,
                -15 if t % 1 else -8)
            t += sub
        if features.danceability < 0.4 and features.energy > 0.5:
            hit(KICK, beats - 0.5 if rng.random() < 0.5 else beats - 0.25, -5)  # looser, syncopated
        return notes


class CpuLoadGenerator:
    """Wraps a generator and burns CPU per bar (a torch matmul loop on one thread).

    Stands in for the model's decoding cost in benchmarks and timing tests.
    """

    def __init__(self, inner: SectionGenerator, seconds_per_bar: float = 0.2, size: int = 256) -> None:
        self.inner = inner
        self.seconds_per_bar = seconds_per_bar
        self.size = size

    def generate(
        self, features: EmotionFeatures, *, prime: Bar | None = None, seed: int | None = None,
        arrangement: Arrangement | None = None,
    ) -> Iterator[Bar]:
        import torch

        torch.set_num_threads(1)
        a = torch.randn(self.size, self.size)
        for bar in self.inner.generate(features, prime=prime, seed=seed, arrangement=arrangement):
            deadline = time.monotonic() + self.seconds_per_bar
            while time.monotonic() < deadline:
                a = torch.tanh(a @ a)
            yield bar



# ---- the model generator --------------------------------------------------------------------------

class ModelGenerator:
    """The planner LSTMs + FIGARO decoder (:mod:`e2m_live.pipeline`), loaded in the worker process.

    Construction is instant: the models load on a background thread, so the worker reports
    ``ready`` at once. With ``warm_start`` (default), a section requested while the models are
    still loading opens with one rule-based bar (so the daemon has a bar to play within a second
    of starting); the model then decodes the section's other bars, primed with it. Bars are yielded
    as soon as each is decoded; a prime bar this generator made itself is fed back as its own tokens
    (and its description bar), any other bar is converted to tokens.
    """

    def __init__(self, *, threads: int = 1, models_dir: str | None = None, quantize: str | None = "int8",
                 temperature: float = 1.0, top_p: float | None = None, max_tokens_per_bar: int = 512,
                 remember: int = 2 * SECTION_BARS, warm_start: bool = True,
                 ensemble_seed: int | None = None, planner: str = "class-lstm") -> None:
        import os
        import threading

        # Before torch (and OpenMP) load in this process: passive OpenMP waiting (see e2m_live.pipeline).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        bound_native_heap()  # before the weights load (see bound_native_heap)
        self.threads, self.models_dir, self.quantize = threads, models_dir, quantize
        self.planner = planner
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens_per_bar = max_tokens_per_bar
        self.warm_start = warm_start
        self.remember = remember
        self.load_seconds: float | None = None
        self._pipeline: Any = None
        self._error: BaseException | None = None
        self._made: dict[tuple, tuple[list[str], list[str]]] = {}  # our bars -> (tokens, description)
        # One auto-ensemble draw for the generator's life: the band stays from section to section,
        # and a fader crosses a role's threshold once (drums come in as danceability rises, and stay).
        if ensemble_seed is None:
            ensemble_seed = random.SystemRandom().randrange(2**31)
        self.ensemble_seed = ensemble_seed
        self._loader = threading.Thread(target=self._load, name="e2m-model-load", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        started = time.monotonic()
        try:
            from e2m_live.pipeline import Pipeline

            self._pipeline = Pipeline.load(self.models_dir, threads=self.threads, quantize=self.quantize,
                                           planner=self.planner)
        except Exception as error:  # reported by generate(), in the worker's error channel
            self._error = error
        trim_native_heap()  # what loading and quantising freed
        self.load_seconds = time.monotonic() - started

    @property
    def pipeline(self) -> Any:
        """The loaded :class:`~e2m_live.pipeline.Pipeline` (waits for the background load)."""
        self._loader.join()
        if self._error is not None:
            raise GeneratorUnavailable(f"the model could not be loaded: {self._error}")
        return self._pipeline

    @staticmethod
    def _key(bar: Bar) -> tuple:
        return (tuple(bar.notes), bar.numerator, bar.denominator)

    def generate(
        self, features: EmotionFeatures, *, prime: Bar | None = None, seed: int | None = None,
        arrangement: Arrangement | None = None,
    ) -> Iterator[Bar]:
        from e2m_live.pipeline import DecodingOptions

        first = 0
        if self.warm_start and self._loader.is_alive():
            prime = next(iter(RuleBasedGenerator().generate(features, prime=prime, seed=seed,
                                                            arrangement=arrangement)))
            yield prime
            first = 1
        pipeline = self.pipeline
        options = DecodingOptions(temperature=self.temperature, top_p=self.top_p,
                                  max_tokens_per_bar=self.max_tokens_per_bar)
        known = self._made.get(self._key(prime)) if prime is not None else None
        prime_tokens: Any = known[0] if known else prime
        prime_description = known[1] if known else None
        section = pipeline.generate(features, bars=SECTION_BARS - first, seed=seed,
                                    temperature=self.temperature, prime=prime_tokens,
                                    prime_description=prime_description, options=options,
                                    arrangement=arrangement, ensemble_seed=self.ensemble_seed)
        try:
            for generated in section:
                self._made[self._key(generated.bar)] = (generated.tokens, generated.description)
                while len(self._made) > self.remember:
                    self._made.pop(next(iter(self._made)))
                bar = generated.bar
                bar.index += first
                yield bar
        finally:  # also when the worker abandons the section for a newer request
            section.close()
            trim_native_heap()


def _model_check() -> str | None:
    """Cheap: are the weight files there? (no torch import)."""
    from e2m_live.models import missing_models

    problems = missing_models()
    return "; ".join(problems) + " (see `e2m-live doctor`)" if problems else None


def _load_generator(**options: Any) -> SectionGenerator:
    return CpuLoadGenerator(RuleBasedGenerator(), **options)


register(GeneratorEntry("rules", lambda **options: RuleBasedGenerator(**options), lambda: None,
                        "rule-based fallback, no weights"))
register(GeneratorEntry("rules+load", _load_generator, lambda: None,
                        "rule-based plus a synthetic CPU load per bar (benchmarks)"))
register(GeneratorEntry("model", lambda **options: ModelGenerator(**options), _model_check,
                        "planner LSTMs + FIGARO decoder"))
