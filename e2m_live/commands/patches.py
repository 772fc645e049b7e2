"""`e2m-live patches`: write the controller patches (Max, Pd, TouchOSC, Open Stage Control).

e2m-live patches --out patches/
e2m-live patches --out patches/ --check    # exit 1 if the files there are stale
"""

from __future__ import annotations

import argparse

from e2m_live.commands.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="patches",
        metavar="FOLDER",
        help="folder to write the patches and their README into (default: patches)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and name the files that differ from the generator's",
    )


def run(args: argparse.Namespace) -> int:
    from e2m_live.patches import LayoutError, stale_files, write_all

    try:
        if args.check:
            stale = stale_files(args.out)
            for name in stale:
                print(f"stale: {args.out.rstrip('/')}/{name}")
            if not stale:
                print(f"{args.out}: up to date")
            return 1 if stale else 0
        paths = write_all(args.out)
    except LayoutError as error:
        raise UsageError(f"cannot lay out the controls: {error}") from None
    except OSError as error:
        raise UsageError(f"cannot write {args.out}: {error.strerror or error}") from None
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0
