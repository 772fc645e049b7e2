"""`e2m-live remi`: print the REMI+ tokens of a MIDI file (FIGARO's event language).

e2m-live remi song.mid             # one bar per line
e2m-live remi song.mid --json      # {"tokens": [...]}
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from e2m_live.commands.errors import UsageError

if TYPE_CHECKING:
    from e2m_live.description.extract import Extraction


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """FILE and --bars, shared with `e2m-live describe`."""
    parser.add_argument("file", type=Path, metavar="FILE.mid", help="a standard MIDI file")
    parser.add_argument(
        "--bars",
        default=None,
        metavar="START:END",
        help="only bars START..END, numbered from 1 as in the Bar_ tokens, END included (e.g. 5:12, 3:, :8)",
    )


def bar_range(bars: list[list[str]], spec: str | None) -> list[list[str]]:
    """Select bars by a 1-based inclusive ``START:END`` spec (either side may be empty)."""
    if spec is None:
        return bars
    start_text, sep, end_text = spec.partition(":")
    try:
        start = int(start_text) if start_text.strip() else 1
        end = int(end_text) if end_text.strip() else len(bars)
        if not sep:
            end = start
    except ValueError:
        raise UsageError(f"--bars wants START:END with whole numbers, got {spec!r}") from None
    if start < 1 or end < start:
        raise UsageError(f"--bars {spec!r}: need 1 <= START <= END")
    return bars[start - 1 : end]


def extract_or_usage_error(path: Path) -> Extraction:
    """Extract a file, turning any MIDI problem into a one-line usage error (exit code 2)."""
    from e2m_live.description.extract import MidiError, extract

    try:
        return extract(path)
    except MidiError as error:
        raise UsageError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--json", action="store_true", help='print {"tokens": [...]} as JSON')


def run(args: argparse.Namespace) -> int:
    extraction = extract_or_usage_error(args.file)
    bars = bar_range(extraction.remi_bars(), args.bars)
    if args.json:
        print(json.dumps({"tokens": [t for b in bars for t in b]}))
        return 0
    for bar in bars:
        print(", ".join(bar))
    return 0
