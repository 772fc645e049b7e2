"""Command-line flags for the ten emotion features, shared by ``e2m-live plan`` and ``generate``.

``add_feature_arguments(parser)`` adds ``--mood`` and one flag per feature of
:data:`e2m_live.features.FEATURES`, named after it (``--energy``, ``--time-signature``, ``--key F#``,
``--mode minor``, ...), with the spec's help.
``features_from_args(args)`` starts from the mood preset (or the defaults of
:class:`~e2m_live.features.EmotionFeatures`) and applies every flag given, so explicit flags
override the mood. Bad values raise :class:`~e2m_live.commands.errors.UsageError` (one line, exit code 2).

``add_arrangement_arguments(parser)`` adds ``--key-lock``, ``--ensemble``, ``--instruments`` and
``--mute`` (the :class:`~e2m_live.arrangement.Arrangement` beside the features);
``arrangement_from_args(args)`` checks them the same way.
"""

from __future__ import annotations

import argparse
from typing import Any

from e2m_live.arrangement import (
    DEFAULT_KEY_LOCK,
    ENSEMBLE_NAMES,
    Arrangement,
    ArrangementError,
    parse_instruments,
    split_names,
)
from e2m_live.commands.errors import UsageError
from e2m_live.features import FEATURES, MOODS, EmotionFeatures, FeatureError


def flag_name(feature: str) -> str:
    """``"time_signature"`` -> ``"--time-signature"``."""
    return "--" + feature.replace("_", "-")


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--mood`` and the ten feature flags to ``parser`` (values are checked later, by
    :func:`features_from_args`, so every error reads the same)."""
    group = parser.add_argument_group("emotion features (flags override --mood)")
    group.add_argument(
        "--mood", choices=sorted(MOODS), default=None, help="start from a mood preset (default: neutral)"
    )
    for name, spec in FEATURES.items():  # one flag per feature spec: its help, its kind of value
        metavar = name.upper() if spec.names else ("N" if spec.integer else "X")
        group.add_argument(flag_name(name), dest=name, default=None, metavar=metavar, help=spec.flag_help())


def _convert(name: str, text: Any) -> int | float:
    """A flag's text as the feature's value: a name (key, mode), a whole number or a number."""
    spec = FEATURES[name]
    if spec.parse_name is not None:
        return spec.parse_name(text)
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise FeatureError(f"{name} must be a number, got {text!r}") from None
    if spec.integer:
        if number != int(number):
            raise FeatureError(f"{name} must be a whole number, got {text!r}")
        return int(number)
    return number


def features_from_args(args: argparse.Namespace) -> EmotionFeatures:
    """The features the flags ask for: the mood preset (or defaults), then each given flag."""
    mood = getattr(args, "mood", None)
    if mood is not None and mood not in MOODS:
        raise UsageError(f"unknown mood {mood!r}; moods are {', '.join(sorted(MOODS))}")
    base = MOODS[mood] if mood is not None else EmotionFeatures()
    changes: dict[str, int | float] = {}
    try:
        for name in FEATURES:
            value = getattr(args, name, None)
            if value is not None:
                changes[name] = _convert(name, value)
        return base.replace(**changes) if changes else base
    except FeatureError as error:
        raise UsageError(str(error)) from None


def add_arrangement_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--key-lock``, ``--ensemble``, ``--instruments`` and ``--mute`` (checked later, by
    :func:`arrangement_from_args`)."""
    group = parser.add_argument_group("arrangement (beside the features)")
    group.add_argument(
        "--key-lock",
        dest="key_lock",
        default=None,
        metavar="X",
        help="how strictly pitched instruments keep to the scale, 0..1 "
        f"(1: scale tones only, 0: free; default {DEFAULT_KEY_LOCK})",
    )
    group.add_argument(
        "--ensemble",
        default=None,
        metavar="NAME",
        help=f"instruments: {', '.join(ENSEMBLE_NAMES)} (default auto: the features choose)",
    )
    group.add_argument(
        "--instruments",
        default=None,
        metavar="NAME[,NAME...]",
        help="play exactly these instruments: GM names, program numbers 0..127, drums "
        "(replaces the ensemble)",
    )
    group.add_argument(
        "--mute",
        dest="mute",
        action="append",
        default=None,
        metavar="NAME",
        help="leave this instrument out (repeatable)",
    )


def arrangement_from_args(args: argparse.Namespace) -> Arrangement:
    """The arrangement the flags ask for (defaults where none is given)."""
    arrangement = Arrangement()
    try:
        text = getattr(args, "key_lock", None)
        if text is not None:
            try:
                lock = float(text)
            except ValueError:
                raise UsageError(f"--key-lock must be a number in 0..1, got {text!r}") from None
            arrangement = arrangement.replace(key_lock=lock)
        ensemble = getattr(args, "ensemble", None)
        if ensemble is not None:
            arrangement = arrangement.replace(ensemble=ensemble.strip().lower())
        instruments = getattr(args, "instruments", None)
        if instruments is not None:
            names = split_names(instruments)
            if names:
                arrangement = arrangement.replace(instruments=parse_instruments(names))
        muted = getattr(args, "mute", None) or []
        if muted:
            arrangement = arrangement.replace(muted=frozenset(parse_instruments(muted)))
        arrangement.palette()  # every instrument muted: say so now
    except ArrangementError as error:
        raise UsageError(str(error)) from None
    return arrangement
