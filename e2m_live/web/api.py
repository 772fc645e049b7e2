"""The generation HTTP API, mounted on the browser surface's server (``docs/web.md``, issue 19).

    POST /api/generate            {"mood": "happy", "features": {"energy": 0.8}, "bars": 4, "wav": true}
                                  -> 202 {"id", "state", "status_url", "midi_url", "wav_url", ...}
    GET  /api/jobs                the jobs kept, newest last
    GET  /api/jobs/{id}           state (queued, running, done, failed), progress, error, result
    GET  /api/jobs/{id}/result.mid, /result.wav
    GET  /api/openapi.json        this API as an OpenAPI 3 document

One table, :data:`OPTIONS`, with the feature ranges of :mod:`e2m_live.features`, drives the
validation and the OpenAPI schema. Every error is JSON ``{"error": text, "field": name}`` (``field``
when one is to blame) with the status saying what kind: 400 invalid, 403 not in the allow-list (the
server's filter), 404 unknown job or no such result, 409 not ready, 413 body over
:data:`MAX_BODY` bytes, 429 queue full. Jobs run in :class:`~e2m_live.web.jobs.JobRunner`'s worker
process, never on the server's loop or any other thread of the daemon.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from e2m_live.arrangement import (
    DEFAULT_KEY_LOCK,
    ENSEMBLE_NAMES,
    Arrangement,
    ArrangementError,
    parse_instruments,
)
from e2m_live.features import (
    FEATURE_ORDER,
    INTEGER_FIELDS,
    KEY_NAMES,
    MOODS,
    RANGES,
    EmotionFeatures,
    FeatureError,
)
from e2m_live.web.jobs import DONE, FAILED, QUEUED, Job, JobRunner, QueueFull

#: Largest request body accepted (a request is a few hundred bytes).
MAX_BODY = 16384
#: Most instruments in ``instruments`` or ``mute``.
MAX_INSTRUMENTS = 16


@dataclass(frozen=True)
class Option:
    """One generation option: JSON type, range or choices, default, help."""

    name: str
    type: str  # "integer", "number", "boolean", "string", "instruments"
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def check(self, value: Any) -> Any:
        """``value`` converted, or :class:`RequestError` naming the option and what it must be."""
        if value is None and self.nullable:
            return None
        if self.type == "boolean":
            if not isinstance(value, bool):
                raise RequestError(self.name, f"{self.name} must be true or false, got {value!r}")
            return value
        if self.type == "string":
            if value not in self.choices:
                choices = ", ".join(self.choices)
                raise RequestError(self.name, f"{self.name} must be one of {choices}, got {value!r}")
            return value
        if self.type == "instruments":
            if (
                not isinstance(value, list)
                or len(value) > MAX_INSTRUMENTS
                or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value)
            ):
                raise RequestError(
                    self.name,
                    f"{self.name} must be a list of at most {MAX_INSTRUMENTS} "
                    "instrument names or program numbers",
                )
            return value
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and self.type == "integer":
            ok = value == int(value)
        if ok and self.low is not None and self.high is not None:
            ok = self.low <= value <= self.high
        if not ok:
            kind = "an integer" if self.type == "integer" else "a number"
            span = (
                f"{int(self.low)}..{int(self.high)}"  # type: ignore[arg-type]
                if self.type == "integer"
                else f"{self.low:g}..{self.high:g}"
            )
            raise RequestError(
                self.name,
                f"{self.name} must be {kind} in {span}{' or null' if self.nullable else ''}, got {value!r}",
            )
        return int(value) if self.type == "integer" else float(value)


#: The options of ``POST /api/generate`` beside ``mood`` and ``features``.
OPTIONS: tuple[Option, ...] = (
    Option("bars", "integer", 12, "bars to generate", 1, 32),
    Option(
        "seed",
        "integer",
        None,
        "random seed (same seed and options, same music); null: random",
        0,
        2**31 - 1,
        nullable=True,
    ),
    Option(
        "temperature", "number", 1.0, "sampling temperature of planner and decoder; 0: most likely", 0, 10
    ),
    Option("top_p", "number", None, "decoder nucleus sampling mass; null: off", 0.01, 1, nullable=True),
    Option(
        "max_tokens_per_bar",
        "integer",
        512,
        "decoder budget per bar (a bar that reaches it is closed)",
        16,
        1024,
    ),
    Option(
        "key_lock", "number", DEFAULT_KEY_LOCK, "how strictly pitched instruments keep to the scale", 0, 1
    ),
    Option(
        "ensemble", "string", "auto", "instrument preset; auto: the features choose", choices=ENSEMBLE_NAMES
    ),
    Option(
        "instruments",
        "instruments",
        None,
        "play exactly these instruments (GM names, program numbers, drums); replaces the ensemble",
        nullable=True,
    ),
    Option("mute", "instruments", [], "leave these instruments out"),
    Option("wav", "boolean", False, "also render a WAV with FluidSynth (result.wav)"),
)
_OPTIONS = {option.name: option for option in OPTIONS}
_TOP_LEVEL = ("mood", "features", *_OPTIONS)


class RequestError(ValueError):
    """An invalid request: ``field`` is the one to blame ('' when none is)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_request(data: Any) -> dict[str, Any]:
    """A ``POST /api/generate`` body -> the worker's request (plain, picklable); :class:`RequestError`."""
    if not isinstance(data, dict):
        raise RequestError("", 'the body must be a JSON object, e.g. {"mood": "happy", "bars": 4}')
    unknown = sorted(set(data) - set(_TOP_LEVEL))
    if unknown:
        raise RequestError(
            unknown[0], f"unknown field(s) {', '.join(unknown)}; fields are {', '.join(_TOP_LEVEL)}"
        )
    mood = data.get("mood")
    if mood is not None and mood not in MOODS:
        raise RequestError("mood", f"mood must be one of {', '.join(MOODS)}, got {mood!r}")
    features = MOODS[mood] if mood is not None else EmotionFeatures()
    given = data.get("features", {})
    if not isinstance(given, dict):
        raise RequestError("features", 'features must be an object of feature values, e.g. {"energy": 0.8}')
    for name, value in given.items():  # one at a time, so the error names the field
        try:
            features = features.replace(**{name: value})
        except (FeatureError, TypeError) as error:
            raise RequestError(f"features.{name}", str(error)) from None
    options = {o.name: o.check(data[o.name]) if o.name in data else o.default for o in OPTIONS}
    for name in ("instruments", "mute"):
        try:
            if options[name] is not None:
                options[name] = parse_instruments(options[name])
        except ArrangementError as error:
            raise RequestError(name, f"{name}: {error}") from None
    try:
        arrangement = Arrangement(
            key_lock=options["key_lock"],
            ensemble=options["ensemble"],
            instruments=options["instruments"],
            muted=frozenset(options["mute"]),
        )
    except ArrangementError as error:  # an empty list
        raise RequestError("instruments", str(error)) from None
    try:
        arrangement.palette()  # everything muted: an error now, not in the worker
    except ArrangementError as error:
        raise RequestError("mute", str(error)) from None
    return {
        "features": features.to_dict(),
        "arrangement": arrangement.to_dict(),
        **{k: options[k] for k in ("bars", "seed", "temperature", "top_p", "max_tokens_per_bar", "wav")},
    }


