"""Pure Data (vanilla, 0.51 or newer) patch: ``patches/e2m-live.pd``.

Controls send through ``[oscformat]`` into one ``[netsend -u -b]`` (connected on load to the
daemon's default port, then asking for ``/e2m/status``). Feedback comes back on that same socket
(the daemon answers senders) and on ``[netreceive -u -b 9002]`` (for ``--feedback`` targets);
``[oscparse]`` takes both, moves the controls (``set``, so nothing is sent back) and fills the
displays.

Every control also listens on a ``[r e2m-NAME]`` (``e2m-energy 0.8``, ``e2m-mood calm``,
``e2m-play bang``, ``e2m-xy 0.2 0.9``), every display forwards what it shows to
``[s e2m-state-NAME]``, ``e2m-netsend`` takes ``disconnect`` / ``connect HOST PORT`` and
``e2m-listen`` takes ``listen PORT``: other patches (and the test harness) drive it by name.

Instrument entries (instruments, mute, unmute) are symbol boxes: type one instrument (a program
number, ``drums`` or a unique part of a GM name such as ``violin``) and press return.

Pd vanilla has no 2-D pad object, so the valence/energy pad is a square with a horizontal
slider (valence, x) under it and a vertical slider (energy, y) beside it; either one sends
``/e2m/xy`` with both values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from e2m_live.patches.layout import Control, Display, Layout, format_number

HEADER = "#N canvas 20 40 1640 1100 12;"
_COLORS = "#fcfcfc #000000 #000000"


def pd_escape(text: str) -> str:
    """Text as a Pd file stores it: commas, semicolons and dollars escaped."""
    return text.replace("\\", "").replace(",", " \\,").replace(";", " \\;").replace("$", "\\$")


class PdCanvas:
    """A Pd canvas under construction: objects are numbered in the order they are added."""

    def __init__(self) -> None:
        self.lines: list[str] = [HEADER]
        self.count = 0
        self.connections: list[tuple[int, int, int, int]] = []

    def _add(self, line: str) -> int:
        self.lines.append(line)
        self.count += 1
        return self.count - 1

    def obj(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X obj {x} {y} {text};")

    def msg(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X msg {x} {y} {pd_escape(text)};")

    def comment(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X text {x} {y} {pd_escape(text)};")

    def floatatom(
        self, x: int, y: int, width: int, low: float, high: float, label: str = "-", send: str = "-"
    ) -> int:
        return self._add(
            f"#X floatatom {x} {y} {width} {format_number(low)} {format_number(high)} 1 {label} - {send} 0;"
        )

    def symbolatom(self, x: int, y: int, width: int, label: str = "-", send: str = "-") -> int:
        return self._add(f"#X symbolatom {x} {y} {width} 0 0 1 {label} - {send} 0;")

    def vslider(self, x: int, y: int, low: float, high: float, label: str, height: int = 160) -> int:
        return self.obj(
            x,
            y,
            f"vsl 24 {height} {format_number(low)} {format_number(high)} 0 0 empty "
            f"empty {label} 0 -10 0 12 {_COLORS} 0 1",
        )

    def hslider(self, x: int, y: int, low: float, high: float, label: str, width: int = 160) -> int:
        return self.obj(
            x,
            y,
            f"hsl {width} 24 {format_number(low)} {format_number(high)} 0 0 empty "
            f"empty {label} 0 -10 0 12 {_COLORS} 0 1",
        )

    def hradio(self, x: int, y: int, cells: int, label: str) -> int:
        return self.obj(x, y, f"hradio 24 1 0 {cells} empty empty {label} 0 -10 0 12 {_COLORS} 0")

    def toggle(self, x: int, y: int, label: str, send: str = "empty") -> int:
        return self.obj(x, y, f"tgl 24 0 {send} empty {label} 30 12 0 12 {_COLORS} 0 1")

    def bang(self, x: int, y: int, label: str) -> int:
        return self.obj(x, y, f"bng 32 250 50 0 empty empty {label} 38 16 0 12 {_COLORS}")

    def connect(self, source: int, outlet: int, sink: int, inlet: int = 0) -> None:
        self.connections.append((source, outlet, sink, inlet))

    def render(self) -> str:
        lines = self.lines + [f"#X connect {a} {b} {c} {d};" for a, b, c, d in self.connections]
        return "\n".join(lines) + "\n"


def _osc_out(canvas: PdCanvas, x: int, y: int, address: str) -> int:
    """``[oscformat e2m NAME]`` feeding the shared sender; returns the oscformat's index."""
    parts = " ".join(address.strip("/").split("/"))
    formatter = canvas.obj(x, y, f"oscformat {parts}")
    sender = canvas.obj(x, y + 30, "s e2m-osc")
    canvas.connect(formatter, 0, sender)
    return formatter


