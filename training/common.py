"""Helpers shared by more than one of ``training``'s subpackages (data, figaro, planner, evaluation).

Only what two concerns both need lives here; a helper used inside one subpackage stays there.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (``training/`` sits in it).
REPO = Path(__file__).resolve().parents[1]


def default_datasets_root() -> Path:
    """``$E2M_SHARED/datasets``, else ``../shared/datasets`` beside the repository."""
    shared = Path(os.environ.get("E2M_SHARED", REPO.parent / "shared"))
    return shared / "datasets"
