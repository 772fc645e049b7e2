"""`e2m-live serve`, `ports` and `doctor` as a user runs them (no JACK server, no sound card)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from e2m_live.features import FEATURE_ORDER, MOODS, EmotionFeatures
from e2m_live.live.config import ConfigError, build_config, load_toml
from e2m_live.testing.daemon import wait_until
from tests.live_helpers import CLI, REPO, bars_started, described_bars, read_until_ready

EXAMPLES = sorted((REPO / "examples").glob("*.toml"))


def _cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "JACK_DEFAULT_SERVER": "e2m-none", **env},
    )


def test_serve_without_any_midi_backend_starts_and_stops_cleanly(tmp_path):
    # How fast it is ready is a benchmark figure (benchmarks/live_timing.py), not asserted here.
    record = tmp_path / "out.mid"
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--udp-port",
            "0",
            "--tcp-port",
            "0",
            "--autoplay",
            "--record",
            str(record),
            "--tempo",
            "240",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "JACK_DEFAULT_SERVER": "e2m-none", "PYTHONUNBUFFERED": "1"},
    )
    lines, port = read_until_ready(proc)
    assert lines and lines[-1].strip().startswith("ready"), "".join(lines)
    # Two bar lines passed, so the recording holds a bar: the first one waits for the (niced)
    # generator, which a loaded machine can hold up for seconds.
    assert wait_until(lambda: bars_started(port) >= 2, 90, step=0.2), "".join(lines)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "listening: OSC udp 127.0.0.1:" in text
    assert "playing to: recorder" in text
    assert "no MIDI output" in text  # degrades with a clear message instead of crashing
    listen = next(line for line in text.splitlines() if line.strip().startswith("listen:"))
    assert "render the recording" in listen and str(record) in listen  # no sound card: how to hear it
    # The model generator when its weights are installed, otherwise rules with a warning.
    assert "generator: model" in text or ("generator: rules" in text and "falling back to 'rules'" in text), (
        text
    )
    assert record.stat().st_size > 100


#: `serve` whose stop hangs in a native call that keeps the GIL (as closing a port whose JACK server
#: died can): ctypes.PyDLL calls do not release it, so no Python thread could end the process.
STUCK_SERVE = """
import ctypes, sys
import e2m_live.commands.serve as serve
from e2m_live.cli import main
from e2m_live.live.daemon import Daemon

serve.SHUTDOWN_LIMIT_SECONDS = 2.0
def stuck_in_native_close(self):
    ctypes.PyDLL(None).sleep(300)
Daemon.shutdown = stuck_in_native_close
sys.exit(main())
"""


def test_a_stop_stuck_in_native_code_still_ends_the_daemon_and_keeps_the_recording(tmp_path):
    record = tmp_path / "out.mid"
    serve = ["serve", "--generator", "rules", "--no-web", "--autoplay", "--udp-port", "0", "--tcp-port", "-1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_SERVE, *serve, "--record", str(record), "--tempo", "240"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JACK_DEFAULT_SERVER": "e2m-none", "PYTHONUNBUFFERED": "1"},
    )
    try:  # a stuck daemon spins its real-time player: it must never outlive the test
        lines, port = read_until_ready(proc)
        assert wait_until(lambda: bars_started(port) >= 3, 90), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)  # the limit is 2 s; without the watchdog it sleeps 300 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err[-2000:]
    assert "Timeout" in err and "stuck_in_native_close" in err  # every thread's stack, the stuck call in it
    bars = described_bars(record)  # the streamed recording, up to the last bar line written
    assert bars >= 1


def test_bad_config_is_a_one_line_usage_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('udp_port = "nine"\n')
    result = _cli("serve", "--config", str(bad))
    assert result.returncode == 2
    assert "udp_port: expected int" in result.stderr
    result = _cli("serve", "--mood", "ecstatic")
    assert result.returncode == 2 and "unknown preset" in result.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_are_valid(path):
    values = load_toml(path)
    assert values, f"{path.name} sets nothing"
    config = build_config(values)
    for name, value in values.items():  # every setting in the file is the one in force
        assert getattr(config, name) == value, name
    features = config.starting_features()
    expected = MOODS[config.mood] if config.mood else EmotionFeatures()
    expected = expected.replace(**config.features)
    assert features == (expected.replace(tempo=config.tempo) if config.tempo else expected)
    if config.mood:  # the preset is the starting point, [features] only overrides its own keys
        for name in set(FEATURE_ORDER) - set(config.features):
            assert getattr(features, name) == getattr(MOODS[config.mood], name), name


def test_config_precedence_and_unknown_keys():
    config = build_config({"udp_port": 7000, "mood": "sad"}, {"udp_port": 7100, "tcp_port": None})
    assert config.udp_port == 7100 and config.tcp_port == 9001
    assert config.starting_features().valence == pytest.approx(0.15)
    with pytest.raises(ConfigError, match="unknown setting"):
        build_config({"udp-port": 1})
    with pytest.raises(ConfigError, match="HOST:PORT"):
        build_config({"feedback": ["nohost"]})


def test_ports_lists_apis_drivers_soundfonts_and_osc_ports():
    result = _cli("ports", "--osc-port", "9")
    assert result.returncode == 0, result.stderr
    for heading in ("MIDI APIs", "FluidSynth audio drivers", "Soundfonts found", "OSC ports"):
        assert heading in result.stdout
    assert "9: udp" in result.stdout


def test_doctor_reports_and_suggests_fixes():
    result = _cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "generator rules" in result.stdout
    if not Path("/dev/snd/seq").exists():
        assert "ALSA sequencer" in result.stdout and "fix:" in result.stdout
    assert "[ok] frame-accurate JACK output" in result.stdout  # JACK-Client is a dependency


def test_doctor_says_when_the_frame_accurate_jack_output_cannot_load(tmp_path):
    (tmp_path / "jack.py").write_text("raise OSError('libjack.so.0: cannot open shared object file')\n")
    result = _cli("doctor", PYTHONPATH=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "frame-accurate JACK output" in x)
    assert line.lstrip().startswith("[!!]") and "libjack.so.0" in line
    assert "pip install JACK-Client" in result.stdout
