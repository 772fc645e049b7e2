"""The OSC address space: one table, the single source of truth.

Every address the daemon understands (``direction="in"``) and every feedback address it sends
(``direction="out"``) is an :class:`OscAddress` in :data:`ADDRESSES`. The OSC server validates
against it, ``docs/osc.md`` is rendered from it (:func:`render_markdown`) and the controller
patches (Max, Pd, TouchOSC, Open Stage Control) are generated from it.

Validation policy (also rendered into ``docs/osc.md``):

* numbers outside a range are **clamped** to the range for continuous controls (faders, tempo,
  time signature) and the sender gets an ``/e2m/error`` saying so; the clamped value is applied;
* NaN and infinities, wrong types, unknown names, missing arguments and unknown addresses are
  **rejected**: nothing changes and ``/e2m/error`` says what and why;
* extra arguments are ignored (with an ``/e2m/error`` note), so a controller that appends an
  id still works.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from e2m_live.arrangement import (
    DEFAULT_KEY_LOCK,
    ENSEMBLE_NAMES,
    ArrangementError,
    instrument_name,
    parse_instruments,
    split_names,
)
from e2m_live.features import (
    FEATURE_ORDER,
    FEATURES,
    INTEGER_FIELDS,
    MOODS,
    EmotionFeatures,
    FeatureError,
)

PREFIX = "/e2m"
#: Scene slots: ``/e2m/scene/store`` 0..SCENE_SLOTS-1.
SCENE_SLOTS = 8
#: The most bars a ramp or a scene recall may take.
MAX_RAMP_BARS = 64
#: Features a ramp moves smoothly (the whole-number ones switch at a ramp's end in a scene recall).
RAMPABLE = tuple(n for n in FEATURE_ORDER if n not in INTEGER_FIELDS)
#: Clock sources for ``/e2m/sync`` and ``--sync``.
SYNC_SOURCES = ("internal", "midi", "link")
_DEFAULTS = EmotionFeatures()

#: ``entry`` is a text field a performer types into (instrument names); ``text`` is shown, not touched.
Control = Literal["fader", "xy", "button", "toggle", "menu", "number", "multi", "text", "entry", "none"]


@dataclass(frozen=True, slots=True)
class Argument:
    """One OSC argument: accepted type tags, range or choices, default and unit."""

    name: str
    types: str  # OSC type tags accepted, e.g. "f", "is" (first one is the canonical type)
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    default: Any = None
    unit: str = ""
    out_of_range: Literal["clamp", "reject"] = "clamp"

    def describe(self) -> str:
        parts = []
        if self.low is not None and self.high is not None:
            parts.append(f"{self.low:g}..{self.high:g}")
        if self.choices:
            parts.append(" | ".join(self.choices))
        if self.unit:
            parts.append(self.unit)
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class OscAddress:
    """One entry of the address table."""

    address: str
    arguments: tuple[Argument, ...]
    label: str
    effect: str
    direction: Literal["in", "out"] = "in"
    control: Control = "fader"
    optional_arguments: bool = False  # transport buttons: bare message or one flag
    repeated: bool = False  # the (single) argument repeats: any number of it, none included
    group: str = "feature"
    extra: dict[str, Any] = field(default_factory=dict)
    optional: tuple[Argument, ...] = ()  # trailing arguments that may be left out (controllers send none)

    @property
    def type_tags(self) -> str:
        """Canonical OSC type tag string, e.g. ``"ff"``."""
        return "".join(a.types[0] for a in self.arguments)


def _feature(name: str, detailed: bool = True) -> Argument:
    """A feature as a control's argument, from its :class:`~e2m_live.features.FeatureSpec`: range,
    clamp or reject, and the type tags (a named feature takes its names as strings too); ``detailed``
    adds the names as choices and the unit (the one-feature addresses; ``/e2m/features`` omits them)."""
    spec = FEATURES[name]
    types = "is" if spec.names else ("i" if spec.integer else "fi")
    return Argument(
        name,
        types,
        spec.low,
        spec.high,
        choices=spec.names if detailed else (),
        default=getattr(_DEFAULTS, name),
        unit=spec.unit if detailed else "",
        out_of_range=spec.out_of_range,
    )


def _state(name: str) -> Argument:
    """A feature as a feedback argument: ``i`` for whole-number features, else ``f``, with its range."""
    spec = FEATURES[name]
    return Argument(name, "i" if spec.integer else "f", spec.low, spec.high)


_FADER_EFFECT = {
    "energy": "intensity: note density, drums, velocity",
    "valence": "positivity: register and harmony brightness",
    "danceability": "groove: drum pattern regularity and syncopation",
    "acousticness": "acoustic vs electric instruments",
    "instrumentalness": "lead voice (0) vs purely instrumental (1)",
}

_FLAG = Argument("flag", "iTF", 0, 1, default=1, out_of_range="clamp")
_INSTRUMENT = Argument("instrument", "si", unit="GM name, program 0..127 or drums", out_of_range="reject")
#: Quick picks for controllers that cannot type (TouchOSC buttons).
QUICK_PICKS = "quick"

ADDRESSES: tuple[OscAddress, ...] = (
    *(
        OscAddress(
            f"{PREFIX}/{name}",
            (_feature(name),),
            name.capitalize(),
            f"set {name} ({_FADER_EFFECT[name]}); new material from the next ready bar",
        )
        for name in ("energy", "valence", "danceability", "acousticness", "instrumentalness")
    ),
    OscAddress(
        f"{PREFIX}/loudness",
        (_feature("loudness"),),
        "Loudness",
        "set loudness (note velocities); new material from the next ready bar",
    ),
    OscAddress(
        f"{PREFIX}/key",
        (_feature("key"),),
        "Key",
        "set the key (pitch class 0 = C, or a name such as F# or Bb)",
        control="menu",
    ),
    OscAddress(
        f"{PREFIX}/mode", (_feature("mode"),), "Mode", "set the mode: 0 minor, 1 major", control="toggle"
    ),
    OscAddress(
        f"{PREFIX}/time_signature",
        (_feature("time_signature"),),
        "Beats per bar",
        "set beats per bar (x/4); new material from the next ready bar",
        control="number",
    ),
    OscAddress(
        f"{PREFIX}/tempo",
        (_feature("tempo"),),
        "Tempo",
        "set the tempo; applies at the next bar line",
        control="number",
    ),
    OscAddress(
        f"{PREFIX}/features",
        tuple(_feature(n, detailed=False) for n in FEATURE_ORDER),
        "All features",
        f"set all ten features at once, in the order {', '.join(FEATURE_ORDER)}",
        control="multi",
    ),
    OscAddress(
        f"{PREFIX}/mood",
        (Argument("mood", "s", choices=tuple(MOODS), default="happy", out_of_range="reject"),),
        "Mood",
        "apply a mood preset (all ten features)",
        control="menu",
    ),
    OscAddress(
        f"{PREFIX}/xy",
        (_feature("valence", detailed=False), _feature("energy", detailed=False)),
        "Valence / energy pad",
        "set valence (x) and energy (y) from an XY pad",
        control="xy",
    ),
    OscAddress(
        f"{PREFIX}/key_lock",
        (Argument("key_lock", "fi", 0.0, 1.0, default=DEFAULT_KEY_LOCK),),
        "Key lock",
        "how strictly pitched instruments keep to the scale of key and mode: 1 scale "
        "tones only, lower values admit chromatic notes with a penalty, 0 free; from the next "
        "ready bar",
        group="arrangement",
    ),
    OscAddress(
        f"{PREFIX}/ensemble",
        (Argument("ensemble", "s", choices=ENSEMBLE_NAMES, default="auto", out_of_range="reject"),),
        "Ensemble",
        "auto (the features choose the instruments) or a preset band; an explicit "
        "/e2m/instruments list takes precedence; from the next ready bar",
        control="menu",
        group="arrangement",
    ),
    OscAddress(
        f"{PREFIX}/instruments",
        (_INSTRUMENT,),
        "Instruments",
        "play exactly these instruments (each argument one instrument; a string may hold several "
        "separated by commas); no argument, or auto, returns to the ensemble; unknown or "
        "ambiguous names are rejected",
        control="entry",
        repeated=True,
        group="arrangement",
        extra={QUICK_PICKS: (("auto", ()),)},
    ),
    OscAddress(
        f"{PREFIX}/mute",
        (_INSTRUMENT,),
        "Mute",
        "leave one instrument out (of the ensemble, the list or auto) until unmuted; muting the "
        "last instrument of a list or preset is rejected",
        control="entry",
        group="arrangement",
        extra={QUICK_PICKS: (("drums", ("drums",)),)},
    ),
    OscAddress(
        f"{PREFIX}/unmute",
        (_INSTRUMENT,),
        "Unmute",
        "let a muted instrument play again",
        control="entry",
        group="arrangement",
        extra={QUICK_PICKS: (("drums", ("drums",)),)},
    ),
    OscAddress(
        f"{PREFIX}/play",
        (_FLAG,),
        "Play",
        "start playing; after a stop, with the bar the stop interrupted (a flag of 0 is "
        "ignored, so button releases do nothing)",
        control="button",
        optional_arguments=True,
        group="transport",
    ),
    OscAddress(
        f"{PREFIX}/stop",
        (_FLAG,),
        "Stop",
        "stop at once; every sounding note is released",
        control="button",
        optional_arguments=True,
        group="transport",
    ),
    OscAddress(
        f"{PREFIX}/continue",
        (_FLAG,),
        "Continue",
        "resume: internal clock from the bar line after the stop (bar count and song position "
        "kept); external clock at the master's next bar line; the music goes on with the bar "
        "the stop interrupted",
        control="button",
        optional_arguments=True,
        group="transport",
    ),
    OscAddress(
        f"{PREFIX}/panic",
        (_FLAG,),
        "Panic",
        "stop; release every note, then All Notes Off (CC 123) and All Sound Off (CC 120) on all 16 channels",
        control="button",
        optional_arguments=True,
        group="transport",
    ),
    OscAddress(
        f"{PREFIX}/regenerate",
        (_FLAG,),
        "Regenerate",
        "new 12-bar section under the same features (new seed), from the next ready bar",
        control="button",
        optional_arguments=True,
        group="transport",
    ),
    OscAddress(
        f"{PREFIX}/loop",
        (Argument("loop", "iTF", 0, 1, default=0),),
        "Loop",
        "1: repeat the current 12 bars; 0: endless (fresh sections under the same features)",
        control="toggle",
        group="transport",
    ),
    OscAddress(
        f"{PREFIX}/sync",
        (
            Argument(
                "source",
                "si",
                0,
                len(SYNC_SOURCES) - 1,
                choices=SYNC_SOURCES,
                default="internal",
                out_of_range="reject",
            ),
        ),
        "Sync",
        "clock source: internal (own tempo), midi (follow MIDI clock in), link (join an "
        "Ableton Link session; needs the link extra); switching stops, then follows the new "
        "source's transport",
        control="menu",
        group="sync",
    ),
    OscAddress(
        f"{PREFIX}/ramp",
        (
            Argument(
                "feature", "si", 0, len(RAMPABLE) - 1, choices=RAMPABLE, default=0, out_of_range="reject"
            ),
            Argument("target", "fi", default=0.5, unit="in the feature's range"),
            Argument("bars", "i", 0, MAX_RAMP_BARS, default=4),
        ),
        "Ramp",
        "move one feature (a name, or its index in the list) smoothly to target over that "
        "many bars (one step at each bar line, the engine re-plans along the way); a new value for "
        "the feature cancels the ramp; 0 bars: at once; the target is clamped to the feature's range",
        control="multi",
        group="ramp",
    ),
    OscAddress(
        f"{PREFIX}/scene/store",
        (Argument("slot", "i", 0, SCENE_SLOTS - 1, default=0, out_of_range="reject"),),
        "Store scene",
        "store the ten features in force in a scene slot (kept for the daemon's "
        "life, and in the --scenes file if one is given)",
        control="number",
        group="scene",
    ),
    OscAddress(
        f"{PREFIX}/scene/recall",
        (Argument("slot", "i", 0, SCENE_SLOTS - 1, default=0, out_of_range="reject"),),
        "Recall scene",
        "recall a stored scene: at once, or with the optional second argument "
        "over that many bars (every continuous feature ramps; key, mode and beats per bar "
        "switch at the end)",
        control="number",
        group="scene",
        optional=(Argument("bars", "i", 0, MAX_RAMP_BARS, default=0),),
    ),
    OscAddress(
        f"{PREFIX}/scene/morph",
        (
            Argument("a", "i", 0, SCENE_SLOTS - 1, default=0, out_of_range="reject"),
            Argument("b", "i", 0, SCENE_SLOTS - 1, default=1, out_of_range="reject"),
            Argument("x", "fi", 0.0, 1.0, default=0.5),
        ),
        "Morph scenes",
        "one fader between two stored scenes: x 0 is scene a, 1 is scene b, "
        "continuous features in between; key, mode and beats per bar are a's below 0.5, b's "
        "from 0.5; cancels ramps",
        control="multi",
        group="scene",
    ),
    OscAddress(
        f"{PREFIX}/status",
        (),
        "Status",
        "reply with the full state (all /e2m/state/* messages)",
        control="button",
        group="transport",
    ),
    # ---- feedback (daemon -> controller) ----
    OscAddress(
        f"{PREFIX}/state/bar",
        (Argument("bar", "i", 0, None), Argument("bar_in_section", "i", 0, 11)),
        "Bar",
        "the bar just started: running count, and its index in its 12-bar section",
        direction="out",
        control="number",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/playing",
        (Argument("playing", "i", 0, 1),),
        "Playing",
        "1 while playing, 0 when stopped",
        direction="out",
        control="toggle",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/loop",
        (Argument("loop", "i", 0, 1),),
        "Loop",
        "1 in loop mode",
        direction="out",
        control="toggle",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/sync",
        (
            Argument("source", "s", choices=SYNC_SOURCES),
            Argument("tempo", "f", unit="BPM"),
            Argument("running", "i", 0, 1),
            Argument("peers", "i", 0, None),
        ),
        "Sync",
        "clock source, the tempo it runs at, 1 while its transport runs (internal: "
        "always), and Link peers (0 otherwise); sent on every bar line and change",
        direction="out",
        control="multi",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/features",
        tuple(_state(n) for n in FEATURE_ORDER),
        "Features in force",
        "the ten features in force, in the order of /e2m/features",
        direction="out",
        control="multi",
        group="state",
    ),
    *(
        OscAddress(
            f"{PREFIX}/state/{name}",
            (_state(name),),
            name,
            f"{name} in force (lets a controller's {name} widget follow other controllers)",
            direction="out",
            control="fader",
            group="state",
        )
        for name in FEATURE_ORDER
    ),
    OscAddress(
        f"{PREFIX}/state/key_lock",
        (Argument("key_lock", "f", 0.0, 1.0),),
        "key_lock",
        "key lock in force",
        direction="out",
        control="fader",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/ensemble",
        (Argument("ensemble", "s", choices=ENSEMBLE_NAMES),),
        "Ensemble",
        "ensemble in force",
        direction="out",
        control="text",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/instruments",
        (Argument("instrument", "s"),),
        "Instruments",
        "the instruments the planner keeps to (one argument each, muted ones left out), or auto",
        direction="out",
        control="text",
        repeated=True,
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/muted",
        (Argument("instrument", "s"),),
        "Muted",
        "the muted instruments (one argument each), or none",
        direction="out",
        control="text",
        repeated=True,
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/plan",
        (Argument("plan", "s"),),
        "Plan",
        "the section being played: number, generator, key, metre, energy, valence, "
        "arrangement (ensemble or own list, muted, key lock), bar position, bars ready",
        direction="out",
        control="text",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/lag",
        (Argument("lag_bars", "i", 0, None), Argument("lag_ms", "f", 0, None)),
        "Generation lag",
        "bars played as repeats because the next bar was late, and how late the "
        "latest bar was in ms (0 0 when generation keeps up)",
        direction="out",
        control="number",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/ramp",
        (
            Argument("feature", "s", choices=RAMPABLE),
            Argument("target", "f"),
            Argument("bars_left", "i", 0, MAX_RAMP_BARS),
        ),
        "Ramp",
        "a ramp in progress: feature, target, bars to go (sent at every step; 0 when it "
        "ends or is cancelled)",
        direction="out",
        control="multi",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/scene",
        (Argument("scene", "i", -1, SCENE_SLOTS - 1),),
        "Scene",
        "the scene last stored or recalled (-1: none)",
        direction="out",
        control="number",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/scenes",
        (Argument("scene", "i", 0, SCENE_SLOTS - 1),),
        "Stored scenes",
        "the slots that hold a scene (one argument each)",
        direction="out",
        control="multi",
        repeated=True,
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/morph",
        (
            Argument("a", "i", 0, SCENE_SLOTS - 1),
            Argument("b", "i", 0, SCENE_SLOTS - 1),
            Argument("x", "f", 0.0, 1.0),
        ),
        "Morph",
        "the last scene morph: a, b and the position x",
        direction="out",
        control="multi",
        group="state",
    ),
    OscAddress(
        f"{PREFIX}/state/measured",
        tuple(_state(n) for n in FEATURE_ORDER),
        "Measured features",
        "the ten features re-estimated (e2m_live.analysis) from the notes "
        "played in the last 4 bars, in the order of /e2m/features; sent every bar",
        direction="out",
        control="multi",
        group="state",
    ),
    *(
        OscAddress(
            f"{PREFIX}/state/measured/{name}",
            (_state(name),),
            f"measured {name}",
            f"{name} re-estimated from the notes played in the last 4 bars "
            "(beside /e2m/state/" + name + ", the one requested); sent every bar",
            direction="out",
            control="fader",
            group="state",
        )
        for name in FEATURE_ORDER
    ),
    OscAddress(
        f"{PREFIX}/error",
        (Argument("address", "s"), Argument("message", "s")),
        "Error",
        "a message was rejected or clamped: the address and why",
        direction="out",
        control="text",
        group="state",
    ),
)

BY_ADDRESS: dict[str, OscAddress] = {a.address: a for a in ADDRESSES}
INPUTS: dict[str, OscAddress] = {a.address: a for a in ADDRESSES if a.direction == "in"}
#: The feedback addresses under ``/e2m/state/`` by their short name (``STATE["bar"] ==
#: "/e2m/state/bar"``, ``STATE["measured/energy"]``): the daemon sends only what the table documents.
STATE: dict[str, str] = {
    a.address.removeprefix(f"{PREFIX}/state/"): a.address
    for a in ADDRESSES
    if a.direction == "out" and a.address.startswith(f"{PREFIX}/state/")
}


class OscRejected(ValueError):
    """A message is rejected: nothing changes. ``str()`` says why."""


@dataclass(slots=True)
class Command:
    """A validated message: what to do, and notes (clamped values, ignored arguments)."""

    kind: Literal["features", "mood", "transport", "loop", "status", "sync", "arrangement", "ramp", "scene"]
    # features: field -> value; arrangement: key_lock, ensemble, instruments (tuple or None), mute, unmute;
    # ramp: feature, target, bars; scene: scene (and bars) for store/recall, a, b, x for morph
    changes: dict[str, Any] = field(default_factory=dict)
    action: str = ""  # transport: play | stop | continue | panic | regenerate; mood, sync: the name;
    # scene: store | recall | morph
    flag: bool = True
    notes: list[str] = field(default_factory=list)


def _number(arg: Argument, value: Any, notes: list[str]) -> float:
    """Validate one numeric value; clamp or reject as the argument says."""
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int | float):
        raise OscRejected(f"{arg.name} must be a number ({arg.describe()}), got {_show(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise OscRejected(f"{arg.name} must be finite, got {number}")
    low = -math.inf if arg.low is None else arg.low
    high = math.inf if arg.high is None else arg.high
    if not low <= number <= high:
        if arg.out_of_range == "reject":
            raise OscRejected(f"{arg.name} must be in {arg.describe()}, got {number:g}")
        clamped = min(max(number, low), high)
        notes.append(f"{arg.name} {number:g} is outside {arg.describe()}: clamped to {clamped:g}")
        number = clamped
    return number


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _feature_value(arg: Argument, value: Any, notes: list[str]) -> int | float:
    """One feature's value, by its spec: a name (key, mode), or a number clamped or rejected
    (:func:`_number`, the argument carries the spec's policy); a whole-number feature's fraction is
    rounded, or rejected where the spec says so (key)."""
    spec = FEATURES[arg.name]
    if isinstance(value, str) and spec.parse_name is not None:
        try:
            return spec.parse_name(value)
        except FeatureError as error:
            raise OscRejected(str(error)) from None
    number = _number(arg, value, notes)
    if not spec.integer:
        return number
    if number != round(number) and spec.fraction == "reject":
        names = " or a name" if spec.names else ""
        raise OscRejected(f"{spec.name} must be an integer {spec.range}{names}, got {number:g}")
    return round(number)


# A parser's flat dispatch: one branch per address group and argument rule (C901 counts them).
def parse_message(address: str, args: Sequence[Any]) -> Command:  # noqa: C901
    """Validate one incoming message against the table; raises :class:`OscRejected`."""
    entry = INPUTS.get(address)
    if entry is None:
        if address in BY_ADDRESS:
            raise OscRejected(f"{address} is a feedback address (sent by the daemon), not a control")
        raise OscRejected(f"unknown address {_show(address)}; see /e2m/status or docs/osc.md")
    notes: list[str] = []
    name = address[len(PREFIX) + 1 :]
    if entry.group == "arrangement":
        return _arrangement(name, entry, list(args), notes)
    if entry.group in ("ramp", "scene"):
        return _ramp_or_scene(name, entry, list(args), notes)
    expected = len(entry.arguments)
    if len(args) > expected:
        notes.append(f"ignored {len(args) - expected} extra argument(s)")
        args = list(args)[:expected]
    if len(args) < expected and not (entry.optional_arguments and not args):
        raise OscRejected(f"{address} takes {expected} argument(s) ({entry.type_tags}), got {len(args)}")
    if entry.group == "transport":
        if name == "status":
            return Command("status", notes=notes)
        flag = True
        if args:
            flag = bool(round(_number(entry.arguments[0], args[0], notes)))
        if name == "loop":
            return Command("loop", flag=flag, notes=notes)
        return Command("transport", action=name, flag=flag, notes=notes)
    if name == "sync":
        source = args[0]
        if isinstance(source, int) and not isinstance(source, bool) and 0 <= source < len(SYNC_SOURCES):
            source = SYNC_SOURCES[source]  # a menu's index
        if not isinstance(source, str) or source.strip().lower() not in SYNC_SOURCES:
            raise OscRejected(f"sync must be one of {', '.join(SYNC_SOURCES)} (or 0..2), got {_show(source)}")
        return Command("sync", action=source.strip().lower(), notes=notes)
    if name == "mood":
        mood = args[0]
        if not isinstance(mood, str) or mood.strip().lower() not in MOODS:
            raise OscRejected(f"mood must be one of {', '.join(MOODS)}, got {_show(mood)}")
        return Command("mood", action=mood.strip().lower(), notes=notes)
    changes = {
        arg.name: _feature_value(arg, value, notes) for arg, value in zip(entry.arguments, args, strict=True)
    }
    return Command("features", changes=changes, notes=notes)


def _whole(arg: Argument, value: Any, notes: list[str]) -> int:
    number = _number(arg, value, notes)
    if number != round(number):
        raise OscRejected(f"{arg.name} must be a whole number ({arg.describe()}), got {number:g}")
    return int(number)


def _ramp_or_scene(name: str, entry: OscAddress, args: list[Any], notes: list[str]) -> Command:
    """ramp, scene/store, scene/recall, scene/morph: checked against the table (slots, bars, range)."""
    required, optional = entry.arguments, entry.optional
    if len(args) < len(required):
        raise OscRejected(
            f"{entry.address} takes {len(required)} argument(s) ({entry.type_tags}), got {len(args)}"
        )
    if len(args) > len(required) + len(optional):
        notes.append(f"ignored {len(args) - len(required) - len(optional)} extra argument(s)")
        args = args[: len(required) + len(optional)]
    if name == "ramp":
        feature, target, bars = args
        if isinstance(feature, int) and not isinstance(feature, bool) and 0 <= feature < len(RAMPABLE):
            feature = RAMPABLE[feature]  # a menu's index
        if not isinstance(feature, str) or feature.strip().lower() not in RAMPABLE:
            raise OscRejected(
                f"a ramp moves one of {', '.join(RAMPABLE)} (or 0..{len(RAMPABLE) - 1}), got {_show(feature)}"
            )
        feature = feature.strip().lower()
        value = _number(_feature(feature, detailed=False), target, notes)
        return Command(
            "ramp",
            {"feature": feature, "target": value, "bars": _whole(required[2], bars, notes)},
            action="ramp",
            notes=notes,
        )
    action = name.rsplit("/", 1)[-1]
    if action == "morph":
        return Command(
            "scene",
            {
                "a": _whole(required[0], args[0], notes),
                "b": _whole(required[1], args[1], notes),
                "x": _number(required[2], args[2], notes),
            },
            action=action,
            notes=notes,
        )
    changes = {"scene": _whole(required[0], args[0], notes)}
    if action == "recall":
        changes["bars"] = _whole(optional[0], args[1], notes) if len(args) > 1 else 0
    return Command("scene", changes, action=action, notes=notes)


def _instrument_values(args: Iterable[Any]) -> list[str | int]:
    """OSC arguments as instrument values: strings split at commas (a text field sends one string),
    whole numbers as program numbers."""
    values: list[str | int] = []
    for value in args:
        if isinstance(value, str):
            values += split_names(value)
        elif (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value == round(value)
        ):
            values.append(int(value))
        else:
            raise OscRejected(
                f"an instrument is a GM name, a program number 0..127 or drums, got {_show(value)}"
            )
    return values


def _arrangement(name: str, entry: OscAddress, args: list[Any], notes: list[str]) -> Command:
    """key_lock, ensemble, instruments, mute, unmute: names are checked here, so a rejected name
    changes nothing (the daemon still checks the whole arrangement, e.g. muting the last instrument)."""
    if not entry.repeated:
        if not args:
            raise OscRejected(f"{entry.address} takes 1 argument ({entry.type_tags}), got 0")
        if len(args) > 1:
            notes.append(f"ignored {len(args) - 1} extra argument(s)")
            args = args[:1]
    try:
        if name == "key_lock":
            return Command(
                "arrangement", {"key_lock": _number(entry.arguments[0], args[0], notes)}, notes=notes
            )
        if name == "ensemble":
            ensemble = args[0]
            if isinstance(ensemble, str) and ensemble.strip().lower() in ENSEMBLE_NAMES:
                return Command("arrangement", {"ensemble": ensemble.strip().lower()}, notes=notes)
            raise OscRejected(f"ensemble must be one of {', '.join(ENSEMBLE_NAMES)}, got {_show(ensemble)}")
        values = _instrument_values(args)
        if name == "instruments":
            if not values or [str(v).lower() for v in values] == ["auto"]:
                return Command("arrangement", {"instruments": None}, notes=notes)
            return Command("arrangement", {"instruments": parse_instruments(values)}, notes=notes)
        if len(values) != 1:
            raise OscRejected(f"{entry.address} takes one instrument, got {len(values)}")
        return Command("arrangement", {name: instrument_name(values[0])}, notes=notes)
    except ArrangementError as error:
        raise OscRejected(str(error)) from None


# ---- documentation -------------------------------------------------------------------------------

_POLICY = """\
Validation: numbers outside a range are **clamped** for continuous controls (marked *clamp*) and
the clamped value is applied; `key`, `mode` and `mood` outside their choices are **rejected**
(marked *reject*). NaN, infinities, wrong types, missing arguments, unknown addresses and
malformed packets are rejected: nothing changes. Either way the sender gets
`/e2m/error <address> <why>`. Extra arguments are ignored (and reported). Integers are accepted
where floats are expected and vice versa (integer fields are rounded). Transport messages take
no argument or one flag; a flag of 0 (a button's release) does nothing.

Arrangement (`key_lock`, `ensemble`, `instruments`, `mute`, `unmute`): like the features, the
latest change wins and the next section (from the next ready bar) is planned with it. Instruments
are General MIDI program names (any case; a unique part such as `violin` is enough), program
numbers 0..127, or `drums`; an unknown or ambiguous name is rejected. Arguments marked *any
number* may be repeated (or left out); a string argument may hold several names separated by
commas, for controllers whose text field sends one string.

Ramps and scenes: `/e2m/ramp energy 0.9 8` moves energy to 0.9 in 8 steps, one at each bar line
(each step is heard at once through the immediate answers, and re-plans); setting the feature
directly, a mood, `/e2m/features` or a scene morph cancels the ramps it touches. Scenes are
snapshots of the ten features in slots 0..7; recalling an empty slot is rejected.
"""


def _argument_cell(arg: Argument, with_policy: bool) -> str:
    text = f"`{arg.name}` ({'/'.join(arg.types)})"
    desc = arg.describe().replace("|", "\\|")  # a bare | would split the Markdown table cell
    if desc:
        text += f" {desc}"
    if with_policy and (arg.low is not None or arg.choices):
        text += f" *{arg.out_of_range}*"
    return text


def render_markdown() -> str:
    """``docs/osc.md``: the address table as Markdown (tests check the file is up to date)."""
    lines = [
        "# OSC address space",
        "",
        "<!-- Generated from e2m_live/live/addresses.py by "
        "`python -m e2m_live.live.addresses > docs/osc.md`; do not edit. -->",
        "",
        "The daemon listens on UDP and TCP (OSC 1.0 length-prefixed or OSC 1.1 SLIP framing, detected per",
        "connection), on 127.0.0.1 by default. Replies go to the sender (UDP: to its address and port;",
        "TCP: on the same connection) and, if configured, to the feedback host:port (`/e2m/status` replies",
        "too, so a controller that sends and receives on different sockets, such as Max, gets them).",
        "",
        _POLICY,
        "## Controls (to the daemon)",
        "",
        "| address | arguments | default | label | effect |",
        "|---|---|---|---|---|",
    ]
    for entry in ADDRESSES:
        if entry.direction != "in":
            continue
        args = ", ".join(_argument_cell(a, True) for a in entry.arguments) or "none"
        if entry.optional:
            args += ", optionally " + ", ".join(_argument_cell(a, True) for a in entry.optional)
        if entry.repeated:
            args = f"any number of {args}"
        if entry.optional_arguments:
            args = f"none, or {args}"
        default = ", ".join(str(a.default) for a in entry.arguments if a.default is not None) or "-"
        lines.append(f"| `{entry.address}` | {args} | {default} | {entry.label} | {entry.effect} |")
    lines += [
        "",
        "## Feedback (from the daemon)",
        "",
        "Sent on every bar line (`bar`, `lag`, `sync`, `measured`), on every change (`playing`, `loop`,",
        "`features`, `plan`, `sync`, `ramp`, `scene`, `scenes`, `morph`, and the arrangement: `key_lock`,",
        "`ensemble`, `instruments`, `muted`) and in full in reply to `/e2m/status`.",
        "",
        "| address | arguments | label | meaning |",
        "|---|---|---|---|",
    ]
    for entry in ADDRESSES:
        if entry.direction != "out":
            continue
        args = ", ".join(_argument_cell(a, False) for a in entry.arguments)
        if entry.repeated:
            args = f"any number of {args}"
        lines.append(f"| `{entry.address}` | {args} | {entry.label} | {entry.effect} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
