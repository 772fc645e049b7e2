"""`e2m-live api`: the generation HTTP API alone, without the player (``docs/web.md``).

    e2m-live api                                  # http://127.0.0.1:8081/api/openapi.json
    e2m-live api --port 9100 --queue-size 8
    e2m-live api --host 0.0.0.0 --allow 192.168.1.0/24

The same routes, limits and allow-list as the API on ``e2m-live serve``'s server
(:mod:`e2m_live.web.api`); jobs run in the same niced worker process.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from e2m_live.commands.errors import UsageError
from e2m_live.live.osc import ClientFilter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="TCP port (0: any free port; default 8081)")
    parser.add_argument(
        "--allow",
        action="append",
        default=None,
        metavar="NET",
        help="clients allowed, an address or a network (repeatable; default loopback only)",
    )
    parser.add_argument(
        "--queue-size", type=int, default=4, help="jobs queued or running at once (default 4)"
    )
    parser.add_argument(
        "--keep", type=int, default=16, help="finished jobs whose results are kept (default 16)"
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="folder holding planner/ and figaro-compact/ (default: models/ or $E2M_MODELS_DIR)",
    )


async def _serve(args: argparse.Namespace, allowed: ClientFilter) -> None:
    from aiohttp import web
    from aiohttp.typedefs import Handler

    from e2m_live.web.api import MAX_BODY, GenerationApi
    from e2m_live.web.jobs import JobRunner

    @web.middleware
    async def policy(request: web.Request, handler: Handler) -> web.StreamResponse:
        """The daemon's allow-list rule."""
        remote = request.remote or ""
        if not allowed.allows(remote):
            return web.json_response({"error": f"{remote} is not in the allow-list (--allow)"}, status=403)
        return await handler(request)

    loop = asyncio.get_running_loop()
    api = GenerationApi(JobRunner(queue_size=args.queue_size, keep=args.keep, model_dir=args.model_dir))
    app = web.Application(middlewares=[policy], client_max_size=MAX_BODY)
    api.add_routes(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, args.host, args.port, reuse_address=True).start()
        port = runner.addresses[0][1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"listening: http://{host}:{port}/api/ (OpenAPI: /api/openapi.json); Ctrl-C stops", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        await loop.run_in_executor(None, api.close)  # stops the worker, deletes the results


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    if not 1 <= args.queue_size <= 64:
        raise UsageError(f"--queue-size must be in 1..64, got {args.queue_size}")
    if not 1 <= args.keep <= 1024:
        raise UsageError(f"--keep must be in 1..1024, got {args.keep}")
    try:
        allowed = ClientFilter(args.host, args.allow or ())
    except ValueError as error:
        raise UsageError(f"--allow: {error}") from None
    try:
        asyncio.run(_serve(args, allowed))
    except OSError as error:
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {error.strerror or error}") from None
    print("stopped", flush=True)
    return 0
