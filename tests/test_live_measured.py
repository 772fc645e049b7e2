""" "What is playing": features re-estimated from the notes played, sent as feedback over real
loopback OSC by an in-process daemon (rule generator, 240 BPM: a bar a second)."""

from __future__ import annotations

import io
import socket
import time

import pytest

from e2m_live.features import FEATURE_ORDER
from e2m_live.live.config import build_config
from e2m_live.live.daemon import Daemon
from e2m_live.live.osc import encode_message
from e2m_live.live.outputs import CaptureOutput
from tests.live_helpers import collect_osc

BAR = 1.0


def _daemon(measure: bool) -> tuple[Daemon, socket.socket]:
    feedback = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    feedback.bind(("127.0.0.1", 0))
    feedback.settimeout(0.1)
    config = build_config(
        overrides={
            "udp_port": 0,
            "tcp_port": -1,
            "midi": False,
            "generator": "rules",
            "tempo": 240.0,
            "feedback": [f"127.0.0.1:{feedback.getsockname()[1]}"],
            "debounce_ms": 10.0,
            "realtime": False,
        }
    )
    d = Daemon(config, out=io.StringIO(), measure=measure)
    d.outputs.add(CaptureOutput())
    d.start()
    return d, feedback


@pytest.fixture(scope="module")
def measuring():
    d, feedback = _daemon(measure=True)
    yield d, feedback
    d.shutdown()
    feedback.close()


def _send(d: Daemon, address: str, *args) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(encode_message(address, list(args)), ("127.0.0.1", d.osc.udp_port))


def _measured(replies: list) -> list[list]:
    return [args for address, args in replies if address == "/e2m/state/measured"]


def test_measured_features_follow_the_energy_played(measuring):
    d, feedback = measuring
    _send(d, "/e2m/energy", 0.1)
    _send(d, "/e2m/play")
    low = _measured(collect_osc(feedback, 6 * BAR))
    _send(d, "/e2m/energy", 0.9)
    time.sleep(4 * BAR)  # the 4-bar window is all new material
    replies = collect_osc(feedback, 2 * BAR)
    high = _measured(replies)
    _send(d, "/e2m/stop")
    assert len(low) >= 4 and high, "a measurement every bar"
    assert all(len(values) == len(FEATURE_ORDER) for values in low + high)
    energy = FEATURE_ORDER.index("energy")
    assert high[-1][energy] > low[-1][energy] + 0.2, (low[-1], high[-1])
    singles = {address for address, _ in replies if address.startswith("/e2m/state/measured/")}
    assert singles == {f"/e2m/state/measured/{n}" for n in FEATURE_ORDER}
    tempo = FEATURE_ORDER.index("tempo")
    assert min(abs(high[-1][tempo] / t - 1) for t in (240.0, 120.0)) < 0.02  # the estimator folds tempo


def test_status_includes_the_latest_measurement(measuring):
    d, _ = measuring
    assert any(address == "/e2m/state/measured" for address, _ in d.state_messages())


def test_measuring_can_be_off():
    d, feedback = _daemon(measure=False)
    try:
        _send(d, "/e2m/play")
        replies = collect_osc(feedback, 3 * BAR)
    finally:
        d.shutdown()
        feedback.close()
    assert any(address == "/e2m/state/bar" for address, _ in replies)
    assert not _measured(replies)
