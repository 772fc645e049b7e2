"""Controller patches: committed files match the generator byte for byte, each file parses in its
format, and every daemon input address is reachable from every patch (through the patch's own
wiring, up to its network object)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
import zlib
from collections import defaultdict
from pathlib import Path

import pytest

from e2m_live.cli import main
from e2m_live.live.addresses import ADDRESSES, BY_ADDRESS, INPUTS, Argument, OscAddress
from e2m_live.patches import FILES, LayoutError, build_layout, render_all, stale_files
from e2m_live.patches.layout import FEEDBACK_PORT
from e2m_live.patches.touchosc import HEIGHT, WIDTH

PATCHES = Path(__file__).resolve().parents[1] / "patches"
FEEDBACK = {a.address for a in ADDRESSES if a.direction == "out"}


@pytest.fixture(scope="module")
def rendered() -> dict[str, bytes]:
    return render_all()


# ---- generator ---------------------------------------------------------------------------------


def test_committed_patches_are_what_the_generator_writes():
    stale = stale_files(PATCHES)
    assert stale == [], f"regenerate with `e2m-live patches --out patches/`: {stale}"


def test_output_is_deterministic(rendered):
    assert render_all() == rendered
    assert set(rendered) == set(FILES)


def test_layout_places_every_input_address_once():
    layout = build_layout()
    sent = [c.address for c in layout.controls]
    assert sorted(sent) == sorted(INPUTS)
    assert len(sent) == len(set(sent))


def test_an_input_control_the_layout_cannot_place_is_an_error():
    odd = OscAddress("/e2m/odd", (Argument("odd", "s"),), "Odd", "a text entry", control="text")
    with pytest.raises(LayoutError, match="/e2m/odd"):
        build_layout((*ADDRESSES, odd))


def test_a_new_fader_in_the_table_appears_in_every_file():
    extra = OscAddress(
        "/e2m/brightness",
        (Argument("brightness", "fi", 0.0, 1.0, default=0.5),),
        "Brightness",
        "a new control",
    )
    files = render_all(build_layout((*ADDRESSES, extra)))
    assert b"/e2m/brightness" in files["e2m-live.maxpat"]
    assert b"oscformat e2m brightness" in files["e2m-live.pd"]
    assert b"/e2m/brightness" in zlib.decompress(files["e2m-live.tosc"])
    assert b"/e2m/brightness" in files["e2m-live.json"]


def test_cli_writes_the_files_and_check_finds_stale_ones(tmp_path, capsys):
    assert main(["patches", "--out", str(tmp_path)]) == 0
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (PATCHES / name).read_bytes()
    assert main(["patches", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "e2m-live.pd").write_text("#N canvas 0 0 10 10 12;\n")
    assert main(["patches", "--out", str(tmp_path), "--check"]) == 1
    assert "stale: " in capsys.readouterr().out


def test_cli_reports_an_unwritable_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["patches", "--out", str(blocker / "sub")]) == 2
    assert "error: cannot write" in capsys.readouterr().err


# ---- Max ---------------------------------------------------------------------------------------


def _max_graph(patch: dict) -> tuple[dict[str, dict], dict[str, set[str]]]:
    boxes = {b["box"]["id"]: b["box"] for b in patch["patcher"]["boxes"]}
    edges: dict[str, set[str]] = defaultdict(set)
    for line in patch["patcher"]["lines"]:
        source, outlet = line["patchline"]["source"]
        destination, inlet = line["patchline"]["destination"]
        assert source in boxes and destination in boxes
        assert 0 <= outlet < boxes[source]["numoutlets"], (boxes[source], outlet)
        assert 0 <= inlet < boxes[destination]["numinlets"], (boxes[destination], inlet)
        edges[source].add(destination)
    return boxes, edges


def _reaches(edges: dict[str, set], start, goal) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += edges.get(node, ())
    return False


def test_max_patch_is_max_json_and_sends_every_address(rendered):
    patch = json.loads(rendered["e2m-live.maxpat"])
    assert patch["patcher"]["appversion"]["major"] == 8
    boxes, edges = _max_graph(patch)
    senders = [i for i, b in boxes.items() if b.get("text", "").startswith("udpsend ")]
    assert len(senders) == 1
    assert boxes[senders[0]]["text"] == "udpsend 127.0.0.1 9000"
    for address in INPUTS:
        sources = [
            i
            for i, b in boxes.items()
            if b["maxclass"] in ("newobj", "message")
            and re.fullmatch(rf"(prepend )?{re.escape(address)}( .*)?", b.get("text", ""))
        ]
        assert sources, address
        assert any(_reaches(edges, s, senders[0]) for s in sources), address
        feeding = [i for i, targets in edges.items() if set(sources) & targets]
        assert feeding, f"nothing drives {address}"
        assert all(
            boxes[i]["maxclass"]
            in ("slider", "umenu", "flonum", "toggle", "button", "newobj", "pictslider", "textedit")
            for i in feeding
        )


def test_max_patch_shows_feedback(rendered):
    boxes, _ = _max_graph(json.loads(rendered["e2m-live.maxpat"]))
    receivers = [i for i, b in boxes.items() if b.get("text") == f"udpreceive {FEEDBACK_PORT}"]
    assert len(receivers) == 1
    routes = [b["text"].split()[1:] for b in boxes.values() if b.get("text", "").startswith("route ")]
    routed = {a for r in routes for a in r}
    for address in (
        "/e2m/state/bar",
        "/e2m/state/playing",
        "/e2m/state/lag",
        "/e2m/error",
        "/e2m/state/energy",
        "/e2m/state/key",
        "/e2m/state/tempo",
    ):
        assert address in routed
    sliders = [b for b in boxes.values() if b["maxclass"] == "slider"]
    loudness = [b for b in sliders if b["min"] == -60.0]
    assert len(sliders) == 7 and len(loudness) == 1 and loudness[0]["size"] == 60.0  # 6 features, key lock
    key_menu = next(b for b in boxes.values() if b["maxclass"] == "umenu" and "F#" in b["items"])
    assert key_menu["items"][::2] == ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def test_max_boxes_do_not_overlap(rendered):
    boxes = [b["box"]["patching_rect"] for b in json.loads(rendered["e2m-live.maxpat"])["patcher"]["boxes"]]
    overlapping = [
        (a, b)
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
    ]
    assert overlapping == []


# ---- Pure Data ---------------------------------------------------------------------------------


def _pd_records(text: str) -> list[str]:
    """Pd file records (``;``-terminated, ``\\;`` escaped)."""
    records = re.split(r"(?<!\\);\n", text)
    assert records[-1] == ""
    return [r.replace("\n", " ") for r in records[:-1]]


def _pd_graph(text: str) -> tuple[list[str], dict[int, set[int]]]:
    records = _pd_records(text)
    assert records[0].startswith("#N canvas ")
    objects = [r for r in records[1:] if not r.startswith("#X connect ")]
    assert all(re.match(r"#X (obj|msg|text|floatatom|symbolatom) -?\d+ -?\d+", r) for r in objects)
    edges: dict[int, set[int]] = defaultdict(set)
    for r in records[1:]:
        if r.startswith("#X connect "):
            a, _, b, _ = (int(v) for v in r.split()[2:])
            assert 0 <= a < len(objects) and 0 <= b < len(objects), r
            edges[a].add(b)
    # [s name] reaches every [r name]
    sends = defaultdict(list)
    receives = defaultdict(list)
    for index, r in enumerate(objects):
        if m := re.fullmatch(r"#X obj -?\d+ -?\d+ s (\S+)", r):
            sends[m.group(1)].append(index)
        if m := re.fullmatch(r"#X obj -?\d+ -?\d+ r (\S+)", r):
            receives[m.group(1)].append(index)
    for name, senders in sends.items():
        for s in senders:
            edges[s].update(receives[name])
    return objects, edges


def test_pd_patch_is_pd_syntax_and_sends_every_address(rendered):
    objects, edges = _pd_graph(rendered["e2m-live.pd"].decode())
    netsend = [i for i, r in enumerate(objects) if r.endswith(" netsend -u -b")]
    assert len(netsend) == 1
    for address in INPUTS:
        parts = " ".join(address.strip("/").split("/"))
        formatters = [i for i, r in enumerate(objects) if r.endswith(f" oscformat {parts}")]
        assert len(formatters) == 1, address
        assert _reaches(edges, formatters[0], netsend[0]), address
        assert any(formatters[0] in targets for targets in edges.values()), f"nothing drives {address}"
    assert any(r.endswith(f"netreceive -u -b {FEEDBACK_PORT}") for r in objects)
    assert any(r.endswith(" connect 127.0.0.1 9000") for r in objects)


# ---- TouchOSC ----------------------------------------------------------------------------------


def _tosc_messages(root: ET.Element):
    for node in root.iter("node"):
        for osc in node.findall("./messages/osc"):
            path = "".join(p.findtext("value") for p in osc.findall("./path/partial"))
            yield node, osc, path


def test_touchosc_layout_is_lexml_3_and_sends_every_address(rendered):
    root = ET.fromstring(zlib.decompress(rendered["e2m-live.tosc"]))
    assert root.tag == "lexml" and root.get("version") == "3"
    top = root.find("node")
    assert top is not None and top.get("type") == "GROUP"
    nodes = list(root.iter("node"))
    assert len({n.get("ID") for n in nodes}) == len(nodes)
    assert {n.get("type") for n in nodes} <= {"GROUP", "FADER", "XY", "BUTTON", "LABEL", "RADIO"}
    for node in nodes:
        props = {p.findtext("key"): p for p in node.findall("./properties/property")}
        assert {"name", "frame", "color"} <= set(props)
        frame = {k: int(props["frame"].findtext(f"value/{k}")) for k in "xywh"}
        assert frame["x"] + frame["w"] <= WIDTH and frame["y"] + frame["h"] <= HEIGHT, frame
    sent = {path for _, osc, path in _tosc_messages(root) if osc.findtext("send") == "1"}
    received = {path for _, osc, path in _tosc_messages(root) if osc.findtext("receive") == "1"}
    assert set(INPUTS) <= sent
    assert {
        "/e2m/state/bar",
        "/e2m/state/playing",
        "/e2m/state/lag",
        "/e2m/error",
        "/e2m/state/energy",
        "/e2m/state/key",
    } <= received
    assert received <= FEEDBACK


def test_touchosc_faders_scale_to_the_daemon_ranges(rendered):
    root = ET.fromstring(zlib.decompress(rendered["e2m-live.tosc"]))
    for _, osc, path in _tosc_messages(root):
        if path in ("/e2m/loudness", "/e2m/tempo"):
            argument = osc.find("./arguments/partial")
            low, high = float(argument.findtext("scaleMin")), float(argument.findtext("scaleMax"))
            assert (low, high) == ((-60.0, 0.0) if path == "/e2m/loudness" else (40.0, 240.0))
        if path in ("/e2m/key", "/e2m/time_signature"):  # radio: scaleMin + index * (max - min)
            argument = osc.find("./arguments/partial")
            low, high = float(argument.findtext("scaleMin")), float(argument.findtext("scaleMax"))
            assert (low, high) == ((0.0, 1.0) if path == "/e2m/key" else (3.0, 4.0))
        if path == "/e2m/mood":
            assert osc.find("./arguments/partial/conversion").text == "STRING"
            assert osc.find("./triggers/trigger/condition").text == "RISE"


# ---- Open Stage Control ------------------------------------------------------------------------


def _osc_widgets(widget: dict):
    yield widget
    for child in widget.get("widgets", []):
        yield from _osc_widgets(child)


def test_open_stage_control_session_sends_every_address(rendered):
    session = json.loads(rendered["e2m-live.json"])
    assert session["type"] == "session" and session["content"]["type"] == "root"
    assert tuple(int(v) for v in session["version"].split(".")) >= (1, 24, 3)
    widgets = list(_osc_widgets(session["content"]))
    ids = [w["id"] for w in widgets]
    assert len(ids) == len(set(ids))
    addresses = {w.get("address") for w in widgets}
    assert set(INPUTS) <= addresses
    followers = [w for w in widgets if w["type"] == "variable"]
    assert followers and all(w["address"] in FEEDBACK for w in followers)
    for w in followers:
        for target in re.findall(r"set\('(\w+)'", w["onValue"]):
            assert target in ids, w
    defaults = next(w for w in widgets if w.get("address") == "/e2m/features")
    assert len(defaults["preArgs"]) == len(defaults["typeTags"]) == 10


# ---- every patch asks for the state on load and follows the feedback of what it shows ----------


def _feedback_of(name: str) -> str | None:
    """From the table alone: the feedback message that carries an argument's value in force."""
    exact = BY_ADDRESS.get(f"/e2m/state/{name}")
    if exact is not None and exact.direction == "out":
        return exact.address
    for entry in ADDRESSES:
        if (
            entry.direction == "out"
            and entry.address != "/e2m/state/features"
            and any(arg.name == name for arg in entry.arguments)
        ):
            return entry.address
    return None


