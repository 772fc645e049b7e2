"""Generation jobs for the HTTP API: a bounded queue, one niced worker process, results in a temp dir.

:class:`JobRunner` keeps the job records (queued, running, done, failed), hands one job at a time
to a worker **process** (spawned on the first job, models loaded once and kept until it has been
idle ``idle_exit`` seconds) and follows its progress. Nothing of a generation runs in the daemon's
process: the worker is ordinary-priority (the daemon's threads are SCHED_FIFO with
SCHED_RESET_ON_FORK) and niced below the live generation worker (``niceness`` 15 against 10), so
the player and the live section always win the CPU. The daemon's process only moves small messages
(a progress message per bar) and serves the finished files; the worker writes them to a private
temporary folder, removed on :meth:`JobRunner.close`. The newest ``keep`` finished jobs and at most
``max_bytes`` of results are kept; older ones are forgotten (their files deleted).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class QueueFull(RuntimeError):
    """The queue holds ``queue_size`` unfinished jobs already."""


@dataclass
class Job:
    """One job's record (mutated only under the runner's lock)."""

    id: str
    request: dict[str, Any]
    state: str = QUEUED
    bars_done: int = 0
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    midi: Path | None = None
    wav: Path | None = None
    notes: int = 0
    seconds: float = 0.0

    @property
    def bars(self) -> int:
        return int(self.request["bars"])

    def size(self) -> int:
        return sum(p.stat().st_size for p in (self.midi, self.wav) if p is not None and p.exists())


def _generate(pipeline: Any, job_id: str, request: dict[str, Any], folder: Path, results: mp.Queue) -> dict:
    """One job in the worker: plan, decode bar by bar (a progress message each), write MIDI (and WAV)."""
    from e2m_live.arrangement import Arrangement
    from e2m_live.description.remi import bars_to_midi, bars_to_smf
    from e2m_live.features import EmotionFeatures
    from e2m_live.pipeline import DecodingOptions, section_duration

    features = EmotionFeatures.from_dict(request["features"])
    arrangement = Arrangement.from_dict(request["arrangement"])
    seed, temperature = request["seed"], request["temperature"]
    description = pipeline.plan(
        features, bars=request["bars"], seed=seed, temperature=temperature, arrangement=arrangement
    )
    options = DecodingOptions(
        temperature=temperature, top_p=request["top_p"], max_tokens_per_bar=request["max_tokens_per_bar"]
    )
    bars = []
    for generated in pipeline.decode(
        description,
        features,
        seed=None if seed is None else seed + 1,
        options=options,
        arrangement=arrangement,
    ):
        bars.append(generated.bar)
        results.put(("progress", job_id, len(bars)))
    midi = folder / f"{job_id}.mid"
    midi.write_bytes(bars_to_smf(bars, default_tempo=features.tempo))
    wav = None
    if request["wav"]:
        from e2m_live.audio import render_wav

        wav = folder / f"{job_id}.wav"
        render_wav(bars_to_midi(bars, default_tempo=features.tempo), wav)
    return {
        "midi": str(midi),
        "wav": str(wav) if wav else None,
        "notes": sum(len(b.notes) for b in bars),
        "seconds": section_duration(bars),
    }


def worker_main(
    requests: mp.Queue, results: mp.Queue, model_dir: str | None, niceness: int, idle_exit: float
) -> None:
    """The worker process: one job at a time, models loaded on the first job and kept."""
    with contextlib.suppress(OSError):  # at least ``niceness``, before the slow imports
        os.setpriority(os.PRIO_PROCESS, 0, max(niceness, os.getpriority(os.PRIO_PROCESS, 0)))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when the worker ends
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import e2m_live.pipeline as pipeline_module  # before the models: it sets OpenMP's wait policy

    parent = os.getppid()
    pipeline = None
    idle_since = time.monotonic()
    while True:
        try:
            item = requests.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent or time.monotonic() - idle_since > idle_exit:
                results.put(("exit", "", 0))
                return
            continue
        if item is None:  # nothing left to save: skip the interpreter's teardown (2 s with torch loaded)
            results.close()
            results.join_thread()
            os._exit(0)
        job_id, request, folder = item
        results.put(("running", job_id, 0))
        try:
            if pipeline is None:
                pipeline = pipeline_module.Pipeline.load(model_dir, threads=1)
            results.put(("done", job_id, _generate(pipeline, job_id, request, Path(folder), results)))
        except Exception as error:  # a bad job must not end the worker
            log.exception("generation job %s failed", job_id)
            results.put(("failed", job_id, f"{type(error).__name__}: {error}"[:500]))
        idle_since = time.monotonic()


class JobRunner:
    """Job records, the bounded queue and the worker process (see the module doc). Thread-safe."""

    def __init__(
        self,
        *,
        queue_size: int = 4,
        keep: int = 16,
        max_bytes: int = 256 << 20,
        model_dir: str | os.PathLike | None = None,
        niceness: int = 15,
        idle_exit: float = 600.0,
    ) -> None:
        self.queue_size = queue_size
        self.keep = keep
        self.max_bytes = max_bytes
        self.model_dir = str(model_dir) if model_dir is not None else None
        self.niceness = niceness
        self.idle_exit = idle_exit
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: list[str] = []  # ids, oldest first
        self._folder: Path | None = None
        self._thread: threading.Thread | None = None
        self._process: mp.process.BaseProcess | None = None
        self._requests: mp.Queue | None = None
        self._results: mp.Queue | None = None
        self._closed = False
        #: Called first on the dispatcher thread (the server gives it its real-time priority: a thread
        #: of the daemon's process preempted while it holds the GIL would stall the player).
        self.thread_setup: Callable[[], None] | None = None

    # ---- any thread ------------------------------------------------------------------------------------
    def submit(self, request: dict[str, Any]) -> Job:
        """Queue a validated request; raises :class:`QueueFull` when ``queue_size`` jobs are unfinished."""
        with self._lock:
            if self._closed:
                raise QueueFull("the server is stopping")
            unfinished = sum(1 for j in self._jobs.values() if j.state in (QUEUED, RUNNING))
            if unfinished >= self.queue_size:
                raise QueueFull(
                    f"{unfinished} jobs are queued or running (the limit is {self.queue_size}); "
                    "try again when one is done"
                )
            job = Job(secrets.token_hex(8), request)
            self._jobs[job.id] = job
            self._waiting.append(job.id)
            if self._thread is None:
                self._folder = Path(tempfile.mkdtemp(prefix="e2m-api-"))
                self._thread = threading.Thread(target=self._run, name="e2m-api-jobs", daemon=True)
                self._thread.start()
            self._wake.notify()
            return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def position(self, job: Job) -> int | None:
        """0 for the next job to run, 1 for the one after...; None unless queued."""
        with self._lock:
            return self._waiting.index(job.id) if job.id in self._waiting else None

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id while it runs."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker (killed if it does not stop within ``timeout``), delete the results."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        if self._requests is not None:
            with contextlib.suppress(OSError, ValueError):
                self._requests.put(None)
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    # ---- the dispatcher thread (mostly waiting) -------------------------------------------------------
    def _run(self) -> None:
        if self.thread_setup is not None:
            self.thread_setup()
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._jobs[self._waiting.pop(0)]
                job.state, job.started = RUNNING, time.time()
            try:
                self._ensure_worker()
                assert self._requests is not None and self._folder is not None
                self._requests.put((job.id, job.request, str(self._folder)))
                self._follow(job)
            except Exception as error:
                log.exception("generation job %s", job.id)
                self._finish(job, FAILED, error=f"internal error: {error}")

    def _ensure_worker(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        if self._process is not None:
            self._process.join(0.1)
        # The worker inherits passive OpenMP waiting from this process (set by e2m_live/__init__.py).
        context = mp.get_context("spawn")
        self._requests, self._results = context.Queue(), context.Queue()
        self._process = context.Process(
            target=worker_main,
            name="e2m-api-worker",
            daemon=True,
            args=(self._requests, self._results, self.model_dir, self.niceness, self.idle_exit),
        )
        self._process.start()

    def _follow(self, job: Job) -> None:
        """Read the worker's messages until ``job`` ends (or the worker dies)."""
        assert self._results is not None and self._process is not None
        while True:
            try:
                kind, job_id, value = self._results.get(timeout=0.5)
            except queue.Empty:
                if self._closed:
                    self._finish(job, FAILED, error="the server stopped")
                    return
                if not self._process.is_alive():
                    self._finish(
                        job,
                        FAILED,
                        error=f"the worker process ended (exit code "
                        f"{self._process.exitcode}) during this job",
                    )
                    return
                continue
            if kind == "exit":  # the worker timed out idle just as this job was sent: a new one takes it
                self._process.join(2.0)
                self._ensure_worker()
                assert self._requests is not None
                self._requests.put((job.id, job.request, str(self._folder)))
                continue
            if job_id != job.id:
                continue
            if kind == "progress":
                with self._lock:
                    job.bars_done = int(value)
            elif kind == "done":
                self._finish(job, DONE, result=value)
                return
            elif kind == "failed":
                self._finish(job, FAILED, error=str(value))
                return

    def _finish(self, job: Job, state: str, *, error: str | None = None, result: dict | None = None) -> None:
        with self._lock:
            job.state, job.error, job.finished = state, error, time.time()
            if result is not None:
                job.midi = Path(result["midi"])
                job.wav = Path(result["wav"]) if result["wav"] else None
                job.notes, job.seconds = int(result["notes"]), float(result["seconds"])
                job.bars_done = job.bars
            self._evict()

    def _evict(self) -> None:
        """Forget the oldest finished jobs beyond ``keep`` or ``max_bytes`` (lock held)."""
        finished = [j for j in self._jobs.values() if j.state in (DONE, FAILED)]
        total = sum(j.size() for j in finished)
        while finished and (len(finished) > self.keep or total > self.max_bytes):
            old = finished.pop(0)
            total -= old.size()
            for path in (old.midi, old.wav):
                if path is not None:
                    path.unlink(missing_ok=True)
            del self._jobs[old.id]
