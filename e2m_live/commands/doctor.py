"""`e2m-live doctor`: check models, soundfont and MIDI backends, and say how to fix what is missing."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if anything is missing (default: only if nothing can play at all)",
    )


def run(args: argparse.Namespace) -> int:
    from e2m_live.live import diagnostics

    sections = {
        "Models": diagnostics.model_checks(),
        "MIDI": diagnostics.midi_checks(),
        "Audio": diagnostics.audio_checks(),
        "Timing": diagnostics.timing_checks(),
    }
    problems = 0
    for title, checks in sections.items():
        print(f"{title}:")
        for check in checks:
            print(f"  [{'ok' if check.ok else '!!'}] {check.name}: {check.detail}")
            if not check.ok:
                problems += 1
                if check.fix:
                    print(f"       fix: {check.fix}")
    generators_ok = any(c.ok for c in sections["Models"])
    by_name = {c.name: c.ok for checks in sections.values() for c in checks}
    can_play = (
        by_name.get("ALSA sequencer", False)
        or by_name.get("JACK server", False)
        or (by_name.get("soundfont", False) and by_name.get("libfluidsynth", False))
    )
    if problems:
        print(
            f"{problems} item(s) need attention."
            + (
                ""
                if can_play
                else " Nothing can be heard yet: start a JACK server or fix the audio items above."
            )
        )
    else:
        print("Everything is in place.")
    if args.strict:
        return 1 if problems else 0
    return 0 if generators_ok else 1