def _expected_follows() -> dict[str, set[str]]:
    """Input address -> the feedback each patch must wire to its control (buttons, presets and text
    entries show no value of their own; the rest follow whatever the daemon reports for them)."""
    expected = {}
    for entry in ADDRESSES:
        if entry.direction != "in" or entry.control in ("button", "multi", "entry"):
            continue
        found = {_feedback_of(arg.name) for arg in entry.arguments} - {None}
        if found:
            expected[entry.address] = found
    return expected


def test_the_table_gives_follows_for_the_controls_that_show_a_value():
    expected = _expected_follows()
    assert expected["/e2m/xy"] == {"/e2m/state/valence", "/e2m/state/energy"}
    assert expected["/e2m/sync"] == {"/e2m/state/sync"}
    assert expected["/e2m/ensemble"] == {"/e2m/state/ensemble"}
    assert expected["/e2m/energy"] == {"/e2m/state/energy"} and "/e2m/mood" not in expected


def _edges_by_outlet(pairs) -> dict[tuple, set]:
    edges: dict[tuple, set] = defaultdict(set)
    for source, outlet, destination in pairs:
        edges[(source, outlet)].add(destination)
    return edges


def _reached(edges: dict[tuple, set], start: tuple) -> set:
    """Nodes reached from one outlet (then through any outlet of what it reaches)."""
    outlets = defaultdict(list)
    for source, outlet in edges:
        outlets[source].append(outlet)
    seen: set = set()
    todo = list(edges.get(start, ()))
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        for outlet in outlets[node]:
            todo += edges[(node, outlet)]
    return seen


