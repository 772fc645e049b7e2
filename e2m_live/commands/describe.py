"""`e2m-live describe`: print the FIGARO description of a MIDI file.

e2m-live describe song.mid
e2m-live describe song.mid --bars 5:12 --json
"""

from __future__ import annotations

import argparse
import json

from e2m_live.commands.remi import add_common_arguments, bar_range, extract_or_usage_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", help='print {"bars": [{...}, ...], "tokens": [...]} as JSON'
    )


def _record(tokens: list[str]) -> dict:
    """One description bar as a record (values are the token values, bins as ints)."""
    rec: dict = {"bar": None, "time_signature": None, "instruments": [], "chords": [], "tokens": tokens}
    fields = {
        "Note Density": "note_density",
        "Mean Velocity": "mean_velocity",
        "Mean Pitch": "mean_pitch",
        "Mean Duration": "mean_duration",
    }
    for tok in tokens:
        key, _, value = tok.partition("_")
        if key == "Bar":
            rec["bar"] = int(value)
        elif key == "Time Signature":
            rec["time_signature"] = value
        elif key in fields:
            rec[fields[key]] = int(value)
        elif key == "Instrument":
            rec["instruments"].append(value)
        elif key == "Chord":
            rec["chords"].append(value)
    return rec


def run(args: argparse.Namespace) -> int:
    extraction = extract_or_usage_error(args.file)
    bars = bar_range(extraction.description_bars(), args.bars)
    if args.json:
        print(json.dumps({"bars": [_record(b) for b in bars], "tokens": [t for b in bars for t in b]}))
        return 0
    for bar in bars:
        r = _record(bar)
        print(
            f"Bar {r['bar']:>3}  {r['time_signature']:>5}  density {r.get('note_density', 0):>2}"
            f"  velocity {r.get('mean_velocity', 0):>2}  pitch {r.get('mean_pitch', 0):>2}"
            f"  duration {r.get('mean_duration', 0):>2}  | {', '.join(r['instruments'])}"
            f"  | {' '.join(r['chords'])}"
        )
    return 0
