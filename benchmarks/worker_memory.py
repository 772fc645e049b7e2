"""The generation worker's memory over many abandoned sections, per allocator (issue 20).

    .venv/bin/python benchmarks/worker_memory.py                  # 5 minutes, glibc and jemalloc
    .venv/bin/python benchmarks/worker_memory.py --minutes 15

Runs ``ModelGenerator`` as the live worker does, in one process per allocator, both at once (same
machine, same minutes, so their speeds compare): a new request every section (features, tempo, key,
ensemble and key lock drawn from one seed), each abandoned after two bars or earlier, mid-bar, after
a random number of tokens (the worker's ``interrupt``), as a performer's changes every two bars do.
Reports, per allocator, the resident memory over the first and the last quarter of the run, its growth,
the sections decoded (the speed ratio), and the allocator's statistics: for glibc ``mallinfo2`` (in
use, free, free chunks: a heap whose free chunks and size grow while its memory in use stays flat is
fragmenting), for jemalloc ``mallctl``'s ``stats.allocated`` (in use) and ``stats.resident``. jemalloc comes
from ``e2m_live.live.allocator.find_jemalloc`` (``apt install libjemalloc2``); without it only glibc runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from e2m_live.live.allocator import find_jemalloc

REPO = Path(__file__).resolve().parents[1]

RUN = r"""
import ctypes, json, random, sys, time
import e2m_live.generators.model as generation
from e2m_live.arrangement import Arrangement
from e2m_live.features import EmotionFeatures

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
process = ctypes.CDLL(None)
mallctl = getattr(process, "mallctl", None)  # jemalloc's, when it is preloaded

def jemalloc_mb(name):
    epoch, value, size = ctypes.c_uint64(1), ctypes.c_size_t(0), ctypes.c_size_t(8)
    mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(8))  # refresh the statistics
    mallctl(name, ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0))
    return value.value / 2**20

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))

def heap():
    if mallctl is not None:
        return {"in_use_mb": jemalloc_mb(b"stats.allocated"), "resident_mb": jemalloc_mb(b"stats.resident")}
    info = libc.mallinfo2()
    return {"in_use_mb": info.uordblks / 2**20, "free_mb": info.fordblks / 2**20, "free_chunks": info.ordblks}

minutes = float(sys.argv[1])
model = generation.ModelGenerator()
model.pipeline
rng, features, prime, budget = random.Random(1), EmotionFeatures(), None, [0]
def interrupt():
    budget[0] -= 1
    return budget[0] <= 0
model.interrupt = interrupt
started, sections, samples = time.monotonic(), 0, []
while time.monotonic() - started < minutes * 60:
    name = rng.choice(["energy", "valence", "danceability", "acousticness", "tempo"])
    if name == "tempo":
        features = features.replace(tempo=float(rng.choice((84, 96, 108, 120, 132, 144))))
    else:
        features = features.replace(**{name: rng.random()})
    if sections % 4 == 0:
        features = features.replace(key=rng.randrange(12), mode=rng.randrange(2))
    ensemble = rng.choice(["auto", "band", "rock", "strings", "jazz"])
    arrangement = Arrangement(ensemble=ensemble, key_lock=round(rng.random(), 2))
    budget[0] = rng.randrange(5, 80)  # interrupt checks (every 8 tokens) before the section is left
    bars = model.generate(features, prime=prime, seed=rng.randrange(2**31), arrangement=arrangement)
    for made, prime in enumerate(bars, start=1):
        if made == 2:
            break
    bars.close()
    sections += 1
    if sections % 25 == 0:
        seconds = time.monotonic() - started
        samples.append({"sections": sections, "seconds": seconds, "rss_mb": rss_mb(), **heap()})
print(json.dumps(samples))
"""


def start(minutes: float, preload: str | None) -> subprocess.Popen:
    env = dict(os.environ)
    if preload:
        env["LD_PRELOAD"] = preload
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(minutes)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args(argv)
    jemalloc = find_jemalloc()
    runs = {"glibc": start(args.minutes, None)}
    if jemalloc:
        runs["jemalloc"] = start(args.minutes, jemalloc)
    else:
        print("jemalloc is not installed (apt install libjemalloc2): glibc only")
    results = {}
    for label, proc in runs.items():
        out, err = proc.communicate(timeout=args.minutes * 60 + 600)
        if proc.returncode != 0:
            raise SystemExit(f"{label}: {err[-2000:]}")
        results[label] = json.loads(out.strip().splitlines()[-1])
    reference = results["glibc"][-1]
    for label, samples in results.items():
        # Medians of the first and the last quarter of the samples (one every 25 sections): jemalloc
        # returns freed pages after a delay (its dirty-page decay), so single samples swing a few MB.
        quarter = max(1, len(samples) // 4)
        early = statistics.median(s["rss_mb"] for s in samples[:quarter])
        late = statistics.median(s["rss_mb"] for s in samples[-quarter:])
        first, last = samples[0], samples[-1]
        pace = (last["sections"] / last["seconds"]) / (reference["sections"] / reference["seconds"])
        line = (
            f"{label:8s} RSS {early:.1f} MB (to section {samples[quarter - 1]['sections']}) -> "
            f"{late:.1f} MB (from section {samples[-quarter]['sections']} to {last['sections']}), "
            f"{100 * (late / early - 1):+.1f} %; {pace:.2f}x glibc's sections a minute"
        )
        if label == "glibc":
            line += (
                f"; heap in use {first['in_use_mb']:.0f} -> {last['in_use_mb']:.0f} MB, free "
                f"{first['free_mb']:.0f} -> {last['free_mb']:.0f} MB in {first['free_chunks']} -> "
                f"{last['free_chunks']} chunks"
            )
        else:
            line += (
                f"; in use {first['in_use_mb']:.0f} -> {last['in_use_mb']:.0f} MB, jemalloc resident "
                f"{first['resident_mb']:.0f} -> {last['resident_mb']:.0f} MB"
            )
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
