"""The generation worker's native heap: keep glibc from holding on to what decoding frees (issue 20)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

#: glibc's ``mallopt`` parameter numbers (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks from this size up are mmap()ed and go back to the system when freed. Fixed (which turns
#: glibc's sliding threshold off) but above every per-step temporary of the decoder: at 128 KiB the
#: attention's 200-300 KB intermediates were each an mmap, page faults and an munmap, and decoding
#: ran at 140 instead of 200 tokens a second (session 8, docs/live.md).
MMAP_THRESHOLD = 4 * 1024 * 1024
#: Free memory at the top of the heap is given back from this size up (fixing the mmap threshold
#: fixes this one too, at glibc's 128 KiB default unless set): high, so that a decoding step's
#: frees do not shrink the heap that the next step grows again; the model generator gives it back
#: with :func:`trim_native_heap` after every bar (0.2 ms; after every section only, the worker's RSS
#: swung by 50 MB in a soak).
TRIM_THRESHOLD = 64 * 1024 * 1024


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only (musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def bound_native_heap() -> bool:
    """Keep glibc from holding on to the memory a long decoding session frees (Linux, glibc).

    Measured (issue 20): the worker's RSS grew by about 1 MB per abandoned section, with no growth in
    Python objects (``tracemalloc``: +0.5 MB over 34 sections). glibc raises its mmap threshold to the
    largest block freed so far (up to 32 MB; loading the weights frees large ones), so the decoder's
    per-window buffers (KV cache, cross-attention keys and values: 0.25-2 MB each) then come from the
    heap, which fragments as they are freed and reallocated. Trimming after every section
    (:func:`trim_native_heap`) returns what they leave free (alone it keeps the worker flat:
    ``tests/test_worker_memory.py``, ``--trim-only``); a fixed threshold (:data:`MMAP_THRESHOLD`, which
    turns the sliding one off) keeps the large blocks out of the heap. Returns False where this is
    not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    ok: bool = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    trim: bool = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return trim and ok


def trim_native_heap() -> None:
    """Return free heap pages to the system (glibc ``malloc_trim``; a no-op elsewhere)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
