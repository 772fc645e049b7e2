"""The generation worker's allocator (issue 20): jemalloc where installed, chosen by the daemon's setting."""

from __future__ import annotations

import os

import pytest

from e2m_live.live.allocator import AllocatorError, allocator_of, find_jemalloc, preloaded, worker_library
from e2m_live.live.config import ConfigError, build_config
from e2m_live.live.engine import Engine

JEMALLOC = find_jemalloc()


def test_choices_map_to_a_library_or_none(tmp_path):
    assert worker_library("glibc") is None
    assert worker_library("auto") == JEMALLOC
    library = tmp_path / "liballoc.so"
    library.write_bytes(b"")
    assert worker_library(str(library)) == str(library)
    with pytest.raises(AllocatorError, match="no such library"):
        worker_library(str(tmp_path / "missing.so"))


def test_a_missing_allocator_library_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such library"):
        build_config({"worker_allocator": str(tmp_path / "missing.so")})


def test_preloading_is_scoped_and_keeps_what_was_there(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/lib/other.so")
    with preloaded("/lib/alloc.so"):
        assert os.environ["LD_PRELOAD"] == "/lib/alloc.so:/lib/other.so"
    assert os.environ["LD_PRELOAD"] == "/lib/other.so"
    monkeypatch.delenv("LD_PRELOAD")
    with preloaded(None):
        assert "LD_PRELOAD" not in os.environ
    with preloaded("/lib/alloc.so"):
        assert os.environ["LD_PRELOAD"] == "/lib/alloc.so"
    assert "LD_PRELOAD" not in os.environ


@pytest.mark.parametrize("choice", ["auto", "glibc"])
def test_the_worker_runs_with_the_allocator_chosen_and_the_daemon_keeps_its_own(choice):
    if choice == "auto" and JEMALLOC is None:
        pytest.skip("jemalloc is not installed (apt install libjemalloc2; CI installs it)")
    engine = Engine("rules", allocator=choice, debounce=0.01, seed=1)
    try:
        engine.start(wait=60)
        assert engine.wait_first_bar(60)  # the worker makes music
        assert engine.worker_allocator == ("jemalloc" if choice == "auto" else "system")
    finally:
        engine.close()
    assert allocator_of(os.getpid()) == "system"  # only the worker's environment had it
    assert "LD_PRELOAD" not in os.environ or "jemalloc" not in os.environ["LD_PRELOAD"]
