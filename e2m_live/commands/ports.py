"""`e2m-live ports`: MIDI APIs and ports, FluidSynth drivers, soundfonts, OSC ports in use."""

from __future__ import annotations

import argparse
import socket


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="OSC host to check (default: 127.0.0.1)")
    parser.add_argument(
        "--osc-port",
        type=int,
        action="append",
        dest="osc_ports",
        metavar="PORT",
        help="OSC port to check (repeatable; default: 9000 and 9001)",
    )


def run(args: argparse.Namespace) -> int:
    from e2m_live.live import diagnostics

    print("MIDI APIs and output ports:")
    ports = diagnostics.midi_ports_by_api()
    if not ports:
        print("  (python-rtmidi has no MIDI API here)")
    for api, names in ports.items():
        if names is None:
            print(f"  {api}: unavailable here (see `e2m-live doctor`)")
        else:
            print(f"  {api}: " + (", ".join(repr(n) for n in names) if names else "no ports"))
    drivers = diagnostics.fluidsynth_drivers()
    print("FluidSynth audio drivers: " + (", ".join(drivers) if drivers else "libfluidsynth not available"))
    fonts = diagnostics.soundfonts()
    print("Soundfonts found:" + ("" if fonts else " none"))
    for i, font in enumerate(fonts):
        print(f"  {font}" + ("  (default)" if i == 0 else ""))
    print(f"OSC ports on {args.host}:")
    for port in args.osc_ports or [9000, 9001]:
        udp = diagnostics.port_in_use(args.host, port, socket.SOCK_DGRAM)
        tcp = diagnostics.port_in_use(args.host, port, socket.SOCK_STREAM)
        state = ", ".join(
            f"{kind} {'in use' if used else 'free'}" for kind, used in (("udp", udp), ("tcp", tcp))
        )
        print(f"  {port}: {state}")
    return 0
