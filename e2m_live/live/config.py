"""The daemon's configuration: one dataclass, the same keys in TOML and on the command line.

A TOML file (``e2m-live serve --config live.toml``) sets any key at top level (``udp_port =
9000``; the arrangement too: ``key_lock``, ``ensemble``, ``instruments``, ``muted``) and the
starting features in a ``[features]`` table (the keys and ranges of
:data:`e2m_live.features.FEATURES`); a command-line flag (``--udp-port 9000``,
``--instruments piano,drums``, ``--mute drums``) overrides the file. See ``examples/*.toml``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2m_live.arrangement import (
    AUTO,
    DEFAULT_KEY_LOCK,
    ENSEMBLE_NAMES,
    Arrangement,
    ArrangementError,
    split_names,
)
from e2m_live.features import FEATURES, MOODS, EmotionFeatures, FeatureError
from e2m_live.live.allocator import AUTO as AUTO_ALLOCATOR
from e2m_live.live.allocator import AllocatorError, worker_library
from e2m_live.live.jack_midi import DEFAULT_LATENCY_MS


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


def _opt(help_text: str, **extra: Any) -> Any:
    return {"help": help_text, **extra}


@dataclass(slots=True)
class LiveConfig:
    """Every setting of ``e2m-live serve``."""

    host: str = field(
        default="127.0.0.1", metadata=_opt("address the OSC servers and the browser surface bind to")
    )
    udp_port: int = field(default=9000, metadata=_opt("OSC UDP port (0: any free port, -1: off)"))
    tcp_port: int = field(
        default=9001, metadata=_opt("OSC TCP port, OSC 1.0 or 1.1 framing (0: any, -1: off)")
    )
    allow: list[str] = field(
        default_factory=list,
        metadata=_opt(
            "client addresses or networks allowed when bound wider than loopback (repeatable); "
            "default: loopback only",
            list=True,
        ),
    )
    feedback: list[str] = field(
        default_factory=list,
        metadata=_opt("also send feedback to HOST:PORT over UDP (repeatable)", list=True),
    )
    http_port: int = field(
        default=8080,
        metadata=_opt(
            "HTTP + WebSocket port of the browser control surface, on --host with the same allow-list "
            "(0: any free port, -1: off)"
        ),
    )
    web: bool = field(
        default=True, metadata=_opt("serve the browser control surface (--no-web: off, like --http-port -1)")
    )
    planner: str = field(
        default="class-lstm",
        metadata=_opt(
            "planner of the model generator (see docs/planner_comparison.md)",
            choices=("class-lstm", "transformer", "single-lstm"),
        ),
    )
    scenes: str = field(
        default="",
        metadata=_opt(
            "scene slots from and to this JSON file (read at startup, written on every /e2m/scene/store)"
        ),
    )
    midi: bool = field(default=True, metadata=_opt("play to a MIDI port"))
    midi_api: str = field(
        default="auto",
        metadata=_opt(
            "MIDI API: auto, alsa, jack, coremidi, winmm",
            choices=("auto", "alsa", "jack", "coremidi", "winmm"),
        ),
    )
    midi_port: str = field(
        default="", metadata=_opt("an existing MIDI port (name or part of it); default: a virtual port")
    )
    midi_name: str = field(default="e2m-live", metadata=_opt("MIDI client name of the virtual port"))
    jack_latency_ms: float = field(
        default=DEFAULT_LATENCY_MS,
        metadata=_opt(
            "with --midi-api jack: write each message on its exact JACK frame this many ms after its "
            "deadline (absorbs the sender's wake-up jitter; a constant latency a DAW compensates, and "
            "--sync plays that much ahead); 0: send at once through python-rtmidi (quantised to the period)"
        ),
    )
    fluidsynth: bool = field(default=False, metadata=_opt("play audio through FluidSynth"))
    audio_driver: str = field(
        default="",
        metadata=_opt(
            "FluidSynth audio driver (pulseaudio, pipewire, alsa, jack, coreaudio, wasapi, file, ...); "
            "default: FluidSynth's own default"
        ),
    )
    audio_file: str = field(
        default="",
        metadata=_opt(
            "with --audio-driver file: the WAV file FluidSynth writes (default: FluidSynth's fluidsynth.wav)"
        ),
    )
    soundfont: str = field(default="", metadata=_opt("soundfont (.sf2); default: found automatically"))
    gain: float = field(default=0.4, metadata=_opt("FluidSynth gain"))
    record: str = field(default="", metadata=_opt("record the performance to this .mid file"))
    generator: str = field(
        default="model",
        metadata=_opt(
            "generator: model (planner + FIGARO; falls back to rules if the models are missing) or rules"
        ),
    )
    worker_allocator: str = field(
        default=AUTO_ALLOCATOR,
        metadata=_opt(
            "memory allocator of the generation worker: auto (jemalloc when installed, e.g. "
            "apt install libjemalloc2: its memory stays flat for hours), glibc, or a library path"
        ),
    )
    mode: str = field(
        default="endless",
        metadata=_opt(
            "endless: fresh 12-bar sections under the same features; loop: repeat the current 12 bars",
            choices=("endless", "loop"),
        ),
    )
    mood: str = field(default="", metadata=_opt(f"starting mood preset ({', '.join(MOODS)})"))
    tempo: float = field(
        default=0.0,
        metadata=_opt(
            f"starting tempo in {FEATURES['tempo'].unit}, {FEATURES['tempo'].range} "
            "(default: from the features)"
        ),
    )
    seed: int = field(default=-1, metadata=_opt("random seed (-1: random)"))
    autoplay: bool = field(
        default=False, metadata=_opt("start playing at once (otherwise wait for /e2m/play)")
    )
    sync: str = field(
        default="internal",
        metadata=_opt(
            "clock source: internal (own tempo), midi (follow MIDI clock in), link (Ableton Link; "
            "needs `pip install aalink`, GPL-3.0)",
            choices=("internal", "midi", "link"),
        ),
    )
    clock_in_port: str = field(
        default="",
        metadata=_opt(
            "with --sync midi: follow MIDI clock from this input port (name or part of it); "
            "default: the daemon's own virtual input '<midi-name>:clock_in'"
        ),
    )
    clock_out: bool = field(
        default=False,
        metadata=_opt(
            "send MIDI clock (24 ppqn, start/stop/continue, song position) on the MIDI output port"
        ),
    )
    sync_offset_ms: float = field(
        default=0.0,
        metadata=_opt("with --sync midi/link: play this many ms ahead of the master's beat (output latency)"),
    )
    link_start_stop: bool = field(
        default=True,
        metadata=_opt(
            "with --sync link: share start/stop with the session (/e2m/play and /e2m/stop start and "
            "stop every peer); off: the session always runs"
        ),
    )
    realtime: bool = field(
        default=True,
        metadata=_opt(
            "SCHED_FIFO for the player thread (and, below it, the daemon's other threads) where permitted"
        ),
    )
    keep_awake: bool = field(
        default=False,
        metadata=_opt(
            "keep idle CPUs from halting (a SCHED_IDLE spinner each) so the player wakes on time in a "
            "virtual machine; costs power"
        ),
    )
    debounce_ms: float = field(default=30.0, metadata=_opt("wait this long after the last control change"))
    features: dict[str, Any] = field(
        default_factory=dict,
        metadata=_opt(
            f"starting features ([features] table in TOML; keys: {', '.join(FEATURES)}; "
            f"{' and '.join(n for n, s in FEATURES.items() if s.names)} also by name)",
            cli=False,
        ),
    )
    key_lock: float = field(
        default=DEFAULT_KEY_LOCK,
        metadata=_opt(
            "how strictly pitched instruments keep to the scale, 0..1 (1: scale tones only, 0: free)"
        ),
    )
    ensemble: str = field(
        default=AUTO, metadata=_opt(f"instruments: {', '.join(ENSEMBLE_NAMES)} (auto: the features choose)")
    )
    instruments: list[str] = field(
        default_factory=list,
        metadata=_opt(
            "play exactly these instruments (GM names, program numbers 0..127, drums; comma-separated); "
            "replaces the ensemble",
            instruments=True,
            metavar="NAME[,NAME...]",
        ),
    )
    muted: list[str] = field(
        default_factory=list,
        metadata=_opt(
            "leave this instrument out (repeatable)",
            list=True,
            instruments=True,
            flag="--mute",
            metavar="NAME",
        ),
    )

    @property
    def web_port(self) -> int | None:
        """The browser surface's port (0: any free one), or None when it is off."""
        return None if not self.web or self.http_port < 0 else self.http_port

    def starting_features(self) -> EmotionFeatures:
        """The features in force at startup: mood preset, then [features], then --tempo."""
        try:
            base = MOODS[self.mood] if self.mood else EmotionFeatures()
            if self.features:
                base = base.replace(**self.features)
            if self.tempo:
                base = base.replace(tempo=self.tempo)
        except FeatureError as error:
            raise ConfigError(f"features: {error}") from None
        return base

    def starting_arrangement(self) -> Arrangement:
        """Key lock, ensemble, instruments and muted instruments at startup."""
        arrangement = Arrangement()
        steps = (
            ("key_lock", {"key_lock": self.key_lock}),
            ("ensemble", {"ensemble": self.ensemble}),
            ("instruments", {"instruments": tuple(self.instruments) or None}),
            ("muted", {"muted": frozenset(self.muted)}),
        )
        for name, change in steps:  # one at a time, so the error names the key
            try:
                arrangement = arrangement.replace(**change)
                arrangement.palette()
            except ArrangementError as error:
                raise ConfigError(f"{name}: {error}") from None
        return arrangement

    def validate(self) -> None:
        if self.mood and self.mood not in MOODS:
            raise ConfigError(f"mood: unknown preset {self.mood!r}; choose one of {', '.join(MOODS)}")
        for name in ("udp_port", "tcp_port", "http_port"):
            port = getattr(self, name)
            if not -1 <= port <= 65535:
                raise ConfigError(f"{name}: {port} is not a port number (0..65535, or -1 for off)")
        for target in self.feedback:
            parse_host_port(target)
        if self.mode not in ("endless", "loop"):
            raise ConfigError(f"mode: {self.mode!r} is not 'endless' or 'loop'")
        if self.sync not in ("internal", "midi", "link"):
            raise ConfigError(f"sync: {self.sync!r} is not 'internal', 'midi' or 'link'")
        if not -1000 <= self.sync_offset_ms <= 1000:
            raise ConfigError("sync_offset_ms must be within -1000..1000")
        if not 0 <= self.jack_latency_ms <= 200:
            raise ConfigError("jack_latency_ms must be within 0..200")
        if self.debounce_ms < 0:
            raise ConfigError("debounce_ms must be >= 0")
        try:
            worker_library(self.worker_allocator)
        except AllocatorError as error:
            raise ConfigError(str(error)) from None
        self.starting_features()
        self.starting_arrangement()


