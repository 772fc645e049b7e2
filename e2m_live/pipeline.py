"""Emotion features -> plan -> decoded bars: the one path ``e2m-live generate`` and the daemon share.

>>> pipeline = Pipeline.load()                        # models/planner + models/figaro-compact
>>> for generated in pipeline.generate(MOODS["happy"], bars=12, seed=1):
...     play(generated.bar)                           # a Bar, ready as soon as it is decoded

What the pipeline adds to the planner and the decoder:

* **Tempo and time signature are imposed, not learned.** The decoder's grammar already forces each
  bar's time signature to the plan's (the plan's comes from ``features.time_signature``); every
  ``Tempo_*`` token the decoder writes is replaced by the bin nearest the requested tempo, and every
  :class:`~e2m_live.music.Bar` carries the exact requested BPM (so the MIDI has it).
* **Bar numbering.** The plan is numbered ``Bar_1..``; the decoder renumbers its own input (the prime
  becomes bar 1); yielded bars are numbered ``index = 0..bars-1`` within the section and their tokens
  ``Bar_{index + 1}``.
* **Clean notes and key lock.** The decoder's grammar mask also applies :class:`DecodeRules` (no
  repeated note, no note past the section's last bar line or longer than 8 quarters, a note budget
  per bar from its planned density, every planned instrument plays) and, from
  ``arrangement.key_lock`` with ``features.key``/``features.mode``, the key lock; instruments keep to
  their ranges, voices sing one note at a time, and ``features.danceability`` sets the groove
  (a drum note on every beat, bass on the downbeat, the sixteenth grid; docs/figaro.md).
* **Loudness is level.** Decoded velocities are scaled by the requested loudness (General MIDI's
  velocity curve, :mod:`e2m_live.loudness`); the tokens kept for priming are the decoder's own.
* **Priming.** ``prime`` is the bar played before, as REMI+ tokens or as a :class:`Bar` (converted
  with the same extractor that made the training data); ``prime_description`` is its description
  bar when known (default: the decoder copies the first new bar's).
* **Threads.** Decoding uses ``threads`` torch threads with ``OMP_WAIT_POLICY=PASSIVE``: with OpenMP's
  default spinning, two threads on a busy two-core machine are ten times slower than one. OpenMP reads
  the policy when it loads, so import this module before anything that loads it (``pretty_midi``
  does, through fluidsynth), or set the variable in the environment; otherwise one thread is used.
"""

from __future__ import annotations

import logging
import os


def _openmp_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line or "libiomp" in line for line in maps)
    except OSError:  # not Linux: assume the worst
        return True


# OpenMP reads its wait policy once, when the library loads (pretty_midi's fluidsynth loads it, and torch
# then shares that copy): whether it waits passively is known here, before the imports below can load it.
# The package sets the policy (``e2m_live/__init__.py``, the one place), so this is False only when the
# environment asked for another policy and something loaded OpenMP first.
_PASSIVE_OPENMP = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" or not _openmp_loaded()

from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import numpy as np  # noqa: E402

from e2m_live.arrangement import Arrangement  # noqa: E402
from e2m_live.description.grammar import Description  # noqa: E402
from e2m_live.description.vocab import BAR_KEY, TEMPO_BINS, TEMPO_KEY, split_bars  # noqa: E402
from e2m_live.features import EmotionFeatures  # noqa: E402
from e2m_live.figaro.constraints import DecodeRules, groove_strength  # noqa: E402
from e2m_live.models import ModelPaths, model_paths, require_models  # noqa: E402
from e2m_live.music import Bar  # noqa: E402

if TYPE_CHECKING:
    from e2m_live.figaro.decode import IncrementalDecoder
    from e2m_live.figaro.model import FigaroModel
    from e2m_live.planner import Planner

log = logging.getLogger(__name__)

#: One decoding thread: the one-token steps are small matrix-vector products whose OpenMP fork/join
#: costs more than a second core saves (compact int8 on a quiet 2-core machine: 549 tok/s on one
#: thread, 300 on two; `benchmarks/decode_speed.py --threads 1 2`). The second core stays free for
#: the player and the OSC server.
DEFAULT_THREADS = 1
#: int8 weights decode 1.3-1.6x faster on CPU at the compact size (docs/figaro.md); logits change slightly.
DEFAULT_QUANTIZE = "int8"
DEFAULT_MAX_TOKENS_PER_BAR = 512


class PipelineError(ValueError):
    """Bad generation arguments (the message is one line, fit for a CLI error)."""


