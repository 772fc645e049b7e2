"""Open Stage Control session: ``patches/e2m-live.json`` (load it in Open Stage Control 1.x).

The session has no per-widget target: start the server with ``--send 127.0.0.1:9000`` (the
daemon) and any ``--osc-port``; the daemon answers and sends feedback to the port a controller
sends from, so the server's own OSC port receives ``/e2m/state/*`` without extra setup.

Widgets send to the daemon's addresses; invisible ``variable`` widgets listen on
``/e2m/state/<feature>`` and move the matching widget with ``set(id, value, {send: false})``, so
a change made elsewhere shows here without being sent back. Text widgets show the bar, playing,
lag, plan and error feedback and the arrangement (ensemble, instruments, muted). Instrument
entries are ``input`` widgets: type names separated by commas (``violin, cello, drums``) and
press return; the daemon splits the string.
"""

from __future__ import annotations

import json
from typing import Any

from e2m_live.live.addresses import BY_ADDRESS
from e2m_live.patches.layout import Control, Layout, format_number

#: Written into the session; Open Stage Control upgrades sessions older than the version they name.
SESSION_VERSION = "1.26.2"


def _fader(control: Control, horizontal: bool = False) -> dict[str, Any]:
    return {
        "type": "fader",
        "id": control.id,
        "html": _caption(control),
        "expand": True,
        "horizontal": horizontal,
        "range": {"min": control.low, "max": control.high},
        "default": control.default,
        "decimals": 0 if horizontal else 2,
        "address": control.address,
        "typeTags": "f",
    }


def _caption(control: Control) -> str:
    """The text shown above a widget (faders and pads have no label property; ``html`` is it)."""
    return f"{control.label} ({control.unit})" if control.unit else control.label


def _menu(control: Control) -> dict[str, Any]:
    return {
        "type": "dropdown",
        "id": control.id,
        "label": f"{control.label}: %key",
        "expand": True,
        "values": {"labels": list(control.labels), "values": list(control.values)},
        "default": control.default,
        "address": control.address,
        "typeTags": "s" if control.string_values else "i",
    }


def _button(control: Control) -> dict[str, Any]:
    widget: dict[str, Any] = {
        "type": "button",
        "id": control.id,
        "label": control.label,
        "expand": True,
        "mode": "momentary",
        "address": control.address,
    }
    if control.send:  # the Defaults preset: the ten values, typed as the daemon expects them
        widget["preArgs"] = list(control.send)
        widget["typeTags"] = "".join("i" if isinstance(v, int) else "f" for v in control.send)
    return widget


def _entry(control: Control) -> dict[str, Any]:
    return {
        "type": "input",
        "id": control.id,
        "html": f"{control.label} (names or numbers, commas)",
        "expand": True,
        "default": "",
        "address": control.address,
        "typeTags": "s",
    }


def _follower(control: Control, also: str = "") -> dict[str, Any]:
    """A variable on the control's feedback address that sets it without sending back."""
    value = f"value[{control.follow_index}]" if len(_arguments(control.follow)) > 1 else "value"
    if control.follow_name and not control.string_values:  # a name to an index menu (sync)
        value = f"{json.dumps(list(control.labels))}.indexOf({value}) + {format_number(control.values[0])}"
    return {
        "type": "variable",
        "id": f"follow_{control.id}",
        "address": control.follow,
        "onValue": f"set('{control.id}', {value}, {{send: false}})" + also,
    }


def _arguments(address: str | None) -> tuple:
    return BY_ADDRESS[address].arguments if address in BY_ADDRESS else ()


def _pad_followers(pad: Control) -> list[dict[str, Any]]:
    """The XY pad follows each axis's feedback, keeping the other axis where it is."""
    followers = []
    for axis, address in enumerate(pad.axes_follow):
        if address is None:
            continue
        point = f"[value, get('{pad.id}')[1]]" if axis == 0 else f"[get('{pad.id}')[0], value]"
        followers.append(
            {
                "type": "variable",
                "id": f"follow_{pad.id}_{pad.axes[axis]}",
                "address": address,
                "onValue": f"set('{pad.id}', {point}, {{send: false}})",
            }
        )
    return followers


def _script_follower(widget_id: str, address: str, script: str) -> dict[str, Any]:
    return {"type": "variable", "id": widget_id, "address": address, "onValue": script}


