"""``patches/README.md``: how to connect each controller, with a text picture of each layout.

Generated with the patches (so ports, addresses and control names cannot drift either).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from e2m_live.patches.layout import Layout, format_number
from e2m_live.patches.touchosc import HEIGHT, WIDTH


def _box(lines: list[str]) -> list[str]:
    width = max(len(line) for line in lines) + 4
    border = "+" + "-" * (width - 2) + "+"
    return [border, *(f"| {line:<{width - 4}} |" for line in lines), border]


def _names(controls: Iterable[object], attribute: str = "name") -> str:
    return " ".join(f"[{getattr(c, attribute)}]" for c in controls)


def _fader_rows(layout: Layout, pad: list[str]) -> list[str]:
    """Fader columns with the pad's picture to their right."""
    names = "".join(f"{f.name[:6]:^8}" for f in layout.faders)
    column = "   ||   " * len(layout.faders)
    blank = " " * len(names)
    rows = [names, column, column, column, blank]
    return [f"{row:<{len(names)}}   {art}" for row, art in zip(rows, pad, strict=True)]


def _display_rows(layout: Layout, source: str) -> list[str]:
    """The feedback displays, one per line, under the object they come from."""
    rows = [f"{d.label:<16} [{' '.join('...' for _ in d.arguments)}]" for d in layout.displays]
    return [f"{source} ->", *(f"    {row}" for row in rows)]


def picture_max(layout: Layout) -> list[str]:
    lines = ["e2m-live (Max)"]
    lines += _fader_rows(
        layout,
        ["+-------------+", "| pictslider  |", "| x: valence  |", "| y: energy   |", "+-------------+"],
    )
    for menu in layout.menus:
        lines.append(f"{menu.label:<14} [{menu.labels[0]} v]  (umenu: {' '.join(menu.labels[:4])} ...)")
    lines.append(f"{layout.tempo.label:<14} [{format_number(layout.tempo.default)}]  (number box)")
    lines += [f"{t.label:<14} [x]  (toggle)" for t in layout.toggles]
    lines.append(" ".join(f"(o)[{b.label}]" for b in layout.buttons))
    lines += [f"{e.label:<14} [{'_' * 20}]  (textedit -> route text)" for e in layout.entries]
    lines.append(f"-> [udpsend {layout.daemon_host} {layout.daemon_port}]")
    lines += _display_rows(layout, f"[udpreceive {layout.feedback_port}]")
    return _box(lines)


def picture_pd(layout: Layout) -> list[str]:
    lines = ["e2m-live (Pure Data)"]
    lines += _fader_rows(
        layout,
        [
            "+--------+ |",
            "|  pad   | | vsl: energy (y)",
            "|        | |",
            "+--------+ |",
            "[==hsl==]  hsl: valence (x)",
        ],
    )
    for menu in layout.menus:
        cells = "".join("[ ]" for _ in menu.values)
        lines.append(f"{menu.label:<14} {cells}  (hradio: {' '.join(menu.labels[:4])} ...)")
    lines.append(f"{layout.tempo.label:<14} [{format_number(layout.tempo.default)}]  (number box)")
    lines += [f"{t.label:<14} [x]  (toggle)" for t in layout.toggles]
    lines.append(" ".join(f"(o) {b.label}" for b in layout.buttons))
    lines += [f"{e.label:<14} [{'_' * 20}]  (symbol box)" for e in layout.entries]
    lines.append(f"[netsend -u -b] -> {layout.daemon_host}:{layout.daemon_port}")
    lines += _display_rows(layout, f"[netreceive -u -b {layout.feedback_port}] [oscparse]")
    return _box(lines)


def picture_touchosc(layout: Layout) -> list[str]:
    faders = "".join(f"|{f.name[:6]:^6}" for f in layout.faders) + "|"
    key, mode = (m for m in layout.menus if m.name in ("key", "mode"))
    lines = [
        f"e2m-live (TouchOSC, {WIDTH} x {HEIGHT})",
        f"{faders}  +--------------+  | tempo |",
        f"{'|  ##  ' * len(layout.faders)}|  |      XY      |  |  ##   |",
        f"{'|  ##  ' * len(layout.faders)}|  | valence (x)  |  |  ##   |",
        f"{'|  ##  ' * len(layout.faders)}|  | energy (y)   |  |  ##   |",
        f"{' ' * (7 * len(layout.faders) + 1)}  +--------------+",
        f"{key.label}  {''.join(f'[{k}]' for k in key.labels)}   {mode.label} [{'|'.join(mode.labels)}]",
    ]
    for menu in layout.menus:
        if menu.name not in ("key", "mode") and not menu.string_values:
            lines.append(f"{menu.label[:13]:<14}[{'|'.join(menu.labels)}]")
        elif menu.string_values:
            lines.append(f"{menu.label[:13]:<14}{''.join(f'[{label}]' for label in menu.labels)}")
    quick = [f"[{e.label} {label}]" for e in layout.entries for label in e.labels]
    lines.append(" ".join([_names(layout.buttons, "label"), _names(layout.toggles, "label"), *quick]))
    lines.append(" ".join(f"[{d.label}: ...]" for d in layout.displays))
    return _box(lines)


