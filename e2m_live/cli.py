"""The `e2m-live` command line.

Each subcommand lives in its own module under :mod:`e2m_live.commands` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily so that
``e2m-live describe`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from e2m_live import __version__
from e2m_live.commands.errors import UsageError

#: subcommand name -> (module under e2m_live.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "run the live daemon (OSC in, MIDI/audio out)"),
    "api": ("api", "the generation HTTP API alone, without the player"),
    "generate": ("generate", "offline: features -> plan -> MIDI (and WAV)"),
    "plan": ("plan", "print a 12-bar description planned from emotion features"),
    "decode": ("decode", "offline: a description (plan/describe JSON or a MIDI file) -> MIDI (and WAV)"),
    "describe": ("describe", "print the FIGARO description of a MIDI file"),
    "remi": ("remi", "print the REMI+ tokens of a MIDI file"),
    "ports": ("ports", "list MIDI APIs and ports, FluidSynth drivers, soundfonts"),
    "doctor": ("doctor", "check models, soundfont and MIDI backends"),
    "patches": ("patches", "write the controller patches from the OSC address table"),
}


def _load(name: str) -> ModuleType:
    module_name, _ = COMMANDS[name]
    return importlib.import_module(f"e2m_live.commands.{module_name}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2m-live", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (_, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        # Only the chosen subcommand's module is imported (keeps startup fast).
        if wanted == name:
            try:
                _load(name).add_arguments(sp)
            except ModuleNotFoundError as exc:
                if exc.name != f"e2m_live.commands.{COMMANDS[name][0]}":
                    raise
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    try:
        module = _load(args.command)
    except ModuleNotFoundError as exc:
        if exc.name == f"e2m_live.commands.{COMMANDS[args.command][0]}":
            print(f"e2m-live: '{args.command}' is not available in this build", file=sys.stderr)
            return 2
        raise
    try:
        return int(module.run(args) or 0)
    except UsageError as exc:
        print(f"e2m-live {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
