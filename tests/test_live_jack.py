"""End to end with real components: a private JACK server, `e2m-live serve` playing to a JACK
virtual MIDI port, and a second JACK client recording what arrives.

Timing bounds are functional (a note on the right sixteenth, a change within two bars) with a wide
margin for a loaded 2-core machine; the precise figures (receiver error, startup time) belong to
``benchmarks/live_timing.py``, see docs/benchmarks.md."""

from __future__ import annotations

import itertools
import math
import random
import signal
import socket
import struct
import time

import mido
import pytest

from e2m_live.description.extract import extract
from e2m_live.live.osc import encode_message
from e2m_live.testing.daemon import start_daemon, wait_until
from e2m_live.testing.jack import JackMidiRecorder
from tests.live_helpers import jack, osc_request  # noqa: F401

pytestmark = pytest.mark.jack

TEMPO = 240.0
BEATS = 3
BAR = BEATS * 60.0 / TEMPO  # 0.75 s
GRID = 0.25 * 60.0 / TEMPO  # the rule generator's finest grid: a sixteenth, 62.5 ms
JACK_PERIOD = 256 / 48000
#: A JACK period plus 10 ms: well under half a sixteenth (31 ms), so a note within it is on its
#: grid position. Quiet runs: p99 2.7 ms at the receiver (docs/live.md).
ON_THE_GRID = JACK_PERIOD + 0.010


@pytest.fixture(scope="module")
def daemon(jack):  # noqa: F811 - the fixture is imported above
    d = start_daemon("--tempo", str(TEMPO), "--debounce-ms", "20")
    d.send("/e2m/time_signature", BEATS)
    d.send("/e2m/energy", 0.1)
    recorder = JackMidiRecorder()
    recorder.connect(d.midi_name)
    time.sleep(0.3)
    yield d, recorder
    recorder.close()
    if d.alive():
        d.terminate()


def _stop(d, recorder) -> None:
    d.send("/e2m/stop")
    time.sleep(0.2)


def test_serve_starts_and_plays_to_jack(daemon):
    d, _ = daemon  # start_daemon waited for "ready" (15 s at most); benchmarks/live_timing.py times it
    assert any("playing to: jack virtual port" in line for line in d.startup), d.startup


def test_play_notes_arrive_within_one_bar(daemon):
    d, recorder = daemon
    recorder.clear()
    sent = time.monotonic()
    d.send("/e2m/play")
    time.sleep(BAR * 1.5)
    ons = recorder.note_ons()
    assert ons, "no notes arrived"
    assert ons[0].arrival - sent <= BAR, f"first note after {ons[0].arrival - sent:.3f} s"
    _stop(d, recorder)


def test_energy_change_heard_within_two_bars(daemon):
    d, recorder = daemon
    d.send("/e2m/energy", 0.1)
    time.sleep(0.1)
    d.send("/e2m/play")
    time.sleep(3 * BAR)
    change = time.monotonic()
    d.send("/e2m/energy", 0.9)
    time.sleep(2 * BAR + 0.1)
    before = recorder.note_ons(change - BAR, change)
    # By the second bar after the change only new material may sound.
    after = recorder.note_ons(change + BAR + 0.02, change + 2 * BAR)
    window = BAR - 0.02
    assert len(after) / window > 2 * len(before) / BAR, (len(before), len(after))
    _stop(d, recorder)
    d.send("/e2m/energy", 0.1)


@pytest.mark.parametrize("command", ["/e2m/stop", "/e2m/panic"])
def test_stop_and_panic_leave_no_open_notes(daemon, command):
    d, recorder = daemon
    recorder.clear()
    d.send("/e2m/energy", 0.9)
    d.send("/e2m/play")
    time.sleep(2.2 * BAR)
    assert recorder.note_ons(), "nothing played"
    d.send(command)
    time.sleep(0.3)
    assert recorder.open_notes() == set()
    quiet_since = time.monotonic()
    time.sleep(BAR)
    assert recorder.note_ons(quiet_since) == [], "notes after stop"
    if command == "/e2m/panic":
        ccs = {
            (m.message[0] & 0x0F, m.message[1]) for m in recorder.snapshot() if m.message[0] & 0xF0 == 0xB0
        }
        assert {(ch, cc) for ch in range(16) for cc in (120, 123)} <= ccs
    d.send("/e2m/energy", 0.1)


