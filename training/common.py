"""Helpers shared by more than one of ``training``'s subpackages (data, figaro, planner, evaluation).

Only what two concerns both need lives here; a helper used inside one subpackage stays there.
"""

from __future__ import annotations

from pathlib import Path

#: The repository root (``training/`` sits in it).
REPO = Path(__file__).resolve().parents[1]
