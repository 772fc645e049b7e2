"""Does the browser surface delay the player? Sender timing with and without WebSocket clients hammering
controls.

    .venv/bin/python benchmarks/web_load.py --seconds 20 --rate 50 --clients 1 --repeats 2

Three runs in one command, each with a fresh daemon in this process playing into a private dummy JACK
server and a JACK receiver process (as ``benchmarks/live_timing.py`` does; rule generator):

* ``idle``: nobody touches a control (web surface on, no page open);
* ``osc``: one OSC client sends ``--rate`` energy/valence changes a second over UDP (the reference:
  the same control traffic without the web surface's part);
* ``web``: ``--clients`` browser-like WebSocket clients (separate processes, aiohttp) each send
  ``--rate`` changes a second and read every feedback frame, as an open page does.

The three runs are repeated ``--repeats`` times, interleaved, and the medians compared.

``--api`` runs ``idle`` (the reference) and ``api`` instead: a client process submits generation jobs
to ``POST /api/generate`` one after another (``--api-bars`` bars each, the shipped models, no WAV),
polls each twice a second until it is done and downloads its MIDI, while the daemon plays; the jobs
run in the API's worker process. Reported: jobs and bars done, and api/idle ratios of p99 and max.

    .venv/bin/python benchmarks/web_load.py --api --seconds 30 --repeats 2

Reported per run: the player's send error (actual send time minus deadline) p50/p99/max, messages
past 1 ms, late bars; and the ratios web/osc and web/idle of p99 and max. The machine's load is part
of the figure: run it on an idle machine for absolute numbers, compare ratios otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.live_timing import _percentiles  # noqa: E402 - after the path insert

# ---- a browser-like client (its own process, as a phone would be) ----------------------------------


async def _client(url: str, seconds: float, rate: float, seed: int) -> dict:
    import aiohttp

    rng = random.Random(seed)
    sent = received = 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"type": "state"})

        async def read() -> None:
            nonlocal received
            async for _ in ws:
                received += 1

        reader = asyncio.create_task(read())
        end = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < end:
            address = rng.choice(("/e2m/energy", "/e2m/valence", "/e2m/xy"))
            args = [rng.random(), rng.random()] if address == "/e2m/xy" else [rng.random()]
            await ws.send_json({"address": address, "args": args})
            sent += 1
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(0.3)
        reader.cancel()
    return {"sent": sent, "frames_received": received}


def run_client(url: str, seconds: float, rate: float, seed: int) -> None:
    print(json.dumps(asyncio.run(_client(url, seconds, rate, seed))), flush=True)


def run_api_client(base: str, seconds: float, bars: int, seed: int) -> None:
    """Generation jobs one after another for ``seconds`` (the one running then is waited for)."""
    import urllib.request

    def call(path: str, body: dict | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    done = bars_done = failed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        job = json.loads(call("/api/generate", {"mood": "happy", "bars": bars, "seed": seed + done}))
        while job["state"] in ("queued", "running"):
            time.sleep(0.5)
            job = json.loads(call(job["status_url"]))
        if job["state"] == "done":
            call(job["midi_url"])
            done += 1
            bars_done += job["progress"]["bars_done"]
        else:
            failed += 1
    print(json.dumps({"jobs_done": done, "bars_done": bars_done, "jobs_failed": failed}), flush=True)


# ---- one run ---------------------------------------------------------------------------------------


def _osc_load(port: int, seconds: float, rate: float, seed: int) -> int:
    from e2m_live.live.osc import encode_message

    rng = random.Random(seed)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        end = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < end:
            address = rng.choice(("/e2m/energy", "/e2m/valence"))
            sock.sendto(encode_message(address, [rng.random()]), ("127.0.0.1", port))
            sent += 1
            next_at += 1.0 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
    return sent


def run_once(kind: str, args: argparse.Namespace, tmp: str) -> dict:
    from e2m_live.live.config import build_config
    from e2m_live.live.daemon import Daemon
    from e2m_live.live.realtime import DAEMON_PRIORITY, make_realtime

    name = f"e2m-webload-{os.getpid()}-{kind}"
    config = build_config(
        overrides={
            "udp_port": 0,
            "tcp_port": -1,
            "http_port": 0,
            "midi_api": "jack",
            "midi_name": name,
            "generator": "rules",
            "tempo": 120.0,
            "mood": "happy",
            "debounce_ms": 30.0,
        }
    )
    daemon = Daemon(config, out=io.StringIO(), record_timing=True)
    daemon.start()
    make_realtime(threading.get_native_id(), DAEMON_PRIORITY)  # as `e2m-live serve` does
    receiver_file = Path(tmp) / f"{kind}.json"
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "live_timing.py"),
        "--receiver",
        name,
        str(receiver_file),
        str(args.seconds + 3),
    ]
    receiver = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    receiver.stdout.readline()
    daemon.handle("/e2m/play", [])
    time.sleep(1.0)
    daemon.player.timing.clear()
    load: dict = {}
    if kind == "osc":
        load["sent"] = _osc_load(daemon.osc.udp_port, args.seconds, args.rate, args.seed)
    elif kind == "web":
        url = f"http://127.0.0.1:{daemon.web.port}/ws"
        clients = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    url,
                    str(args.seconds),
                    str(args.rate),
                    str(args.seed + i),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(args.clients)
        ]
        reports = [json.loads(c.communicate(timeout=args.seconds + 30)[0]) for c in clients]
        load = {
            "sent": sum(r["sent"] for r in reports),
            "frames_received": sum(r["frames_received"] for r in reports),
        }
    elif kind == "api":
        client = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--api-client",
                f"http://127.0.0.1:{daemon.web.port}",
                str(args.seconds),
                str(args.api_bars),
                str(args.seed),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(args.seconds)  # timing is taken over the same span as the other runs
        timing = list(daemon.player.timing)
        load = json.loads(client.communicate(timeout=300)[0])
    else:
        time.sleep(args.seconds)
    if kind != "api":
        timing = list(daemon.player.timing)
    late = daemon.player.late_bars
    daemon.shutdown()
    receiver.wait(timeout=30)
    errors = [abs(sent - deadline) * 1000 for deadline, sent in timing]
    return {
        "sender_error_ms": {
            k: round(v, 3) if isinstance(v, float) else v for k, v in _percentiles(errors).items()
        },
        "over_1ms": sum(1 for e in errors if e > 1.0),
        "late_bars": late,
        "load": load,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        run_client(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--api-client":
        run_api_client(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of playing per run")
    parser.add_argument("--rate", type=float, default=50.0, help="control messages a second per client")
    parser.add_argument(
        "--clients",
        type=int,
        default=1,
        help="WebSocket clients in the web run (1: the same traffic as the OSC run)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the three runs (medians reported)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--api",
        action="store_true",
        help="runs idle and api (generation jobs while playing) instead of idle, osc, web",
    )
    parser.add_argument("--api-bars", type=int, default=4, help="bars per generation job in the api run")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    from e2m_live.testing.jack import jack_server

    sys.setswitchinterval(0.0005)  # as `e2m-live serve` does
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "load_avg_before": os.getloadavg()},
        "settings": vars(args),
    }
    kinds = ("idle", "api") if args.api else ("idle", "osc", "web")
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    with jack_server(f"e2mwebload{os.getpid()}"), tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits all three
            for kind in runs:
                runs[kind].append(run_once(kind, args, tmp))
    for kind, done in runs.items():
        result[kind] = {
            "runs": done,
            **{
                f"median_{stat}_ms": statistics.median(r["sender_error_ms"].get(stat, 0.0) for r in done)
                for stat in ("p50", "p99", "max")
            },
        }
    measured = "api" if args.api else "web"
    for base in ("idle",) if args.api else ("osc", "idle"):
        for stat in ("p99", "max"):
            reference = result[base][f"median_{stat}_ms"]
            value = result[measured][f"median_{stat}_ms"]
            result[f"{measured}_over_{base}_{stat}"] = round(value / reference, 2) if reference else None
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