def _fuzz_packets(rng: random.Random, count: int):
    # Transport, tempo and /e2m/features are left out: valid values there would legitimately stop
    # the music or change its grid; they get NaN and wrong types only (kind 3).
    addresses = [
        "/e2m/energy",
        "/e2m/valence",
        "/e2m/loudness",
        "/e2m/key",
        "/e2m/mode",
        "/e2m/mood",
        "/e2m/xy",
        "/e2m/danceability",
        "/e2m/nope",
        "/e2m",
        "",
        "/e2m/state/bar",
    ]
    guarded = ["/e2m/tempo", "/e2m/features", "/e2m/stop", "/e2m/time_signature", "/e2m/energy"]
    values = [
        math.nan,
        math.inf,
        -math.inf,
        1e38,
        -1e38,
        2**31 - 1,
        -(2**31),
        "F#",
        "x" * 300,
        "",
        True,
        0.5,
        7,
    ]
    for i in range(count):
        kind = i % 5
        if kind == 0:
            yield bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        elif kind == 1:
            # A valid address with a lying type-tag string.
            address = rng.choice(addresses).encode() or b"/"
            pad = lambda b: b + b"\x00" * (4 - len(b) % 4)  # noqa: E731
            yield pad(address) + pad(b",fis" + bytes([rng.choice(b"fisbdTFNh[]x")])) + b"\x00\x00\x00"
        elif kind == 2:
            address = rng.choice(addresses) or "/x"
            yield encode_message(address, [rng.choice(values) for _ in range(rng.randint(0, 11))])
        elif kind == 3:
            yield encode_message(rng.choice(guarded), [rng.choice([math.nan, math.inf, "zz"])])
        else:
            header = b"#bundle\x00" + struct.pack(">Q", rng.getrandbits(64))
            yield header + struct.pack(">i", rng.randint(-5, 9999))


def _grid_p95(times: list[float], origin: float) -> float:
    """p95 of the distance of ``times`` to the sixteenth grid through ``origin``."""
    offsets = sorted(abs(((t - origin + GRID / 2) % GRID) - GRID / 2) for t in times)
    return offsets[int(0.95 * (len(offsets) - 1))]


def test_fuzzed_osc_leaves_daemon_alive_and_in_time(daemon):
    d, recorder = daemon
    d.send("/e2m/energy", 0.5)
    d.send("/e2m/play")
    time.sleep(BAR)
    rng = random.Random(1234)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i, packet in enumerate(_fuzz_packets(rng, 10_000)):
            sock.sendto(packet, ("127.0.0.1", d.udp_port))
            if i % 500 == 0:
                time.sleep(0.005)  # let the server breathe; the kernel drops what overflows anyway
    # A TCP client with a garbage length prefix is disconnected, not a crash.
    with socket.create_connection(("127.0.0.1", d.tcp_port), timeout=2) as tcp:
        tcp.sendall(b"\x7f\xff\xff\xff" + b"junk")
        time.sleep(0.1)
    assert d.alive(), "\n".join(d.startup[-30:])
    replies = osc_request(d.udp_port, "/e2m/status")
    addresses = {address for address, _ in replies}
    assert "/e2m/state/playing" in addresses
    assert next(args for a, args in replies if a == "/e2m/state/playing") == [1]
    # Still in time: note-ons after the fuzz sit on the sixteenth grid (JACK time at the receiver).
    d.send("/e2m/energy", 0.5)
    time.sleep(BAR)
    recorder.clear()
    time.sleep(3 * BAR)
    ons = recorder.note_ons()
    assert len(ons) > 10
    # 95 % within a period plus 10 ms (quiet runs: every one within a period). Not the worst one:
    # folded onto the grid it is at most half a sixteenth anyway, and a loaded machine without
    # real-time scheduling delivers a rare straggler 30 ms late (seen in the SIGTERM test). The
    # grid's phase is the one that fits the note-ons best, not the first note-on's (CI once had a
    # 31-ms straggler first, and every other note "off the grid" by it).
    p95 = min(_grid_p95([r.jack_time for r in ons], origin.jack_time) for origin in ons)
    assert p95 <= ON_THE_GRID, f"note-ons {p95 * 1000:.2f} ms off the grid (p95)"
    _stop(d, recorder)


