"""Shared fixtures: where the shared datasets and reference outputs live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("E2M_SHARED", REPO.parent / "shared"))
DATASETS = SHARED / "datasets"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS}")
    return DATASETS


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"shared reference outputs not found at {REFERENCE}")
    return REFERENCE
