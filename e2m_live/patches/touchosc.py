"""TouchOSC (the current TouchOSC, not Mk1) layout: ``patches/e2m-live.tosc``.

A ``.tosc`` file is zlib-compressed XML: ``<lexml version='3'>`` holding one root ``GROUP`` node
whose ``children`` are the controls. Each node has ``properties`` (typed: ``b`` bool, ``i`` int,
``f`` float, ``s`` string, ``c`` colour, ``r`` frame), ``values`` (``x``, ``y``, ``text``,
``touch``) and ``messages`` (``<osc>`` entries: triggers, a path and arguments built from
partials, ``scaleMin``/``scaleMax`` mapping the control's 0..1 to the daemon's range).

Controls send on connection 1 (set it to the daemon's host, port 9000, and receive port 9002)
and follow ``/e2m/state/*``; the feedback labels (bar, playing, lag, plan, error, ensemble,
instruments, muted) show every argument of their message through a small ``onReceiveOSC``
script. TouchOSC has no text entry: the instrument entries become their quick-pick buttons
(instruments auto, mute drums, unmute drums); explicit lists need a controller that can type.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from e2m_live.patches.layout import Control, Display, Layout, format_number

WIDTH, HEIGHT = 1280, 960
_NAMESPACE = uuid.UUID("5b0a7a58-3c1e-4d7e-9b0e-2f6c1d1e2a11")

Colour = tuple[float, float, float, float]
WHITE: Colour = (1.0, 1.0, 1.0, 1.0)
BACKGROUND: Colour = (0.08, 0.08, 0.1, 1.0)
FEATURE: Colour = (0.25, 0.6, 0.9, 1.0)
MENU: Colour = (0.55, 0.45, 0.85, 1.0)
TRANSPORT: Colour = (0.3, 0.75, 0.45, 1.0)
DANGER: Colour = (0.9, 0.3, 0.25, 1.0)
DISPLAY: Colour = (0.18, 0.18, 0.22, 1.0)


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _num(value: float) -> str:
    return format_number(round(float(value), 6))


@dataclass
class OscMessage:
    """One ``<osc>`` entry: a constant path and argument partials ``(type, conversion, value,
    scale_min, scale_max)``."""

    path: str
    arguments: list[tuple[str, str, str, float, float]] = field(default_factory=list)
    send: bool = True
    receive: bool = False
    triggers: tuple[tuple[str, str], ...] = (("x", "ANY"),)

    def xml(self) -> str:
        triggers = "".join(
            f"<trigger><var>{_cdata(var)}</var><condition>{condition}</condition></trigger>"
            for var, condition in self.triggers
        )
        path = _partial("CONSTANT", "STRING", self.path, 0, 1)
        arguments = "".join(_partial(*a) for a in self.arguments)
        return (
            f"<osc><enabled>1</enabled><send>{int(self.send)}</send>"
            f"<receive>{int(self.receive)}</receive>"
            f"<feedback>0</feedback><connections>00001</connections><triggers>{triggers}</triggers>"
            f"<path>{path}</path><arguments>{arguments}</arguments></osc>"
        )


def _partial(kind: str, conversion: str, value: str, low: float, high: float) -> str:
    return (
        f"<partial><type>{kind}</type><conversion>{conversion}</conversion><value>{_cdata(value)}</value>"
        f"<scaleMin>{_num(low)}</scaleMin><scaleMax>{_num(high)}</scaleMax></partial>"
    )


@dataclass
class Node:
    """One control node."""

    kind: str  # GROUP, FADER, XY, BUTTON, RADIO, LABEL
    name: str
    frame: tuple[int, int, int, int]
    colour: Colour = WHITE
    properties: dict[str, tuple[str, object]] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    messages: list[OscMessage] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    interactive: bool = True

    def xml(self, path: str = "") -> str:
        node_path = f"{path}/{self.name}"
        props: dict[str, tuple[str, object]] = {
            "background": ("b", 1),
            "color": ("c", self.colour),
            "cornerRadius": ("f", 4),
            "frame": ("r", self.frame),
            "grabFocus": ("b", int(self.interactive)),
            "interactive": ("b", int(self.interactive)),
            "locked": ("b", 0),
            "name": ("s", self.name),
            "orientation": ("i", 0),
            "outline": ("b", 1),
            "outlineStyle": ("i", 1),
            "pointerPriority": ("i", 0),
            "shape": ("i", 1),
            "visible": ("b", 1),
        }
        props.update(self.properties)
        properties = "".join(_property(key, *props[key]) for key in sorted(props))
        values = {"touch": "false", **self.values}
        value_xml = "".join(
            f"<value><key>{_cdata(key)}</key><locked>0</locked><lockedDefaultCurrent>0</lockedDefaultCurrent>"
            f"<default>{_cdata(values[key])}</default><defaultPull>0</defaultPull></value>"
            for key in sorted(values)
        )
        messages = "".join(m.xml() for m in self.messages)
        children = "".join(child.xml(node_path) for child in self.children)
        node_id = uuid.uuid5(_NAMESPACE, node_path)
        return (
            f"<node ID='{node_id}' type='{self.kind}'><properties>{properties}</properties>"
            f"<values>{value_xml}</values>"
            + (f"<messages>{messages}</messages>" if messages else "")
            + (f"<children>{children}</children>" if children else "")
            + "</node>"
        )


def _property(key: str, kind: str, value: Any) -> str:
    if kind == "c":
        r, g, b, a = value
        body = f"<r>{_num(r)}</r><g>{_num(g)}</g><b>{_num(b)}</b><a>{_num(a)}</a>"
    elif kind == "r":
        x, y, w, h = value
        body = f"<x>{x}</x><y>{y}</y><w>{w}</w><h>{h}</h>"
    elif kind == "s":
        body = _cdata(str(value))
    else:
        body = _num(value)
    return f"<property type='{kind}'><key>{_cdata(key)}</key><value>{body}</value></property>"


def _label(
    name: str,
    text: str,
    frame: tuple[int, int, int, int],
    size: int = 14,
    colour: Colour = (0.0, 0.0, 0.0, 0.0),
    script: str = "",
    messages: Iterable[OscMessage] = (),
) -> Node:
    properties: dict[str, tuple[str, object]] = {
        "font": ("i", 0),
        "textAlignH": ("i", 2),
        "textAlignV": ("i", 2),
        "textClip": ("b", 1),
        "textColor": ("c", WHITE),
        "textLength": ("i", 0),
        "textSize": ("i", size),
        "outline": ("b", 0),
        "background": ("b", int(colour[3] > 0)),
    }
    if script:
        properties["script"] = ("s", script)
    return Node("LABEL", name, frame, colour, properties, {"text": text}, list(messages), interactive=False)


def _normalised(control: Control, value: float) -> float:
    return (float(value) - control.low) / (control.high - control.low)


def _fader(control: Control, frame: tuple[int, int, int, int], horizontal: bool = False) -> Node:
    messages = [OscMessage(control.address, [("VALUE", "FLOAT", "x", control.low, control.high)])]
    if control.follow:
        messages.append(
            OscMessage(
                control.follow, [("VALUE", "FLOAT", "x", control.low, control.high)], send=False, receive=True
            )
        )
    properties: dict[str, tuple[str, object]] = {
        "bar": ("b", 1),
        "barDisplay": ("i", 0),
        "cursor": ("b", 1),
        "cursorDisplay": ("i", 0),
        "grid": ("b", 1),
        "gridSteps": ("i", 10),
        "response": ("i", 0),
        "responseFactor": ("i", 100),
        "orientation": ("i", 1 if horizontal else 0),
    }
    return Node(
        "FADER",
        control.id,
        frame,
        FEATURE,
        properties,
        {"x": _num(_normalised(control, control.default))},
        messages,
    )


def _button(
    name: str,
    address: str,
    arguments: list[tuple[str, str, str, float, float]],
    frame: tuple[int, int, int, int],
    colour: Colour,
    toggle: bool = False,
    follow: str | None = None,
) -> Node:
    """A momentary button sends on press only (a release would send again); a toggle sends both."""
    trigger = (("x", "ANY"),) if toggle else (("x", "RISE"),)
    messages = [OscMessage(address, arguments, triggers=trigger)]
    if follow:
        messages.append(OscMessage(follow, [("VALUE", "INTEGER", "x", 0, 1)], send=False, receive=True))
    properties: dict[str, tuple[str, object]] = {
        "buttonType": ("i", 1 if toggle else 0),
        "press": ("b", 1),
        "release": ("b", 1),
        "valuePosition": ("b", 0),
    }
    return Node("BUTTON", name, frame, colour, properties, {"x": "0"}, messages)


def _labelled(button: Node, text: str) -> list[Node]:
    x, y, w, h = button.frame
    return [button, _label(f"{button.name}_label", text, (x, y, w, h), size=16)]


def _radio(control: Control, frame: tuple[int, int, int, int]) -> list[Node]:
    """A horizontal radio with a label per cell. TouchOSC scales a radio's index ``x`` (0, 1, ...)
    as ``scaleMin + x * (scaleMax - scaleMin)``, so a scale of ``first .. first + 1`` sends the
    entry's value (key 0..11, mode 0..1, beats per bar 3..7) and maps feedback back to the index."""
    first = int(control.values[0])
    scale = ("VALUE", "INTEGER", "x", first, first + 1)
    messages = [OscMessage(control.address, [scale])]
    if control.follow and not control.follow_name:  # a name: the title shows it (_title)
        messages.append(OscMessage(control.follow, [scale], send=False, receive=True))
    properties: dict[str, tuple[str, object]] = {
        "orientation": ("i", 1),
        "radioType": ("i", 0),
        "steps": ("i", len(control.values)),
    }
    default = control.values.index(control.default) if control.default in control.values else 0
    radio = Node("RADIO", control.id, frame, MENU, properties, {"x": str(default)}, messages)
    x, y, w, h = frame
    cell = w // len(control.labels)
    labels = [
        _label(f"{control.id}_{i}", text, (x + i * cell, y, cell, h), size=16)
        for i, text in enumerate(control.labels)
    ]
    return [radio, *labels]


