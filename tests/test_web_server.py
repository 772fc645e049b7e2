"""The browser surface's server without a browser: real HTTP and WebSocket (aiohttp's client) against a
daemon running in this process (rule generator, no MIDI output), OSC over loopback UDP beside it."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
from collections.abc import Iterator

import aiohttp
import pytest

from e2m_live.live.addresses import ADDRESSES, Argument, OscAddress
from e2m_live.live.config import add_config_arguments, build_config, config_from_args
from e2m_live.live.daemon import Daemon
from e2m_live.live.osc import encode_message
from e2m_live.music import Bar, Note
from e2m_live.testing.daemon import wait_until
from e2m_live.web import WebSurface, table_json
from e2m_live.web.plan import bar_chord, bar_instruments
from e2m_live.web.server import CLIENT_BACKLOG, _Client, interface_addresses


def _daemon(**overrides) -> Daemon:
    config = build_config(
        overrides={
            "udp_port": 0,
            "tcp_port": -1,
            "midi": False,
            "generator": "rules",
            "http_port": 0,
            "realtime": False,
            "debounce_ms": 10.0,
            **overrides,
        }
    )
    daemon = Daemon(config, out=io.StringIO())
    daemon.start()
    return daemon


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    daemon = _daemon()
    yield daemon
    daemon.shutdown()


def _url(daemon: Daemon, path: str = "/") -> str:
    return f"http://127.0.0.1:{daemon.web.port}{path}"


async def _frames_until(ws: aiohttp.ClientWebSocketResponse, predicate, timeout: float = 5.0) -> list[dict]:
    """Frames received until one satisfies ``predicate`` (that one included); fails on timeout."""
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            frame = json.loads(message.data)
            frames.append(frame)
            if predicate(frame):
                return frames


def _has(address: str, value=None):
    def predicate(frame: dict) -> bool:
        return frame["type"] == "osc" and any(
            a == address and (value is None or args[0] == pytest.approx(value))
            for a, args in frame["messages"]
        )

    return predicate


def _run(coroutine):
    return asyncio.run(coroutine)


# ---- HTTP ----------------------------------------------------------------------------------------


def test_page_assets_and_table_are_served(daemon):
    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.get(_url(daemon)) as response:
                assert response.status == 200
                assert '<script src="/static/app.js">' in await response.text()
            for asset in ("app.js", "style.css"):
                async with session.get(_url(daemon, f"/static/{asset}")) as response:
                    assert response.status == 200 and len(await response.read()) > 1000
            async with session.get(_url(daemon, "/api/table")) as response:
                table = await response.json()
            async with session.get(_url(daemon, "/api/state")) as response:
                state = await response.json()
            async with session.get(_url(daemon, "/static/../server.py")) as response:
                assert response.status in (403, 404)
        return table, state

    table, state = _run(main())
    assert [a["address"] for a in table["addresses"]] == [a.address for a in ADDRESSES]
    assert table["section_bars"] == 12 and "Violin" in table["instruments"]
    assert {"happy", "sad"} <= set(table["moods"])
    assert "/e2m/state/features" in {a for a, _ in state["messages"]}


def test_the_table_json_carries_a_new_address():
    extra = OscAddress(
        "/e2m/brightness",
        (Argument("brightness", "fi", 0.0, 1.0, default=0.5),),
        "Brightness",
        "a new control",
    )
    table = table_json((*ADDRESSES, extra))
    entry = table["addresses"][-1]
    assert entry["address"] == "/e2m/brightness" and entry["control"] == "fader"
    assert entry["arguments"][0] | {"low": 0.0, "high": 1.0} == entry["arguments"][0]


def test_startup_report_prints_the_address(daemon):
    assert f"browser http://127.0.0.1:{daemon.web.port}/" in daemon.report.listening


# ---- WebSocket -----------------------------------------------------------------------------------


def test_a_websocket_control_changes_the_features_and_every_page_hears_it(daemon):
    async def main():
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(_url(daemon, "/ws")) as a,
            session.ws_connect(_url(daemon, "/ws")) as b,
        ):
            await a.send_json({"type": "state"})
            await _frames_until(a, _has("/e2m/state/features"))
            await a.send_json({"address": "/e2m/energy", "args": [0.83]})
            await _frames_until(b, _has("/e2m/state/energy", 0.83))  # the other page follows
            await a.send_json({"address": "/e2m/key", "args": ["F#"]})
            await _frames_until(a, _has("/e2m/state/key", 6))

    _run(main())
    assert daemon.engine.features.energy == pytest.approx(0.83)
    assert daemon.engine.features.key == 6


def test_an_osc_message_from_another_client_reaches_the_page(daemon):
    async def main():
        async with aiohttp.ClientSession() as session, session.ws_connect(_url(daemon, "/ws")) as ws:
            await ws.send_json({"type": "state"})
            await _frames_until(ws, _has("/e2m/state/features"))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(encode_message("/e2m/valence", [0.17]), ("127.0.0.1", daemon.osc.udp_port))
            await _frames_until(ws, _has("/e2m/state/valence", 0.17))

    _run(main())


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"address": "energy", "args": [1]}', "OSC path"),
        ('{"address": "/e2m/energy", "args": [NaN]}', "numbers, strings"),
        ('{"address": "/e2m/energy", "args": "0.5"}', "numbers, strings"),
        ('{"address": "/e2m/nothing", "args": []}', "unknown address"),
        ('{"address": "/e2m/energy", "args": [2.5]}', "clamped to 1"),
        ('{"address": "/e2m/mood", "args": ["grumpy"]}', "mood must be one of"),
    ],
)
def test_bad_input_gets_an_error_back_and_the_daemon_plays_on(daemon, payload, why):
    async def main():
        async with aiohttp.ClientSession() as session, session.ws_connect(_url(daemon, "/ws")) as ws:
            await ws.send_str(payload)
            frames = await _frames_until(ws, _has("/e2m/error"))
            return next(args for f in frames for a, args in f["messages"] if a == "/e2m/error")

    error = _run(main())
    assert why in error[1]
    assert daemon.player is not None and daemon.osc is not None
    assert _run(_status(daemon)) == 200


async def _status(daemon: Daemon) -> int:
    async with aiohttp.ClientSession() as session, session.get(_url(daemon, "/api/state")) as response:
        return response.status


def test_a_cross_site_websocket_is_refused(daemon):
    async def main():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(_url(daemon, "/ws"), headers={"Origin": "http://elsewhere.example"})
            return refused.value.status

    assert _run(main()) == 403


def test_the_bar_strip_gets_chords_and_instruments(daemon):
    daemon.handle("/e2m/play", [])

    async def main():
        async with aiohttp.ClientSession() as session, session.ws_connect(_url(daemon, "/ws")) as ws:
            await ws.send_json({"type": "state"})
            frames = await _frames_until(ws, lambda f: f["type"] == "bars" and f["bars"], timeout=15)
            return frames[-1]

    try:
        frame = _run(main())
    finally:
        daemon.handle("/e2m/stop", [])
    assert frame["section"] >= 1
    bar = frame["bars"][0]
    assert bar["index"] == 0 and bar["chord"] and bar["instruments"]


def test_chord_and_instrument_names():
    a_minor = Bar(
        [
            Note(57, 80, 0, 4, program=0),
            Note(60, 80, 0, 4, program=0),
            Note(64, 80, 0, 4, program=33),
            Note(36, 100, 0, 1, is_drum=True),
        ]
    )
    assert bar_chord(a_minor) == "Am"
    assert bar_chord(Bar([Note(40, 90, 0, 4), Note(60, 80, 0, 4), Note(67, 80, 0, 4)])) == "C/E"
    assert bar_chord(Bar([Note(36, 100, 0, 1, is_drum=True)])) == "-"
    assert bar_instruments(a_minor) == ["Acoustic Grand Piano", "Electric Bass (finger)", "drums"]


# ---- host policy, configuration, lifecycle ----------------------------------------------------------


def test_a_client_outside_the_allow_list_gets_403():
    surface = WebSurface(lambda a, args: [], lambda: [], host="127.0.0.1", port=0, allow=["10.9.8.0/24"])
    surface.start()

    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{surface.port}/") as response:
                page = response.status, await response.text()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"http://127.0.0.1:{surface.port}/ws")
        return page, refused.value.status

    try:
        (status, text), ws_status = _run(main())
    finally:
        surface.close()
    assert status == 403 and "allow-list" in text
    assert ws_status == 403


def test_no_web_and_port_minus_one_turn_it_off():
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert config_from_args(parser.parse_args(["--no-web"])).web_port is None
    assert config_from_args(parser.parse_args(["--http-port", "-1"])).web_port is None
    assert config_from_args(parser.parse_args(["--http-port", "0"])).web_port == 0
    assert build_config().web_port == 8080
    assert build_config({"http_port": 8123}).web_port == 8123
    with pytest.raises(ValueError, match="http_port"):
        build_config({"http_port": 70000})
    daemon = _daemon(web=False)
    try:
        assert daemon.web is None
        assert not any("browser" in line for line in daemon.report.listening)
    finally:
        daemon.shutdown()


def test_a_port_in_use_is_a_warning_and_the_daemon_runs(daemon):
    second = _daemon(http_port=daemon.web.port)
    try:
        assert second.web is None
        assert any("no browser surface" in w for w in second.report.warnings)
        assert second.osc is not None and second.osc.udp_port
    finally:
        second.shutdown()


def test_shutdown_closes_the_websockets_so_pages_reconnect():
    daemon = _daemon()

    async def main():
        async with aiohttp.ClientSession() as session, session.ws_connect(_url(daemon, "/ws")) as ws:
            await ws.send_json({"type": "state"})
            await _frames_until(ws, _has("/e2m/state/features"))
            stopping = threading.Thread(target=daemon.shutdown)
            stopping.start()  # this loop keeps reading, so it answers the server's close
            message = await ws.receive(timeout=10)
            await asyncio.get_running_loop().run_in_executor(None, stopping.join)
            return message.type, ws.close_code

    kind, code = _run(main())
    assert kind in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert code == 1001
    assert wait_until(lambda: daemon.web is None, 2.0)


def test_a_slow_page_loses_its_backlog_and_gets_the_full_state_instead():
    async def main():
        client = _Client(None, "127.0.0.1")  # type: ignore[arg-type] - the queue alone is under test
        for i in range(CLIENT_BACKLOG + 10):
            client.offer(f"frame {i}")
        return client.queue.qsize(), client.resync

    size, resync = _run(main())
    assert size < CLIENT_BACKLOG and resync


def test_the_printed_addresses():
    surface = WebSurface(lambda a, args: [], lambda: [], host="0.0.0.0", port=0)
    surface.port = 8080  # not started: nothing is bound
    urls = surface.urls()
    assert urls and all(u.startswith("http://") and u.endswith(":8080/") for u in urls)
    for address in interface_addresses():
        assert not address.startswith("127.") and len(address.split(".")) == 4
