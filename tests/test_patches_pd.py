"""A real client: Pure Data loads the committed ``patches/e2m-live.pd`` and drives a running daemon.

A harness patch written to a temporary folder points the patch at the daemon's free port
(``e2m-netsend connect``), moves its controls by name, presses Play, and presses Stop once the
daemon's bar feedback (which comes back on the patch's sending socket), routed through the
patch's displays, reaches bar 2. The daemon runs in-process (rule generator, no MIDI output).
The patch's second feedback input (``[netreceive]`` for ``--feedback`` targets) is checked with
a message sent to its port.
"""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2m_live.arrangement import Arrangement
from e2m_live.features import MOODS
from e2m_live.live.config import build_config
from e2m_live.live.daemon import Daemon
from e2m_live.live.osc import encode_message

PATCH = Path(__file__).resolve().parents[1] / "patches" / "e2m-live.pd"

pytestmark = pytest.mark.skipif(shutil.which("pd") is None, reason="Pure Data (pd) is not installed")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def daemon_and_feedback_port() -> Iterator[tuple[Daemon, int]]:
    feedback_port = _free_udp_port()
    config = build_config(
        overrides={
            "udp_port": 0,
            "tcp_port": -1,
            "midi": False,
            "generator": "rules",
            "debounce_ms": 10.0,
            "realtime": False,
        }
    )
    daemon = Daemon(config, out=io.StringIO())
    daemon.start()
    yield daemon, feedback_port
    daemon.shutdown()


def _harness(daemon_port: int, feedback_port: int) -> str:
    """Connect, set controls by name, play; stop when the displayed bar count reaches 2."""
    controls = (
        "e2m-mood calm",
        "e2m-xy 0.25 0.75",
        "e2m-energy 0.9",
        "e2m-key 5",
        "e2m-mode 0",
        "e2m-time_signature 3",
        "e2m-tempo 240",
        "e2m-loop 1",
        "e2m-key_lock 1",
        "e2m-ensemble jazz",
        "e2m-instruments 40",
        "e2m-mute drums",
        "e2m-play bang",
    )
    return (
        "\n".join(
            [
                "#N canvas 0 50 600 400 12;",
                "#X obj 10 10 loadbang;",
                "#X obj 10 40 delay 300;",
                f"#X msg 10 70 \\; e2m-netsend disconnect \\; e2m-netsend connect 127.0.0.1 {daemon_port} "
                f"\\; e2m-listen listen {feedback_port};",
                "#X obj 10 100 delay 1500;",
                "#X msg 10 130 " + " ".join(f"\\; {c}" for c in controls) + ";",
                "#X obj 10 160 r e2m-state-bar;",
                "#X obj 10 190 print harness-bar;",
                "#X obj 200 160 r e2m-state-playing;",
                "#X obj 200 190 print harness-playing;",
                "#X obj 10 220 moses 2;",
                "#X msg 60 250 \\; e2m-stop bang;",
                "#X obj 360 160 r e2m-state-error-1;",
                "#X obj 360 190 print harness-error;",
                "#X obj 360 220 r e2m-state-plan;",
                "#X obj 360 250 print harness-plan;",
                "#X obj 200 220 r e2m-state-instruments;",
                "#X obj 200 250 print harness-instruments;",
                "#X connect 0 0 1 0;",
                "#X connect 1 0 2 0;",
                "#X connect 0 0 3 0;",
                "#X connect 3 0 4 0;",
                "#X connect 5 0 6 0;",
                "#X connect 7 0 8 0;",
                "#X connect 5 0 9 0;",
                "#X connect 9 1 10 0;",
                "#X connect 11 0 12 0;",
                "#X connect 13 0 14 0;",
                "#X connect 15 0 16 0;",
            ]
        )
        + "\n"
    )


def _read_lines(proc: subprocess.Popen, lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())


def test_pure_data_patch_drives_the_daemon(daemon_and_feedback_port, tmp_path):
    daemon, feedback_port = daemon_and_feedback_port
    harness = tmp_path / "harness.pd"
    harness.write_text(_harness(daemon.osc.udp_port, feedback_port))
    command = ["pd", "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(PATCH), "-open", str(harness)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
    expected = MOODS["calm"].replace(valence=0.25, energy=0.9, key=5, mode=0, time_signature=3, tempo=240.0)
    try:
        deadline = time.monotonic() + 20
        played = stopped = heard = False
        marker = encode_message("/e2m/state/plan", ["via-feedback-port"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while time.monotonic() < deadline:
                played = played or daemon.player.playing
                stopped = stopped or (
                    played and not daemon.player.playing and any("harness-playing: 0" in x for x in lines)
                )
                heard = any(x.startswith("harness-plan:") and "via-feedback-port" in x for x in lines)
                if stopped and heard:
                    break
                if not heard:
                    sock.sendto(marker, ("127.0.0.1", feedback_port))
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(5)
    output = "\n".join(lines)
    assert not any(line.startswith("error:") for line in lines), output
    features = daemon.engine.features
    for name in ("energy", "valence", "loudness", "instrumentalness", "danceability", "acousticness"):
        assert getattr(features, name) == pytest.approx(getattr(expected, name), abs=1e-6), (name, output)
    assert (features.key, features.mode, features.time_signature) == (5, 0, 3)
    assert features.tempo == pytest.approx(240.0)
    assert daemon.engine.loop is True
    assert daemon.engine.arrangement == Arrangement(
        key_lock=1.0, ensemble="jazz", instruments=("Violin",), muted=frozenset({"drums"})
    ), output
    assert any(line.startswith("harness-instruments:") and "Violin" in line for line in lines), output
    assert played, f"the daemon never started playing:\n{output}"
    bars = [float(line.split(":")[1]) for line in lines if line.startswith("harness-bar:")]
    assert bars and max(bars) >= 2, f"no bar feedback reached the patch:\n{output}"
    assert "harness-playing: 1" in output
    assert stopped, f"Stop (sent by the patch on bar feedback) did not stop the daemon:\n{output}"
    assert "harness-error" not in output, output
    assert heard, f"a message to the patch's feedback port was not shown:\n{output}"
