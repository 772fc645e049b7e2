"""The arrangement controls end to end: real OSC packets over loopback to an in-process daemon (rule
generator, no MIDI), the state feedback, the generation worker honouring the arrangement, the
TOML keys and CLI flags, and every patch carrying the new addresses."""

from __future__ import annotations

import io
import json
import socket
import time
import zlib
from collections.abc import Callable, Iterator

import pytest

from e2m_live.arrangement import DEFAULT_KEY_LOCK, Arrangement
from e2m_live.cli import main
from e2m_live.features import EmotionFeatures
from e2m_live.live.config import ConfigError, build_config, load_toml
from e2m_live.live.daemon import Daemon
from e2m_live.live.osc import encode_message
from e2m_live.patches import render_all
from tests.live_helpers import collect_osc

NEW_CONTROLS = ("/e2m/key_lock", "/e2m/ensemble", "/e2m/instruments", "/e2m/mute", "/e2m/unmute")
NEW_STATE = ("/e2m/state/key_lock", "/e2m/state/ensemble", "/e2m/state/instruments", "/e2m/state/muted")


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    config = build_config(
        overrides={
            "udp_port": 0,
            "tcp_port": -1,
            "midi": False,
            "generator": "rules",
            "debounce_ms": 10.0,
            "realtime": False,
            "ensemble": "band",
        }
    )
    d = Daemon(config, out=io.StringIO())
    d.start()
    yield d
    d.shutdown()