def test_sigterm_releases_everything_and_recording_matches(jack, tmp_path):  # noqa: F811
    record = tmp_path / "performance.mid"
    d = start_daemon("--tempo", str(TEMPO), "--record", str(record), "--mood", "happy", "--autoplay")
    recorder = JackMidiRecorder("e2m-test-recorder-2")
    try:
        recorder.connect(d.midi_name)
        time.sleep(4 * BAR)
        code = d.terminate(signal.SIGTERM)
        # The last word ends with CC 120 on channel 16; wait for it rather than a fixed time.
        wait_until(lambda: any(r.message[:2] == [0xBF, 120] for r in recorder.snapshot()), 5.0)
    finally:
        recorder.close()
    assert code == 0, "\n".join(d.startup)
    received = recorder.snapshot()
    assert any(r.message[0] & 0xF0 == 0x90 for r in received)
    assert recorder.open_notes() == set()
    last_ccs = {(r.message[0] & 0x0F, r.message[1]) for r in received[-32:] if r.message[0] & 0xF0 == 0xB0}
    assert last_ccs == {(ch, cc) for ch in range(16) for cc in (120, 123)}

    # The .mid holds the notes the JACK client received. It files them one track per instrument
    # (note-offs as 0x80, controllers only where an instrument played), so compare note-ons:
    # (channel, pitch, velocity), chord by chord, in time order. The recorder was connected
    # slightly later, so compare the tail of the file, from its second chord on.
    midi = mido.MidiFile(record)
    seconds, tempo, file_messages = 0.0, 500000, []
    for message in mido.merge_tracks(midi.tracks):
        seconds += mido.tick2second(message.time, midi.ticks_per_beat, tempo)
        if message.type == "set_tempo":
            tempo = message.tempo
        if not message.is_meta:
            file_messages.append((seconds, message.bytes()))
    # The recording carries the performance's tempo map and time signature, so it reads back as bars.
    assert mido.tempo2bpm(tempo) == pytest.approx(TEMPO)
    assert any(m.type == "time_signature" for m in midi.tracks[0])
    assert extract(record).n_bars >= 3

    def note_ons(timed) -> list[tuple[float, tuple[int, int, int]]]:
        return sorted((t, (m[0] & 0x0F, m[1], m[2])) for t, m in timed if m[0] & 0xF0 == 0x90 and m[2] > 0)

    got = note_ons((r.jack_time, r.message) for r in received)
    tail = note_ons(file_messages)[-len(got) :]
    assert len(got) > 10 and len(tail) == len(got), (len(tail), len(got))
    chords = [i for i in range(1, len(tail)) if tail[i][0] != tail[i - 1][0]] + [len(tail)]
    for begin, stop in itertools.pairwise(chords):
        assert sorted(k for _, k in tail[begin:stop]) == sorted(k for _, k in got[begin:stop]), tail[begin][0]
    # Reception is stamped per JACK period, and the dummy driver now and then delivers a period
    # late on a busy machine: align on the median offset, bound nearly all events by a period plus
    # 10 ms, and the rare straggler by half a sixteenth plus a period (it is still filed nearer
    # its own sixteenth than any other). Quiet runs: within one period; CPU hogs on a machine
    # without real-time scheduling: a 31.2-ms straggler.
    offsets = sorted(t_file - t_got for (t_file, _), (t_got, _) in zip(tail, got, strict=True))
    shift = offsets[len(offsets) // 2]
    errors = sorted(abs(o - shift) for o in offsets)
    p95, worst = errors[int(0.95 * (len(errors) - 1))], errors[-1]
    assert p95 <= ON_THE_GRID, f"recording and reception differ by {p95 * 1000:.2f} ms (p95)"
    assert worst <= GRID / 2 + JACK_PERIOD, f"recording and reception differ by {worst * 1000:.2f} ms"
