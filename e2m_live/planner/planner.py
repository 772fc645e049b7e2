"""The planner: emotion features -> a valid 12-bar FIGARO description.

>>> planner = Planner.load()                      # models/planner/
>>> description = planner.plan(MOODS["sad"], bars=12, seed=1)
>>> description.tokens()[:6]
['Bar_1', 'Time Signature_4/4', 'Note Density_..', ...]

Five class LSTMs (:mod:`e2m_live.planner.model`) sample the bars; the stream's chords are relative
to the key and are transposed to ``features.key``; the time signature comes from
``features.time_signature``; :mod:`e2m_live.planner.steering` adds the documented explicit
conditioning; :mod:`e2m_live.planner.ensemble` decides the instruments of each bar from the
:class:`~e2m_live.arrangement.Arrangement` (a preset or list, or in ``auto`` from the features);
:func:`e2m_live.planner.assemble.assemble` writes the description through the grammar.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from e2m_live.arrangement import Arrangement
from e2m_live.description.grammar import MAX_BAR_INDEX, TIME_SIGNATURES, Description
from e2m_live.features import FEATURE_ORDER, EmotionFeatures
from e2m_live.planner.assemble import assemble
from e2m_live.planner.classes import INSTRUMENT_NAMES, ORDERED_CLASSES
from e2m_live.planner.ensemble import DRAWS_PER_PLAN, Ensemble, choose_ensemble, core_of, schedule
from e2m_live.planner.inference import LSTMStepper, single_threaded_blas
from e2m_live.planner.model import OrderedClassLSTM, StreamLSTM, load_model, save_model
from e2m_live.planner.sampling import BarPlan, InstrumentMasks, sample_plans
from e2m_live.planner.steering import Steering, SteeringBias

#: Where the shipped weights live (override with ``E2M_PLANNER_DIR``).
DEFAULT_MODEL_DIR = Path(
    os.environ.get("E2M_PLANNER_DIR", Path(__file__).resolve().parents[2] / "models" / "planner")
)
CONFIG_NAME = "config.json"
STREAM_NAME = "instruments_chords"
CONFIG_FORMAT = 1

#: Beats per bar -> time signature. Spotify counts the beats of 6/8 and 7/8 as 6 and 7 and our
#: feature estimator does the same, so the compound metres the corpora use are the defaults.
DEFAULT_TIME_SIGNATURES: dict[int, tuple[int, int]] = {3: (3, 4), 4: (4, 4), 5: (5, 4), 6: (6, 8), 7: (7, 8)}


class PlanError(ValueError):
    """Bad planner input (features, bar count, temperature, seed) or unusable model files."""


class PlannerBase:
    """What every planner shares (the class LSTMs' :class:`Planner` and the sequence planners):
    feature means and steering, the time signatures, ``plan``/``plan_many`` on top of the
    subclass's ``sample_bars``, and the instrument choice (the same draws from the same seed)."""

    feature_means: np.ndarray
    time_signatures: dict[int, tuple[int, int]]
    metadata: dict[str, Any]
    steering: Steering

    def _set_up(
        self,
        feature_means: Sequence[float] | np.ndarray | None,
        steering: Steering | None,
        time_signatures: Mapping[int, tuple[int, int]] | None,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        means = np.full(len(FEATURE_ORDER), 0.5) if feature_means is None else np.asarray(feature_means)
        if means.shape != (len(FEATURE_ORDER),):
            raise PlanError(f"feature_means must have {len(FEATURE_ORDER)} entries")
        self.feature_means = means.astype(np.float32)
        self.time_signatures = dict(DEFAULT_TIME_SIGNATURES if time_signatures is None else time_signatures)
        self.metadata = dict(metadata or {})
        self.set_steering(Steering() if steering is None else steering)

    # -- configuration -------------------------------------------------------------------------
    def set_steering(self, steering: Steering) -> None:
        """Replace the explicit conditioning (``Steering.off()`` samples the learned models alone)."""
        self.steering = steering
        self._bias = SteeringBias(steering, self.feature_means)

    def time_signature_for(self, features: EmotionFeatures) -> tuple[int, int]:
        """The time signature a plan for ``features`` uses (numerator = beats per bar)."""
        beats = int(features.time_signature)
        numerator, denominator = self.time_signatures.get(beats, (beats, 4))
        return int(numerator), int(denominator)

    # -- planning ------------------------------------------------------------------------------
    def plan(
        self,
        features: EmotionFeatures,
        bars: int = 12,
        seed: int | None = None,
        temperature: float = 1.0,
        first_bar: int = 1,
        arrangement: Arrangement | None = None,
        ensemble_seed: int | None = None,
    ) -> Description:
        """One description of ``bars`` bars (``Bar_{first_bar}`` on) for ``features``.

        The same features, bars, seed, temperature and arrangement give the same description.
        ``temperature`` 0 picks the most likely token at every step (then the seed does not
        matter). ``arrangement`` (default ``Arrangement()``) decides the instruments — every bar
        keeps to its palette, muted instruments never play — and, through ``key_lock``, how
        strongly the section opens on the tonic and cadences into it. A preset or list whose
        instruments are all muted raises :class:`~e2m_live.arrangement.ArrangementError`.
        ``ensemble_seed`` (default: drawn from ``seed``) seeds the ``auto`` ensemble draw alone:
        the live engine keeps it fixed, so the band stays the same from section to section and a
        fader crosses a role's threshold once (drums come in as danceability rises, and stay).
        """
        return self.plan_many(
            [features],
            bars=bars,
            seed=seed,
            temperature=temperature,
            first_bar=first_bar,
            arrangement=arrangement,
            ensemble_seed=ensemble_seed,
        )[0]

    def plan_many(
        self,
        features: Sequence[EmotionFeatures],
        bars: int = 12,
        seed: int | None = None,
        temperature: float = 1.0,
        first_bar: int = 1,
        arrangement: Arrangement | None = None,
        ensemble_seed: int | None = None,
    ) -> list[Description]:
        """One description per entry of ``features``, sampled together (fast for many plans), all
        under the same ``arrangement``."""
        plans = self.sample_bars(
            features,
            bars=bars,
            seed=seed,
            temperature=temperature,
            first_bar=first_bar,
            arrangement=arrangement,
            ensemble_seed=ensemble_seed,
        )
        return [
            assemble(bar_plans, self.time_signature_for(f), first_bar)
            for f, bar_plans in zip(features, plans, strict=True)
        ]

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
        """The per-bar choices behind :meth:`plan_many` (no description assembled)."""
        raise NotImplementedError

    def _start_sampling(
        self,
        features: Sequence[EmotionFeatures],
        bars: int,
        seed: int | None,
        temperature: float,
        first_bar: int,
        arrangement: Arrangement | None,
        ensemble_seed: int | None,
    ) -> tuple[list[EmotionFeatures], Arrangement, np.ndarray, np.random.Generator, np.random.Generator]:
        """``sample_bars``' checked arguments: the features as a list, the arrangement (default
        ``Arrangement()``), the feature vectors, the generator and the ensemble draw's generator."""
        features = list(features)
        check_plan_arguments(features, bars, seed, temperature, first_bar)
        if ensemble_seed is not None:
            check_plan_arguments(features, bars, ensemble_seed, temperature, first_bar)
        if arrangement is None:
            arrangement = Arrangement()
        elif not isinstance(arrangement, Arrangement):
            raise PlanError(f"arrangement must be an Arrangement, got {type(arrangement).__name__}")
        vectors = np.stack([f.to_vector() for f in features])
        rng = np.random.default_rng(seed)
        ensemble_rng = rng if ensemble_seed is None else np.random.default_rng(ensemble_seed)
        return features, arrangement, vectors, rng, ensemble_rng

    def ensembles(
        self,
        features: Sequence[EmotionFeatures],
        arrangement: Arrangement,
        rng: np.random.Generator,
        greedy: bool = False,
    ) -> list[Ensemble] | None:
        """Each plan's instruments and core (see :func:`choose_ensembles`)."""
        return choose_ensembles(features, arrangement, self.steering, rng, greedy)

    def _instrument_masks(
        self,
        features: list[EmotionFeatures],
        bars: int,
        arrangement: Arrangement,
        ensemble_rng: np.random.Generator,
        rng: np.random.Generator,
        greedy: bool,
    ) -> InstrumentMasks | None:
        ensembles = self.ensembles(features, arrangement, ensemble_rng, greedy)
        return instrument_masks(ensembles, arrangement, bars, rng, greedy)


class Planner(PlannerBase):
    """Plans descriptions from :class:`EmotionFeatures` with the five class LSTMs."""

    def __init__(
        self,
        ordered: Mapping[str, OrderedClassLSTM],
        stream: StreamLSTM,
        *,
        feature_means: Sequence[float] | np.ndarray | None = None,
        steering: Steering | None = None,
        time_signatures: Mapping[int, tuple[int, int]] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        missing = [name for name in ORDERED_CLASSES if name not in ordered]
        if missing:
            raise PlanError(f"missing ordered-class model(s): {', '.join(missing)}")
        self.ordered_models = {name: ordered[name].eval() for name in ORDERED_CLASSES}
        for position, name in enumerate(ORDERED_CLASSES):
            for other in self.ordered_models[name].config.context:
                if other not in ORDERED_CLASSES[:position]:
                    raise PlanError(f"{name} model's context {other!r} is not sampled before it")
        self.stream_model = stream.eval()
        self._ordered = {name: LSTMStepper(model) for name, model in self.ordered_models.items()}
        self._stream = LSTMStepper(self.stream_model)
        self._set_up(feature_means, steering, time_signatures, metadata)
        for beats, signature in self.time_signatures.items():
            if tuple(signature) not in TIME_SIGNATURES:
                raise PlanError(f"time signature {signature} for {beats} beats has no FIGARO token")

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
        """The per-bar choices behind :meth:`plan_many` (no description assembled)."""
        features, arrangement, vectors, rng, ensemble_rng = self._start_sampling(
            features, bars, seed, temperature, first_bar, arrangement, ensemble_seed
        )
        greedy = temperature == 0
        masks = self._instrument_masks(features, bars, arrangement, ensemble_rng, rng, greedy=greedy)
        with single_threaded_blas():
            return sample_plans(
                self._ordered,
                self._stream,
                vectors,
                [int(f.key) for f in features],
                bars,
                rng,
                float(temperature),
                self._bias,
                masks,
                arrangement.key_lock,
            )

    # -- persistence ---------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path | None = None, *, steering: Steering | None = None) -> Planner:
        """Load the five models and ``config.json`` from ``directory`` (default: ``models/planner/``).

        ``steering`` overrides the strengths stored in the config.
        """
        root = Path(DEFAULT_MODEL_DIR if directory is None else directory)
        config_path = root / CONFIG_NAME
        if not config_path.is_file():
            raise PlanError(f"{config_path} not found: train with `python -m training.planner.train`")
        try:
            config = json.loads(config_path.read_text())
        except ValueError as error:
            raise PlanError(f"{config_path}: invalid JSON ({error})") from None
        if config.get("format") != CONFIG_FORMAT:
            raise PlanError(f"{config_path}: format {config.get('format')!r}, expected {CONFIG_FORMAT}")
        if list(config.get("feature_order", [])) != list(FEATURE_ORDER):
            raise PlanError(f"{config_path}: trained on another feature order {config.get('feature_order')}")
        models: dict[str, Any] = {}
        for name in (*ORDERED_CLASSES, STREAM_NAME):
            path = root / f"{name}.safetensors"
            if not path.is_file():
                raise PlanError(f"{path} not found")
            try:
                models[name] = load_model(path)
            except (ValueError, RuntimeError, OSError) as error:
                raise PlanError(f"{path}: {error}") from None
        ordered = {name: models[name] for name in ORDERED_CLASSES}
        if not all(isinstance(m, OrderedClassLSTM) for m in ordered.values()) or not isinstance(
            models[STREAM_NAME], StreamLSTM
        ):
            raise PlanError(f"{root}: model files do not hold the expected model kinds")
        return cls(
            ordered,
            models[STREAM_NAME],
            feature_means=config.get("feature_means"),
            steering=steering if steering is not None else Steering.from_dict(config.get("steering", {})),
            time_signatures={int(k): tuple(v) for k, v in config.get("time_signatures", {}).items()} or None,
            metadata=config.get("training", {}),
        )

    def save(self, directory: str | Path, training: Mapping[str, Any] | None = None) -> None:
        """Write the five models and ``config.json`` to ``directory``."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        for name, model in self.ordered_models.items():
            save_model(model, root / f"{name}.safetensors")
        save_model(self.stream_model, root / f"{STREAM_NAME}.safetensors")
        config = {
            "format": CONFIG_FORMAT,
            "feature_order": list(FEATURE_ORDER),
            "feature_means": [round(float(x), 6) for x in self.feature_means],
            "steering": self.steering.to_dict(),
            "time_signatures": {str(k): list(v) for k, v in sorted(self.time_signatures.items())},
            "training": dict(training if training is not None else self.metadata),
        }
        (root / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


def check_plan_arguments(
    features: list[EmotionFeatures], bars: Any, seed: Any, temperature: Any, first_bar: Any
) -> None:
    """Raise :class:`PlanError` for arguments no planner takes (no features, a bad bar count, seed,
    temperature or first bar)."""
    if not features:
        raise PlanError("no features to plan for")
    for f in features:
        if not isinstance(f, EmotionFeatures):
            raise PlanError(f"features must be EmotionFeatures, got {type(f).__name__}")
    if isinstance(first_bar, bool) or not isinstance(first_bar, int) or not 1 <= first_bar <= MAX_BAR_INDEX:
        raise PlanError(f"first_bar must be an integer in 1..{MAX_BAR_INDEX}, got {first_bar!r}")
    max_bars = MAX_BAR_INDEX - first_bar + 1
    if isinstance(bars, bool) or not isinstance(bars, int) or not 1 <= bars <= max_bars:
        raise PlanError(f"bars must be an integer in 1..{max_bars}, got {bars!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise PlanError(f"seed must be a non-negative integer or None, got {seed!r}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not np.isfinite(temperature)
        or not 0 <= temperature <= 10
    ):
        raise PlanError(f"temperature must be a number in 0..10, got {temperature!r}")


def choose_ensembles(
    features: Sequence[EmotionFeatures],
    arrangement: Arrangement,
    steering: Steering,
    rng: np.random.Generator,
    greedy: bool = False,
) -> list[Ensemble] | None:
    """Each plan's instruments and core: the arrangement's palette, or in ``auto`` the
    features' draw (:func:`~e2m_live.planner.ensemble.choose_ensemble`); ``None`` in ``auto``
    when ``steering.auto_ensemble`` is off (the stream chooses). Shared by every planner."""
    palette = arrangement.palette()
    if palette is not None:
        ensemble = Ensemble(palette, core_of(palette))
        return [ensemble] * len(features)
    if not steering.auto_ensemble:
        return None
    draws = rng.random((len(features), DRAWS_PER_PLAN))
    try:
        return [
            choose_ensemble(f, u, arrangement.excluded(), greedy)
            for f, u in zip(features, draws, strict=True)
        ]
    except ValueError as error:
        raise PlanError(str(error)) from None


def instrument_masks(
    ensembles: list[Ensemble] | None,
    arrangement: Arrangement,
    bars: int,
    rng: np.random.Generator,
    greedy: bool,
) -> InstrumentMasks | None:
    """The per-bar instrument masks of ``ensembles`` (their schedules), or of the arrangement's mutes
    when the stream chooses; ``None`` when nothing is restricted. Shared by every planner."""
    if ensembles is None:
        excluded = arrangement.excluded()
        if not excluded:
            return None
        if len(excluded) >= len(INSTRUMENT_NAMES):
            raise PlanError("every instrument is muted")
        return InstrumentMasks.excluding(excluded)
    schedules = [
        schedule(e, bars, None if greedy else rng.random((len(e.instruments), 3))) for e in ensembles
    ]
    return InstrumentMasks.from_schedules(schedules)
