"""Ramps: the step logic, and `/e2m/ramp` over real loopback OSC on an in-process daemon (rule
generator, 240 BPM: a bar a second), heard in the notes it plays."""

from __future__ import annotations

import io
import itertools
import socket
import time

import pytest

from e2m_live.live.config import build_config
from e2m_live.live.daemon import Daemon
from e2m_live.live.osc import encode_message
from e2m_live.live.outputs import CaptureOutput
from e2m_live.live.ramps import Ramps
from e2m_live.testing.daemon import wait_until
from tests.live_helpers import collect_osc

BAR = 1.0


def test_a_ramp_steps_to_its_target_and_ends():
    ramps = Ramps()
    first = ramps.start({"energy": 0.2}, {"energy": 1.0}, 4)
    assert first == {"energy": pytest.approx(0.4)}
    values = [ramps.advance()[0] for _ in range(4)]
    assert values[:3] == [{"energy": pytest.approx(v)} for v in (0.6, 0.8, 1.0)]
    assert values[3] == {} and ramps.active() == []


def test_whole_number_features_switch_at_the_end_and_cancel_stops():
    ramps = Ramps()
    first = ramps.start({"key": 0, "valence": 0.0}, {"key": 7, "valence": 1.0}, 2)
    assert first == {"key": 0, "valence": 0.5}
    assert ramps.advance()[0] == {"key": 7, "valence": 1.0}
    ramps.start({"energy": 0.0}, {"energy": 1.0}, 8)
    assert [r.feature for r in ramps.cancel(["energy", "tempo"])] == ["energy"]
    assert ramps.advance()[0] == {}
    assert ramps.start({"energy": 0.3}, {"energy": 0.9}, 0) == {"energy": 0.9}  # 0 bars: at once


@pytest.fixture(scope="module")
def daemon():
    config = build_config(
        overrides={
            "udp_port": 0,
            "tcp_port": -1,
            "midi": False,
            "generator": "rules",
            "tempo": 240.0,
            "debounce_ms": 10.0,
            "realtime": False,
            "autoplay": True,
        }
    )
    d = Daemon(config, out=io.StringIO())
    capture = CaptureOutput()
    d.outputs.add(capture)
    d.start()
    yield d, capture
    d.shutdown()


def _send(d: Daemon, sock: socket.socket, address: str, *args) -> None:
    sock.sendto(encode_message(address, list(args)), ("127.0.0.1", d.osc.udp_port))


def _mean_velocity(capture: CaptureOutput, start: float, end: float) -> float:
    ons = [
        m.message[2]
        for m in list(capture.messages)
        if m.message[0] & 0xF0 == 0x90 and m.message[2] > 0 and start <= m.when < end
    ]
    return sum(ons) / len(ons)


def test_osc_ramp_moves_loudness_bar_by_bar_and_reports_it(daemon):
    d, capture = daemon
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        _send(d, sock, "/e2m/energy", 0.2)
        _send(d, sock, "/e2m/loudness", -50.0)
        time.sleep(2 * BAR)
        started = time.monotonic()
        _send(d, sock, "/e2m/ramp", "loudness", -38.0, 4)
        replies = collect_osc(sock, 5.5 * BAR)  # this socket sent last: it gets the feedback
    assert d.engine.features.loudness == pytest.approx(-38.0)
    left = [args[2] for address, args in replies if address == "/e2m/state/ramp"]
    assert left[:4] == [3, 2, 1, 0], left
    levels = [_mean_velocity(capture, started + k * BAR, started + (k + 1) * BAR) for k in range(5)]
    # 12 dB up on General MIDI's curve: velocities x2 by the end (the loudness gain, no re-plan).
    assert levels[4] > 1.5 * levels[0], levels
    assert sum(b > a for a, b in itertools.pairwise(levels)) >= 3, levels  # rising bar by bar


def test_a_new_value_for_the_feature_cancels_its_ramp(daemon):
    d, _ = daemon
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        _send(d, sock, "/e2m/energy", 0.1)
        _send(d, sock, "/e2m/ramp", 0, 0.9, 8)  # a menu's index: energy
        assert wait_until(lambda: d.ramps.active(), 2)
        _send(d, sock, "/e2m/energy", 0.4)
        replies = collect_osc(sock, 0.5)
        assert wait_until(lambda: not d.ramps.active(), 2)
    time.sleep(2 * BAR)
    assert d.engine.features.energy == pytest.approx(0.4)
    ramp_states = [args for address, args in replies if address == "/e2m/state/ramp"]
    assert ["energy", pytest.approx(0.9), 0] in ramp_states


def test_bad_ramps_are_rejected_with_a_reason(daemon):
    d, _ = daemon
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        before = d.engine.features
        _send(d, sock, "/e2m/ramp", "key", 3, 4)
        _send(d, sock, "/e2m/ramp", "energy", float("nan"), 4)
        _send(d, sock, "/e2m/ramp", "energy")
        errors = [args[1] for address, args in collect_osc(sock, 0.5) if address == "/e2m/error"]
    assert len(errors) == 3 and "a ramp moves one of" in errors[0] and "finite" in errors[1]
    assert d.engine.features == before and not d.ramps.active()
