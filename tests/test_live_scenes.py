"""Scenes: the scene book (slots, morph, the --scenes JSON file) and `/e2m/scene/*` over real
loopback OSC on an in-process daemon (rule generator, 240 BPM: a bar a second)."""

from __future__ import annotations

import io
import json
import socket
import time

import pytest

from e2m_live.features import EmotionFeatures
from e2m_live.live.config import build_config
from e2m_live.live.daemon import Daemon
from e2m_live.live.osc import encode_message
from e2m_live.live.scenes import SceneBook, SceneError, morph
from e2m_live.testing.daemon import wait_until
from tests.live_helpers import collect_osc

BAR = 1.0
CALM = EmotionFeatures(energy=0.1, valence=0.2, loudness=-30.0, key=0, mode=1, tempo=240.0)
WILD = EmotionFeatures(energy=0.9, valence=0.8, loudness=-6.0, key=6, mode=0, tempo=200.0)


def test_morph_interpolates_and_switches_whole_numbers_half_way():
    quarter = morph(CALM, WILD, 0.25)
    assert quarter.energy == pytest.approx(0.3) and quarter.tempo == pytest.approx(230.0)
    assert (quarter.key, quarter.mode) == (0, 1)
    assert (morph(CALM, WILD, 0.5).key, morph(CALM, WILD, 0.5).mode) == (6, 0)
    assert morph(CALM, WILD, 0.0) == CALM and morph(CALM, WILD, 1.0) == WILD


def test_scenes_file_is_written_on_store_and_read_back(tmp_path):
    path = tmp_path / "set.json"
    book = SceneBook(8, path)
    book.store(2, WILD)
    assert json.loads(path.read_text())["scenes"]["2"]["key"] == 6
    again = SceneBook(8, path)
    assert again.stored() == [2] and again.get(2) == WILD
    with pytest.raises(SceneError, match="scene 3 is empty"):
        again.get(3)
    path.write_text('{"scenes": {"9": {}}}')
    with pytest.raises(SceneError, match="cannot read scenes"):
        SceneBook(8, path)


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
    d.start()
    yield d
    d.shutdown()


def _send(d: Daemon, sock: socket.socket, address: str, *args) -> None:
    sock.sendto(encode_message(address, list(args)), ("127.0.0.1", d.osc.udp_port))


def _same(a: EmotionFeatures, b: EmotionFeatures) -> bool:
    """Equal up to OSC's 32-bit floats."""
    return all(abs(x - y) < 1e-4 for x, y in zip(a.to_dict().values(), b.to_dict().values(), strict=True))


def _set(d: Daemon, sock: socket.socket, features: EmotionFeatures) -> None:
    _send(d, sock, "/e2m/features", *features.to_dict().values())
    assert wait_until(lambda: _same(d.engine.features, features), 2)


def test_store_recall_and_morph_over_osc(daemon):
    d = daemon
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        _set(d, sock, CALM)
        _send(d, sock, "/e2m/scene/store", 0)
        _set(d, sock, WILD)
        _send(d, sock, "/e2m/scene/store", 1)
        replies = collect_osc(sock, 0.3)
        assert ["/e2m/state/scenes", [0, 1]] in [[a, args] for a, args in replies]
        _send(d, sock, "/e2m/scene/recall", 0)
        assert wait_until(lambda: _same(d.engine.features, CALM), 2)
        _send(d, sock, "/e2m/scene/morph", 0, 1, 0.75)
        assert wait_until(lambda: _same(d.engine.features, morph(CALM, WILD, 0.75)), 2)
        replies = collect_osc(sock, 0.3)
        assert ["/e2m/state/morph", [0, 1, 0.75]] in [[a, args] for a, args in replies]  # 0.75: exact in f32
        assert ["/e2m/state/scene", [0]] in [[a, args] for a, args in replies]


def test_recall_over_bars_ramps_every_feature(daemon):
    d = daemon
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        _set(d, sock, CALM)
        _send(d, sock, "/e2m/scene/store", 0)
        _set(d, sock, WILD)
        _send(d, sock, "/e2m/scene/recall", 0, 4)
        assert wait_until(lambda: d.ramps.active(), 2)
        first = d.engine.features
        assert first.energy == pytest.approx(0.7) and first.key == WILD.key  # key switches at the end
        assert wait_until(lambda: not d.ramps.active(), 6 * BAR)
        time.sleep(0.1)
        assert _same(d.engine.features, CALM)


def test_recalling_an_empty_slot_is_rejected(daemon):
    d = daemon
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        before = d.engine.features
        _send(d, sock, "/e2m/scene/recall", 7)
        _send(d, sock, "/e2m/scene/morph", 0, 7, 0.5)
        _send(d, sock, "/e2m/scene/store", 8)
        errors = [args[1] for a, args in collect_osc(sock, 0.5) if a == "/e2m/error"]
    assert len(errors) == 3 and "scene 7 is empty" in errors[0] and "0..7" in errors[2]
    assert d.engine.features == before
