"""The browser control surface's server: aiohttp (HTTP + WebSocket) on its own thread and loop.

Routes: ``/`` the page, ``/static/*`` its assets (shipped in the package), ``/api/table`` the OSC
address table as JSON (the page builds its controls from it), ``/api/state`` the daemon's full
state, ``/ws`` the WebSocket; the generation API under ``/api/generate``, ``/api/jobs`` and
``/api/openapi.json`` (:mod:`e2m_live.web.api`: jobs in a worker process, started on the first job).

WebSocket protocol (JSON text frames). The page sends ``{"address": "/e2m/energy", "args":
[0.8]}`` (applied exactly like an OSC message; the replies, ``/e2m/error`` included, go back to
that page only) or ``{"type": "state"}`` (the full state, sent on every (re)connect). The server
sends ``{"type": "osc", "messages": [[address, args], ...], "reply": bool}`` (feedback batches,
the same as OSC clients get, and replies) and ``{"type": "bars", "section": n, "bars": [...]}``
(chord and instruments of each decoded bar of the section playing).

Nothing here runs on the player thread: feedback arrives through :meth:`WebSurface.publish`
(called on the daemon's feedback thread, it only hands the batch to this loop), controls are
applied on the loop in the order they came (a sync switch, which may wait, on one worker
thread), and a client too slow to take its feedback loses its backlog and gets the full state
instead, so no queue grows without bound.

Host policy: the server binds the daemon's ``host``; a client outside the OSC allow-list gets
HTTP 403 (the WebSocket handshake included), and a WebSocket whose ``Origin`` is another site is
refused (a page elsewhere must not drive the daemon through the performer's browser).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from e2m_live.live.addresses import ADDRESSES, OscAddress
from e2m_live.live.osc import ERROR_ADDRESS, ClientFilter, Handler, Reply
from e2m_live.live.realtime import make_realtime
from e2m_live.music import Bar
from e2m_live.web.api import GenerationApi
from e2m_live.web.plan import summarise
from e2m_live.web.table import table_json

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("e2m_live.web") / "static"))
#: Largest WebSocket message a page may send (a control is a few dozen bytes).
MAX_MESSAGE = 16384
#: Feedback frames queued for one client before it is considered too slow (then: full state).
CLIENT_BACKLOG = 256
_SECTION = re.compile(r"section (\d+)\b")
#: Controls whose handling may wait (switching the clock opens MIDI or Link): applied on the worker.
BLOCKING = frozenset({"/e2m/sync"})


def _arguments_ok(args: Any) -> bool:
    return (
        isinstance(args, list)
        and len(args) <= 64
        and all(isinstance(a, str | bool | int) or (isinstance(a, float) and math.isfinite(a)) for a in args)
    )


class _Client:
    """One WebSocket: its bounded outgoing queue and its sender task."""

    def __init__(self, ws: web.WebSocketResponse, remote: str) -> None:
        self.ws = ws
        self.remote = remote
        self.queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_BACKLOG)
        self.resync = False

    def offer(self, text: str) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:  # too slow: drop the backlog, send the full state instead
            while not self.queue.empty():
                self.queue.get_nowait()
            self.resync = True


class WebSurface:
    """The server. ``handle`` applies one control (the daemon's OSC handler), ``state`` returns
    the full state, ``section_bars(n)`` the decoded bars of section ``n`` (for the bar strip);
    ``addresses`` is the table the page is built from (default: the daemon's);
    ``realtime_priority``: SCHED_FIFO for the server's threads (see ``e2m_live/live/realtime.py``:
    a thread preempted while it holds the GIL stalls the player; threads started later, as the
    worker is, do not inherit it, hence set here); ``api``: the generation API mounted under
    ``/api/`` (default: :class:`~e2m_live.web.api.GenerationApi` with its defaults; closed with the
    server)."""

    def __init__(
        self,
        handle: Handler,
        state: Callable[[], list[Reply]],
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        allow: Iterable[str] = (),
        section_bars: Callable[[int], Sequence[Bar]] | None = None,
        addresses: tuple[OscAddress, ...] | None = None,
        realtime_priority: int | None = None,
        api: GenerationApi | None = None,
    ) -> None:
        self._handle = handle
        self.api = api or GenerationApi()
        self.api.runner.thread_setup = self._raise_priority
        self._state = state
        self._section_bars = section_bars
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.filter = ClientFilter(host, allow)
        self._clients: set[_Client] = set()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        # One worker: controls apply in the order they came, and never on the event loop.
        self._priority = realtime_priority
        self._apply = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="e2m-web-apply", initializer=self._raise_priority
        )
        self._section: int | None = None
        self._bars: list[dict[str, Any]] = []
        self._table = json.dumps(table_json(ADDRESSES if addresses is None else addresses))

    # ---- lifecycle (any thread) ---------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve; raises OSError when the port cannot be had."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="e2m-web", daemon=True)
        self._thread.start()
        ready.result(timeout)

    def urls(self) -> list[str]:
        """Where a browser reaches the page (every interface address when bound to all)."""
        hosts = [self.host]
        if self.host in ("0.0.0.0", "::", ""):
            hosts = interface_addresses() or ["127.0.0.1"]
        return [f"http://{f'[{h}]' if ':' in h else h}:{self.port}/" for h in hosts]

    def publish(self, messages: list[Reply]) -> None:
        """A feedback batch for every page (thread-safe; called on the daemon's feedback thread)."""
        if self._clients and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._fan_out, list(messages))

    def close(self, timeout: float = 5.0) -> None:
        """Close every WebSocket (pages reconnect by themselves) and stop the server."""
        if self._thread is None:
            return
        if self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            with contextlib.suppress(Exception):
                future.result(timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._apply.shutdown(wait=False, cancel_futures=True)
        self.api.close()
        self._thread = None

    # ---- the loop thread ----------------------------------------------------------------------
    def _raise_priority(self) -> None:
        if self._priority is not None:
            make_realtime(threading.get_native_id(), self._priority)

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        self._raise_priority()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:
            ready.set_exception(error)
            self._loop.close()
            return
        ready.set_result(None)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._policy], client_max_size=MAX_MESSAGE)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/table", self._table_route)
        app.router.add_get("/api/state", self._state_route)
        app.router.add_get("/ws", self._websocket)
        self.api.add_routes(app)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1]  # the port bound (port 0: the one picked)

    async def _shutdown(self) -> None:
        async def close(client: _Client) -> None:
            with contextlib.suppress(Exception):
                await client.ws.close(code=1001, message=b"daemon stopping")

        await asyncio.gather(*(close(c) for c in list(self._clients)))
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _policy(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        remote = request.remote or ""
        if not self.filter.allows(remote):
            if request.path.startswith("/api/"):
                return web.json_response(
                    {"error": f"{remote} is not in the daemon's allow-list (--allow)"}, status=403
                )
            return web.Response(status=403, text=f"{remote} is not in the daemon's allow-list (--allow)\n")
        return await handler(request)

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _table_route(self, _request: web.Request) -> web.Response:
        return web.Response(text=self._table, content_type="application/json")

    async def _state_route(self, _request: web.Request) -> web.Response:
        messages = await self._loop.run_in_executor(self._apply, self._state)
        return web.json_response({"messages": [[a, list(args)] for a, args in messages]})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            return web.Response(status=403, text=f"WebSocket from another site ({origin}) refused\n")
        # timeout: how long closing waits for the page's answer (a phone gone to sleep never
        # answers, and the daemon's shutdown must not wait on it)
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MESSAGE, timeout=1.0)
        await ws.prepare(request)
        client = _Client(ws, request.remote or "")
        self._clients.add(client)
        sender = asyncio.create_task(self._send_loop(client))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._receive(client, message.data)
                elif message.type == WSMsgType.BINARY:
                    self._reply(client, [(ERROR_ADDRESS, ["", "send JSON text frames"])])
        finally:
            self._clients.discard(client)
            sender.cancel()
        return ws

    async def _send_loop(self, client: _Client) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.CancelledError):
            while not client.ws.closed:
                text = await client.queue.get()
                await client.ws.send_str(text)
                if client.resync:
                    client.resync = False
                    await self._send_state(client)

    async def _receive(self, client: _Client, data: str) -> None:
        try:
            request = json.loads(data)
        except ValueError:
            self._reply(client, [(ERROR_ADDRESS, ["", 'not JSON: send {"address": ..., "args": [...]}'])])
            return
        if not isinstance(request, dict):
            self._reply(client, [(ERROR_ADDRESS, ["", "send a JSON object"])])
            return
        if request.get("type") == "state":
            await self._send_state(client)
            return
        address, args = request.get("address"), request.get("args", [])
        if not isinstance(address, str) or not address.startswith("/") or len(address) > 200:
            self._reply(client, [(ERROR_ADDRESS, [str(address)[:100], "address must be an OSC path"])])
            return
        if not _arguments_ok(args):
            why = "args must be a list of numbers, strings and booleans"
            self._reply(client, [(ERROR_ADDRESS, [address, why])])
            return
        try:
            if address in BLOCKING:  # may wait (opening a clock source): off the loop
                replies = await self._loop.run_in_executor(self._apply, self._handle, address, args)
            else:  # quick: here, saving two thread switches per control
                replies = self._handle(address, args)
        except Exception as error:  # a handler bug must not take the server down
            log.exception("web control %s failed", address)
            replies = [(ERROR_ADDRESS, [address, f"internal error: {error}"[:200]])]
        if replies:
            self._reply(client, replies)

    async def _send_state(self, client: _Client) -> None:
        messages = await self._loop.run_in_executor(self._apply, self._state)
        self._reply(client, messages)
        self._update_bars(messages)
        if self._section is not None:
            client.offer(self._bars_frame())

    def _reply(self, client: _Client, messages: Sequence[Reply]) -> None:
        client.offer(
            json.dumps({"type": "osc", "reply": True, "messages": [[a, list(args)] for a, args in messages]})
        )

    def _fan_out(self, messages: list[Reply]) -> None:
        text = json.dumps(
            {"type": "osc", "reply": False, "messages": [[a, list(args)] for a, args in messages]}
        )
        for client in list(self._clients):
            client.offer(text)
        if self._update_bars(messages):
            frame = self._bars_frame()
            for client in list(self._clients):
                client.offer(frame)

    # ---- the bar strip ------------------------------------------------------------------------
    def _update_bars(self, messages: Iterable[Reply]) -> bool:
        """Refresh the strip's chords and instruments when a bar starts or the plan changes;
        True when they changed."""
        if self._section_bars is None:
            return False
        section = self._section
        relevant = False
        for address, args in messages:
            if address == "/e2m/state/plan" and args and isinstance(args[0], str):
                match = _SECTION.search(args[0])
                section = int(match.group(1)) if match else None
                relevant = True
            elif address == "/e2m/state/bar":
                relevant = True
        if not relevant or section is None:
            return False
        decoded = list(self._section_bars(section))
        if section == self._section and len(decoded) == len(self._bars):
            return False  # a section's bars only grow: nothing new
        self._section, self._bars = section, summarise(decoded)
        return True

    def _bars_frame(self) -> str:
        return json.dumps({"type": "bars", "section": self._section, "bars": self._bars})


def interface_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (Linux; empty where unknown)."""
    import fcntl
    import socket
    import struct

    found = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:  # SIOCGIFADDR
                packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
        address = socket.inet_ntoa(packed[20:24])
        if not address.startswith("127."):
            found.append(address)
    return found
