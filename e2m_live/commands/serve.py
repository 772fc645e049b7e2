"""`e2m-live serve`: the resident live daemon (OSC in; MIDI port, FluidSynth, .mid recorder out)."""

from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
import threading
from types import FrameType

from e2m_live.commands.errors import UsageError

#: The longest a stop may take (notes released, worker and ports closed, the recording rewritten by
#: instrument: a second or two, a few more for hours of recording). Past it every thread's stack is
#: printed and the process exits with status 1: a stop stuck in a native call (a MIDI port whose
#: JACK server died) no longer leaves a daemon that ignores SIGTERM. The recording stays readable
#: (the rewrite replaces the streamed file only when done). faulthandler's watchdog is a C thread:
#: it needs no GIL.
SHUTDOWN_LIMIT_SECONDS = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from e2m_live.live.config import add_config_arguments

    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from e2m_live.generators.base import GeneratorUnavailable
    from e2m_live.live.config import ConfigError, config_from_args
    from e2m_live.live.daemon import Daemon
    from e2m_live.live.realtime import DAEMON_PRIORITY, make_realtime

    try:  # settings first: a bad one is a one-line error before anything starts
        config = config_from_args(args)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    # Small switch interval: a Python thread holding the GIL delays the player by at most this.
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` dumps every thread
    sys.setswitchinterval(0.0005)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    daemon = Daemon(config)
    try:
        daemon.start()
    except (GeneratorUnavailable, OSError) as error:
        daemon.shutdown()
        raise UsageError(f"cannot start: {error}") from None
    if config.realtime:
        # The main thread only waits, but it still takes the GIL when it wakes: it must not be
        # preempted while holding it (see e2m_live/live/realtime.py).
        make_realtime(threading.get_native_id(), DAEMON_PRIORITY)
    try:
        daemon.wait(stop)
    finally:
        faulthandler.dump_traceback_later(SHUTDOWN_LIMIT_SECONDS, exit=True)
        daemon.shutdown()
        faulthandler.cancel_dump_traceback_later()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("e2m-live serve: stopped, all notes released", flush=True)
    return 0