def _choice_buttons(control: Control, x: int, y: int, width: int, height: int) -> list[Node]:
    """One button per menu entry, each sending its name as a constant (mood)."""
    nodes: list[Node] = []
    conversion = "STRING" if control.string_values else "INTEGER"
    for index, (label, value) in enumerate(zip(control.labels, control.values, strict=True)):
        button = _button(
            f"{control.id}_{index}",
            control.address,
            [("CONSTANT", conversion, str(value), 0, 1)],
            (x + index * (width + 6), y, width, height),
            MENU,
        )
        nodes += _labelled(button, label)
    return nodes


#: The root asks for the daemon's state when the layout starts (TouchOSC calls init() on load).
ON_LOAD_SCRIPT = """function init()
  sendOSC('/e2m/status')
end
"""

_DISPLAY_SCRIPT = """local ADDRESS = '{address}'
local LABEL = '{label}'

function onReceiveOSC(message, connections)
  if message[1] ~= ADDRESS then return false end
  local parts = {{}}
  for _, argument in ipairs(message[2]) do
    local value = argument.value
    if type(value) == 'number' and math.floor(value) ~= value then value = string.format('%.1f', value) end
    parts[#parts + 1] = tostring(value)
  end
  self.values.text = LABEL .. ': ' .. table.concat(parts, ' ')
  return true
end
"""