def parse_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"feedback: {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file; unknown keys and wrong types raise :class:`ConfigError`."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config {path}: {error}") from None
    return data


def _instrument_list(name: str, value: Any) -> list[str]:
    """Instruments in TOML: a list of names and program numbers, or one comma-separated string."""
    if isinstance(value, str):
        return split_names(value)
    if isinstance(value, list) and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        return [str(v) for v in value]
    raise ConfigError(f"{name}: expected a list of instrument names or program numbers, got {value!r}")


def _check_type(name: str, value: Any, default: Any) -> Any:
    if name in _INSTRUMENT_FIELDS:
        return _instrument_list(name, value)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{name}: expected {type(default).__name__}, got {value!r}")
    return value


_INSTRUMENT_FIELDS = {f.name for f in dataclasses.fields(LiveConfig) if f.metadata.get("instruments")}


def build_config(
    file_values: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> LiveConfig:
    """Defaults < file < command line; every value type-checked."""
    config = LiveConfig()
    known = {f.name: f for f in dataclasses.fields(LiveConfig)}
    for source in (file_values or {}, overrides or {}):
        for name, value in source.items():
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}; settings are {', '.join(known)}")
            if value is None:
                continue
            setattr(config, name, _check_type(name, value, getattr(config, name)))
    config.validate()
    return config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`LiveConfig` field (``--udp-port``, ``--no-midi``, ...)."""
    parser.add_argument("--config", metavar="TOML", help="read settings from a TOML file (flags override it)")
    defaults = LiveConfig()
    for f in dataclasses.fields(LiveConfig):
        meta = dict(f.metadata)
        if meta.get("cli") is False:
            continue
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        default = getattr(defaults, f.name)
        help_text = (
            f"{meta['help']} (default: {default!r})" if default not in ("", [], 0.0, -1) else meta["help"]
        )
        if isinstance(default, bool):
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif meta.get("list"):
            parser.add_argument(
                flag, dest=f.name, action="append", default=None, help=help_text, metavar=meta.get("metavar")
            )
        elif meta.get("instruments"):
            parser.add_argument(
                flag, dest=f.name, type=split_names, default=None, help=help_text, metavar=meta.get("metavar")
            )
        else:
            parser.add_argument(
                flag,
                dest=f.name,
                type=type(default),
                default=None,
                help=help_text,
                choices=meta.get("choices"),
            )


def config_from_args(args: argparse.Namespace) -> LiveConfig:
    file_values = load_toml(args.config) if getattr(args, "config", None) else {}
    overrides = {
        f.name: getattr(args, f.name, None)
        for f in dataclasses.fields(LiveConfig)
        if dict(f.metadata).get("cli") is not False
    }
    return build_config(file_values, overrides)
