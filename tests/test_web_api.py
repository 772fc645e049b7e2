"""The generation API over real HTTP on loopback: a server (the browser surface's) with a tiny job queue,
real 2-bar generations in the worker process (the shipped models, FluidSynth for the WAV), bad requests,
the full queue, the allow-list, and the API mounted on a running daemon."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from types import SimpleNamespace

import mido
import pytest
from scipy.io import wavfile

from e2m_live.live.config import build_config
from e2m_live.live.daemon import Daemon
from e2m_live.live.outputs import find_soundfont
from e2m_live.models import missing_models
from e2m_live.testing.daemon import wait_until
from e2m_live.web import WebSurface
from e2m_live.web.api import MAX_BODY, GenerationApi, openapi_document, parse_request, routes_of
from e2m_live.web.jobs import JobRunner

QUEUE_SIZE = 2
#: A small job: 2 bars, a short token budget (CPU is scarce where the suite runs).
SMALL = {"mood": "happy", "bars": 2, "seed": 3, "max_tokens_per_bar": 64}


@pytest.fixture(scope="module")
def server() -> Iterator[WebSurface]:
    surface = WebSurface(
        lambda a, args: [],
        lambda: [],
        host="127.0.0.1",
        port=0,
        api=GenerationApi(JobRunner(queue_size=QUEUE_SIZE, idle_exit=120.0)),
    )
    surface.start()
    yield surface
    surface.close()


def _request(
    surface: WebSurface | SimpleNamespace,
    method: str,
    path: str,
    body: bytes | dict | None = None,
    headers: dict | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One real HTTP request on loopback (urllib), any status returned, not raised."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(
        f"http://127.0.0.1:{surface.port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _json(
    surface: WebSurface | SimpleNamespace, method: str, path: str, body: bytes | dict | None = None
) -> tuple[int, dict]:
    status, headers, data = _request(surface, method, path, body)
    assert headers["Content-Type"].startswith("application/json"), (status, data[:200])
    return status, json.loads(data)


def _wait_done(surface: WebSurface, job_id: str, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, job = _json(surface, "GET", f"/api/jobs/{job_id}")
        assert status == 200
        assert 0 <= job["progress"]["bars_done"] <= job["progress"]["bars"]
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {job}")


# ---- jobs --------------------------------------------------------------------------------------------


@pytest.mark.skipif(bool(missing_models()), reason="models not installed (make models)")
@pytest.mark.skipif(find_soundfont() is None, reason="no soundfont installed")
def test_jobs_run_in_a_niced_worker_the_queue_is_bounded_and_results_parse(server, tmp_path):
    status, first = _json(server, "POST", "/api/generate", {**SMALL, "wav": True})
    assert status == 202 and first["state"] in ("queued", "running")
    assert first["status_url"] == f"/api/jobs/{first['id']}" and first["wav_url"].endswith("/result.wav")
    status, second = _json(server, "POST", "/api/generate", {**SMALL, "seed": 4, "features": {"energy": 0.2}})
    assert status == 202 and second["wav_url"] is None
    assert second["request"]["features"]["energy"] == 0.2 and second["request"]["features"]["valence"] == 0.85

    status, full = _json(server, "POST", "/api/generate", SMALL)  # two unfinished jobs: the queue is full
    assert status == 429 and "limit is 2" in full["error"]

    status, early = _json(server, "GET", f"/api/jobs/{first['id']}/result.mid")
    assert status == 409 and "poll" in early["error"]  # loading the models alone takes seconds
    status, no_wav = _json(server, "GET", f"/api/jobs/{second['id']}/result.wav")
    assert status == 404 and '"wav": true' in no_wav["error"]

    assert wait_until(lambda: server.api.runner.get(first["id"]).bars_done > 0, 120, 0.05)
    pid = server.api.runner.worker_pid
    assert pid != os.getpid()
    assert os.getpriority(os.PRIO_PROCESS, pid) >= 15  # below the live generation worker (10)

    done = [_wait_done(server, job["id"]) for job in (first, second)]
    assert [job["state"] for job in done] == ["done", "done"], done
    assert all(job["progress"] == {"bars_done": 2, "bars": 2} and job["result"]["notes"] > 0 for job in done)
    assert server.api.runner.worker_pid == pid  # models loaded once: the same worker ran both

    for job in done:
        status, headers, data = _request(server, "GET", f"/api/jobs/{job['id']}/result.mid")
        assert status == 200 and headers["Content-Type"] == "audio/midi"
        path = tmp_path / f"{job['id']}.mid"
        path.write_bytes(data)
        midi = mido.MidiFile(path)
        notes = sum(1 for track in midi.tracks for m in track if m.type == "note_on" and m.velocity > 0)
        assert notes == job["result"]["notes"]
    status, headers, data = _request(server, "GET", f"/api/jobs/{first['id']}/result.wav")
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    (tmp_path / "a.wav").write_bytes(data)
    rate, audio = wavfile.read(tmp_path / "a.wav")
    assert rate == 44100 and len(audio) > rate and abs(audio).max() > 1000

    status, listing = _json(server, "GET", "/api/jobs")
    assert status == 200 and [j["id"] for j in listing["jobs"]][-2:] == [first["id"], second["id"]]


def test_a_worker_that_fails_a_job_reports_it_and_the_results_are_kept_bounded(tmp_path):
    runner = JobRunner(queue_size=2, keep=1, model_dir=str(tmp_path / "no-models"), idle_exit=30.0)
    try:
        jobs = [runner.submit(parse_request(SMALL)) for _ in range(2)]
        assert wait_until(lambda: all(j.state == "failed" for j in jobs), 120, 0.1)
        assert "ModelsMissing" in jobs[0].error
        assert wait_until(lambda: runner.get(jobs[0].id) is None, 5)  # keep=1: the older one is forgotten
        assert runner.get(jobs[1].id) is jobs[1]
    finally:
        runner.close()


# ---- bad requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        (b"{not json", None, "not JSON"),
        (b'{"bars": NaN}', None, "not JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b"[" * 8000 + b"]" * 8000, None, "not JSON"),
        (b"\xff\xfe{}", None, "not JSON"),
        ({"features": {"energy": 1.5}}, "features.energy", "energy must be a number in 0..1, got 1.5"),
        ({"features": {"tempo": "fast"}}, "features.tempo", "tempo must be a number in 40..240"),
        ({"features": {"key": "H"}}, "features.key", "cannot parse 'H'"),
        ({"features": {"brightness": 0.5}}, "features.brightness", "unknown feature"),
        ({"features": [0.5]}, "features", "object of feature values"),
        ({"colour": "blue"}, "colour", "unknown field(s) colour"),
        ({"mood": "grumpy"}, "mood", "mood must be one of"),
        ({"bars": 33}, "bars", "bars must be an integer in 1..32, got 33"),
        ({"bars": 2.5}, "bars", "bars must be an integer in 1..32"),
        ({"seed": -1}, "seed", "seed must be an integer in 0..2147483647 or null"),
        ({"wav": "yes"}, "wav", "wav must be true or false"),
        ({"ensemble": "kazoo"}, "ensemble", "ensemble must be one of auto, piano"),
        ({"instruments": ["theremin-ish"]}, "instruments", "unknown instrument"),
        ({"ensemble": "piano", "mute": ["piano"]}, "mute", "every instrument of the ensemble is muted"),
        ({"key_lock": 2}, "key_lock", "key_lock must be a number in 0..1"),
        ({"instruments": []}, "instruments", "at least one instrument"),
        ({"mute": ["piano", 300]}, "mute", "mute: program number must be 0..127"),
    ],
)
def test_bad_requests_get_400_with_the_field_and_the_range(server, body, field, why):
    status, error = _json(server, "POST", "/api/generate", body)
    assert status == 400, error
    assert why in error["error"]
    assert error.get("field") == field


def test_an_oversize_body_gets_413(server):
    body = json.dumps({"mood": "happy", "instruments": ["piano"] * 4000}).encode()
    assert len(body) > MAX_BODY
    status, error = _json(server, "POST", "/api/generate", body)
    assert status == 413 and str(MAX_BODY) in error["error"]


def test_unknown_jobs_and_results_get_404(server):
    for path in (
        "/api/jobs/0123456789abcdef",
        "/api/jobs/0123456789abcdef/result.mid",
        "/api/jobs/0123456789abcdef/result.txt",
    ):
        status, error = _json(server, "GET", path)
        assert status == 404 and "no " in error["error"], path


def test_the_openapi_document_lists_every_route(server):
    status, document = _json(server, "GET", "/api/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    assert set(routes_of(document)) == {
        ("POST", "/api/generate"),
        ("GET", "/api/jobs"),
        ("GET", "/api/jobs/{id}"),
        ("GET", "/api/jobs/{id}/result.mid"),
        ("GET", "/api/jobs/{id}/result.wav"),
        ("GET", "/api/openapi.json"),
    }
    request = document["components"]["schemas"]["GenerateRequest"]["properties"]
    assert request["bars"] | {"minimum": 1, "maximum": 32} == request["bars"]
    energy = document["components"]["schemas"]["Features"]["properties"]["energy"]
    assert (energy["minimum"], energy["maximum"]) == (0.0, 1.0)
    # every $ref resolves
    refs = [part.split('"')[0] for part in json.dumps(document).split('"$ref": "#/components/schemas/')[1:]]
    assert refs and all(ref in document["components"]["schemas"] for ref in refs)
    assert document == openapi_document()


def test_a_client_outside_the_allow_list_gets_403_as_json():
    surface = WebSurface(lambda a, args: [], lambda: [], host="127.0.0.1", port=0, allow=["10.9.8.0/24"])
    surface.start()
    try:
        status, error = _json(surface, "POST", "/api/generate", SMALL)
        assert status == 403 and "allow-list" in error["error"]
        assert surface.api.runner.jobs() == []
    finally:
        surface.close()


def test_the_daemon_serves_the_api_and_the_worker_starts_only_with_a_job():
    config = build_config(
        overrides={
            "udp_port": 0,
            "tcp_port": -1,
            "midi": False,
            "generator": "rules",
            "http_port": 0,
            "realtime": False,
        }
    )
    daemon = Daemon(config, out=io.StringIO())
    daemon.start()
    try:
        status, document = _json(daemon.web, "GET", "/api/openapi.json")
        assert status == 200 and ("POST", "/api/generate") in routes_of(document)
        status, _ = _json(daemon.web, "POST", "/api/generate", {"bars": 0})
        assert status == 400
        assert daemon.web.api.runner.worker_pid is None
    finally:
        daemon.shutdown()


def test_the_standalone_api_command_serves_refuses_bad_input_and_stops_on_sigint():
    import re
    import signal
    import subprocess
    import sys

    code = (
        "import argparse, sys; from e2m_live.commands import api; p = argparse.ArgumentParser(); "
        "api.add_arguments(p); sys.exit(api.run(p.parse_args(sys.argv[1:])))"
    )
    process = subprocess.Popen([sys.executable, "-c", code, "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/api/", line)
        assert match, line
        surface = SimpleNamespace(port=int(match.group(1)))
        status, document = _json(surface, "GET", "/api/openapi.json")
        assert status == 200 and ("POST", "/api/generate") in routes_of(document)
        status, error = _json(surface, "POST", "/api/generate", {"features": {"valence": -1}})
        assert status == 400 and error["field"] == "features.valence"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
