"""What this machine offers the live daemon: MIDI APIs and ports, FluidSynth drivers, soundfonts,
OSC ports, models. Shared by ``e2m-live ports`` and ``e2m-live doctor``."""

from __future__ import annotations

import ctypes
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from e2m_live.live.jack_midi import import_jack
from e2m_live.live.outputs import (
    SOUNDFONT_CANDIDATES,
    SYSTEM_SOUNDFONT,
    OutputError,
    bundled_soundfont,
    compiled_midi_apis,
    default_midi_api,
    jack_server_running,
    list_midi_ports,
)


def fluidsynth_drivers() -> list[str]:
    """Audio drivers compiled into the installed libfluidsynth (empty if it cannot be loaded)."""
    try:
        import fluidsynth
    except (ImportError, OSError):
        return []
    lib = fluidsynth._fl
    callback_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p)
    found: list[str] = []
    callback = callback_type(lambda _data, _name, option: found.append(option.decode()))
    lib.fluid_settings_foreach_option.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_void_p,
        callback_type,
    ]
    settings = fluidsynth.new_fluid_settings()
    try:
        lib.fluid_settings_foreach_option(settings, b"audio.driver", None, callback)
    finally:
        fluidsynth.delete_fluid_settings(settings)
    return found


def soundfonts() -> list[Path]:
    """Every soundfont the daemon would consider, in order of preference, that exists."""
    ordered = [SYSTEM_SOUNDFONT, bundled_soundfont(), *SOUNDFONT_CANDIDATES]
    return [p for p in ordered if p is not None and p.is_file()]


def frame_output_problem() -> str | None:
    """Why the frame-accurate JACK output (``jack_midi.py``) cannot load here; None if it can."""
    try:
        import_jack()
    except OutputError as error:
        return str(error)
    return None


def port_in_use(host: str, port: int, kind: int) -> bool:
    """True if ``port`` cannot be bound on ``host`` (another program, or a running daemon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def midi_checks() -> list[Check]:
    checks = []
    apis = compiled_midi_apis()
    checks.append(
        Check(
            "python-rtmidi APIs",
            bool(apis),
            ", ".join(apis) or "none",
            "" if apis else "reinstall python-rtmidi with ALSA/JACK/CoreMIDI support",
        )
    )
    default = default_midi_api()
    if default == "alsa":
        seq = Path("/dev/snd/seq").exists()
        checks.append(
            Check(
                "ALSA sequencer",
                seq,
                "/dev/snd/seq present" if seq else "/dev/snd/seq missing",
                ""
                if seq
                else "load the snd-seq kernel module (`sudo modprobe snd-seq`), or use "
                "--midi-api jack with a running JACK server",
            )
        )
    if "jack" in apis:
        running = jack_server_running()
        checks.append(
            Check(
                "JACK server",
                running,
                "running" if running else "not running",
                ""
                if running
                else "optional: start one (`jackd -d alsa` or `jackd -d dummy`, "
                "or QjackCtl) to use --midi-api jack",
            )
        )
    if not sys.platform.startswith("win"):
        problem = frame_output_problem()
        checks.append(
            Check(
                "frame-accurate JACK output",
                problem is None,
                "JACK-Client and libjack load" if problem is None else problem,
                ""
                if problem is None
                else "pip install JACK-Client and install libjack (Debian: libjack-jackd2-0); until "
                "then --midi-api jack sends through python-rtmidi, up to a JACK period coarser",
            )
        )
    if sys.platform.startswith("win"):
        checks.append(
            Check(
                "virtual MIDI ports",
                False,
                "Windows has no virtual MIDI ports",
                "install loopMIDI, create a port, pass --midi-port NAME",
            )
        )
    return checks


def model_checks() -> list[Check]:
    from e2m_live.generators.registry import GENERATORS, unavailable_reason

    checks = []
    for name, entry in GENERATORS.items():
        reason = unavailable_reason(name)
        fix = ""
        if reason and name == "model":
            fix = "install or train the models (see README); until then the daemon uses --generator rules"
        checks.append(Check(f"generator {name}", reason is None, reason or entry.description, fix))
    return checks


def audio_checks() -> list[Check]:
    drivers = fluidsynth_drivers()
    fonts = soundfonts()
    sound_card = Path("/dev/snd").exists() or not sys.platform.startswith("linux")
    return [
        Check(
            "libfluidsynth",
            bool(drivers),
            f"audio drivers: {', '.join(drivers)}" if drivers else "not loadable",
            "" if drivers else "install libfluidsynth (Debian: libfluidsynth3)",
        ),
        Check(
            "soundfont",
            bool(fonts),
            str(fonts[0]) if fonts else "none found",
            "" if fonts else "install fluid-soundfont-gm or pass --soundfont FILE.sf2",
        ),
        Check(
            "sound card",
            sound_card,
            "present" if sound_card else "no /dev/snd",
            ""
            if sound_card
            else "FluidSynth can still render with --audio-driver file, or to a JACK "
            "server; for MIDI use a JACK virtual port",
        ),
    ]


def timing_checks() -> list[Check]:
    """Real-time scheduling, and how late this machine's timers wake a sleeping player."""
    from e2m_live.live.keep_awake import measure_wake_lateness

    wake = measure_wake_lateness()
    ok = wake.share_over_budget <= 0.01
    return [
        Check(
            "real-time scheduling",
            wake.realtime,
            "SCHED_FIFO granted" if wake.realtime else "not permitted",
            "" if wake.realtime else "run with rtprio limits (e.g. the audio group) or as root",
        ),
        Check(
            "timer wake-ups",
            ok,
            f"p99 {wake.p99_ms:.2f} ms late, max {wake.max_ms:.2f} ms; "
            f"{wake.over_budget} of {wake.samples} late enough to delay a note by over 1 ms",
            ""
            if ok
            else "serve with --keep-awake (idle CPUs never halt; typical of virtual machines and "
            "deep C-states)",
        ),
    ]


def midi_ports_by_api() -> dict[str, list[str] | None]:
    return {api: list_midi_ports(api) for api in compiled_midi_apis()}
