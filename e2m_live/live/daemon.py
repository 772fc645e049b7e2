"""The live daemon: OSC server + engine + player + outputs, wired together.

``Daemon(config).start()`` opens the outputs (degrading gracefully when one is unavailable),
starts the generation worker, the player thread and the OSC servers, and prints where it listens
and what it plays to. :meth:`Daemon.shutdown` releases every note and closes everything.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from e2m_live.arrangement import Arrangement, ArrangementError
from e2m_live.features import FEATURE_ORDER, INTEGER_FIELDS, MOODS, EmotionFeatures, FeatureError
from e2m_live.generators.registry import resolve_generator
from e2m_live.live.addresses import SCENE_SLOTS, STATE, Command, OscRejected, parse_message
from e2m_live.live.clock import Clock, InternalClock
from e2m_live.live.config import LiveConfig, parse_host_port
from e2m_live.live.engine import Engine
from e2m_live.live.keep_awake import KeepAwake
from e2m_live.live.link import LinkClock, SyncUnavailable
from e2m_live.live.measured import MeasuredFeatures, measured_messages
from e2m_live.live.osc import ERROR_ADDRESS, OscServer, Reply
from e2m_live.live.outputs import (
    FluidSynthOutput,
    MidiFileRecorder,
    OutputError,
    OutputSet,
    find_soundfont,
    open_default_midi,
)
from e2m_live.live.player import BarStarted, Player
from e2m_live.live.ramps import Ramp, Ramps
from e2m_live.live.realtime import DAEMON_PRIORITY, make_realtime
from e2m_live.live.scenes import SceneBook, SceneError, morph
from e2m_live.live.send_watch import SendWatch
from e2m_live.live.sync import describe_source, open_clock

log = logging.getLogger(__name__)


def default_audio_driver() -> str | None:
    """The audio driver FluidSynth plays to when none is configured: the platform's sound server,
    or ALSA with a sound card; None (no sound card): FluidSynth runs without one."""
    if sys.platform == "darwin":
        return "coreaudio"
    if sys.platform == "win32":
        return "wasapi"
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}"))
    if (runtime / "pipewire-0").exists():
        return "pipewire"
    if (runtime / "pulse" / "native").exists():
        return "pulseaudio"
    if any(Path("/dev/snd").glob("pcmC*D*p")):
        return "alsa"
    return None


@dataclass(slots=True)
class StartupReport:
    """What the daemon found at startup (printed, and useful to tests)."""

    listening: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    generator: str = ""
    sync: str = ""


class Daemon:
    """The resident live engine."""

    def __init__(
        self,
        config: LiveConfig,
        *,
        out: TextIO | None = None,
        generator_options: dict | None = None,
        record_timing: bool = False,
        record_messages: bool = False,
        measure: bool = True,
    ) -> None:
        self.config = config
        self.out = out or sys.stdout
        self.report = StartupReport()
        self.outputs = OutputSet()
        self.keep_awake = KeepAwake()
        self._send_watch = SendWatch(config.keep_awake)
        self._generator_options = generator_options or {}
        self._record_timing = record_timing
        self._record_messages = record_messages
        # A list: feedback for every listener; ("targets", list): for the --feedback targets only;
        # ("bar", BarStarted): a bar line (ramps step, the bar is measured).
        self._feedback: queue.SimpleQueue[list[Reply] | tuple[str, Any] | None] = queue.SimpleQueue()
        self._last_bar: BarStarted | None = None
        self._last_plan = ""
        self.engine: Engine | None = None
        self.player: Player | None = None
        self.osc: OscServer | None = None
        self.clock: Clock | None = None
        self.clock_out: OutputSet | None = None
        self._output_latency = 0.0  # seconds: a frame-accurate JACK output plays this late
        self._sync_lock = threading.Lock()
        #: The performer's transport intent (play pressed, not stopped since): a sync switch keeps
        #: it, so switching to a Link session nobody starts and back resumes playing.
        self._play_wanted = False
        self._feedback_thread = threading.Thread(target=self._feedback_loop, name="e2m-feedback", daemon=True)
        self._listeners: list[Callable[[list[Reply]], None]] = []
        self.web: Any = None
        self._closed = False
        # Feature changes come from the OSC threads, the web surface and the ramps (feedback thread).
        self._control_lock = threading.RLock()
        self.ramps = Ramps()
        self.scenes = SceneBook(SCENE_SLOTS)
        self._measure = measure
        self.measured: MeasuredFeatures | None = None

    # ---- startup ----------------------------------------------------------------------------------
    def start(self) -> StartupReport:
        config = self.config
        features = config.starting_features()
        name, warning = resolve_generator(config.generator)
        if warning:
            self._warn(warning)
        self.report.generator = name
        self._open_scenes()
        self._open_outputs()
        options = dict(self._generator_options)
        if name.startswith("model") and config.planner != "class-lstm":
            options.setdefault("planner", config.planner)
        self.engine = engine = Engine(
            name,
            options,
            features,
            loop=config.mode == "loop",
            seed=None if config.seed < 0 else config.seed,
            debounce=config.debounce_ms / 1000,
            arrangement=config.starting_arrangement(),
            allocator=config.worker_allocator,
        )
        if self._measure:
            self.measured = MeasuredFeatures(self.engine.measure, self._feedback.put)
            self.engine.on_measured = self.measured.receive
        self.engine.start(wait=0)
        self.clock = self._open_clock(config.sync, features.tempo, features.time_signature)
        self.player = Player(
            self.clock,
            self.outputs,
            self.engine,
            tempo=lambda: engine.tempo,
            on_bar=self._on_bar,
            on_state=self._on_state,
            record_timing=self._record_timing,
            record_messages=self._record_messages,
            realtime=config.realtime,
            on_output_lost=self._on_output_lost,
            clock_out=self.clock_out,
        )
        self.player.set_loudness(features.loudness)
        self.player.start_thread()
        self.osc = OscServer(
            self.handle,
            host=config.host,
            udp_port=None if config.udp_port < 0 else config.udp_port,
            tcp_port=None if config.tcp_port < 0 else config.tcp_port,
            allow=config.allow,
            feedback=[parse_host_port(t) for t in config.feedback],
        )
        self.osc.start()
        if self.osc.udp_port is not None:
            self.report.listening.append(f"OSC udp {config.host}:{self.osc.udp_port}")
        if self.osc.tcp_port is not None:
            self.report.listening.append(
                f"OSC tcp {config.host}:{self.osc.tcp_port} (OSC 1.0 or 1.1 framing)"
            )
        self._start_web_surface()
        self._feedback_thread.start()
        if config.host not in ("127.0.0.1", "::1", "localhost"):
            allowed = ", ".join(config.allow) or "loopback only"
            self._warn(f"OSC bound to {config.host}; clients allowed: {allowed}")
        if config.realtime:
            self._raise_thread_priorities()
        if config.keep_awake and not self.keep_awake.start():
            self._warn("--keep-awake: SCHED_IDLE is not available here; CPUs may halt between notes")
        if not self.engine.wait_first_bar(8.0):
            self._warn("the generator has not produced a bar yet; playback starts when it does")
        if config.autoplay:
            self._play()
        self._print_summary()
        return self.report

    def _raise_thread_priorities(self) -> None:
        """SCHED_FIFO below the player for the daemon's other threads (see realtime.py; the main
        thread, which only waits, is left alone); threads they start inherit it. Then freeze the
        heap so the cyclic GC has little to scan."""
        skip = {threading.main_thread(), self.player._thread if self.player else None}
        granted = [
            make_realtime(t.native_id, DAEMON_PRIORITY)
            for t in threading.enumerate()
            if t not in skip and t.native_id is not None
        ]
        if granted and not all(granted):
            log.info("real-time scheduling not permitted here; timing relies on the default scheduler")
        gc.collect()
        gc.freeze()

    def _open_scenes(self) -> None:
        """Scenes from the --scenes file (kept there as they are stored), if one is configured."""
        path = self.config.scenes or None
        if path is None:
            return
        try:
            self.scenes = SceneBook(SCENE_SLOTS, path)
        except SceneError as error:
            self._warn(f"{error}; starting with no scenes, and not writing that file")

    def _open_outputs(self) -> None:
        config = self.config
        if config.midi:
            midi, problem = open_default_midi(
                config.midi_api, config.midi_port or None, config.midi_name, config.jack_latency_ms
            )
            if midi is not None:
                self.outputs.add(midi)
                self._output_latency = getattr(midi, "latency", 0.0)
                if config.clock_out:
                    self.clock_out = OutputSet([midi])
            else:
                self._warn(problem or "no MIDI output")
        if config.fluidsynth:
            try:
                driver = config.audio_driver or default_audio_driver()
                self.outputs.add(
                    FluidSynthOutput(
                        config.soundfont or None,
                        driver,
                        gain=config.gain,
                        file_name=config.audio_file or None,
                    )
                )
            except OutputError as error:
                self._warn(f"no FluidSynth audio: {error}")
        if config.record:
            try:
                self.outputs.add(MidiFileRecorder(config.record))
            except OutputError as error:
                self._warn(str(error))
        self.report.outputs = self.outputs.describe()
        if config.clock_out and self.clock_out is None:
            self._warn("no MIDI clock out: it goes out on the MIDI port, and none is open")
        if not self.outputs.outputs:
            self._warn("no output is open: the daemon runs and answers OSC, but nothing is heard")

    def _listen_hint(self) -> str:
        """How to hear the music when no output makes sound here (no FluidSynth audio driver)."""
        if any(
            isinstance(o, FluidSynthOutput) and "no audio driver" not in o.name and "(file," not in o.name
            for o in self.outputs.outputs
        ):
            return ""  # FluidSynth plays to a sound card
        record = next((o for o in self.outputs.outputs if isinstance(o, MidiFileRecorder)), None)
        font = find_soundfont(self.config.soundfont or None)
        if record is not None:
            return (
                f"no audio output here; after stopping, render the recording: fluidsynth -ni -F out.wav "
                f"{font or 'SOUNDFONT.sf2'} {record.path} (or one section: e2m-live generate "
                f"--mood happy -o x.mid --wav x.wav); with a sound card add --fluidsynth"
            )
        return (
            "no audio output here: connect the MIDI port to a synth, add --fluidsynth (with a sound "
            "card), or --record FILE.mid and render it with fluidsynth -F"
        )

    def _warn(self, text: str) -> None:
        self.report.warnings.append(text)
        log.warning("%s", text)

    def _print_summary(self) -> None:
        lines = ["e2m-live serve"]
        lines += [f"  listening: {item}" for item in self.report.listening]
        lines += [f"  playing to: {item}" for item in self.report.outputs] or ["  playing to: nothing"]
        allocator = self.engine.worker_allocator if self.engine is not None else "unknown"
        mode = self.config.mode
        lines.append(f"  generator: {self.report.generator}, mode: {mode}, worker allocator: {allocator}")
        clock_out = ", MIDI clock out on the MIDI port" if self.clock_out else ""
        lines.append(f"  sync: {self.report.sync}{clock_out}")
        lines += [f"  warning: {w}" for w in self.report.warnings]
        if self._listen_hint():
            lines.append(f"  listen: {self._listen_hint()}")
        lines.append("  ready" + ("" if self.config.autoplay else " (send /e2m/play to start)"))
        print("\n".join(lines), file=self.out, flush=True)

    # ---- OSC ----------------------------------------------------------------------------------------
    # A flat dispatch, one branch per command kind of the address table (C901 counts the branches).
    def handle(self, address: str, args: list[Any]) -> list[Reply]:  # noqa: C901
        """Apply one OSC message; returns the replies for its sender."""
        try:
            command = parse_message(address, args)
        except OscRejected as error:
            return [(ERROR_ADDRESS, [address[:100], str(error)])]
        replies: list[Reply] = [(ERROR_ADDRESS, [address, note]) for note in command.notes]
        engine, player = self.engine, self.player
        assert engine is not None and player is not None
        if command.kind == "features" or command.kind == "mood":
            with self._control_lock:
                try:
                    if command.kind == "mood":
                        features = MOODS[command.action]
                    else:
                        features = engine.features.replace(**command.changes)
                except FeatureError as error:
                    return [*replies, (ERROR_ADDRESS, [address, str(error)])]
                self._set_features(features, cancel=command.changes if command.kind == "features" else None)
        elif command.kind == "ramp":
            changes = command.changes
            with self._control_lock:
                first = self.ramps.start(
                    engine.features.to_dict(), {changes["feature"]: changes["target"]}, changes["bars"]
                )
                self._set_features(engine.features.replace(**first), cancel=())
            self._feedback.put(
                [(STATE["ramp"], [changes["feature"], float(changes["target"]), max(0, changes["bars"] - 1)])]
            )
        elif command.kind == "scene":
            problem = self._scene(command)
            if problem:
                replies.append((ERROR_ADDRESS, [address, problem]))
        elif command.kind == "arrangement":
            try:
                arrangement = self._arranged(engine.arrangement, command)
            except ArrangementError as error:
                return [*replies, (ERROR_ADDRESS, [address, str(error)])]
            engine.set_arrangement(arrangement)
            self._feedback.put(self._arrangement_messages(arrangement))
        elif command.kind == "transport" and command.flag:
            note = {
                "play": self._play,
                "stop": self._stop,
                "continue": self._continue,
                "panic": self._panic,
                "regenerate": engine.regenerate,
            }[command.action]()
            if note:
                replies.append((ERROR_ADDRESS, [address, note]))
        elif command.kind == "sync":
            problem = self.set_sync(command.action)
            if problem:
                replies.append((ERROR_ADDRESS, [address, problem]))
        elif command.kind == "loop":
            engine.set_loop(command.flag)
            self._feedback.put([(STATE["loop"], [int(command.flag)])])
        elif command.kind == "status":
            state = self.state_messages()
            replies += state
            self._feedback.put(("targets", state))  # Max & co. receive on another socket
        return replies

    def _set_features(
        self, features: EmotionFeatures, cancel: Any = None, loudness_after: float | None = None
    ) -> None:
        """Apply features (caller holds the control lock): the engine re-plans and adapts the bars
        it has at once, the player's loudness gain follows from the next beat (after
        ``loudness_after``, if given); the ramps of the ``cancel`` features (None: all) stop, as a
        new value for them arrived."""
        engine, player = self.engine, self.player
        assert engine is not None and player is not None
        old = engine.features
        engine.set_features(features)
        if features.loudness != old.loudness:
            player.set_loudness(features.loudness, loudness_after)
        stopped = self.ramps.cancel(FEATURE_ORDER if cancel is None else cancel)
        self._feedback.put(
            [
                *self._feature_messages(features),
                *((STATE["ramp"], [r.feature, float(r.target), 0]) for r in stopped),
            ]
        )

    def _scene(self, command: Command) -> str | None:
        """scene/store, scene/recall [bars], scene/morph; returns why not, or None."""
        engine = self.engine
        assert engine is not None
        changes, scenes = command.changes, self.scenes
        try:
            with self._control_lock:
                if command.action == "store":
                    scenes.store(changes["scene"], engine.features)
                elif command.action == "recall":
                    target = scenes.recall(changes["scene"])
                    self.ramps.cancel(FEATURE_ORDER)
                    first = self.ramps.start(engine.features.to_dict(), target.to_dict(), changes["bars"])
                    self._set_features(engine.features.replace(**first), cancel=())
                    self._feedback.put(self._ramp_messages(self.ramps.active()))
                else:
                    a, b, x = changes["a"], changes["b"], changes["x"]
                    self._set_features(morph(scenes.get(a), scenes.get(b), x))
                    self._feedback.put([(STATE["morph"], [a, b, float(x)])])
        except (SceneError, OSError) as error:
            return str(error)
        self._feedback.put(self._scene_messages())
        return None

    def _advance_ramps(self, info: BarStarted) -> None:
        """The bar ``info`` was scheduled: every ramp takes its next step, heard from the bar line
        after it (the bar is already scheduled, and a loudness step waits for that bar line)."""
        engine = self.engine
        if engine is None:
            return
        with self._control_lock:
            values, ramps = self.ramps.advance()
            if not values:
                return
            bar_seconds = info.numerator * 4.0 / info.denominator * 60.0 / info.tempo
            self._set_features(
                engine.features.replace(**values), cancel=(), loudness_after=info.time + bar_seconds - 0.001
            )
        self._feedback.put(self._ramp_messages(ramps))

    @staticmethod
    def _ramp_messages(ramps: list[Ramp]) -> list[Reply]:
        return [(STATE["ramp"], [r.feature, float(r.target), r.bars_left]) for r in ramps]

    def _scene_messages(self) -> list[Reply]:
        return [(STATE["scene"], [self.scenes.current]), (STATE["scenes"], self.scenes.stored())]

    # ---- transport and sync ---------------------------------------------------------------------
    def _play(self) -> str | None:
        player, clock = self.player, self.clock
        assert player is not None and clock is not None
        self._play_wanted = True
        if not clock.follows_external_tempo or clock.running:
            player.play()
            return None
        if isinstance(clock, LinkClock) and clock.start_stop_sync:
            clock.set_playing(True)  # every peer starts; the poll thread then starts the player
            return None
        return "waiting for the master: playback starts with its Start or Continue"

    def _stop(self) -> None:
        assert self.player is not None
        self._play_wanted = False
        self.player.stop()
        if isinstance(self.clock, LinkClock):
            self.clock.set_playing(False)

    def _continue(self) -> str | None:
        player, clock = self.player, self.clock
        assert player is not None and clock is not None
        if clock.follows_external_tempo:
            return self._play()
        self._play_wanted = True
        player.resume()
        return None

    def _panic(self) -> None:
        assert self.player is not None
        self._play_wanted = False
        self.player.panic()

    def _open_clock(self, source: str, tempo: float, beats_per_bar: float) -> Clock:
        """The clock at startup; an unavailable source falls back to the internal clock."""
        try:
            clock = open_clock(source, self.config, tempo, beats_per_bar, self._output_latency)
        except SyncUnavailable as error:
            self._warn(f"sync {source} unavailable ({error}); using the internal clock")
            clock = InternalClock(tempo)
        clock.on_transport(self._on_master_transport)
        self.report.sync = describe_source(clock)
        return clock

    def set_sync(self, source: str) -> str | None:
        """Switch the clock source (stops playback first); returns why not, or None."""
        with self._sync_lock:
            player, engine, old = self.player, self.engine, self.clock
            assert player is not None and engine is not None and old is not None
            if old.source == source:
                self._feedback.put([self.sync_message()])
                return None
            features = engine.features
            try:
                clock = open_clock(
                    source, self.config, features.tempo, features.time_signature, self._output_latency
                )
            except SyncUnavailable as error:
                return f"cannot sync to {source}: {error}"
            was_playing = player.playing or self._play_wanted
            clock.on_transport(self._on_master_transport)
            self.clock = clock
            player.set_clock(clock)
            old.close()
            self.report.sync = describe_source(clock)
            log.info("sync: %s", self.report.sync)
            if was_playing and (not clock.follows_external_tempo or clock.running):
                player.play()
        self._feedback.put([self.sync_message()])
        return None

    def _on_master_transport(self, event: str) -> None:
        """From the MIDI input or Link thread: keep it short."""
        player, clock = self.player, self.clock
        if player is None or clock is None or not clock.follows_external_tempo:
            return
        if event == "start":
            player.restart()
        elif event == "continue":
            player.play()
        elif event == "stop":
            player.stop()
        self._feedback.put([self.sync_message()])

    def sync_message(self) -> Reply:
        clock = self.clock
        assert clock is not None
        peers = clock.peers if isinstance(clock, LinkClock) else 0
        return (STATE["sync"], [clock.source, float(round(clock.tempo, 3)), int(clock.running), peers])

    @staticmethod
    def _arranged(current: Arrangement, command: Command) -> Arrangement:
        """The arrangement after one validated command; raises :class:`ArrangementError` when it
        cannot be played (every instrument of the list or preset muted)."""
        changes = dict(command.changes)
        if "mute" in changes:
            changes = {"muted": current.muted | {changes.pop("mute")}}
        elif "unmute" in changes:
            changes = {"muted": current.muted - {changes.pop("unmute")}}
        arrangement = current.replace(**changes)
        arrangement.palette()  # raises if nothing is left to play
        return arrangement

    @staticmethod
    def _arrangement_messages(arrangement: Arrangement) -> list[Reply]:
        data = arrangement.to_dict()
        palette = arrangement.palette()
        return [
            (STATE["key_lock"], [float(arrangement.key_lock)]),
            (STATE["ensemble"], [arrangement.ensemble]),
            (STATE["instruments"], list(palette) if palette is not None else ["auto"]),
            (STATE["muted"], data["muted"] or ["none"]),
        ]

    @staticmethod
    def _feature_messages(features: EmotionFeatures) -> list[Reply]:
        values = [
            int(getattr(features, n)) if n in INTEGER_FIELDS else float(getattr(features, n))
            for n in FEATURE_ORDER
        ]
        return [
            (STATE["features"], values),
            *((STATE[n], [v]) for n, v in zip(FEATURE_ORDER, values, strict=True)),
        ]

    def state_messages(self) -> list[Reply]:
        """The full state, as sent in reply to ``/e2m/status``."""
        engine, player = self.engine, self.player
        assert engine is not None and player is not None
        bar = self._last_bar
        messages: list[Reply] = [
            (STATE["playing"], [int(player.playing)]),
            (STATE["loop"], [int(engine.loop)]),
            (STATE["bar"], [bar.number if bar else 0, bar.index if bar else 0]),
            (STATE["lag"], [player.late_bars, float(bar.lag_ms) if bar else 0.0]),
            (STATE["plan"], [self._last_plan or "nothing played yet"]),
            self.sync_message(),
            *self._feature_messages(engine.features),
            *self._arrangement_messages(engine.arrangement),
            *self._scene_messages(),
            *self._ramp_messages(self.ramps.active()),
        ]
        if self.measured is not None and self.measured.latest is not None:
            messages += measured_messages(self.measured.latest)
        return messages

    # ---- other control surfaces (HTTP + WebSocket) ------------------------------------------------
    def add_feedback_listener(self, listener: Callable[[list[Reply]], None]) -> None:
        """Call ``listener`` (feedback thread) with every batch of feedback broadcast to OSC clients."""
        self._listeners.append(listener)

    def _start_web_surface(self) -> None:
        """Start the browser control surface where the configuration asks for it (issue 16)."""
        port = self.config.web_port
        if port is None:
            return
        from e2m_live.web import WebSurface  # aiohttp is imported only when the surface is on

        def section_bars(section: int) -> list:
            engine = self.engine
            found = [s for s in (engine.sections if engine else []) if s.id == section]
            return list(found[-1].bars) if found else []

        surface = WebSurface(
            self.handle,
            self.state_messages,
            host=self.config.host,
            port=port,
            allow=self.config.allow,
            section_bars=section_bars,
            realtime_priority=DAEMON_PRIORITY if self.config.realtime else None,
        )
        try:
            surface.start()
        except OSError as error:
            self._warn(
                f"no browser surface: {error.strerror or error} (--http-port 0 takes any free "
                f"port, --no-web turns it off)"
            )
            return
        self.web = surface
        self.add_feedback_listener(surface.publish)
        self.report.listening += [f"browser {url}" for url in surface.urls()]

    def _close_web_surface(self) -> None:
        """Stop the browser control surface, if one runs."""
        if self.web is not None:
            self.web.close()
            self.web = None

    # ---- feedback (its own thread: the player never touches the network) ------------------------
    def _on_bar(self, info: BarStarted) -> None:
        self._last_bar = info
        self.outputs.mark_bar(info.time, info.tempo, info.numerator, info.denominator)
        if self.engine is not None:
            self.engine.bar_started(info)
        messages: list[Reply] = [
            (STATE["bar"], [info.number, info.index]),
            (STATE["lag"], [info.late_bars, float(info.lag_ms)]),
            self.sync_message(),
        ]
        if isinstance(self.clock, LinkClock) and self.engine is not None:
            self.clock.quantum = self.engine.features.time_signature  # the bar is Link's quantum
        if info.plan != self._last_plan:
            self._last_plan = info.plan
            messages.append((STATE["plan"], [info.plan]))
        if info.repeated:
            log.info(
                "bar %d: next bar not ready, repeating material (%d late so far): %s",
                info.number,
                info.late_bars,
                self.engine.late_reason if self.engine is not None else "no generator",
            )
        self._feedback.put(messages)
        self._feedback.put(("bar", info))  # ramps and "what is playing": on the feedback thread

    def _bar_line(self, info: BarStarted) -> None:
        """Feedback thread, once per bar: ramps step; the bar goes to the measurement."""
        try:
            self._advance_ramps(info)
            if self.measured is not None and info.bar is not None:
                self.measured.add_bar(info.bar, info.gain, info.tempo, info.adaptation)
            # A frame-accurate output absorbs sends up to its latency late: count what it wrote late.
            delivered = self.outputs.delivery_counts()
            if delivered is not None:
                hint = self._send_watch.add(info.time, *delivered, framed=True)
            else:
                hint = self._send_watch.add(info.time, info.messages_sent, info.messages_late)
            if hint:
                log.warning("%s", hint)
        except Exception:
            log.exception("bar-line work failed")

    def _on_output_lost(self, name: str, why: str) -> None:
        self._feedback.put([(ERROR_ADDRESS, ["output", f"lost {name}: {why}; playing on without it"])])

    def _on_state(self, playing: bool) -> None:
        self._feedback.put([(STATE["playing"], [int(playing)])])
        if not playing and self.measured is not None:
            self.measured.reset()

    def _feedback_loop(self) -> None:
        while True:
            messages = self._feedback.get()
            if messages is None:
                return
            if isinstance(messages, tuple) and messages[0] == "bar":
                self._bar_line(messages[1])
                continue
            if self.osc is not None:
                try:
                    if isinstance(messages, tuple):
                        self.osc.send_to_feedback_targets(messages[1])
                    else:
                        self.osc.broadcast(messages)
                except Exception:
                    log.exception("feedback failed")
            if not isinstance(messages, tuple):
                for listener in self._listeners:
                    try:
                        listener(messages)
                    except Exception:
                        log.exception("feedback listener failed")

    # ---- shutdown -------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Release every note (then CC 123/120 everywhere), close outputs, worker and servers."""
        if self._closed:
            return
        self._closed = True
        if self.player is not None:
            self.player.shutdown()
        self.outputs.close()
        self._close_web_surface()
        if self.osc is not None:
            self._feedback.put(None)
            self.osc.close()
        if self.engine is not None:
            self.engine.close()
        if self.clock is not None:
            self.clock.close()
        self.keep_awake.close()

    def wait(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set (signals set it)."""
        while not stop.wait(0.5):
            pass
