"""The controller surface, derived from the daemon's OSC address table.

Every controller file (Max, Pd, TouchOSC, Open Stage Control) is rendered from one
:class:`Layout`, and the layout is built from :data:`e2m_live.live.addresses.ADDRESSES`, so a
control added to (or removed from) the daemon appears in (or leaves) every patch the next time
``e2m-live patches`` runs. An input address the layout cannot place raises :class:`LayoutError`
rather than being silently left out.

The table says *what* a control is (``fader``, ``menu``, ``number``, ...); a few presentation
choices are derived here because the table has no field for them:

* beats per bar (``number``, integer, five values) becomes a menu labelled ``3/4`` .. ``7/4``;
* ``mode`` (a ``toggle`` with named choices) becomes a two-entry menu ``minor`` / ``major``;
* ``/e2m/features`` (``multi``) becomes a *Defaults* button that sends the ten defaults;
* a control follows the daemon when some feedback message carries its argument
  (:func:`feedback_for`: ``/e2m/state/<argument>``, else a message with an argument of that name,
  such as the sync source in ``/e2m/state/sync``); menus of names follow names (ensemble, sync);
  the XY pad follows valence and energy; mood has no feedback of its own;
* an ``entry`` (instruments, mute, unmute) is a text field where the format has one, and its
  quick picks (the table's ``extra["quick"]``: label and arguments) are buttons where it has not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from e2m_live.live.addresses import ADDRESSES, BY_ADDRESS, PREFIX, QUICK_PICKS, OscAddress
from e2m_live.live.config import LiveConfig

#: The daemon's default OSC UDP port (what every controller sends to).
DAEMON_PORT: int = LiveConfig().udp_port
#: The port the Max and Pd patches and the TouchOSC layout listen on for feedback; start the
#: daemon with ``--feedback HOST:FEEDBACK_PORT``.
FEEDBACK_PORT: int = 9002
#: Where the controllers send by default.
DAEMON_HOST: str = "127.0.0.1"

Kind = Literal["fader", "xy", "menu", "number", "toggle", "button", "entry"]
DisplayKind = Literal["number", "toggle", "text"]


class LayoutError(ValueError):
    """The address table has an input control the layout does not know how to place."""


@dataclass(frozen=True, slots=True)
class Control:
    """One thing a performer touches; it sends to ``address``.

    ``low``/``high`` is the value range (for an XY pad, of both axes); ``labels``/``values`` are a
    menu's entries and what each sends; ``send`` is the fixed argument list of a button (empty:
    a bare message); ``follow`` is the feedback address that moves the control when another
    controller changes the same feature. An ``entry`` (a text field) keeps its quick picks in
    ``labels`` and ``values`` (the argument tuple each one sends).
    """

    kind: Kind
    name: str
    address: str
    label: str
    low: float = 0.0
    high: float = 1.0
    default: Any = None
    integer: bool = False
    labels: tuple[str, ...] = ()
    values: tuple[Any, ...] = ()
    send: tuple[Any, ...] = ()
    axes: tuple[str, ...] = ()
    unit: str = ""
    follow: str | None = None
    effect: str = ""
    follow_index: int = 0  # which argument of the feedback message carries the value
    follow_name: bool = False  # the feedback carries a name (sync: "midi"), not the menu's value
    axes_follow: tuple[str | None, ...] = ()  # an XY pad: the feedback of each axis

    @property
    def id(self) -> str:
        """A name usable as a widget id or a Pd symbol (``scene/store`` -> ``scene_store``)."""
        return self.name.replace("/", "_")

    @property
    def string_values(self) -> bool:
        """A menu whose entries are sent as OSC strings (the mood menu)."""
        return bool(self.values) and isinstance(self.values[0], str)


@dataclass(frozen=True, slots=True)
class Display:
    """One piece of daemon feedback shown on the surface."""

    kind: DisplayKind
    name: str
    address: str
    label: str
    arguments: tuple[str, ...]
    types: tuple[str, ...] = ()  # canonical OSC type tag of each argument
    effect: str = ""
    repeated: bool = False  # any number of the one argument (instruments, muted)


@dataclass(frozen=True, slots=True)
class Layout:
    """The whole surface, grouped as every controller lays it out."""

    faders: tuple[Control, ...]
    pad: Control
    menus: tuple[Control, ...]
    tempo: Control
    toggles: tuple[Control, ...]
    buttons: tuple[Control, ...]
    displays: tuple[Display, ...]
    entries: tuple[Control, ...] = ()
    daemon_host: str = DAEMON_HOST
    daemon_port: int = DAEMON_PORT
    feedback_port: int = FEEDBACK_PORT

    @property
    def controls(self) -> tuple[Control, ...]:
        return (*self.faders, self.pad, *self.menus, self.tempo, *self.toggles, *self.buttons, *self.entries)

    def addresses(self) -> set[str]:
        """Every address some control sends to."""
        return {c.address for c in self.controls}


def _name(entry: OscAddress) -> str:
    return entry.address[len(PREFIX) + 1 :]


def feedback_for(argument_name: str, addresses: tuple[OscAddress, ...] = ADDRESSES) -> tuple[str, int] | None:
    """The feedback message that carries an argument's value in force, and the argument's index in
    it: ``/e2m/state/<name>`` first, else any feedback message with an argument of that name
    (the sync source is the first argument of ``/e2m/state/sync``); None when the daemon reports
    none (mood)."""
    outs = [a for a in addresses if a.direction == "out"]
    exact = next((a for a in outs if a.address == f"{PREFIX}/state/{argument_name}"), None)
    if exact is not None:
        return exact.address, 0
    for entry in outs:
        if entry.control == "multi" and entry.address == f"{PREFIX}/state/features":
            continue  # the ten features at once: each has its own message
        for index, arg in enumerate(entry.arguments):
            if arg.name == argument_name:
                return entry.address, index
    return None


def _follow(argument_name: str) -> str | None:
    found = feedback_for(argument_name)
    return found[0] if found else None


def _follow_fields(argument_name: str) -> dict[str, Any]:
    """``follow``, ``follow_index`` and ``follow_name`` of a control whose argument is ``argument_name``."""
    found = feedback_for(argument_name)
    if found is None:
        return {}
    address, index = found
    arg = BY_ADDRESS[address].arguments[index]
    return {"follow": address, "follow_index": index, "follow_name": arg.types == "s"}


def _number_range(entry: OscAddress) -> tuple[float, float]:
    arg = entry.arguments[0]
    if arg.low is None or arg.high is None:
        raise LayoutError(f"{entry.address}: a {entry.control} needs a low..high range in the table")
    return float(arg.low), float(arg.high)


def _menu(entry: OscAddress) -> Control:
    """A menu from named choices (key, mode, mood) or from a short integer range (beats/bar)."""
    arg = entry.arguments[0]
    name = _name(entry)
    if arg.choices and "s" in arg.types and "i" not in arg.types and "f" not in arg.types:
        values: tuple[Any, ...] = arg.choices  # sent as strings (mood)
        labels = arg.choices
    elif arg.choices:
        low = int(arg.low or 0)
        values = tuple(range(low, low + len(arg.choices)))
        labels = arg.choices
    else:
        low, high = (int(v) for v in _number_range(entry))
        values = tuple(range(low, high + 1))
        labels = tuple(f"{v}/4" if arg.unit == "beats/bar" else str(v) for v in values)
    default = arg.default
    if default in labels and default not in values:  # a name given as the default of an index menu (sync)
        default = values[labels.index(default)]
    low_value = 0 if isinstance(values[0], str) else values[0]
    high_value = len(values) - 1 if isinstance(values[0], str) else values[-1]
    named = isinstance(values[0], str)
    return Control(
        "menu",
        name,
        entry.address,
        entry.label,
        low_value,
        high_value,
        default,
        integer=not named,
        labels=labels,
        values=values,
        unit=arg.unit,
        effect=entry.effect,
        **_follow_fields(arg.name),
    )


def _is_menu(entry: OscAddress) -> bool:
    """Menus: named choices, a toggle with named states (mode), a short integer range (beats/bar)."""
    args = entry.arguments
    if len(args) != 1:
        return False
    return (
        entry.control == "menu"
        or (entry.control == "toggle" and bool(args[0].choices))
        or (entry.control == "number" and args[0].types == "i")
    )


def build_layout(addresses: tuple[OscAddress, ...] = ADDRESSES) -> Layout:
    """Place every input address of ``addresses`` on the surface; raises :class:`LayoutError`."""
    faders: list[Control] = []
    menus: list[Control] = []
    toggles: list[Control] = []
    buttons: list[Control] = []
    pads: list[Control] = []
    numbers: list[Control] = []
    entries: list[Control] = []
    follows: set[str] = set()
    for entry in addresses:
        if entry.direction != "in":
            continue
        name, control = _name(entry), entry.control
        args = entry.arguments
        if control == "fader" and len(args) == 1:
            low, high = _number_range(entry)
            faders.append(
                Control(
                    "fader",
                    name,
                    entry.address,
                    entry.label,
                    low,
                    high,
                    args[0].default,
                    unit=args[0].unit,
                    follow=_follow(args[0].name),
                    effect=entry.effect,
                )
            )
        elif control == "xy" and len(args) == 2:
            pads.append(
                Control(
                    "xy",
                    name,
                    entry.address,
                    entry.label,
                    0.0,
                    1.0,
                    tuple(a.default for a in args),
                    axes=tuple(a.name for a in args),
                    effect=entry.effect,
                    axes_follow=tuple(_follow(a.name) for a in args),
                )
            )
        elif _is_menu(entry):
            menus.append(_menu(entry))
        elif control == "number" and len(args) == 1:
            low, high = _number_range(entry)
            numbers.append(
                Control(
                    "number",
                    name,
                    entry.address,
                    entry.label,
                    low,
                    high,
                    args[0].default,
                    unit=args[0].unit,
                    follow=_follow(args[0].name),
                    effect=entry.effect,
                )
            )
        elif control == "toggle" and len(args) == 1:
            toggles.append(
                Control(
                    "toggle",
                    name,
                    entry.address,
                    entry.label,
                    0,
                    1,
                    args[0].default,
                    integer=True,
                    follow=_follow(name),
                    effect=entry.effect,
                )
            )
        elif control == "button":
            buttons.append(Control("button", name, entry.address, entry.label, effect=entry.effect))
        elif control == "entry" and len(args) == 1:
            quick = entry.extra.get(QUICK_PICKS, ())
            entries.append(
                Control(
                    "entry",
                    name,
                    entry.address,
                    entry.label,
                    labels=tuple(label for label, _ in quick),
                    values=tuple(tuple(send) for _, send in quick),
                    effect=entry.effect,
                )
            )
        elif control == "multi":
            defaults = tuple(a.default for a in args)
            buttons.append(
                Control(
                    "button",
                    name,
                    entry.address,
                    "Defaults",
                    send=defaults,
                    effect=f"{entry.effect} (sends the defaults)",
                )
            )
        else:
            raise LayoutError(
                f"{entry.address}: no controller widget for control {control!r} with {len(args)} argument(s)"
            )
    for c in (*faders, *menus, *numbers, *toggles):
        if c.follow and len(BY_ADDRESS[c.follow].arguments) == 1:  # more (sync): still displayed
            follows.add(c.follow)
    if len(pads) != 1 or len(numbers) != 1:
        raise LayoutError(
            f"expected one XY pad and one number box (tempo), found {len(pads)} and {len(numbers)}"
        )
    displays = tuple(_displays(addresses, follows))
    buttons.sort(key=lambda b: bool(b.send))  # transport first, the Defaults preset last
    return Layout(
        tuple(faders),
        pads[0],
        tuple(menus),
        numbers[0],
        tuple(toggles),
        tuple(buttons),
        displays,
        tuple(entries),
    )


def _displays(addresses: tuple[OscAddress, ...], follows: set[str]) -> list[Display]:
    """Feedback that no control follows: bar, playing, lag, plan, error (not the feature echoes)."""
    displays = []
    for entry in addresses:
        if entry.direction != "out" or entry.address in follows or entry.control == "multi":
            continue
        if entry.control == "fader":  # a feature echo with no control to move (none today)
            continue
        kind: DisplayKind = (
            "toggle" if entry.control == "toggle" else "text" if entry.control == "text" else "number"
        )
        displays.append(
            Display(
                kind,
                entry.address.rsplit("/", 1)[-1],
                entry.address,
                entry.label,
                tuple(a.name for a in entry.arguments),
                tuple(a.types[0] for a in entry.arguments),
                entry.effect,
                entry.repeated,
            )
        )
    return displays


def format_number(value: Any) -> str:
    """A number as the patches write it: integers without a point, floats shortest."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)