def _receive(canvas: PdCanvas, x: int, y: int, name: str, widget: int) -> None:
    receiver = canvas.obj(x, y, f"r e2m-{name}")
    canvas.connect(receiver, 0, widget)


@dataclass
class _Followers:
    """What the feedback section wires, gathered while the controls are laid out."""

    #: feedback address -> (widget, object between the reply and the widget's ``set``, or "")
    inlets: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: feedback address -> (radio, entry names, argument index): a radio that follows a name
    named: dict[str, tuple[int, tuple[str, ...], int]] = field(default_factory=dict)
    #: feedback address -> more widgets set by the same reply
    also: dict[str, list[int]] = field(default_factory=dict)


def render_pd(layout: Layout) -> str:
    """The patch as Pd file text (deterministic)."""
    c = PdCanvas()
    follow = _Followers()
    c.comment(
        20,
        10,
        "e2m-live controller for Pure Data - generated by `e2m-live patches` from the "
        "daemon's OSC table (do not edit) - see patches/README.md",
    )
    c.comment(
        20,
        32,
        f"sends to {layout.daemon_host}:{layout.daemon_port} (UDP) and shows the daemon's "
        f"replies - also listens on {layout.feedback_port} for --feedback",
    )
    x = _faders(c, layout, follow)
    _pad(c, layout, follow, x + 20, 100)
    y = 380
    for menu in layout.menus:
        y = _menu(c, menu, follow, y)
    _entries(c, layout, y)
    _transport(c, layout, follow, 700, 420)
    nx, ny = 1200, 60
    netsend = _network(c, layout, nx, ny)
    _feedback(c, layout, follow, netsend, nx, ny + 200)
    return c.render()


def _faders(c: PdCanvas, layout: Layout, follow: _Followers) -> int:
    """The faders side by side from the left; returns the x where the next control goes."""
    x = 20
    for fader in layout.faders:
        _receive(c, x, 70, fader.name, slider := c.vslider(x, 120, fader.low, fader.high, fader.name))
        c.connect(slider, 0, _osc_out(c, x, 300, fader.address))
        if fader.follow:
            follow.inlets[fader.follow] = (slider, "")
        x += 110
    return x


def _pad(c: PdCanvas, layout: Layout, follow: _Followers, px: int, py: int) -> None:
    """The valence / energy pad: two sliders packed into one message; it follows both features."""
    pad = layout.pad
    c.obj(px, py, "cnv 15 160 160 empty empty valence_(x)_/_energy_(y) 4 12 0 12 #e0e0e0 #404040 0")
    horizontal = c.hslider(px, py + 170, pad.low, pad.high, pad.axes[0])
    vertical = c.vslider(px + 170, py, pad.low, pad.high, pad.axes[1])
    trigger = c.obj(px + 210, py + 200, "t b f")
    packer = c.obj(px, py + 240, "pack f f")
    c.connect(horizontal, 0, packer, 0)
    c.connect(vertical, 0, trigger)
    c.connect(trigger, 1, packer, 1)
    c.connect(trigger, 0, packer, 0)
    c.connect(packer, 0, _osc_out(c, px, py + 280, pad.address))
    pad_in = c.obj(px + 110, py + 240, f"r e2m-{pad.name}")
    c.connect(pad_in, 0, packer, 0)
    for index, slider in enumerate((horizontal, vertical)):
        setter = c.msg(px + 110 + 60 * index, py + 280, f"set ${index + 1}")
        c.connect(pad_in, 0, setter)
        c.connect(setter, 0, slider)
        follow.also[f"/e2m/state/{pad.axes[index]}"] = [slider]  # the pad follows its two features