def _send(d: Daemon, address: str, *args, wait: float = 0.3) -> list[tuple[str, list]]:
    """One packet from a fresh socket; every reply within ``wait`` (feedback goes to recent senders)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.05)
        sock.sendto(encode_message(address, list(args)), ("127.0.0.1", d.osc.udp_port))
        return collect_osc(sock, wait)


def _errors(replies: list[tuple[str, list]], address: str) -> list[str]:
    return [args[1] for a, args in replies if a == "/e2m/error" and args[0] == address]


def _last(replies: list[tuple[str, list]], address: str) -> list | None:
    found = [args for a, args in replies if a == address]
    return found[-1] if found else None


def test_the_starting_arrangement_comes_from_the_config(daemon):
    assert daemon.engine.arrangement == Arrangement(ensemble="band")
    replies = _send(daemon, "/e2m/status")
    assert _last(replies, "/e2m/state/key_lock") == [pytest.approx(DEFAULT_KEY_LOCK)]
    assert _last(replies, "/e2m/state/ensemble") == ["band"]
    assert _last(replies, "/e2m/state/instruments") == list(Arrangement(ensemble="band").palette())
    assert _last(replies, "/e2m/state/muted") == ["none"]


def test_key_lock_is_clamped_and_reported(daemon):
    replies = _send(daemon, "/e2m/key_lock", 1.7)
    assert any("clamped to 1" in why for why in _errors(replies, "/e2m/key_lock"))
    assert daemon.engine.arrangement.key_lock == 1.0
    assert _last(replies, "/e2m/state/key_lock") == [1.0]
    replies = _send(daemon, "/e2m/key_lock", 0.25)
    assert _errors(replies, "/e2m/key_lock") == []
    assert _last(replies, "/e2m/state/key_lock") == [pytest.approx(0.25)]
    before = daemon.engine.arrangement
    replies = _send(daemon, "/e2m/key_lock", float("nan"))
    assert any("finite" in why for why in _errors(replies, "/e2m/key_lock"))
    assert daemon.engine.arrangement == before


def test_unknown_ensemble_is_rejected_and_changes_nothing(daemon):
    before = daemon.engine.arrangement
    replies = _send(daemon, "/e2m/ensemble", "disco")
    assert any("ensemble must be one of" in why for why in _errors(replies, "/e2m/ensemble"))
    assert daemon.engine.arrangement == before
    assert _last(replies, "/e2m/state/ensemble") is None


def test_ensemble_and_instruments_change_the_state_feedback(daemon):
    replies = _send(daemon, "/e2m/ensemble", "strings")
    assert _last(replies, "/e2m/state/ensemble") == ["strings"]
    assert _last(replies, "/e2m/state/instruments") == ["Violin", "Viola", "Cello", "String Ensemble 1"]
    replies = _send(daemon, "/e2m/instruments", "violin, cello", 0)
    assert _errors(replies, "/e2m/instruments") == []
    assert _last(replies, "/e2m/state/instruments") == ["Acoustic Grand Piano", "Violin", "Cello"]
    assert daemon.engine.arrangement.instruments == ("Acoustic Grand Piano", "Violin", "Cello")
    replies = _send(daemon, "/e2m/instruments", "electric")  # ambiguous: the ArrangementError text
    why = " ".join(_errors(replies, "/e2m/instruments"))
    assert "ambiguous" in why and "Electric Piano 1" in why
    assert daemon.engine.arrangement.instruments == ("Acoustic Grand Piano", "Violin", "Cello")
    replies = _send(daemon, "/e2m/instruments")  # no argument: back to the ensemble
    assert daemon.engine.arrangement.instruments is None
    assert _last(replies, "/e2m/state/instruments") == ["Violin", "Viola", "Cello", "String Ensemble 1"]
    replies = _send(daemon, "/e2m/ensemble", "auto")
    assert _last(replies, "/e2m/state/instruments") == ["auto"]


def test_mute_and_unmute_one_instrument_live(daemon):
    _send(daemon, "/e2m/ensemble", "jazz", wait=0.0)
    replies = _send(daemon, "/e2m/mute", "drums")
    assert _last(replies, "/e2m/state/muted") == ["drum"]
    assert "drum" not in _last(replies, "/e2m/state/instruments")
    replies = _send(daemon, "/e2m/mute", 66)  # Tenor Sax, by program number
    assert _last(replies, "/e2m/state/muted") == ["Tenor Sax", "drum"]
    replies = _send(daemon, "/e2m/unmute", "Drums")
    assert _last(replies, "/e2m/state/muted") == ["Tenor Sax"]
    assert _errors(_send(daemon, "/e2m/mute", "kazoo"), "/e2m/mute")
    status = _send(daemon, "/e2m/status")
    assert _last(status, "/e2m/state/ensemble") == ["jazz"]
    assert _last(status, "/e2m/state/muted") == ["Tenor Sax"]
    assert _last(status, "/e2m/state/instruments") == ["Acoustic Grand Piano", "Acoustic Bass", "drum"]
    _send(daemon, "/e2m/unmute", "tenor sax", wait=0.0)


def test_muting_the_last_instrument_of_a_list_is_rejected(daemon):
    _send(daemon, "/e2m/instruments", "drums", wait=0.0)
    replies = _send(daemon, "/e2m/mute", "drums")
    assert any("muted" in why for why in _errors(replies, "/e2m/mute"))
    assert daemon.engine.arrangement.muted == frozenset()
    _send(daemon, "/e2m/instruments", wait=0.0)


def test_a_change_replans_and_the_worker_honours_the_palette(daemon):
    """The arrangement crosses the process boundary with the request; the rule generator plays only
    the palette (here drums alone), and a muted instrument is left out."""
    d = daemon
    _send(d, "/e2m/energy", 0.8, wait=0.0)
    wanted = Arrangement(key_lock=0.5, ensemble=d.engine.arrangement.ensemble, instruments=("drums",))
    _send(d, "/e2m/key_lock", 0.5, wait=0.0)
    _send(d, "/e2m/instruments", "drums", wait=0.0)

    def section_with(arrangement: Arrangement):
        return next((s for s in reversed(d.engine.sections) if s.arrangement == arrangement and s.bars), None)

    assert _until(lambda: section_with(wanted) is not None), [s.arrangement for s in d.engine.sections[-3:]]
    notes = [n for bar in section_with(wanted).bars for n in bar.notes]
    assert notes and all(n.is_drum for n in notes)

    _send(d, "/e2m/instruments", wait=0.0)
    _send(d, "/e2m/ensemble", "band", wait=0.0)
    _send(d, "/e2m/mute", "drums", wait=0.0)
    muted = wanted.replace(instruments=None, ensemble="band", muted=frozenset({"drums"}))
    assert _until(lambda: section_with(muted) is not None)
    notes = [n for bar in section_with(muted).bars for n in bar.notes]
    assert notes and not any(n.is_drum for n in notes)
    _send(d, "/e2m/unmute", "drums", wait=0.0)


def test_the_model_generator_keeps_to_the_palette(tmp_path_factory):
    """The planner + FIGARO path: the arrangement reaches Pipeline.generate and the bars hold only
    the palette's instruments (here a bass and drums)."""
    from e2m_live.generators.model import ModelGenerator
    from tests.test_pipeline import models_root

    models = models_root(tmp_path_factory.mktemp("models"))
    generator = ModelGenerator(models_dir=str(models), threads=1, max_tokens_per_bar=96, warm_start=False)
    arrangement = Arrangement(instruments=("drums", "acoustic bass"))
    heard = set()
    section = generator.generate(EmotionFeatures(energy=0.7), seed=3, arrangement=arrangement)
    for index, bar in enumerate(section):
        heard |= {"drum" if n.is_drum else n.program for n in bar.notes}
        if index == 2:
            break
    assert heard and heard <= {"drum", 32}, heard


