"""Emotion features -> a valid FIGARO description, with five class LSTMs and a grammar walk.

``Planner.load()`` reads ``models/planner/``; ``Planner.plan(features, bars=12, seed=None,
temperature=1.0)`` returns a :class:`~e2m_live.description.grammar.Description`.
"""

from e2m_live.planner.planner import DEFAULT_MODEL_DIR, PlanError, Planner
from e2m_live.planner.steering import Steering

__all__ = ["DEFAULT_MODEL_DIR", "PlanError", "Planner", "Steering"]
