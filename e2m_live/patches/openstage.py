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

from e2m_live.patches.layout import Control, Layout

#: Written into the session; Open Stage Control upgrades sessions older than the version they name.
SESSION_VERSION = "1.26.2"


def _fader(control: Control, horizontal: bool = False) -> dict[str, Any]:
    return {
        "type": "fader", "id": control.name, "html": _caption(control), "expand": True,
        "horizontal": horizontal, "range": {"min": control.low, "max": control.high},
        "default": control.default, "decimals": 0 if horizontal else 2,
        "address": control.address, "typeTags": "f",
    }


def _caption(control: Control) -> str:
    """The text shown above a widget (faders and pads have no label property; ``html`` is it)."""
    return f"{control.label} ({control.unit})" if control.unit else control.label


def _menu(control: Control) -> dict[str, Any]:
    return {
        "type": "dropdown", "id": control.name, "label": f"{control.label}: %key", "expand": True,
        "values": {"labels": list(control.labels), "values": list(control.values)},
        "default": control.default, "address": control.address,
        "typeTags": "s" if control.string_values else "i",
    }


def _button(control: Control) -> dict[str, Any]:
    widget: dict[str, Any] = {
        "type": "button", "id": control.name, "label": control.label, "expand": True,
        "mode": "momentary", "address": control.address,
    }
    if control.send:  # the Defaults preset: the ten values, typed as the daemon expects them
        widget["preArgs"] = list(control.send)
        widget["typeTags"] = "".join("i" if isinstance(v, int) else "f" for v in control.send)
    return widget


def _entry(control: Control) -> dict[str, Any]:
    return {"type": "input", "id": control.name, "html": f"{control.label} (names or numbers, commas)",
            "expand": True, "default": "", "address": control.address, "typeTags": "s"}


def _follower(control: Control, also: str = "") -> dict[str, Any]:
    return {
        "type": "variable", "id": f"follow_{control.name}", "address": control.follow,
        "onValue": f"set('{control.name}', value, {{send: false}})" + also,
    }


def _pad_follow(layout: Layout, axis: int) -> str:
    """Script that moves the XY pad's ``axis`` (0: x, 1: y) without sending, after its fader moved."""
    pad = layout.pad.name
    point = f"[value, get('{pad}')[1]]" if axis == 0 else f"[get('{pad}')[0], value]"
    return f"; set('{pad}', {point}, {{send: false}})"


def _script_follower(widget_id: str, address: str, script: str) -> dict[str, Any]:
    return {"type": "variable", "id": widget_id, "address": address, "onValue": script}


def _named_menu_followers(layout: Layout) -> list[dict[str, Any]]:
    """Menus of names follow their feedback: ensemble (/e2m/state/ensemble, a name), sync (the
    source, first argument of /e2m/state/sync, to the menu's index) and mood (lit when the features
    in force are one of the presets; no preset: empty)."""
    from e2m_live.features import FEATURE_ORDER, MOODS

    followers = []
    for menu in layout.menus:
        if menu.name == "ensemble":
            followers.append(_script_follower("follow_ensemble", "/e2m/state/ensemble",
                                              "set('ensemble', value, {send: false})"))
        elif menu.name == "sync":
            names = json.dumps(list(menu.labels))
            followers.append(_script_follower(
                "follow_sync", "/e2m/state/sync",
                f"set('sync', {names}.indexOf(value[0]) + {int(menu.values[0])}, {{send: false}})"))
        elif menu.name == "mood":
            presets = json.dumps({m: [getattr(f, n) for n in FEATURE_ORDER] for m, f in MOODS.items()})
            followers.append(_script_follower(
                "follow_mood", "/e2m/state/features",
                f"var presets = {presets}; var found = ''; "
                "Object.keys(presets).forEach(function (m) { if (presets[m].every(function (v, i) "
                "{ return Math.abs(v - value[i]) < 0.001 })) found = m }); "
                "set('mood', found, {send: false})"))
    return followers


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


def _panel(panel_id: str, widgets: list[dict[str, Any]], height: str, layout: str = "horizontal"
           ) -> dict[str, Any]:
    return {"type": "panel", "id": f"panel_{panel_id}", "layout": layout, "height": height,
            "innerPadding": True, "widgets": widgets}


def build_session(layout: Layout) -> dict[str, Any]:
    """The session as a JSON-ready dict."""
    faders = [_fader(f) for f in layout.faders]
    pad = layout.pad
    xy = {"type": "xy", "id": pad.name, "html": f"{pad.label}: {pad.axes[0]} (x), {pad.axes[1]} (y)",
          "expand": True,
          "rangeX": {"min": pad.low, "max": pad.high}, "rangeY": {"min": pad.low, "max": pad.high},
          "default": list(pad.default), "address": pad.address, "typeTags": "ff"}
    tempo = _fader(layout.tempo, horizontal=True)
    menus = [_menu(m) for m in layout.menus]
    toggles = [{"type": "button", "id": t.name, "label": t.label, "expand": True, "mode": "toggle",
                "on": 1, "off": 0, "address": t.address, "typeTags": "i"} for t in layout.toggles]
    buttons = [_button(b) for b in layout.buttons]
    entries = [_entry(e) for e in layout.entries]
    wide = ("error", "plan")
    displays = [{"type": "text", "id": f"state_{d.name}", "expand": 3 if d.name in wide else True,
                 "html": f"<b>{d.label}</b>", "default": "-", "wrap": "soft", "address": ""}
                for d in layout.displays]
    followed = [c for c in (*layout.faders, *layout.menus, layout.tempo, *layout.toggles) if c.follow]
    axes = {name: index for index, name in enumerate(pad.axes)}
    content = {
        "type": "root", "id": "root", "layout": "vertical",
        "onCreate": "send('/e2m/status')",  # the daemon's state at once, not the built-in defaults
        "comments": "e2m-live controller, generated by `e2m-live patches` from the daemon's OSC table; "
                    "do not edit. Start the server with --send 127.0.0.1:9000. See patches/README.md",
        "widgets": [
            _panel("features", [*faders, xy], "38%"),
            _panel("tempo_row", [tempo], "9%"),
            _panel("menus", menus, "10%"),
            _panel("entries", entries, "9%"),
            _panel("transport", [*buttons, *toggles], "12%"),
            _panel("feedback", displays, "18%", layout="vertical"),
            *(_follower(c, _pad_follow(layout, axes[c.name]) if c.name in axes else "") for c in followed),
            *_named_menu_followers(layout),
            *(_display_follower(d.name, d.address) for d in layout.displays),
        ],
        "tabs": [],
    }
    return {"createdWith": "Open Stage Control", "version": SESSION_VERSION, "type": "session",
            "content": content}


def render_session(layout: Layout) -> str:
    """The session file text (deterministic)."""
    return json.dumps(build_session(layout), indent=2) + "\n"