def prepare_torch_threads(threads: int) -> None:
    """Use ``threads`` torch threads with passive OpenMP waiting (see the module docstring)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise PipelineError(f"threads must be a positive integer, got {threads!r}")
    if threads > 1 and not _PASSIVE_OPENMP and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        # Spinning OpenMP threads on a shared machine: one thread is faster (docs/figaro.md).
        log.warning(
            "OpenMP was loaded before e2m_live.pipeline without OMP_WAIT_POLICY=PASSIVE; "
            "decoding with one thread instead of %d",
            threads,
        )
        threads = 1
    import torch

    torch.set_num_threads(threads)


def tempo_token(bpm: float) -> str:
    """The ``Tempo_*`` token nearest ``bpm`` (bin 0, 0 BPM, is never chosen)."""
    index = 1 + int(np.argmin(np.abs(TEMPO_BINS[1:] - float(bpm))))
    return f"{TEMPO_KEY}_{index}"


def impose_tempo(tokens: Sequence[str], bpm: float) -> list[str]:
    """``tokens`` with every ``Tempo_*`` token replaced by the one nearest ``bpm``."""
    wanted = tempo_token(bpm)
    return [wanted if tok.startswith(TEMPO_KEY + "_") else tok for tok in tokens]


def bar_to_tokens(bar: Bar) -> list[str] | None:
    """REMI+ tokens of one :class:`Bar` (as ``Bar_1``), or None if it has no notes to extract.

    Goes through MIDI and :func:`e2m_live.description.extract.extract`, so the tokens are in exactly
    the order the decoder was trained on.
    """
    from e2m_live.description.extract import MidiError, extract
    from e2m_live.description.remi import bars_to_midi

    if not bar.notes:
        return None
    try:
        alone = Bar(list(bar.notes), bar.numerator, bar.denominator, bar.tempo, 0)
        extraction = extract(bars_to_midi([alone]))
    except MidiError:
        return None
    bars = extraction.remi_bars()
    if not bars:
        return None
    return [f"{BAR_KEY}_1", *bars[0][1:]]


@dataclass(slots=True)
class GeneratedBar:
    """One decoded bar of a section."""

    index: int  # 0-based within the section
    bar: Bar  # notes, the plan's time signature, the requested tempo
    tokens: list[str]  # REMI+ tokens, ``Bar_{index + 1}`` first, tempo imposed
    description: list[str] = field(default_factory=list)  # the plan's description bar


@dataclass(frozen=True, slots=True)
class DecodingOptions:
    """Sampling options of the FIGARO decoder."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    max_tokens_per_bar: int = DEFAULT_MAX_TOKENS_PER_BAR
    rules: DecodeRules = field(default_factory=DecodeRules)  # the clean-note rules of the grammar mask
    #: Asked every few tokens; True ends the decoding where it is (the live worker's newer request).
    interrupt: Callable[[], bool] | None = None


def _check_seed(seed: object) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise PipelineError(f"seed must be a non-negative integer, got {seed!r}")


def _split_description(description: Description | Sequence[str]) -> list[list[str]]:
    tokens = description.tokens() if isinstance(description, Description) else description
    try:
        return split_bars(tokens, "a description")
    except ValueError as error:
        raise PipelineError(str(error)) from None


