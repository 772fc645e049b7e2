"""Keep idle CPUs from halting, so a sleeping player wakes on time (``--keep-awake``, Linux).

In a virtual machine a halted vCPU is descheduled by the host, and the timer that ends the player's
sleep can wake it milliseconds late (measured here: 3.4 % of wake-ups more than 1 ms late, up to 12 ms,
with the machine idle; 0.5 % with both CPUs kept busy). Bare metal wakes in microseconds, and
SCHED_FIFO cannot help, because the thread is not runnable until the CPU is. This module runs one
spinning process per CPU at SCHED_IDLE, the lowest class there is: it gets a CPU only when nothing
else wants it, so it costs the daemon and the generation worker nothing, but the CPU never halts.
The price is power: every idle CPU shows as busy. So it is off by default (a laptop's fans).

Each spinner checks that its parent is alive and exits when the daemon dies, even by SIGKILL.
:func:`measure_wake_lateness` is ``e2m-live doctor``'s probe: how late timers wake a sleeping thread.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from e2m_live.live.clock import SPIN_SECONDS
from e2m_live.live.realtime import PLAYER_PRIORITY, make_realtime

log = logging.getLogger(__name__)

#: The spinner: a tight loop that looks up its parent every few milliseconds. The parent's pid comes
#: as an argument: a daemon killed before the spinner got going must not leave it spinning under init.
SPIN_SOURCE = (
    "import os, sys\n"
    "parent = int(sys.argv[1])\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(20000):\n"
    "        pass\n"
)


class KeepAwake:
    """One SCHED_IDLE spinner per CPU this process may run on; :meth:`close` stops them."""

    def __init__(self) -> None:
        self.spinners: list[subprocess.Popen] = []

    def start(self) -> bool:
        """Start the spinners; False (and nothing running) where SCHED_IDLE is not available."""
        idle = getattr(os, "SCHED_IDLE", None)
        if idle is None or not hasattr(os, "sched_getaffinity"):
            return False
        for cpu in sorted(os.sched_getaffinity(0)):
            spinner = subprocess.Popen(
                [sys.executable, "-S", "-c", SPIN_SOURCE, str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.spinners.append(spinner)
            try:
                os.sched_setscheduler(spinner.pid, idle, os.sched_param(0))
                os.sched_setaffinity(spinner.pid, {cpu})
            except OSError as error:
                log.warning("keep-awake: no idle-class spinner (%s); CPUs may halt", error)
                self.close()
                return False
        return True

    def close(self) -> None:
        """Stop every spinner and reap it."""
        for spinner in self.spinners:
            spinner.kill()
        for spinner in self.spinners:
            spinner.wait()
        self.spinners.clear()


@dataclass(frozen=True, slots=True)
class WakeLateness:
    """How late ``samples`` timed sleeps of ``nap`` seconds woke, in ms."""

    samples: int
    p99_ms: float
    max_ms: float
    #: Wake-ups later than the player's spin stretch plus 1 ms: a message more than 1 ms late.
    over_budget: int
    #: Whether the probe thread got SCHED_FIFO, as the player asks for.
    realtime: bool = False

    @property
    def share_over_budget(self) -> float:
        return self.over_budget / self.samples if self.samples else 0.0


def measure_wake_lateness(samples: int = 300, nap: float = 0.003) -> WakeLateness:
    """Sleep ``samples`` times for ``nap`` seconds (in a SCHED_FIFO thread where permitted, as the
    player does) and measure how late each wake-up was."""
    late: list[float] = []
    granted: list[bool] = []

    def sleeper() -> None:
        granted.append(make_realtime(threading.get_native_id(), PLAYER_PRIORITY))
        for _ in range(samples):
            deadline = time.monotonic() + nap
            time.sleep(nap)
            late.append(max(0.0, time.monotonic() - deadline) * 1000)

    thread = threading.Thread(target=sleeper, name="e2m-wake-probe", daemon=True)
    thread.start()
    thread.join()
    late.sort()
    budget_ms = (SPIN_SECONDS + 0.001) * 1000
    return WakeLateness(
        samples=len(late),
        p99_ms=late[min(len(late) - 1, int(len(late) * 0.99))] if late else 0.0,
        max_ms=late[-1] if late else 0.0,
        over_budget=sum(ms > budget_ms for ms in late),
        realtime=granted == [True],
    )
