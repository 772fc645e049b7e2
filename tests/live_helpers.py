"""What only the live tests use: the JACK server fixture and OSC clients. The JACK server, recorder
and clock master, the daemon subprocess and the clock figures are in :mod:`e2m_live.testing` (the
benchmarks use them too)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2m_live.live.osc import encode_message
from e2m_live.testing.jack import jack_available, jack_server

REPO = Path(__file__).resolve().parents[1]
#: ``e2m-live`` as a subprocess of this interpreter (no console script needed).
CLI = (sys.executable, "-c", "import sys; from e2m_live.cli import main; sys.exit(main())")


@pytest.fixture(scope="module")
def jack() -> Iterator[str]:
    if not jack_available():
        pytest.skip("jackd or python-rtmidi JACK support missing")
    with jack_server() as name:
        yield name


def collect_osc(sock: socket.socket, wait: float) -> list[tuple[str, list]]:
    """Every OSC message that arrives on ``sock`` within ``wait`` seconds (sock needs a timeout)."""
    from pythonosc.osc_message import OscMessage

    replies = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            message = OscMessage(sock.recv(65536))
        except TimeoutError:
            continue
        replies.append((message.address, list(message.params)))
    return replies


def osc_request(port: int, address: str, *args, wait: float = 1.0) -> list[tuple[str, list]]:
    """Send one message over UDP and collect the replies that arrive within ``wait`` seconds."""
    from pythonosc.osc_message import OscMessage

    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(encode_message(address, list(args)), ("127.0.0.1", port))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if replies:
                    break
                continue
            message = OscMessage(data)
            replies.append((message.address, list(message.params)))
    return replies


def jack_connect(source: str, destination: str) -> None:
    """Connect two JACK ports by full name (on the server in JACK_DEFAULT_SERVER)."""
    subprocess.run(["jack_connect", source, destination], check=True, capture_output=True, timeout=10)


def jack_port_names() -> list[str]:
    result = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10)
    return result.stdout.split("\n")


def read_until_ready(proc: subprocess.Popen) -> tuple[list[str], int]:
    """The lines `e2m-live serve` printed up to ``ready``, and its OSC UDP port."""
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.strip().startswith("ready"):
            break
    found = re.search(r"OSC udp 127\.0\.0\.1:(\d+)", "".join(lines))
    assert found, "".join(lines)
    return lines, int(found.group(1))


def bars_started(port: int) -> int:
    """The daemon's bar count (``/e2m/state/bar``), asked over OSC."""
    replies = dict(osc_request(port, "/e2m/status", wait=0.5))
    return int(replies.get("/e2m/state/bar", [0])[0])


def described_bars(path: Path) -> int:
    """How many bars ``e2m-live describe --json`` reads in ``path`` (asserting that it succeeds)."""
    done = subprocess.run(
        [*CLI, "describe", str(path), "--json"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return len(json.loads(done.stdout)["bars"])