class Pipeline:
    """The planner and the FIGARO decoder, loaded once."""

    def __init__(
        self,
        planner: Planner,
        model: FigaroModel,
        *,
        threads: int = DEFAULT_THREADS,
        quantize: str | None = DEFAULT_QUANTIZE,
        device: str = "cpu",
    ) -> None:
        from e2m_live.figaro.decode import IncrementalDecoder

        prepare_torch_threads(threads)
        self.planner = planner
        self.threads = threads
        self.decoder: IncrementalDecoder = IncrementalDecoder(
            model, device=device, constrained=True, quantize=quantize if device == "cpu" else None
        )

    @classmethod
    def load(
        cls,
        paths: ModelPaths | str | os.PathLike | None = None,
        *,
        threads: int = DEFAULT_THREADS,
        quantize: str | None = DEFAULT_QUANTIZE,
        device: str = "cpu",
        planner: str = "class-lstm",
    ) -> Pipeline:
        """Load both models (``paths``: a :class:`ModelPaths`, a ``models/``-like folder, or the default;
        ``planner``: a name of :data:`e2m_live.planner.registry.PLANNER_NAMES`).

        Raises :class:`e2m_live.models.ModelsMissing` when a model folder is missing.
        """
        prepare_torch_threads(threads)
        from e2m_live.figaro.checkpoint import load_pretrained
        from e2m_live.planner.registry import load_planner

        given = paths
        if not isinstance(paths, ModelPaths):
            paths = model_paths(Path(paths) if paths is not None else None)
        require_models(paths)
        # The class LSTMs live in paths.planner; another planner in its own folder beside it when a
        # models folder is given, else where that planner looks by default (its environment override).
        planner_dir: Path | None = paths.planner
        if planner != "class-lstm":
            planner_dir = None if given is None else paths.planner.parent / f"planner-{planner}"
        planner_model = load_planner(planner, planner_dir)
        model = load_pretrained(paths.figaro, device=device)
        return cls(planner_model, model, threads=threads, quantize=quantize, device=device)

    # -- the two stages ---------------------------------------------------------------------------
    def plan(
        self,
        features: EmotionFeatures,
        *,
        bars: int = 12,
        seed: int | None = None,
        temperature: float = 1.0,
        arrangement: Arrangement | None = None,
        ensemble_seed: int | None = None,
    ) -> Description:
        """The 12-bar (or ``bars``) description for ``features`` (instruments as ``arrangement`` says;
        ``ensemble_seed`` fixes the ``auto`` ensemble draw, see :meth:`Planner.plan`)."""
        from e2m_live.planner import PlanError

        try:
            return self.planner.plan(
                features,
                bars=bars,
                seed=seed,
                temperature=temperature,
                arrangement=arrangement,
                ensemble_seed=ensemble_seed,
            )
        except PlanError as error:
            raise PipelineError(str(error)) from None

    def decode(
        self,
        description: Description | Sequence[str],
        features: EmotionFeatures,
        *,
        prime: Sequence[str] | Bar | None = None,
        prime_description: Sequence[str] | None = None,
        seed: int | None = None,
        options: DecodingOptions | None = None,
        arrangement: Arrangement | None = None,
    ) -> Iterator[GeneratedBar]:
        """Decode ``description`` bar by bar, yielding each bar as soon as it is complete.

        Pitched instruments keep to ``features.key``/``features.mode`` as strictly as
        ``arrangement.key_lock`` says (``None``: ``Arrangement()``, the default lock). The groove
        rules follow ``features.danceability`` (:func:`groove_strength`: off up to 0.4, full at 0.8).
        """
        _check_seed(seed)
        options = options or DecodingOptions()
        arrangement = arrangement or Arrangement()
        desc_bars = _split_description(description)
        prime_tokens = bar_to_tokens(prime) if isinstance(prime, Bar) else (list(prime) if prime else None)
        try:
            stream = self.decoder.generate_bars(
                [t for bar in desc_bars for t in bar],
                prime=prime_tokens,
                prime_description=prime_description if prime_tokens else None,
                temperature=options.temperature,
                top_k=options.top_k,
                top_p=options.top_p,
                seed=seed,
                max_tokens_per_bar=options.max_tokens_per_bar,
                interrupt=options.interrupt,
                rules=options.rules,
                scale=(int(features.key), int(features.mode)),
                key_lock=float(arrangement.key_lock),
                groove=groove_strength(float(features.danceability)),
            )
        except ValueError as error:
            raise PipelineError(str(error)) from None
        return self._bars(stream, desc_bars, features)

    def _bars(
        self, stream: Iterator[list[str]], desc_bars: list[list[str]], features: EmotionFeatures
    ) -> Iterator[GeneratedBar]:
        from e2m_live.description.remi import tokens_to_bars
        from e2m_live.loudness import scale_velocities, velocity_gain

        tempo = float(features.tempo)
        gain = velocity_gain(features.loudness)
        for index, raw in enumerate(stream):
            tokens = impose_tempo([f"{BAR_KEY}_{index + 1}", *raw[1:]], tempo)
            decoded = tokens_to_bars(tokens)
            bar = decoded[0] if decoded else Bar()
            description = desc_bars[index] if index < len(desc_bars) else []
            numerator, denominator = _time_signature_of(description) or (bar.numerator, bar.denominator)
            notes = scale_velocities(bar.notes, gain)
            yield GeneratedBar(index, Bar(notes, numerator, denominator, tempo, index), tokens, description)

    # -- both ---------------------------------------------------------------------------------------
    def generate(
        self,
        features: EmotionFeatures,
        *,
        bars: int = 12,
        seed: int | None = None,
        temperature: float = 1.0,
        plan_temperature: float | None = None,
        prime: Sequence[str] | Bar | None = None,
        prime_description: Sequence[str] | None = None,
        options: DecodingOptions | None = None,
        arrangement: Arrangement | None = None,
        ensemble_seed: int | None = None,
    ) -> Iterator[GeneratedBar]:
        """Plan ``bars`` bars for ``features`` and decode them (see :meth:`plan` and :meth:`decode`).

        ``temperature`` is the decoder's (unless ``options`` is given) and, unless ``plan_temperature``
        is given, the planner's.
        The planner uses ``seed``, the decoder ``seed + 1``: the same seed gives the same music.
        """
        _check_seed(seed)
        description = self.plan(
            features,
            bars=bars,
            seed=seed,
            temperature=temperature if plan_temperature is None else plan_temperature,
            arrangement=arrangement,
            ensemble_seed=ensemble_seed,
        )
        options = options or DecodingOptions(temperature=temperature)
        return self.decode(
            description,
            features,
            prime=prime,
            prime_description=prime_description,
            seed=None if seed is None else seed + 1,
            options=options,
            arrangement=arrangement,
        )


def _time_signature_of(description_bar: Sequence[str]) -> tuple[int, int] | None:
    from e2m_live.description.vocab import TIME_SIGNATURE_KEY

    for tok in description_bar:
        if tok.startswith(TIME_SIGNATURE_KEY + "_"):
            num, _, den = tok.removeprefix(TIME_SIGNATURE_KEY + "_").partition("/")
            if num.isdigit() and den.isdigit():
                return int(num), int(den)
    return None


def section_duration(bars: Sequence[Bar]) -> float:
    """Seconds the bars last at their tempos (120 BPM where a bar has none)."""
    seconds, tempo = 0.0, 120.0
    for bar in bars:
        tempo = bar.tempo or tempo
        seconds += bar.quarters * 60.0 / tempo
    return seconds
