"""Best-effort real-time scheduling for the daemon's threads (Linux).

The player thread gets SCHED_FIFO above the daemon's other threads, and those (OSC, engine,
feedback) get SCHED_FIFO too, below it: a Python thread that holds the GIL must not be preempted
by ordinary processes while the player waits for that GIL (priority inversion). Children get
SCHED_RESET_ON_FORK, so the generation worker runs as an ordinary, niced process.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

PLAYER_PRIORITY = 20
DAEMON_PRIORITY = 10


def make_realtime(native_id: int, priority: int) -> bool:
    """SCHED_FIFO at ``priority`` for the thread ``native_id``; False if not permitted here."""
    policy = getattr(os, "SCHED_FIFO", None)
    if policy is None:
        return False
    policy |= getattr(os, "SCHED_RESET_ON_FORK", 0)
    try:
        os.sched_setscheduler(native_id, policy, os.sched_param(priority))
    except (OSError, AttributeError):
        return False
    return True