_NAME_SCRIPT = """local ADDRESS = '{address}'
local LABEL = '{label}'
local INDEX = {index}

function onReceiveOSC(message, connections)
  if message[1] ~= ADDRESS then return false end
  local argument = message[2][INDEX]
  if argument then self.values.text = LABEL .. ': ' .. tostring(argument.value) end
  return true
end
"""


def _title(menu: Control, frame: tuple[int, int, int, int]) -> Node:
    """A menu's title; where the feedback names the entry (ensemble, sync) the title shows the name
    in force ("Sync: midi"): a radio can only take an index, buttons have no selected state."""
    if not (menu.follow and menu.follow_name):
        return _label(f"{menu.id}_title", menu.label, frame)
    script = _NAME_SCRIPT.format(
        address=menu.follow, label=menu.label.replace("'", ""), index=menu.follow_index + 1
    )
    receive = OscMessage(menu.follow, [("VALUE", "STRING", "text", 0, 1)], send=False, receive=True)
    return _label(f"{menu.id}_title", menu.label, frame, script=script, messages=[receive])


def _display(display: Display, frame: tuple[int, int, int, int]) -> Node:
    script = _DISPLAY_SCRIPT.format(address=display.address, label=display.label.replace("'", ""))
    receive = OscMessage(display.address, [("VALUE", "STRING", "text", 0, 1)], send=False, receive=True)
    return _label(
        f"state_{display.name}",
        f"{display.label}: -",
        frame,
        size=14,
        colour=DISPLAY,
        script=script,
        messages=[receive],
    )


