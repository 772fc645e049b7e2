"""``e2m-live serve`` as a subprocess for tests and benchmarks: started on free ports with a JACK
virtual output, its OSC ports parsed from its startup output; and :func:`wait_until` to poll for it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2m_live.live.osc import encode_message

REPO = Path(__file__).resolve().parents[2]
#: `e2m-live` without relying on the console script (``-m e2m_live.cli`` would import cli twice).
CLI = (sys.executable, "-c", "import sys; from e2m_live.cli import main; sys.exit(main())")


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, step: float = 0.01) -> bool:
    """Poll ``predicate()`` until it is true (True) or ``timeout`` seconds pass (False): assert
    the result, a wait that times out must fail the test."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@dataclass
class DaemonProcess:
    """``e2m-live serve`` as a subprocess, with its OSC ports parsed from its startup output."""

    proc: subprocess.Popen[str]
    udp_port: int
    tcp_port: int
    midi_name: str
    startup: list[str] = field(default_factory=list)
    started_in: float = 0.0

    def send(self, address: str, *args: Any) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(encode_message(address, list(args)), ("127.0.0.1", self.udp_port))

    def send_raw(self, sock: socket.socket, data: bytes) -> None:
        sock.sendto(data, ("127.0.0.1", self.udp_port))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not exit after the signal") from None


def start_daemon(*extra: str, midi_name: str | None = None, timeout: float = 15.0) -> DaemonProcess:
    """Start ``e2m-live serve`` on free ports with a JACK virtual output; wait until ready."""
    midi_name = midi_name or f"e2m-live-test-{os.getpid()}-{time.monotonic_ns() % 100000}"
    command = [
        *CLI,
        "serve",
        "--generator",
        "rules",
        "--midi-api",
        "jack",
        "--midi-name",
        midi_name,
        "--udp-port",
        "0",
        "--tcp-port",
        "0",
        *extra,
    ]
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    udp = tcp = None
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if match := re.search(r"OSC udp [\d.]+:(\d+)", line):
            udp = int(match.group(1))
        if match := re.search(r"OSC tcp [\d.]+:(\d+)", line):
            tcp = int(match.group(1))
        if line.strip().startswith("ready"):
            break
    else:
        proc.kill()
        raise AssertionError("daemon not ready in time:\n" + "\n".join(lines))
    if udp is None or tcp is None:
        proc.kill()
        raise AssertionError("daemon did not report its ports:\n" + "\n".join(lines))
    # Keep draining its output so it never blocks on a full pipe.
    threading.Thread(target=_drain, args=(proc, lines), daemon=True).start()
    return DaemonProcess(proc, udp, tcp, midi_name, lines, time.monotonic() - started)


def _drain(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
