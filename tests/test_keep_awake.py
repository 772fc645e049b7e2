"""--keep-awake: one SCHED_IDLE spinner per CPU, gone on close and when the daemon dies (SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2m_live.live.config import build_config
from e2m_live.live.diagnostics import timing_checks
from e2m_live.live.keep_awake import KeepAwake, measure_wake_lateness

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # exited, not yet reaped by its (dead) parent's reaper
            return True
        time.sleep(0.05)
    return False


def test_one_idle_class_spinner_per_cpu_until_closed() -> None:
    awake = KeepAwake()
    assert awake.start()
    try:
        cpus = sorted(os.sched_getaffinity(0))
        assert len(awake.spinners) == len(cpus)
        pinned = []
        for spinner in awake.spinners:
            assert spinner.poll() is None, "a spinner exited on its own"
            assert os.sched_getscheduler(spinner.pid) == os.SCHED_IDLE
            pinned += sorted(os.sched_getaffinity(spinner.pid))
        assert sorted(pinned) == cpus
    finally:
        pids = [s.pid for s in awake.spinners]
        awake.close()
    assert awake.spinners == []
    assert all(_gone(pid, 1.0) for pid in pids)


def test_spinners_exit_when_their_daemon_is_killed() -> None:
    script = (
        "import sys, time\n"
        "from e2m_live.live.keep_awake import KeepAwake\n"
        "awake = KeepAwake(); assert awake.start()\n"
        "print(' '.join(str(s.pid) for s in awake.spinners), flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pids = [int(p) for p in owner.stdout.readline().split()]
    assert pids
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    assert all(_gone(pid, 10.0) for pid in pids), "a spinner outlived its killed daemon"


def test_the_flag_is_off_by_default_and_on_by_request() -> None:
    assert build_config({}, {}).keep_awake is False
    assert build_config({"keep_awake": True}, {}).keep_awake is True


def test_the_wake_probe_measures_every_sleep() -> None:
    wake = measure_wake_lateness(samples=40, nap=0.001)
    assert wake.samples == 40
    assert 0.0 <= wake.p99_ms <= wake.max_ms
    assert wake.realtime == _fifo_permitted()  # the probe sleeps as the player does
    assert 0 <= wake.over_budget <= 40
    assert wake.share_over_budget == wake.over_budget / 40


def _fifo_permitted() -> bool:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except PermissionError:
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True


def test_doctor_reports_timer_wake_ups_and_suggests_keep_awake_when_late() -> None:
    checks = {c.name: c for c in timing_checks()}
    wake = checks["timer wake-ups"]
    assert "ms late" in wake.detail
    assert wake.ok or "--keep-awake" in wake.fix
    assert "real-time scheduling" in checks