def _xy_pad(layout: Layout, frame: tuple[int, int, int, int]) -> Node:
    """The valence / energy XY pad: it sends both axes and follows the two features' feedback."""
    pad = layout.pad
    messages = [
        OscMessage(
            pad.address,
            [("VALUE", "FLOAT", "x", pad.low, pad.high), ("VALUE", "FLOAT", "y", pad.low, pad.high)],
            triggers=(("x", "ANY"), ("y", "ANY")),
        )
    ]
    for axis, feature in zip("xy", pad.axes, strict=True):  # the pad follows its two features
        follow = next((f.follow for f in layout.faders if f.name == feature and f.follow), None)
        if follow:
            messages.append(
                OscMessage(
                    follow,
                    [("VALUE", "FLOAT", axis, pad.low, pad.high)],
                    send=False,
                    receive=True,
                    triggers=((axis, "ANY"),),
                )
            )
    xy_properties: dict[str, tuple[str, object]] = {
        "cursor": ("b", 1),
        "cursorDisplay": ("i", 0),
        "gridStepsX": ("i", 10),
        "gridStepsY": ("i", 10),
        "gridX": ("b", 1),
        "gridY": ("b", 1),
        "lines": ("b", 1),
        "linesDisplay": ("i", 0),
        "lockX": ("b", 0),
        "lockY": ("b", 0),
        "response": ("i", 0),
        "responseFactor": ("i", 100),
    }
    return Node(
        "XY",
        pad.name,
        frame,
        FEATURE,
        xy_properties,
        {"x": _num(pad.default[0]), "y": _num(pad.default[1])},
        messages,
    )


