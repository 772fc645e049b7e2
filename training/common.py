"""Helpers shared by more than one of ``training``'s subpackages (data, figaro, planner, evaluation).

Only what two concerns both need lives here; a helper used inside one subpackage stays there.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

#: The repository root (``training/`` sits in it).
REPO = Path(__file__).resolve().parents[1]
#: Drums beside the 128 programs: the 129th instrument slot (FIGARO's instrument vector, the
#: pathology counters).
DRUM_SLOT = 128


def default_datasets_root() -> Path:
    """``$E2M_SHARED/datasets``, else ``../shared/datasets`` beside the repository."""
    shared = Path(os.environ.get("E2M_SHARED", REPO.parent / "shared"))
    return shared / "datasets"


def set_scores(reference: np.ndarray, sample: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of the flags ``sample`` against ``reference``."""
    n_ref, n_sample = int(reference.sum()), int(sample.sum())
    if n_ref == 0 and n_sample == 0:
        return 1.0, 1.0, 1.0
    tp = int((reference & sample).sum())
    precision = tp / n_sample if n_sample else math.nan
    recall = tp / n_ref if n_ref else math.nan
    if tp == 0:
        return precision, recall, 0.0
    return precision, recall, 2 * precision * recall / (precision + recall)
