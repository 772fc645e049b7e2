"""Files per second of REMI+ and description extraction, ours against FIGARO's reference.

    python benchmarks/extract_speed.py                                   # ours only
    python benchmarks/extract_speed.py --reference /tmp/figaro --json    # both, same files, same process

The file list is fixed: 12 files from each of five corpora under the shared datasets folder
(Beatles, POP909, EMOPIA, VGMIDI, Nottingham), drawn with a fixed seed from the sorted file names.
``--reference`` points at a checkout of github dvruette/figaro (outside this repository); its
``src/input_representation.py`` is imported and timed on the same files (load the MIDI, then
``get_description()`` and ``get_remi_events()``, as our ``extract`` does). Files either side
rejects still count: the time to reject them is part of the work.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = Path(os.environ.get("E2M_SHARED", REPO.parent / "shared")) / "datasets"
CORPORA = {
    "lakh-clean-beatles": "**/*.mid",
    "pop909": "*/*.mid",
    "emopia": "*.mid",
    "vgmidi": "**/*.mid",
    "nottingham": "*.mid",
}
PER_CORPUS = 12
SEED = 2024


def benchmark_files(datasets: Path, per_corpus: int = PER_CORPUS) -> list[Path]:
    """The fixed benchmark list: ``per_corpus`` files from each corpus, chosen with a fixed seed."""
    files: list[Path] = []
    for corpus, pattern in CORPORA.items():
        found = sorted((datasets / corpus).glob(pattern))
        if not found:
            raise SystemExit(f"no MIDI files under {datasets / corpus}")
        files += random.Random(f"{SEED}-{corpus}").sample(found, min(per_corpus, len(found)))
    return files


def _ours() -> Callable[[Path], object]:
    sys.path.insert(0, str(REPO))
    from e2m_live.description.extract import MidiError, extract

    def run(path: Path) -> object:
        try:
            return extract(path)
        except MidiError:
            return None

    return run


def _reference(checkout: Path) -> Callable[[Path], object]:
    """FIGARO's InputRepresentation, importable without torchtext and with NumPy 2."""
    src = checkout / "src"
    if not (src / "input_representation.py").is_file():
        raise SystemExit(f"{checkout} is not a checkout of dvruette/figaro (no src/input_representation.py)")
    import numpy as np

    if not hasattr(np, "NINF"):  # removed in NumPy 2; FIGARO's chord code still uses it
        np.NINF = -np.inf
    sys.path.insert(0, str(src))
    try:
        import vocab  # noqa: F401  (needs torchtext)
    except ImportError:
        # Only remi2midi uses RemiVocab; extraction does not need it.
        stub = types.ModuleType("vocab")
        stub.RemiVocab = None
        sys.modules["vocab"] = stub
    from input_representation import InputRepresentation

    def run(path: Path) -> object:
        try:
            rep = InputRepresentation(str(path), strict=True)
            return rep.get_description(), rep.get_remi_events()
        except Exception:  # the reference rejects some files (ValueError, OSError, ...)
            return None

    return run


def _time(run: Callable[[Path], object], files: list[Path]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, files accepted) for one pass."""
    wall, cpu = time.perf_counter(), time.process_time()
    accepted = sum(run(f) is not None for f in files)
    return time.perf_counter() - wall, time.process_time() - cpu, accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS, help="shared datasets folder")
    parser.add_argument("--reference", type=Path, default=None, help="checkout of dvruette/figaro to compare")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes per implementation; best is kept")
    parser.add_argument("--per-corpus", type=int, default=PER_CORPUS, help="files per corpus (default 12)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    files = benchmark_files(args.datasets, args.per_corpus)
    runners = {"ours": _ours()}
    if args.reference is not None:
        runners["reference"] = _reference(args.reference)
    for run in runners.values():  # warm-up: imports, caches, the OS file cache
        for f in files[:: max(1, len(files) // 5)]:
            run(f)
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    accepted: dict[str, int] = {}
    for _ in range(max(1, args.repeat)):
        for name, run in runners.items():  # alternate, so both see the same machine load
            seconds, cpu, ok = _time(run, files)
            best[name] = min(best.get(name, seconds), seconds)
            best_cpu[name] = min(best_cpu.get(name, cpu), cpu)
            accepted[name] = ok
    # On a shared machine wall time includes waiting for the CPU; CPU time of this single-threaded
    # process does not, so both are reported and the speedup is given for each.
    result: dict = {"files": len(files)}
    for name in runners:
        result[name] = {
            "seconds": round(best[name], 3),
            "cpu_seconds": round(best_cpu[name], 3),
            "files_per_second": round(len(files) / best[name], 2),
            "files_per_cpu_second": round(len(files) / best_cpu[name], 2),
            "accepted": accepted[name],
        }
    if "reference" in result:
        result["speedup"] = round(best["reference"] / best["ours"], 2)
        result["speedup_cpu"] = round(best_cpu["reference"] / best_cpu["ours"], 2)
    if args.json:
        print(json.dumps(result))
    else:
        for name in runners:
            r = result[name]
            print(
                f"{name:>9}: {r['files_per_second']:6.2f} files/s wall,"
                f" {r['files_per_cpu_second']:6.2f} per CPU s"
                f" ({r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU, {r['accepted']} accepted)"
            )
        if "speedup" in result:
            speed = f"{result['speedup']:.2f}x wall, {result['speedup_cpu']:.2f}x CPU"
            print(f"  speedup: {speed}, {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