def test_max_asks_for_state_on_load_and_follows_every_control(rendered):
    patch = json.loads(rendered["e2m-live.maxpat"])
    boxes, edges = _max_graph(patch)
    lines = [line["patchline"] for line in patch["patcher"]["lines"]]
    pairs = [(line["source"][0], line["source"][1], line["destination"][0]) for line in lines]
    by_outlet = _edges_by_outlet(pairs)
    loadbang = next(i for i, b in boxes.items() if b.get("text") == "loadbang")
    status = next(
        i for i, b in boxes.items() if b.get("text") == "/e2m/status" and b["maxclass"] == "message"
    )
    sender = next(i for i, b in boxes.items() if b.get("text", "").startswith("udpsend "))
    assert _reaches(edges, loadbang, status) and _reaches(edges, status, sender)
    route = next(i for i, b in boxes.items() if b.get("text", "").startswith("route /e2m/"))
    routed = boxes[route]["text"].split()[1:]
    ui = {"slider", "umenu", "flonum", "number", "toggle", "pictslider"}
    for address, feedbacks in _expected_follows().items():
        senders = [
            i
            for i, b in boxes.items()
            if re.fullmatch(rf"(prepend )?{re.escape(address)}( .*)?", b.get("text", ""))
        ]
        widgets = {
            i for i, b in boxes.items() if b["maxclass"] in ui and any(_reaches(edges, i, s) for s in senders)
        }
        for feedback in feedbacks:
            assert feedback in routed, (address, feedback)
            moved = _reached(by_outlet, (route, routed.index(feedback))) & widgets
            assert moved, f"{feedback} does not move the control of {address}"