def _error(status: int, message: str, field: str = "", **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": message, **extra}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


class GenerationApi:
    """The routes; ``runner`` runs the jobs (default: a :class:`JobRunner` with its defaults)."""

    def __init__(self, runner: JobRunner | None = None) -> None:
        self.runner = runner or JobRunner()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/generate", self.generate)
        app.router.add_get("/api/jobs", self.list_jobs)
        app.router.add_get("/api/jobs/{id}", self.job)
        app.router.add_get("/api/jobs/{id}/result.{kind}", self.result)
        app.router.add_get("/api/openapi.json", self.openapi)

    def close(self) -> None:
        self.runner.close()

    # ---- routes ----------------------------------------------------------------------------------------
    async def generate(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _error(413, f"the body is {request.content_length} bytes; at most {MAX_BODY}")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the body is over {MAX_BODY} bytes")
        if len(body) > MAX_BODY:
            return _error(413, f"the body is {len(body)} bytes; at most {MAX_BODY}")
        try:
            data = json.loads(body, parse_constant=_no_constant)
        except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
            return _error(400, f"the body is not JSON ({error})")
        try:
            parsed = parse_request(data)
        except RequestError as error:
            return _error(400, str(error), error.field)
        try:
            job = self.runner.submit(parsed)
        except QueueFull as error:
            return _error(429, str(error), queue_size=self.runner.queue_size)
        status = self._status(job)
        return web.json_response(status, status=202, headers={"Location": status["status_url"]})

    async def list_jobs(self, _request: web.Request) -> web.Response:
        return web.json_response({"jobs": [self._status(job) for job in self.runner.jobs()]})

    async def job(self, request: web.Request) -> web.Response:
        job = self.runner.get(request.match_info["id"])
        if job is None:
            return _unknown(request.match_info["id"])
        return web.json_response(self._status(job))

    async def result(self, request: web.Request) -> web.StreamResponse:
        job_id, kind = request.match_info["id"], request.match_info["kind"]
        if kind not in ("mid", "wav"):
            return _error(404, f"no result.{kind}: results are result.mid and result.wav")
        job = self.runner.get(job_id)
        if job is None:
            return _unknown(job_id)
        if kind == "wav" and not job.request["wav"]:
            return _error(404, f'job {job_id} was submitted without "wav": true, so it has no WAV')
        if job.state == FAILED:
            return _error(409, f"job {job_id} failed: {job.error}", state=job.state)
        if job.state != DONE:
            return _error(
                409,
                f"job {job_id} is {job.state} ({job.bars_done}/{job.bars} bars); "
                f"poll /api/jobs/{job_id} until its state is done",
                state=job.state,
            )
        path = job.midi if kind == "mid" else job.wav
        if path is None or not path.exists():
            return _unknown(job_id)
        media = "audio/midi" if kind == "mid" else "audio/wav"
        return web.FileResponse(
            path,
            headers={
                "Content-Type": media,
                "Content-Disposition": f'attachment; filename="e2m-{job_id}.{kind}"',
            },
        )

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    def _status(self, job: Job) -> dict[str, Any]:
        base = f"/api/jobs/{job.id}"
        status: dict[str, Any] = {
            "id": job.id,
            "state": job.state,
            "status_url": base,
            "midi_url": f"{base}/result.mid",
            "wav_url": f"{base}/result.wav" if job.request["wav"] else None,
            "progress": {"bars_done": job.bars_done, "bars": job.bars},
            "error": job.error,
            "request": job.request,
            "created": job.created,
            "started": job.started,
            "finished": job.finished,
        }
        if job.state == QUEUED:
            status["queue_position"] = self.runner.position(job)
        if job.state == DONE:
            status["result"] = {"notes": job.notes, "seconds": round(job.seconds, 3)}
        return status


def _unknown(job_id: str) -> web.Response:
    return _error(404, f"no job {job_id!r} (unknown, or forgotten: only the newest jobs are kept)")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


# ---- OpenAPI ---------------------------------------------------------------------------------------------


def _feature_schema(name: str) -> dict[str, Any]:
    low, high = RANGES[name]
    number = {"type": "integer" if name in INTEGER_FIELDS else "number", "minimum": low, "maximum": high}
    if name == "key":
        return {
            "oneOf": [number, {"type": "string", "example": "F#"}],
            "description": f"pitch class 0..11 or a name ({', '.join(KEY_NAMES)}, flats too)",
        }
    if name == "mode":
        return {
            "oneOf": [number, {"type": "string", "enum": ["major", "minor"]}],
            "description": "0 minor, 1 major",
        }
    return number


def _option_schema(option: Option) -> dict[str, Any]:
    if option.type == "instruments":
        schema: dict[str, Any] = {
            "type": "array",
            "maxItems": MAX_INSTRUMENTS,
            "items": {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": 127}]},
        }
    elif option.type == "string":
        schema = {"type": "string", "enum": list(option.choices)}
    else:
        schema = {"type": option.type}
        if option.low is not None:
            schema |= {"minimum": option.low, "maximum": option.high}
    if option.nullable:
        schema["nullable"] = True
    return schema | {"default": option.default, "description": option.help}


def openapi_document() -> dict[str, Any]:
    """This API as an OpenAPI 3.0 document (built from :data:`OPTIONS` and the feature ranges)."""

    def json_of(what: str, schema: str) -> dict[str, Any]:
        return {
            "description": what,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }

    error, job = json_of("error", "Error"), json_of("the job", "Job")
    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}

    def file(media: str, what: str) -> dict[str, Any]:
        return {
            "get": {
                "summary": f"The {what} of a finished job",
                "parameters": [job_id],
                "responses": {
                    "200": {
                        "description": what,
                        "content": {media: {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "404": error,
                    "409": error,
                    "403": error,
                },
            }
        }

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "e2m-live generation API",
            "version": "1",
            "description": "Emotion features (or a mood) to MIDI and WAV, generated in a worker process "
            "beside the live player. See docs/web.md.",
        },
        "paths": {
            "/api/generate": {
                "post": {
                    "summary": "Queue a generation job",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/GenerateRequest"}}
                        },
                    },
                    "responses": {"202": job, "400": error, "403": error, "413": error, "429": error},
                }
            },
            "/api/jobs": {
                "get": {
                    "summary": "The jobs kept, oldest first",
                    "responses": {
                        "200": {
                            "description": "jobs",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "jobs": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Job"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        "403": error,
                    },
                }
            },
            "/api/jobs/{id}": {
                "get": {
                    "summary": "A job's state and progress",
                    "parameters": [job_id],
                    "responses": {"200": job, "404": error, "403": error},
                }
            },
            "/api/jobs/{id}/result.mid": file("audio/midi", "MIDI file"),
            "/api/jobs/{id}/result.wav": file("audio/wav", "WAV file (jobs submitted with wav: true)"),
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "OpenAPI 3 document", "content": {"application/json": {}}}
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Features": {
                    "type": "object",
                    "additionalProperties": False,
                    "description": "any of the ten features; the rest from the mood (or the defaults)",
                    "properties": {name: _feature_schema(name) for name in FEATURE_ORDER},
                },
                "GenerateRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "mood": {
                            "type": "string",
                            "enum": list(MOODS),
                            "description": "start from this preset",
                        },
                        "features": {"$ref": "#/components/schemas/Features"},
                        **{o.name: _option_schema(o) for o in OPTIONS},
                    },
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
                        "status_url": {"type": "string"},
                        "midi_url": {"type": "string"},
                        "wav_url": {"type": "string", "nullable": True},
                        "progress": {
                            "type": "object",
                            "properties": {"bars_done": {"type": "integer"}, "bars": {"type": "integer"}},
                        },
                        "queue_position": {"type": "integer", "description": "while queued: 0 runs next"},
                        "error": {"type": "string", "nullable": True},
                        "request": {"type": "object", "description": "the request as the worker runs it"},
                        "result": {
                            "type": "object",
                            "properties": {"notes": {"type": "integer"}, "seconds": {"type": "number"}},
                        },
                        "created": {"type": "number"},
                        "started": {"type": "number", "nullable": True},
                        "finished": {"type": "number", "nullable": True},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "field": {
                            "type": "string",
                            "description": "the field to blame, e.g. features.energy",
                        },
                    },
                },
            }
        },
    }


def routes_of(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) of every operation of an OpenAPI document (for tests and docs)."""
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item]


__all__ = [
    "MAX_BODY",
    "OPTIONS",
    "GenerationApi",
    "Option",
    "RequestError",
    "openapi_document",
    "parse_request",
    "routes_of",
]
