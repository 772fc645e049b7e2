"""The generation worker's memory allocator: jemalloc where it is installed (issue 20).

glibc's heap fragments under the worker's pattern (a decoding step's tensors grow by a token at a
time, sections are abandoned at any token, caches live between them): over a two-hour soak its main
heap kept growing by ~0.5 MB a minute although the memory in use stayed flat (``mallinfo2``: 120 MB
in use, free chunks 1,900 -> 6,900 and the heap 260 -> 406 MB over 425 sections; ``malloc_trim``
gives back the free pages but not the ones the scattered chunks sit on). jemalloc's size classes do
not fragment that way: the worker's RSS stays flat, and it decodes faster. PyTorch's CPU tuning
guide recommends the same (``LD_PRELOAD`` of jemalloc or TCMalloc). Measured in docs/live.md,
"Session 14".

The worker is a spawned process, so the allocator is chosen by ``LD_PRELOAD`` in the environment it
starts with (:func:`preloaded`); the daemon itself keeps glibc.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

#: ``auto``: jemalloc when installed (Debian/Ubuntu: ``apt install libjemalloc2``), else the C
#: library's; ``glibc``: the C library's; anything else: the path of an allocator library.
AUTO, SYSTEM = "auto", "glibc"
JEMALLOC_NAMES = ("libjemalloc.so.2", "libjemalloc.so")
LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)


class AllocatorError(ValueError):
    """A worker allocator that cannot be used (a path that is not a file)."""


def find_jemalloc() -> str | None:
    """The path of an installed jemalloc (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    for directory in LIBRARY_DIRS:
        for name in JEMALLOC_NAMES:
            path = Path(directory) / name
            if path.is_file():
                return str(path)
    return None


def worker_library(choice: str) -> str | None:
    """The library to preload into the worker for ``choice`` (auto, glibc or a path); None: none."""
    if choice == SYSTEM:
        return None
    if choice == AUTO:
        return find_jemalloc()
    if not Path(choice).is_file():
        raise AllocatorError(f"worker allocator {choice!r}: no such library (use auto, glibc or a path)")
    return choice


@contextlib.contextmanager
def preloaded(library: str | None) -> Iterator[None]:
    """Processes started within get ``library`` in ``LD_PRELOAD`` (before any already there)."""
    if library is None:
        yield
        return
    before = os.environ.get("LD_PRELOAD")
    os.environ["LD_PRELOAD"] = f"{library}:{before}" if before else library
    try:
        yield
    finally:
        if before is None:
            del os.environ["LD_PRELOAD"]
        else:
            os.environ["LD_PRELOAD"] = before


def allocator_of(pid: int) -> str:
    """``jemalloc`` when process ``pid`` has it mapped, else ``system`` (``unknown`` off Linux)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    return "jemalloc" if "libjemalloc" in maps else "system"