def _pd_route_outlet(objects: list[str], by_outlet: dict[tuple, set], address: str) -> tuple[int, int]:
    """Follow the patch's [route] chain for an address: the (object, outlet) it comes out of."""
    node = next(i for i, r in enumerate(objects) if r.endswith(" route e2m"))
    outlet = 0
    for part in address.strip("/").split("/")[1:]:
        routes = [n for n in by_outlet[(node, outlet)] if " route " in objects[n]]
        hit = [
            (n, objects[n].split(" route ")[1].split().index(part))
            for n in routes
            if part in objects[n].split(" route ")[1].split()
        ]
        assert hit, f"{address}: no [route] takes {part}"
        node, outlet = hit[0]
    return node, outlet


def test_pd_asks_for_state_on_load_and_follows_every_control(rendered):
    text = rendered["e2m-live.pd"].decode()
    objects, edges = _pd_graph(text)
    pairs = [tuple(int(v) for v in r.split()[2:5]) for r in _pd_records(text) if r.startswith("#X connect ")]
    by_outlet = _edges_by_outlet(pairs)
    for source, targets in edges.items():  # [s name] -> [r name]
        if re.fullmatch(r"#X obj -?\d+ -?\d+ s \S+", objects[source]):
            by_outlet[(source, 0)] |= targets
    loadbang = next(i for i, r in enumerate(objects) if r.endswith(" loadbang"))
    ask = next(i for i, r in enumerate(objects) if "e2m-status bang" in r)
    assert _reaches(edges, loadbang, ask)
    ui = ("vsl ", "hsl ", "hradio ", "tgl ", "#X floatatom")
    for address, feedbacks in _expected_follows().items():
        parts = " ".join(address.strip("/").split("/"))
        formatter = next(i for i, r in enumerate(objects) if r.endswith(f" oscformat {parts}"))
        widgets = {
            i for i, r in enumerate(objects) if any(k in r for k in ui) and _reaches(edges, i, formatter)
        }
        for feedback in feedbacks:
            moved = _reached(by_outlet, _pd_route_outlet(objects, by_outlet, feedback)) & widgets
            assert moved, f"{feedback} does not move the control of {address}"