def build_root(layout: Layout) -> Node:
    """The root GROUP with every control laid out on a WIDTH x HEIGHT page."""
    children: list[Node] = [
        _label("title", "e2m-live  (generated by e2m-live patches)", (0, 0, WIDTH, 40), size=20)
    ]
    top, height = 80, 260  # faders, pad and tempo
    below = top + height + 5  # their names
    for index, fader in enumerate(layout.faders):
        x = 20 + index * 95
        children.append(_fader(fader, (x, top, 80, height)))
        children.append(_label(f"{fader.name}_name", fader.label, (x - 7, below, 94, 30)))
    pad_x = 20 + len(layout.faders) * 95 + 10
    pad_w = 1060 - pad_x
    pad = layout.pad
    children.append(_xy_pad(layout, (pad_x, top, pad_w, height)))
    children.append(
        _label("xy_name", f"{pad.label}: {pad.axes[0]} (x), {pad.axes[1]} (y)", (pad_x, below, pad_w, 30))
    )
    tempo = layout.tempo
    children.append(_fader(tempo, (1080, top, 180, height)))
    tempo_range = f"{format_number(tempo.low)}-{format_number(tempo.high)} {tempo.unit}"
    children.append(_label("tempo_name", f"{tempo.label} ({tempo_range})", (1070, below, 200, 30)))
    # menus: radios (numbers) fill rows left to right; string menus (mood, ensemble) are rows of buttons
    y, x = below + 40, 20
    for menu in layout.menus:
        if menu.string_values:
            continue
        width = 56 * len(menu.values)
        if x + 130 + width > WIDTH:
            y, x = y + 60, 20
        children.append(_title(menu, (x, y, 120, 50)))
        children += _radio(menu, (x + 120, y, width, 50))
        x += 120 + width + 20
    for menu in layout.menus:
        if not menu.string_values:
            continue
        y += 60
        children.append(_title(menu, (20, y, 120, 50)))
        children += _choice_buttons(menu, 140, y, 100, 50)
    y += 65
    x = 20

    def next_cell() -> tuple[int, int]:
        """The next 106 x 50 button cell of the transport rows (wrapping at the page's edge)."""
        nonlocal x, y
        if x + 106 > WIDTH - 10:
            x, y = 20, y + 56
        cell = (x, y)
        x += 112
        return cell

    for button in layout.buttons:
        colour = DANGER if button.name in ("panic", "stop") else TRANSPORT
        arguments: list[tuple[str, str, str, float, float]] = [
            ("CONSTANT", "INTEGER" if isinstance(v, int) else "FLOAT", format_number(v), 0, 1)
            for v in button.send
        ]
        bx, by = next_cell()
        children += _labelled(
            _button(button.name, button.address, arguments, (bx, by, 106, 50), colour), button.label
        )
    for toggle in layout.toggles:
        bx, by = next_cell()
        children += _labelled(
            _button(
                toggle.name,
                toggle.address,
                [("VALUE", "INTEGER", "x", 0, 1)],
                (bx, by, 106, 50),
                MENU,
                toggle=True,
                follow=toggle.follow,
            ),
            toggle.label,
        )
    for entry in layout.entries:  # no text entry in TouchOSC: the quick picks
        for index, (label, send) in enumerate(zip(entry.labels, entry.values, strict=True)):
            arguments = [("CONSTANT", "STRING", str(v), 0, 1) for v in send]
            bx, by = next_cell()
            node = _button(f"{entry.name}_{index}", entry.address, arguments, (bx, by, 106, 50), MENU)
            children += _labelled(node, f"{entry.label} {label}")
    y += 60
    widths = {"text": 350}
    x = 20
    for display in layout.displays:
        width = widths.get(display.kind, 170)
        if x + width > WIDTH - 10:
            x, y = 20, y + 46
        children.append(_display(display, (x, y, width, 40)))
        x += width + 8
    return Node(
        "GROUP",
        "e2m-live",
        (0, 0, WIDTH, HEIGHT),
        BACKGROUND,
        {"outline": ("b", 0), "script": ("s", ON_LOAD_SCRIPT)},
        children=children,
        interactive=False,
    )


def render_tosc_xml(layout: Layout) -> str:
    """The layout as lexml version 3 XML text."""
    return "<?xml version='1.0' encoding='UTF-8'?><lexml version='3'>" + build_root(layout).xml() + "</lexml>"


def render_tosc(layout: Layout) -> bytes:
    """The ``.tosc`` file: the XML, zlib-compressed (deterministic)."""
    return zlib.compress(render_tosc_xml(layout).encode("utf-8"), 9)
