"""Best-effort real-time scheduling for the daemon's threads (Linux).

The player thread gets SCHED_FIFO above the daemon's other threads, and those (OSC, engine,
feedback) get SCHED_FIFO too, below it: a Python thread that holds the GIL must not be preempted
by ordinary processes while the player waits for that GIL (priority inversion), but below JACK's
own threads. The JACK output's process callback runs just under the player (``raise_realtime``
from inside JACK's thread). Children get SCHED_RESET_ON_FORK, so the generation worker runs as an
ordinary, niced process.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

PLAYER_PRIORITY = 20
#: The JACK output's process callback (JACK's thread, see ``jack_midi.py``): above the daemon's
#: threads and a default jackd2 server (its driver thread runs at 10, its clients at 5), since a
#: callback that starts late stalls the whole graph. Only ever raised, never lowered.
JACK_CALLBACK_PRIORITY = PLAYER_PRIORITY - 1
#: The daemon's other threads: above ordinary processes (a thread preempted while it holds the GIL
#: stalls the player) but below JACK's own threads (server 10, clients 5 on a default jackd2),
#: so a busy engine or OSC thread never delays the audio graph. Was 10 until session 13: equal to
#: the dummy server's driver thread, and above the JACK client thread that writes our MIDI.
DAEMON_PRIORITY = 4


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


def raise_realtime(priority: int) -> int:
    """Raise the calling thread to SCHED_FIFO ``priority`` unless it already runs at least that
    high (a real-time JACK setup may give its clients more); the priority it runs at after."""
    try:
        current = os.sched_getparam(0).sched_priority
    except (OSError, AttributeError):
        return 0
    if current >= priority:
        return current
    if make_realtime(threading.get_native_id(), priority):
        return priority
    return current