def _menu(c: PdCanvas, menu: Control, follow: _Followers, y: int) -> int:
    """One menu as a radio row at ``y``; returns the y of the next one."""
    c.comment(20, y, f"{menu.label}: {' '.join(menu.labels)}")
    radio = c.hradio(20, y + 24, len(menu.values), "empty")
    receiver = c.obj(360, y + 24, f"r e2m-{menu.name}")
    formatter = _osc_out(c, 460, y + 24, menu.address)
    if menu.string_values:  # mood: an index picks a name
        selector = c.obj(360, y + 56, "sel " + " ".join(str(i) for i in range(len(menu.values))))
        c.connect(radio, 0, selector)
        for index, value in enumerate(menu.values):
            name = c.msg(20 + 70 * index, y + 86, f"symbol {value}")
            c.connect(selector, index, name)
            c.connect(name, 0, formatter)
        as_list = c.obj(460, y + 56, "list")  # `e2m-mood calm` arrives as the selector calm
        c.connect(receiver, 0, as_list)
        c.connect(as_list, 0, formatter)
        if menu.follow:
            follow.named[menu.follow] = (radio, menu.labels, menu.follow_index)
        return y + 130
    first = menu.values[0]
    if menu.follow and menu.follow_name:  # the feedback names the entry (sync)
        follow.named[menu.follow] = (radio, menu.labels, menu.follow_index)
    if first:
        offset = c.obj(360, y + 56, f"+ {first}")
        unoffset = c.obj(420, y + 56, f"- {first}")
        c.connect(radio, 0, offset)
        c.connect(offset, 0, formatter)
        c.connect(receiver, 0, unoffset)
        c.connect(unoffset, 0, radio)
        if menu.follow and not menu.follow_name:
            follow.inlets[menu.follow] = (radio, f"- {first}")
    else:
        c.connect(radio, 0, formatter)
        c.connect(receiver, 0, radio)
        if menu.follow and not menu.follow_name:
            follow.inlets[menu.follow] = (radio, "")
    return y + 90


def _entries(c: PdCanvas, layout: Layout, y: int) -> None:
    """The instrument entries (a symbol atom each), from ``y`` down."""
    for entry in layout.entries:
        c.comment(20, y, f"{entry.label} (type, then return)")
        field = c.symbolatom(20, y + 24, 24)
        receiver = c.obj(260, y + 24, f"r e2m-{entry.name}")
        as_list = c.obj(260, y + 56, "list")  # `e2m-mute drums` arrives as the selector drums
        formatter = _osc_out(c, 460, y + 24, entry.address)
        c.connect(field, 0, formatter)
        c.connect(receiver, 0, as_list)
        c.connect(as_list, 0, formatter)
        y += 100