def test_touchosc_asks_for_state_on_load_and_follows_every_control(rendered):
    root = ET.fromstring(zlib.decompress(rendered["e2m-live.tosc"]))
    top = root.find("node")
    script = next(
        p.findtext("value") for p in top.findall("./properties/property") if p.findtext("key") == "script"
    )
    assert "function init()" in script and "sendOSC('/e2m/status')" in script
    nodes = {n.findtext("./properties/property[key='name']/value"): n for n in root.iter("node")}
    for address, feedbacks in _expected_follows().items():
        senders = [
            node
            for node, osc, path in _tosc_messages(root)
            if path == address and osc.findtext("send") == "1"
        ]
        assert senders, address
        title = nodes.get(address.removeprefix("/e2m/").replace("/", "_") + "_title")  # names shown there
        received = {
            path
            for node in [*senders, title]
            if node is not None
            for n, osc, path in _tosc_messages(node)
            if n is node and osc.findtext("receive") == "1"
        }
        assert feedbacks <= received, (address, feedbacks - received)


def test_open_stage_control_asks_for_state_on_load_and_follows_every_control(rendered):
    session = json.loads(rendered["e2m-live.json"])
    assert "send(false, '/e2m/status')" in session["content"]["onCreate"]
    widgets = list(_osc_widgets(session["content"]))
    menus = {w["id"]: w for w in widgets if w["type"] == "dropdown"}
    for menu in menus.values():  # every default is one of the menu's values (sync was "internal")
        assert menu["default"] in menu["values"]["values"], menu
    variables = [w for w in widgets if w["type"] == "variable"]
    for address, feedbacks in _expected_follows().items():
        ids = {w["id"] for w in widgets if w.get("address") == address and w["type"] != "variable"}
        for feedback in feedbacks:
            setters = {
                t
                for w in variables
                if w["address"] == feedback
                for t in re.findall(r"set\('(\w+)'", w["onValue"])
            }
            assert ids & setters, f"{feedback} does not move the control of {address}"
    displays = {w["id"] for w in widgets if w["type"] == "text"}
    assert all(w.get("address", "") == "" for w in widgets if w["id"] in displays)  # set by a formatter
    assert {f"state_{name}" for name in ("bar", "lag", "error")} <= displays
