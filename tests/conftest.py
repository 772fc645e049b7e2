"""Shared fixtures: where the shared datasets and reference outputs live; one summary line for the
tests that skip because they are missing."""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("E2M_SHARED", REPO.parent / "shared"))
DATASETS = SHARED / "datasets"
REFERENCE = SHARED / "reference"

#: Every skip for missing shared data starts with this; the summary hook folds them into one line.
SHARED_MISSING = "shared data missing:"


def shared_missing_reason(path: Path) -> str:
    """The skip reason for a test that needs ``path`` under the shared data folder."""
    return f"{SHARED_MISSING} {path}"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(shared_missing_reason(DATASETS))
    return DATASETS


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(shared_missing_reason(REFERENCE))
    return REFERENCE


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return ""


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> Generator[None, None, None]:
    """Wraps the terminal reporter's own summary (``-ra`` would print a SKIPPED line per test file):
    the skips for missing shared data are left out of it and reported in one line after it, and
    put back before the final counts, which still include them. Other skips show as usual."""
    skipped = terminalreporter.stats.get("skipped", [])
    shared = [r for r in skipped if _skip_reason(r).startswith(SHARED_MISSING)]
    if shared:
        terminalreporter.stats["skipped"] = [r for r in skipped if r not in shared]
    result = yield
    if not shared:
        return result
    terminalreporter.stats.setdefault("skipped", []).extend(shared)
    missing = sorted({_skip_reason(r).removeprefix(SHARED_MISSING).strip() for r in shared})
    tests = "1 test" if len(shared) == 1 else f"{len(shared)} tests"
    terminalreporter.write_line(
        f"{tests} skipped: shared data missing ({', '.join(missing)}); get them by setting E2M_SHARED "
        f"to a copy of the shared folder (datasets/, reference/) or checking it out as ../shared "
        f"beside the repository",
        yellow=True,
    )
    return result
