"""The OSC servers of an in-process daemon, over real loopback sockets (UDP, TCP 1.0 and 1.1)."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time

import pytest
from pythonosc.osc_message import OscMessage

from e2m_live.live.config import build_config
from e2m_live.live.daemon import Daemon
from e2m_live.live.osc import ClientFilter, encode_message, length_prefix, slip_decode, slip_encode
from e2m_live.live.outputs import CaptureOutput
from e2m_live.testing.daemon import wait_until
from tests.live_helpers import collect_osc


@pytest.fixture(scope="module")
def daemon():
    feedback = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    feedback.bind(("127.0.0.1", 0))
    feedback.settimeout(0.2)
    config = build_config(
        overrides={
            "udp_port": 0,
            "tcp_port": 0,
            "midi": False,
            "generator": "rules",
            "tempo": 240.0,
            "feedback": [f"127.0.0.1:{feedback.getsockname()[1]}"],
            "debounce_ms": 10.0,
            "realtime": False,
        }
    )
    d = Daemon(config, out=io.StringIO())
    capture = CaptureOutput()
    d.outputs.add(capture)
    d.start()
    yield d, capture, feedback
    d.shutdown()
    feedback.close()


def _udp(d: Daemon, address: str, *args, wait: float = 0.5) -> list[tuple[str, list]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        sock.sendto(encode_message(address, list(args)), ("127.0.0.1", d.osc.udp_port))
        return collect_osc(sock, wait)


def test_udp_control_changes_features_and_reports_clamping(daemon):
    d, _, _ = daemon
    replies = _udp(d, "/e2m/valence", 1.5, wait=0.3)
    assert d.engine.features.valence == 1.0
    errors = [args for address, args in replies if address == "/e2m/error"]
    assert errors and errors[0][0] == "/e2m/valence" and "clamped" in errors[0][1]


def test_udp_rejects_nan_and_malformed_packets_with_an_error(daemon):
    d, _, _ = daemon
    before = d.engine.features
    replies = _udp(d, "/e2m/energy", float("nan"), wait=0.3)
    assert d.engine.features == before
    assert any(a == "/e2m/error" and "finite" in args[1] for a, args in replies)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        sock.sendto(b"\xff\x00garbage", ("127.0.0.1", d.osc.udp_port))
        replies = collect_osc(sock, 0.3)
    assert any(a == "/e2m/error" and "malformed" in args[1] for a, args in replies)


def test_status_reply_has_the_full_state(daemon):
    d, _, _ = daemon
    replies = dict(_udp(d, "/e2m/status", wait=0.3))
    for address in (
        "/e2m/state/playing",
        "/e2m/state/bar",
        "/e2m/state/features",
        "/e2m/state/lag",
        "/e2m/state/plan",
        "/e2m/state/loop",
        "/e2m/state/energy",
    ):
        assert address in replies
    assert len(replies["/e2m/state/features"]) == 10
    assert replies["/e2m/state/features"][1] == pytest.approx(d.engine.features.valence)


@pytest.mark.parametrize("framing", ["1.0", "1.1"])
def test_tcp_framings(daemon, framing):
    d, _, _ = daemon
    packet = encode_message("/e2m/status", [])
    framed = length_prefix(packet) if framing == "1.0" else slip_encode(packet)
    with socket.create_connection(("127.0.0.1", d.osc.tcp_port), timeout=2) as sock:
        sock.sendall(
            framed
            + (
                length_prefix(encode_message("/e2m/danceability", [0.25]))
                if framing == "1.0"
                else slip_encode(encode_message("/e2m/danceability", [0.25]))
            )
        )
        time.sleep(0.3)
        data = sock.recv(65536)
    if framing == "1.0":
        (length,) = struct.unpack("!I", data[:4])
        first = OscMessage(data[4 : 4 + length])
    else:
        assert data[0] == 0xC0
        first = OscMessage(slip_decode(data[1:].split(b"\xc0")[0]))
    assert first.address.startswith("/e2m/state/")
    assert wait_until(lambda: d.engine.features.danceability == 0.25), d.engine.features


def test_slip_round_trip_with_special_bytes():
    payload = bytes([0xC0, 0xDB, 1, 0xC0, 0xDB, 0xDC])
    framed = slip_encode(payload)
    assert framed.count(0xC0) == 2
    assert slip_decode(framed[1:-1]) == payload


def test_playing_sends_bar_feedback_to_the_configured_target(daemon):
    d, capture, feedback = daemon
    _udp(d, "/e2m/play", wait=0.0)
    received = collect_osc(feedback, 1.2)
    _udp(d, "/e2m/stop", wait=0.2)
    bars = [args for address, args in received if address == "/e2m/state/bar"]
    assert len(bars) >= 1 and bars[0][0] >= 0
    assert any(a == "/e2m/state/playing" and args == [1] for a, args in received)
    assert any(m.message[0] & 0xF0 == 0x90 for m in capture.messages)


def test_client_filter():
    default = ClientFilter("0.0.0.0")
    assert default.allows("127.0.0.1") and not default.allows("192.168.1.20")
    lan = ClientFilter("0.0.0.0", ["192.168.1.0/24", "10.0.0.7"])
    assert lan.allows("192.168.1.20") and lan.allows("10.0.0.7")
    assert not lan.allows("10.0.0.8") and not lan.allows("not an ip")


def test_bundle_with_negative_element_size_is_rejected_not_looped():
    # python-osc's own bundle parser never returns on this packet; ours rejects it.
    from e2m_live.live.osc import handle_packet

    packet = b"#bundle\x00" + bytes(8) + struct.pack(">i", -4)
    result: list = []
    worker = threading.Thread(
        target=lambda: result.append(handle_packet(packet, lambda a, args: [])), daemon=True
    )
    worker.start()
    worker.join(10.0)  # returns at all (python-osc loops forever); microseconds in practice
    assert not worker.is_alive() and result, "handle_packet did not return"
    replies = result[0]
    assert replies[0][0] == "/e2m/error" and "bundle element size" in replies[0][1][1]
    nested = b"#bundle\x00" + bytes(8)
    inner = encode_message("/e2m/energy", [0.5])
    nested += struct.pack(">i", len(inner)) + inner
    seen = []
    handle_packet(nested, lambda address, args: seen.append((address, args)) or [])
    assert seen == [("/e2m/energy", [0.5])]
