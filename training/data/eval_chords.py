"""Chord recognition against POP909's human chord annotations.

    python -m training.data.eval_chords                          # all 909 songs, our recogniser
    python -m training.data.eval_chords --reference /tmp/figaro  # and FIGARO's own, measured the same way
    python -m training.data.eval_chords --limit 50 --json

POP909's ``chord_midi.txt`` gives chords in Harte notation with times in seconds, aligned to the
MIDI. Each label is mapped to FIGARO's 8 qualities (below); bass inversions are ignored. The
score is time-weighted: over the annotated time where the annotation is a chord (not ``N``), the
fraction where the recognised chord has the same root, and the fraction where it has the same
root and quality. Recognition runs on the MIDI's own beat grid, as in extraction.
``--reference`` points at a checkout of github dvruette/figaro (outside this repository) whose
``src/chord_recognition.py`` is run on the same files and scored by the same code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pretty_midi

from e2m_live.description import chords
from e2m_live.description.extract import MidiError, load_midi
from training.common import default_datasets_root

DEFAULT_POP909 = default_datasets_root() / "pop909"

#: Harte quality (POP909's vocabulary) -> FIGARO quality. Suspended and power chords have no third,
#: which FIGARO's recogniser reports as "None".
QUALITY_MAP = {
    "maj": "maj", "maj6": "maj", "min": "min", "min6": "min", "minmaj7": "min",
    "7": "dom7", "9": "dom7", "maj7": "maj7", "min7": "min7", "min9": "min7",
    "dim": "dim", "dim7": "dim", "hdim7": "dim", "aug": "aug",
    "sus2": "None", "sus4": "None", "sus4(b7)": "None", "1": "None", "5": "None",
}  # fmt: skip
_NOTE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

Segments = list[tuple[float, float, str]]  # (start s, end s, "root:quality" in FIGARO's terms)


def harte_to_figaro(label: str) -> str | None:
    """``"Bb:min7/b7"`` -> ``"A#:min7"``; ``"N"`` -> ``"N:N"``; ``None`` for an unknown quality."""
    label = label.strip()
    if label in ("N", "X", ""):
        return chords.NO_CHORD
    root, _, rest = label.partition(":")
    quality = rest.split("/")[0] or "maj"
    if not root or root[0] not in _NOTE or quality not in QUALITY_MAP:
        return None
    pc = (_NOTE[root[0]] + root[1:].count("#") - root[1:].count("b")) % 12
    return f"{chords.PITCH_CLASSES[pc]}:{QUALITY_MAP[quality]}"


def read_annotation(path: Path) -> Segments:
    out: Segments = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mapped = harte_to_figaro(parts[2])
        if mapped is not None:
            out.append((float(parts[0]), float(parts[1]), mapped))
    return out


def score(truth: Segments, predicted: Segments) -> tuple[float, float, float]:
    """(annotated chord seconds, seconds with the right root, seconds with the right root and quality)."""
    if not predicted:
        return sum(e - s for s, e, lab in truth if lab != chords.NO_CHORD), 0.0, 0.0
    p_start = np.array([p[0] for p in predicted])
    total = root_ok = both_ok = 0.0
    for s, e, label in truth:
        if label == chords.NO_CHORD or e <= s:
            continue
        total += e - s
        t_root, t_quality = chords.root_and_quality(label)
        first = max(0, int(np.searchsorted(p_start, s, side="right")) - 1)
        for ps, pe, plabel in predicted[first:]:
            if ps >= e:
                break
            overlap = min(e, pe) - max(s, ps)
            if overlap <= 0:
                continue
            p_root, p_quality = chords.root_and_quality(plabel)
            if p_root == t_root:
                root_ok += overlap
                if p_quality == t_quality:
                    both_ok += overlap
    return total, root_ok, both_ok


def ours(pm: pretty_midi.PrettyMIDI) -> Segments:
    return [(s, e, chords.simple_label(label)) for s, e, label in chords.recognize(pm)]


def reference_recogniser(checkout: Path) -> Callable[[pretty_midi.PrettyMIDI], Segments]:
    """FIGARO's ``MIDIChord(pm).extract()`` from a checkout (NumPy 2 needs ``np.NINF`` back)."""
    src = checkout / "src"
    if not (src / "chord_recognition.py").is_file():
        raise SystemExit(f"{checkout} is not a checkout of dvruette/figaro (no src/chord_recognition.py)")
    if not hasattr(np, "NINF"):
        np.NINF = -np.inf
    sys.path.insert(0, str(src))
    from chord_recognition import MIDIChord

    def run(pm: pretty_midi.PrettyMIDI) -> Segments:
        return [(float(s), float(e), label.split("/")[0]) for s, e, label in MIDIChord(pm).extract()]

    return run


def evaluate(folder: Path, recognisers: dict[str, Callable], limit: int | None = None) -> dict:
    songs = sorted(p for p in folder.iterdir() if (p / "chord_midi.txt").is_file())[:limit]
    totals = {name: [0.0, 0.0, 0.0] for name in recognisers}
    seconds = dict.fromkeys(recognisers, 0.0)
    skipped = []
    for song in songs:
        try:
            pm = load_midi(song / f"{song.name}.mid")
        except MidiError as error:
            skipped.append(f"{song.name}: {error}")
            continue
        truth = read_annotation(song / "chord_midi.txt")
        for name, recognise in recognisers.items():
            t0 = time.process_time()
            predicted = recognise(pm)
            seconds[name] += time.process_time() - t0
            for i, value in enumerate(score(truth, predicted)):
                totals[name][i] += value
    result: dict = {"songs": len(songs) - len(skipped), "skipped": skipped}
    for name, (total, root_ok, both_ok) in totals.items():
        result[name] = {
            "annotated_hours": round(total / 3600, 2),
            "root_accuracy": round(root_ok / total, 4) if total else None,
            "root_quality_accuracy": round(both_ok / total, 4) if total else None,
            "cpu_seconds": round(seconds[name], 1),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pop909", type=Path, default=DEFAULT_POP909, help="POP909 folder")
    parser.add_argument("--reference", type=Path, default=None, help="checkout of dvruette/figaro to compare")
    parser.add_argument("--limit", type=int, default=None, help="only the first N songs")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if not args.pop909.is_dir():
        print(f"eval_chords: no POP909 folder at {args.pop909}", file=sys.stderr)
        return 2
    recognisers: dict[str, Callable] = {"ours": ours}
    if args.reference is not None:
        recognisers["reference"] = reference_recogniser(args.reference)
    result = evaluate(args.pop909, recognisers, args.limit)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"POP909, {result['songs']} songs ({len(result['skipped'])} unreadable), FIGARO's 8 qualities")
    for name in recognisers:
        r = result[name]
        print(
            f"{name:>9}: root {r['root_accuracy']:.1%}, root+quality {r['root_quality_accuracy']:.1%}"
            f" over {r['annotated_hours']} h of annotated chords ({r['cpu_seconds']} CPU s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