def test_every_patch_contains_the_new_addresses():
    files = render_all()
    texts = {
        "e2m-live.maxpat": files["e2m-live.maxpat"].decode(),
        "e2m-live.json": files["e2m-live.json"].decode(),
        "e2m-live.tosc": zlib.decompress(files["e2m-live.tosc"]).decode(),
    }
    for name, text in texts.items():
        for address in NEW_CONTROLS:
            assert address in text, (name, address)
        for address in ("/e2m/state/ensemble", "/e2m/state/instruments", "/e2m/state/muted"):
            assert address in text, (name, address)
    pd = files["e2m-live.pd"].decode()
    for address in NEW_CONTROLS:
        assert f"oscformat {' '.join(address.strip('/').split('/'))};" in pd, address
    session = json.loads(texts["e2m-live.json"])
    assert "key_lock" in json.dumps(session) and '"type": "input"' in texts["e2m-live.json"]


def test_toml_keys_and_their_errors(tmp_path):
    path = tmp_path / "live.toml"
    path.write_text(
        'key_lock = 1\nensemble = "rock"\ninstruments = ["violin", 42, "drums"]\nmuted = ["drums"]\n'
    )
    config = build_config(load_toml(path))
    assert config.starting_arrangement() == Arrangement(
        key_lock=1.0, ensemble="rock", instruments=("Violin", "Cello", "drums"), muted=frozenset({"drums"})
    )
    for text, why in (
        ('ensemble = "disco"', "ensemble: unknown ensemble"),
        ("key_lock = 3", "key_lock: key_lock must be"),
        ('instruments = "electric"', "instruments: instrument 'electric' is ambiguous"),
        ('ensemble = "piano"\nmuted = [0]', "muted: every instrument"),
    ):
        path.write_text(text + "\n")
        with pytest.raises(ConfigError, match=why):
            build_config(load_toml(path))


@pytest.mark.parametrize("command", ["plan", "generate", "serve"])
@pytest.mark.parametrize(
    "flags,why",
    [
        (["--ensemble", "disco"], "ensemble"),
        (["--key-lock", "1.5"], "key_lock"),
        (["--instruments", "violin,kazoo"], "unknown instrument 'kazoo'"),
        (["--ensemble", "piano", "--mute", "0"], "muted"),
    ],
)
def test_cli_flags_validate_with_exit_2(command, flags, why, tmp_path, capsys):
    extra = ["-o", str(tmp_path / "x.mid")] if command == "generate" else []
    assert main([command, *flags, *extra]) == 2
    err = capsys.readouterr().err
    assert why in err and len(err.strip().splitlines()) == 1, err


def test_serve_flags_reach_the_config():
    from e2m_live.cli import build_parser
    from e2m_live.live.config import config_from_args

    argv = [
        "serve",
        "--key-lock",
        "0.3",
        "--ensemble",
        "orchestra",
        "--instruments",
        "flute, 40",
        "--mute",
        "violin",
        "--mute",
        "drums",
    ]
    config = config_from_args(build_parser(argv).parse_args(argv))
    assert config.starting_arrangement() == Arrangement(
        key_lock=0.3,
        ensemble="orchestra",
        instruments=("Violin", "Flute"),
        muted=frozenset({"Violin", "drums"}),
    )