def _mood_follower(layout: Layout) -> list[dict[str, Any]]:
    """The mood menu has no feedback of its own: it shows the preset the features in force are
    (none: empty), from ``/e2m/state/features``."""
    from e2m_live.features import FEATURE_ORDER, MOODS

    if not any(m.name == "mood" for m in layout.menus) or "/e2m/state/features" not in BY_ADDRESS:
        return []
    presets = json.dumps({m: [getattr(f, n) for n in FEATURE_ORDER] for m, f in MOODS.items()})
    return [
        _script_follower(
            "follow_mood",
            "/e2m/state/features",
            f"var presets = {presets}; var found = ''; "
            "Object.keys(presets).forEach(function (m) { if (presets[m].every(function (v, i) "
            "{ return Math.abs(v - value[i]) < 0.001 })) found = m }); "
            "set('mood', found, {send: false})",
        )
    ]


#: How a display shows its message (``value`` is the argument, or the list of arguments).
_DISPLAY_SCRIPTS = {
    "bar": "'bar ' + value[0] + ' (' + (value[1] + 1) + '/12)'",
    "lag": "value[0] + ' late bars, last ' + Number(value[1]).toFixed(1) + ' ms late'",
    "error": "value[0] + ': ' + value[1]",
    "playing": "value ? 'playing' : 'stopped'",
}


def _display_follower(name: str, address: str) -> dict[str, Any]:
    """Text widgets show a list joined by commas ("2,2"); a variable formats it instead."""
    text = _DISPLAY_SCRIPTS.get(name, "Array.isArray(value) ? value.join(' ') : value")
    return _script_follower(f"show_{name}", address, f"set('state_{name}', {text})")


def _panel(
    panel_id: str, widgets: list[dict[str, Any]], height: str, layout: str = "horizontal"
) -> dict[str, Any]:
    return {
        "type": "panel",
        "id": f"panel_{panel_id}",
        "layout": layout,
        "height": height,
        "innerPadding": True,
        "widgets": widgets,
    }


def build_session(layout: Layout) -> dict[str, Any]:
    """The session as a JSON-ready dict."""
    faders = [_fader(f) for f in layout.faders]
    pad = layout.pad
    xy = {
        "type": "xy",
        "id": pad.id,
        "html": f"{pad.label}: {pad.axes[0]} (x), {pad.axes[1]} (y)",
        "expand": True,
        "rangeX": {"min": pad.low, "max": pad.high},
        "rangeY": {"min": pad.low, "max": pad.high},
        "default": list(pad.default),
        "address": pad.address,
        "typeTags": "ff",
    }
    tempo = _fader(layout.tempo, horizontal=True)
    menus = [_menu(m) for m in layout.menus]
    toggles = [
        {
            "type": "button",
            "id": t.id,
            "label": t.label,
            "expand": True,
            "mode": "toggle",
            "on": 1,
            "off": 0,
            "address": t.address,
            "typeTags": "i",
        }
        for t in layout.toggles
    ]
    buttons = [_button(b) for b in layout.buttons]
    entries = [_entry(e) for e in layout.entries]
    wide = ("error", "plan")
    displays = [
        {
            "type": "text",
            "id": f"state_{d.name}",
            "expand": 3 if d.name in wide else True,
            "html": f"<b>{d.label}</b>",
            "default": "-",
            "wrap": "soft",
            "address": "",
        }
        for d in layout.displays
    ]
    followed = [c for c in (*layout.faders, *layout.menus, layout.tempo, *layout.toggles) if c.follow]
    content = {
        "type": "root",
        "id": "root",
        "layout": "vertical",
        # the daemon's state at once, not the built-in defaults; send(target, address): false = the
        # server's default target (--send)
        "onCreate": "send(false, '/e2m/status')",
        "comments": "e2m-live controller, generated by `e2m-live patches` from the daemon's OSC table; "
        "do not edit. Start the server with --send 127.0.0.1:9000. See patches/README.md",
        "widgets": [
            _panel("features", [*faders, xy], "38%"),
            _panel("tempo_row", [tempo], "9%"),
            _panel("menus", menus, "10%"),
            _panel("entries", entries, "9%"),
            _panel("transport", [*buttons, *toggles], "12%"),
            _panel("feedback", displays, "18%", layout="vertical"),
            *(_follower(c) for c in followed),
            *_pad_followers(pad),
            *_mood_follower(layout),
            *(_display_follower(d.name, d.address) for d in layout.displays),
        ],
        "tabs": [],
    }
    return {
        "createdWith": "Open Stage Control",
        "version": SESSION_VERSION,
        "type": "session",
        "content": content,
    }


def render_session(layout: Layout) -> str:
    """The session file text (deterministic)."""
    return json.dumps(build_session(layout), indent=2) + "\n"
