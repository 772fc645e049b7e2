"""Planners by name: ``load_planner("class-lstm" | "transformer" | "single-lstm", directory)``.

All three return a description for features through the same methods (``plan``, ``plan_many``,
``sample_bars``, ``steering``/``set_steering``), so the pipeline, the CLI and the live engine can
take any of them. ``class-lstm`` is the shipped default (:class:`~e2m_live.planner.Planner`, five
class LSTMs); the other two write the whole description with one model
(:mod:`e2m_live.planner.sequence`, :mod:`e2m_live.planner.transformer_planner`);
``docs/planner_comparison.md`` compares them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2m_live.planner.planner import PlanError, Planner
from e2m_live.planner.steering import Steering

DEFAULT_PLANNER = "class-lstm"
PLANNER_NAMES: tuple[str, ...] = ("class-lstm", "transformer", "single-lstm")


def planner_class(name: str) -> Any:
    """The class behind a planner name (raises :class:`PlanError` for an unknown name)."""
    if name == "class-lstm":
        return Planner
    if name == "transformer":
        from e2m_live.planner.transformer_planner import TransformerPlanner

        return TransformerPlanner
    if name == "single-lstm":
        from e2m_live.planner.sequence import SingleLSTMPlanner

        return SingleLSTMPlanner
    raise PlanError(f"unknown planner {name!r}; planners are {', '.join(PLANNER_NAMES)}")


def default_directory(name: str) -> Path:
    """Where a planner's models live by default (``models/planner``, ``models/planner-transformer``,
    ``models/planner-single-lstm``; environment overrides as each class documents)."""
    cls = planner_class(name)
    if cls is Planner:
        from e2m_live.planner.planner import DEFAULT_MODEL_DIR

        return Path(DEFAULT_MODEL_DIR)
    return Path(cls.default_dir)


def load_planner(
    name: str = DEFAULT_PLANNER, directory: str | Path | None = None, *, steering: Steering | None = None
) -> Any:
    """Load the planner ``name`` from ``directory`` (default: its folder under ``models/``).

    Raises :class:`PlanError` for an unknown name or unusable model files.
    """
    return planner_class(name).load(directory, steering=steering)