def picture_openstage(layout: Layout) -> list[str]:
    lines = [
        "e2m-live (Open Stage Control)",
        _names(layout.faders) + " [xy pad]",
        f"[{layout.tempo.name} ------------------------------------------]",
        " ".join(f"[{m.label} v]" for m in layout.menus),
        " ".join(f"[{e.label}: {'_' * 12}]" for e in layout.entries),
        _names(layout.buttons, "label") + " " + _names(layout.toggles, "label"),
        " ".join(f"[{d.label}]" for d in layout.displays),
    ]
    return _box(lines)


#: What each controller costs the performer: (controller, install, platforms, price).
COSTS = (
    (
        "browser surface (built in)",
        "nothing: open the address `serve` prints",
        "any browser: phone, tablet, laptop",
        "free",
    ),
    ("Pure Data (`e2m-live.pd`)", "Pd vanilla (Debian: `puredata`)", "Linux, macOS, Windows", "free"),
    (
        "Open Stage Control (`e2m-live.json`)",
        "gone from npm, upstream repository emptied: build a fork's source (1.26.x)",
        "server on a computer, surface in any browser",
        "free, but a build",
    ),
    (
        "TouchOSC (`e2m-live.tosc`)",
        "the app from its store",
        "iOS, Android, macOS, Windows, Linux",
        "paid app",
    ),
    ("Max (`e2m-live.maxpat`)", "Max 8 or newer", "macOS, Windows", "paid licence"),
)


def _cost_table() -> str:
    rows = ["| controller | install | runs on | cost |", "|---|---|---|---|"]
    return "\n".join(rows + [f"| {' | '.join(row)} |" for row in COSTS])