def _transport(c: PdCanvas, layout: Layout, follow: _Followers, tx: int, ty: int) -> None:
    """Tempo, the toggles (loop, ...) and the transport buttons."""
    tempo = layout.tempo
    atom = c.floatatom(tx, ty, 6, tempo.low, tempo.high, f"{tempo.name}_({tempo.unit})")
    _receive(c, tx + 140, ty, tempo.name, atom)
    c.connect(atom, 0, _osc_out(c, tx + 140, ty + 30, tempo.address))
    if tempo.follow:
        follow.inlets[tempo.follow] = (atom, "")
    ty += 90
    for toggle in layout.toggles:
        widget = c.toggle(tx, ty, toggle.label)
        _receive(c, tx + 140, ty, toggle.name, widget)
        c.connect(widget, 0, _osc_out(c, tx + 140, ty + 30, toggle.address))
        if toggle.follow:
            follow.inlets[toggle.follow] = (widget, "")
        ty += 70
    for index, button in enumerate(layout.buttons):
        bxx, byy = tx + 160 * (index % 2), ty + 130 * (index // 2)
        widget = c.bang(bxx, byy, button.label)
        _receive(c, bxx, byy + 36, button.name, widget)
        formatter = _osc_out(c, bxx, byy + (96 if button.send else 66), button.address)
        if button.send:
            preset = c.msg(bxx, byy + 66, " ".join(format_number(v) for v in button.send))
            c.connect(widget, 0, preset)
            c.connect(preset, 0, formatter)
        else:
            c.connect(widget, 0, formatter)


def _network(c: PdCanvas, layout: Layout, nx: int, ny: int) -> int:
    """The UDP sender (connects on load, then asks for the full state); returns the netsend."""
    c.comment(nx, ny - 20, "network")
    loadbang = c.obj(nx, ny, "loadbang")
    connect = c.msg(nx, ny + 30, f"connect {layout.daemon_host} {layout.daemon_port}")
    control = c.obj(nx + 90, ny + 60, "r e2m-netsend")
    outgoing = c.obj(nx, ny + 60, "r e2m-osc")
    prepend = c.obj(nx, ny + 90, "list prepend send")
    trim = c.obj(nx, ny + 120, "list trim")
    netsend = c.obj(nx, ny + 150, "netsend -u -b")
    c.connect(loadbang, 0, connect)
    c.connect(connect, 0, netsend)
    # once connected (Pd connects in the background), ask for the full state
    wait = c.obj(nx + 90, ny, "delay 500")
    ask = c.msg(nx + 170, ny, "; e2m-status bang")
    c.connect(loadbang, 0, wait)
    c.connect(wait, 0, ask)
    c.connect(control, 0, netsend)
    c.connect(outgoing, 0, prepend)
    c.connect(prepend, 0, trim)
    c.connect(trim, 0, netsend)
    return netsend


def _feedback(c: PdCanvas, layout: Layout, follow: _Followers, netsend: int, nx: int, fy: int) -> None:
    """The replies (and ``--feedback``) parsed and routed, by address group, to the widgets that
    follow them and to the displays."""
    listen = c.obj(nx + 120, fy, "r e2m-listen")
    netreceive = c.obj(nx, fy + 30, f"netreceive -u -b {layout.feedback_port}")
    parse = c.obj(nx, fy + 60, "oscparse")
    trim_in = c.obj(nx, fy + 90, "list trim")
    route_prefix = c.obj(nx, fy + 120, "route e2m")
    c.connect(listen, 0, netreceive)
    c.connect(netreceive, 0, parse)
    c.connect(netsend, 1, parse)  # the daemon's replies come back on the sending socket too
    c.connect(parse, 0, trim_in)
    c.connect(trim_in, 0, route_prefix)
    displays = {d.address: d for d in layout.displays}
    routed: dict[str, list[str]] = {}
    for address in dict.fromkeys([*follow.inlets, *follow.named, *displays]):
        parts = address.strip("/").split("/")[1:]  # after "e2m"
        routed.setdefault(parts[0], []).append(address)
    groups = sorted(routed)
    route_group = c.obj(nx, fy + 150, "route " + " ".join(groups))
    c.connect(route_prefix, 0, route_group)
    dy = fy + 190
    for gi, group in enumerate(groups):
        addresses = routed[group]
        leaves = [a.rsplit("/", 1)[-1] for a in addresses]
        if addresses == [f"/e2m/{group}"]:
            source, outlets = route_group, {addresses[0]: gi}
        else:
            source = c.obj(nx, dy, "route " + " ".join(leaves))
            c.connect(route_group, gi, source)
            outlets = {a: i for i, a in enumerate(addresses)}
            dy += 30
        for address, outlet in outlets.items():
            if address in follow.named:
                dy = _follow_name(c, nx, dy, source, outlet, *follow.named[address])
            if address in follow.inlets:
                dy = _follow_value(c, nx, dy, source, outlet, follow, address)
            if address in displays:
                dy = _display(c, nx, dy, source, outlet, displays[address])


def _follow_value(
    c: PdCanvas, x: int, y: int, source: int, outlet: int, follow: _Followers, address: str
) -> int:
    """``[set $1(`` into the widget that follows ``address`` (and any others), through its
    pre-object if it has one."""
    widget, pre = follow.inlets[address]
    head = source
    if pre:
        step = c.obj(x + 150, y, pre)
        c.connect(source, outlet, step)
        head, outlet = step, 0
    setter = c.msg(x + 210, y, "set $1")
    c.connect(head, outlet, setter)
    for target in (widget, *follow.also.get(address, ())):
        c.connect(setter, 0, target)
    return y + 26


def _follow_name(
    c: PdCanvas, x: int, y: int, source: int, outlet: int, radio: int, names: tuple[str, ...], index: int
) -> int:
    """A radio follows a name (ensemble, the sync source): argument ``index`` of the message, then
    ``[sel NAMES]`` to ``[set i(`` into the radio (``set``: nothing is sent back)."""
    head = c.obj(x + 150, y, "list")
    c.connect(source, outlet, head)
    if index:
        split = c.obj(x + 200, y, f"list split {index}")
        c.connect(head, 0, split)
        head = split
        first = c.obj(x + 300, y, "list split 1")
        c.connect(head, 1, first)
    else:
        first = c.obj(x + 200, y, "list split 1")
        c.connect(head, 0, first)
    select = c.obj(x + 150, y + 26, "sel " + " ".join(names))
    c.connect(first, 0, select)
    for i in range(len(names)):
        setter = c.msg(x + 150 + 50 * i, y + 52, f"set {i}")
        c.connect(select, i, setter)
        c.connect(setter, 0, radio)
    return y + 84


def _display(c: PdCanvas, x: int, y: int, source: int, outlet: int, display: Display) -> int:
    """Atoms showing one feedback message; each forwards to ``[s e2m-state-NAME]``."""
    sends = [f"e2m-state-{display.name}" + (f"-{i}" if i else "") for i in range(len(display.arguments))]
    if display.kind == "text":
        as_list = c.obj(x, y, "list")
        c.connect(source, outlet, as_list)
        if display.repeated:  # any number of words: a message box shows them all
            c.comment(x + 60, y, display.label)
            setter = c.obj(x + 60, y + 26, "list prepend set")
            trim = c.obj(x + 200, y + 26, "list trim")
            box = c.msg(x + 60, y + 52, "-")
            forward = c.obj(x + 300, y + 26, f"s {sends[0]}")
            c.connect(as_list, 0, setter)
            c.connect(setter, 0, trim)
            c.connect(trim, 0, box)
            c.connect(as_list, 0, forward)
            return y + 86
        if len(display.arguments) == 1:
            c.comment(x + 60, y, display.label)
            atom = c.symbolatom(x + 60, y + 26, 40, "-", sends[0])
            c.connect(as_list, 0, atom)
            y += 26
        else:
            c.comment(x + 180, y, display.label)
            unpack = c.obj(x + 60, y, "unpack " + " ".join("s" for _ in display.arguments))
            c.connect(as_list, 0, unpack)
            printer = c.obj(x + 60, y + 56, f"print e2m-{display.name}")
            c.connect(as_list, 0, printer)
            for i in range(len(display.arguments)):
                atom = c.symbolatom(x + 60 + 150 * i, y + 28, 14 if i == 0 else 40, "-", sends[i])
                c.connect(unpack, i, atom)
            y += 56
        return y + 30
    c.comment(x + 190, y, display.label)
    if len(display.arguments) == 1:
        atom = (
            c.toggle(x, y, "empty", sends[0])
            if display.kind == "toggle"
            else c.floatatom(x, y, 6, 0, 0, "-", sends[0])
        )
        c.connect(source, outlet, atom)
        return y + 34
    unpack = c.obj(x, y, "unpack " + " ".join("f" for _ in display.arguments))
    c.connect(source, outlet, unpack)
    for i, name in enumerate(display.arguments):
        atom = c.floatatom(x + 90 * i, y + 28, 6, 0, 0, name, sends[i])
        c.connect(unpack, i, atom)
    return y + 64
