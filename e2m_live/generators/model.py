"""The model generator: the planner + FIGARO decoder (:mod:`e2m_live.pipeline`) in the worker process."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from e2m_live.arrangement import Arrangement
from e2m_live.features import EmotionFeatures
from e2m_live.generators.base import SECTION_BARS, GeneratorUnavailable
from e2m_live.generators.heap import bound_native_heap, trim_native_heap
from e2m_live.generators.realtime import DecodeRate, cap_density
from e2m_live.generators.rules import RuleBasedGenerator
from e2m_live.music import Bar, Note

#: A bar as the generator remembers it made it: its notes and metre.
_BarKey = tuple[tuple[Note, ...], int, int]


class ModelGenerator:
    """The planner LSTMs + FIGARO decoder (:mod:`e2m_live.pipeline`), loaded in the worker process.

    Construction is instant: the models load on a background thread, so the worker reports
    ``ready`` at once. With ``warm_start`` (default), a section requested while the models are
    still loading opens with one rule-based bar (so the daemon has a bar to play within a second
    of starting); the model then decodes the section's other bars, primed with it. Bars are yielded
    as soon as each is decoded; a prime bar this generator made itself is fed back as its own tokens
    (and its description bar), any other bar is converted to tokens.
    """

    def __init__(
        self,
        *,
        threads: int = 1,
        models_dir: str | None = None,
        quantize: str | None = "int8",
        temperature: float = 1.0,
        top_p: float | None = None,
        max_tokens_per_bar: int = 512,
        remember: int = 2 * SECTION_BARS,
        warm_start: bool = True,
        ensemble_seed: int | None = None,
        planner: str = "class-lstm",
        realtime_density: bool = True,
    ) -> None:
        import threading

        # Passive OpenMP waiting is already set: the package's import does it (e2m_live/__init__.py).
        bound_native_heap()  # before the weights load (see bound_native_heap)
        self.threads, self.models_dir, self.quantize = threads, models_dir, quantize
        self.planner = planner
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens_per_bar = max_tokens_per_bar
        self.warm_start = warm_start
        #: Plan no denser than this machine decodes in time (:mod:`~e2m_live.generators.realtime`).
        self.realtime_density = realtime_density
        self.rate = DecodeRate()
        self.capped_bars = 0  # bars whose density the real-time cap lowered, over the generator's life
        self.remember = remember
        self.load_seconds: float | None = None
        #: Asked every few tokens while decoding: True leaves the section at once (the generation
        #: worker sets it to "a newer request is waiting"; see SectionGenerator).
        self.interrupt: Callable[[], bool] | None = None
        self._pipeline: Any = None
        self._error: BaseException | None = None
        self._made: dict[_BarKey, tuple[list[str], list[str]]] = {}  # our bars -> (tokens, description)
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

            self._pipeline = Pipeline.load(
                self.models_dir, threads=self.threads, quantize=self.quantize, planner=self.planner
            )
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
    def _key(bar: Bar) -> _BarKey:
        return (tuple(bar.notes), bar.numerator, bar.denominator)

    def generate(
        self,
        features: EmotionFeatures,
        *,
        prime: Bar | None = None,
        seed: int | None = None,
        arrangement: Arrangement | None = None,
    ) -> Iterator[Bar]:
        from e2m_live.pipeline import DecodingOptions

        first = 0
        if self.warm_start and self._loader.is_alive():
            prime = next(
                iter(RuleBasedGenerator().generate(features, prime=prime, seed=seed, arrangement=arrangement))
            )
            yield prime
            first = 1
        pipeline = self.pipeline
        options = DecodingOptions(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens_per_bar=self.max_tokens_per_bar,
            interrupt=self.interrupt,
        )
        known = self._made.get(self._key(prime)) if prime is not None else None
        prime_tokens: Any = known[0] if known else prime
        prime_description = known[1] if known else None
        started = time.monotonic()
        description: Any = pipeline.plan(
            features,
            bars=SECTION_BARS - first,
            seed=seed,
            temperature=self.temperature,
            arrangement=arrangement,
            ensemble_seed=self.ensemble_seed,
        )
        if self.realtime_density:
            tokens, capped = cap_density(
                description.tokens(), float(features.tempo), self.rate.tokens_per_second
            )
            description, self.capped_bars = tokens, self.capped_bars + capped
        section = pipeline.decode(  # as Pipeline.generate does it: the decoder's seed is the planner's + 1
            description,
            features,
            prime=prime_tokens,
            prime_description=prime_description,
            seed=None if seed is None else seed + 1,
            options=options,
            arrangement=arrangement,
        )
        try:
            for generated in section:
                now = time.monotonic()
                self.rate.add(len(generated.tokens), now - started)
                started = now
                self._made[self._key(generated.bar)] = (generated.tokens, generated.description)
                while len(self._made) > self.remember:
                    self._made.pop(next(iter(self._made)))
                bar = generated.bar
                bar.index += first
                yield bar
                trim_native_heap()  # what the bar freed (the heap keeps 64 MiB between trims)
        finally:  # also when the worker abandons the section for a newer request
            section.close()
            trim_native_heap()


def model_unavailable_reason() -> str | None:
    """Cheap: are the weight files there? (no torch import)."""
    from e2m_live.models import missing_models

    problems = missing_models()
    return "; ".join(problems) + " (see `e2m-live doctor`)" if problems else None