def render_readme(layout: Layout) -> str:
    host, port, feedback = layout.daemon_host, layout.daemon_port, layout.feedback_port
    addresses = "\n".join(f"| `{c.address}` | {c.label} | {c.kind} |" for c in layout.controls)
    displays = "\n".join(f"| `{d.address}` | {d.label} | {', '.join(d.arguments)} |" for d in layout.displays)
    followed = ", ".join(
        dict.fromkeys(c.follow.removeprefix("/e2m/state/") for c in layout.controls if c.follow)
    )
    follows = textwrap.fill(
        f"Every control that shows a value follows the daemon's feedback for it ({followed}; the pad "
        "follows valence and energy), so a change made on one controller shows on the others: Max "
        "and Pd set them without sending, TouchOSC receives on the control (a menu of names shows "
        "the name in force in its title), Open Stage Control uses `variable` widgets (its mood menu "
        "also shows the preset the features in force match). Each patch asks for `/e2m/status` when "
        "it opens, so it starts from the daemon's state, not from its own defaults. "
        "`tests/test_patches.py` checks both for every control, from the address table.",
        width=96,
    )

    costs = _cost_table()

    def block(lines: list[str]) -> str:
        return "```\n" + "\n".join(lines) + "\n```"

    return f"""# Controller patches

<!-- Generated by `e2m-live patches --out patches/` from e2m_live/live/addresses.py; do not edit.
     tests/test_patches.py fails when these files differ from what the generator writes. -->

Open a patch or a layout and play: every control here sends to the daemon's OSC address table
(`docs/osc.md`), and the patches are regenerated from that table, so they cannot drift from it.

No app at all: `e2m-live serve` also serves a control surface to any browser, on
`http://127.0.0.1:8080/` (`--http-port`, `--no-web`; see `docs/web.md` and the phone section below).

What each controller costs the performer:

{costs}

| file | controller |
|---|---|
| `e2m-live.maxpat` | Max 8 (or newer) patcher |
| `e2m-live.pd` | Pure Data vanilla 0.51 or newer (`oscformat`, `netsend`, `netreceive`, `oscparse`) |
| `e2m-live.tosc` | TouchOSC (the current app, not TouchOSC Mk1) |
| `e2m-live.json` | Open Stage Control 1.x session |

Regenerate after changing the address table: `e2m-live patches --out patches/`
(`e2m-live patches --out patches/ --check` exits 1 if the committed files are stale).

## Ports

| what | where |
|---|---|
| the daemon listens (OSC over UDP) | `{port}` (`--udp-port`); TCP on 9001 |
| the daemon replies to | the address and port each message came from |
| extra feedback targets | `--feedback HOST:PORT` (repeatable): every `/e2m/state/*` message goes there too |
| Max, Pd and TouchOSC listen for feedback on | `{feedback}` |

The daemon sends feedback on every bar line (bar, lag) and on every change (playing, loop,
features, plan) to every recent sender and every `--feedback` target; it answers `/e2m/status`
to the sender only. Pure Data and Open Stage Control receive on the socket they send from, so
they need nothing more. Max (`udpsend` and `udpreceive` are separate sockets) and TouchOSC
listen on port {feedback}: start the daemon with a feedback target for them:

    e2m-live serve --feedback 127.0.0.1:{feedback}

## On the same computer

* **Max**: open `e2m-live.maxpat`; it sends to `{host}:{port}` and listens on `{feedback}`
  (start the daemon with `--feedback 127.0.0.1:{feedback}`; the daemon also sends its
  `/e2m/status` replies there, so the patch's on-load request fills it).
* **Pure Data**: open `e2m-live.pd` (it connects on load, asks for `/e2m/status` and shows the
  replies; it also listens on `{feedback}`). Other patches can drive it by name:
  `[s e2m-energy]`, `[s e2m-mood]` (a name), `[s e2m-play]` (bang), `[s e2m-xy]` (`x y`);
  `[r e2m-state-bar]`, `[r e2m-state-playing]`, ... carry the feedback it shows;
  `e2m-netsend` takes `disconnect` / `connect HOST PORT`, `e2m-listen` takes `listen PORT`.
* **Open Stage Control**: `open-stage-control --send {host}:{port} --load patches/e2m-live.json`
  (the session has no per-widget target; the daemon answers the server's OSC port, so feedback
  arrives without `--feedback`).
* **TouchOSC** on the same machine: connection 1 = UDP, host `{host}`, send port `{port}`,
  receive port `{feedback}`.

## A phone or tablet on Wi-Fi (a browser, TouchOSC, or Open Stage Control)

The simplest: the browser surface. Bind the daemon to every interface and allow your Wi-Fi
network; it prints the address to open on the phone (same network, no app):

    e2m-live serve --host 0.0.0.0 --allow 192.168.1.0/24
    ...
      listening: browser http://192.168.1.20:8080/

Any other client gets HTTP 403 (the computer itself too, unless you add `--allow 127.0.0.1`). The
same `--host` and `--allow` apply to OSC.

For TouchOSC: the daemon binds `127.0.0.1` unless told otherwise. Bind it to the computer's Wi-Fi address
(`0.0.0.0` binds every interface) and allow the phone, or the Wi-Fi network, explicitly; packets
from addresses not in the allow-list are ignored. With the computer at `192.168.1.20` and the
phone at `192.168.1.35`:

    e2m-live serve --host 192.168.1.20 --allow 192.168.1.35 --feedback 192.168.1.35:{feedback}

In TouchOSC: *Connections* → OSC → connection 1: UDP, host `192.168.1.20` (the computer), send
port `{port}`, receive port `{feedback}`; then open `e2m-live.tosc` in TouchOSC (copy it to the
phone or tablet and open it from TouchOSC's document browser, or from the desktop editor).

For Open Stage Control, run the server on the computer (as above) and open the address it prints
in the phone's browser; only the server talks OSC, so the daemon can stay on `127.0.0.1`.

## What is where

Controls (each sends to its address):

| address | label | widget |
|---|---|---|
{addresses}

Menus send an index (key: 0 = C; mode: 0 minor, 1 major), the beats-per-bar menu sends 3..7,
the mood and ensemble menus send the name; *Defaults* sends `/e2m/features` with the ten defaults.
{follows}

Instrument entries (instruments, mute, unmute) take General MIDI names, program numbers 0..127 or
`drums`. Open Stage Control's input field sends one string: separate names with commas
(`violin, cello, drums`). Max's text field sends one word per instrument (program numbers or a
unique part of a name: `40 42 drums`); Pd's symbol box takes one instrument. Typing `auto` in the
instruments field returns to the ensemble. TouchOSC cannot type: it has quick-pick buttons
(instruments auto, mute drums, unmute drums). The instruments and muted displays show what is in
force.

Feedback displays:

| address | label | arguments |
|---|---|---|
{displays}

## Layouts

Max (`e2m-live.maxpat`):

{block(picture_max(layout))}

Pure Data (`e2m-live.pd`); Pd vanilla has no 2-D pad, so valence (x) and energy (y) are a
horizontal and a vertical slider around the pad's square, either of which sends `/e2m/xy`:

{block(picture_pd(layout))}

TouchOSC (`e2m-live.tosc`):

{block(picture_touchosc(layout))}

Open Stage Control (`e2m-live.json`):

{block(picture_openstage(layout))}
"""
