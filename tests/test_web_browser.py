"""The browser surface in a real browser: Debian's chromium, headless, driven by Playwright, against a
daemon running in this process (rule generator, no MIDI output); OSC from another client over loopback UDP."""

from __future__ import annotations

import io
import shutil
import socket
from collections.abc import Iterator

import pytest

from e2m_live.live.addresses import ADDRESSES, Argument, OscAddress
from e2m_live.live.config import build_config
from e2m_live.live.daemon import Daemon
from e2m_live.live.osc import encode_message
from e2m_live.testing.daemon import wait_until
from e2m_live.web import WebSurface

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(
        sync_playwright is None, reason="playwright is not installed (pip install -e '.[dev]')"
    ),
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
    ),
]

CONNECTED = "body[data-connected='1']"


def _daemon(**overrides) -> Daemon:
    config = build_config(
        overrides={
            "udp_port": 0,
            "tcp_port": -1,
            "midi": False,
            "generator": "rules",
            "http_port": 0,
            "realtime": False,
            "debounce_ms": 10.0,
            **overrides,
        }
    )
    daemon = Daemon(config, out=io.StringIO())
    daemon.start()
    return daemon


def _osc(daemon: Daemon, address: str, *args) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(encode_message(address, list(args)), ("127.0.0.1", daemon.osc.udp_port))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    daemon = _daemon()
    yield daemon
    daemon.shutdown()


def _open(browser: Browser, port: int, **context) -> Page:
    page = browser.new_page(**context)
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_selector(CONNECTED, timeout=15000)
    return page


def _value(page: Page, selector: str) -> float:
    return float(page.eval_on_selector(selector, "e => e.value"))


def test_moving_a_fader_changes_the_daemons_features(browser, daemon):
    page = _open(browser, daemon.web.port)
    try:
        page.locator("#ctl-energy").scroll_into_view_if_needed()
        box = page.locator("#ctl-energy").bounding_box()
        page.mouse.click(box["x"] + 0.85 * box["width"], box["y"] + box["height"] / 2)
        moved = _value(page, "#ctl-energy")
        assert moved > 0.7
        assert wait_until(lambda: daemon.engine.features.energy == pytest.approx(moved, abs=1e-6), 5)
        page.get_by_role("button", name="A#", exact=True).click()  # a key button
        assert wait_until(lambda: daemon.engine.features.key == 10, 5)
    finally:
        page.close()


def test_an_osc_message_from_another_client_moves_the_fader(browser, daemon):
    page = _open(browser, daemon.web.port)
    try:
        _osc(daemon, "/e2m/valence", 0.125)
        page.wait_for_function(
            "Math.abs(document.getElementById('ctl-valence').value - 0.125) < 0.003", timeout=5000
        )
        assert "valence 0.13" in page.inner_text(".pad-readout")  # the pad follows too
        _osc(daemon, "/e2m/mode", 0)
        page.wait_for_selector("button.selected[data-address='/e2m/mode'][data-value='minor']", timeout=5000)
        _osc(daemon, "/e2m/tempo", 300.0)  # clamped: the error shows on the OSC sender, not here
        page.wait_for_function(
            "document.querySelector(\"input[type=number][aria-label='Tempo value']\").value === '240'",
            timeout=5000,
        )
    finally:
        page.close()


def test_a_page_opened_after_a_change_shows_the_current_state(browser, daemon):
    _osc(daemon, "/e2m/mood", "sad")
    _osc(daemon, "/e2m/key", 2)
    assert wait_until(lambda: daemon.engine.features.key == 2, 5)
    page = _open(browser, daemon.web.port)
    try:
        page.wait_for_selector("button.selected[data-address='/e2m/key'][data-value='D']", timeout=5000)
        # sad, then key D: no preset matches, so no mood button is lit
        assert page.locator("button.selected[data-address='/e2m/mood']").count() == 0
        energy = daemon.engine.features.energy
        page.wait_for_function(
            f"Math.abs(document.getElementById('ctl-energy').value - {energy}) < 0.003", timeout=5000
        )
        _osc(daemon, "/e2m/mood", "calm")
        page.wait_for_selector("button.selected[data-address='/e2m/mood'][data-value='calm']", timeout=5000)
    finally:
        page.close()


def test_errors_are_shown_in_full(browser, daemon):
    page = _open(browser, daemon.web.port)
    try:
        page.fill("#ctl-instruments", "kazoo-o-phone")
        page.press("#ctl-instruments", "Enter")
        page.wait_for_selector("#errors li", timeout=5000)
        item = page.locator("#errors li").first
        text = item.inner_text()
        assert "/e2m/instruments" in text and "kazoo-o-phone" in text
        assert item.evaluate("e => e.scrollWidth <= e.clientWidth")  # wrapped, not clipped
    finally:
        page.close()


def test_touch_on_the_pad_sets_valence_and_energy(browser, daemon):
    page = _open(
        browser, daemon.web.port, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    try:
        pad = page.locator("#ctl-xy")
        pad.scroll_into_view_if_needed()
        box = pad.bounding_box()
        page.touchscreen.tap(box["x"] + 0.25 * box["width"], box["y"] + 0.1 * box["height"])
        assert wait_until(
            lambda: (
                abs(daemon.engine.features.valence - 0.25) < 0.03
                and abs(daemon.engine.features.energy - 0.9) < 0.03
            ),
            5,
        ), daemon.engine.features
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # nothing wider than a phone in portrait
    finally:
        page.close()


def test_the_plan_strip_follows_the_bar_playing(browser, daemon):
    page = _open(browser, daemon.web.port)
    try:
        _osc(daemon, "/e2m/play")
        page.wait_for_selector("#strip .bar.now", timeout=15000)
        page.wait_for_function(
            "[...document.querySelectorAll('#strip .bar .chord')].some(c => c.textContent !== '·')",
            timeout=15000,
        )
        assert page.locator("#strip .bar").count() == 12
        assert "section" in page.inner_text("#plan-text")
        page.wait_for_selector("#playing.on", timeout=5000)
    finally:
        _osc(daemon, "/e2m/stop")
        page.close()


def test_a_disallowed_client_is_refused(browser):
    daemon = _daemon(allow=["10.11.12.0/24"])  # bound to 127.0.0.1; the browser comes from 127.0.0.1
    page = browser.new_page()
    try:
        response = page.goto(f"http://127.0.0.1:{daemon.web.port}/")
        assert response is not None and response.status == 403
        assert "allow-list" in page.inner_text("body")
        opened = page.evaluate(
            """port => new Promise(resolve => {
            const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
            ws.onopen = () => resolve(true); ws.onerror = () => resolve(false);
        })""",
            daemon.web.port,
        )
        assert opened is False
    finally:
        page.close()
        daemon.shutdown()


def test_the_page_reconnects_after_a_daemon_restart(browser):
    port = _free_port()
    first = _daemon(http_port=port)
    page = _open(browser, port)
    second = None
    try:
        first.shutdown()
        page.wait_for_selector("body[data-connected='0']", timeout=10000)
        assert "reconnecting" in page.inner_text("#connection")
        second = _daemon(http_port=port, mood="tense")
        page.wait_for_selector(CONNECTED, timeout=20000)  # backoff is at most 5 s
        tense = second.engine.features
        page.wait_for_function(
            f"Math.abs(document.getElementById('ctl-energy').value - {tense.energy}) < 0.003", timeout=5000
        )
        page.wait_for_selector("button.selected[data-address='/e2m/mood'][data-value='tense']", timeout=5000)
    finally:
        page.close()
        if second is not None:
            second.shutdown()


def test_an_address_added_to_the_table_appears_on_the_page(browser):
    """The page has no list of controls: a new fader in the table is on it, and it sends."""
    extra = OscAddress(
        "/e2m/brightness",
        (Argument("brightness", "fi", 0.0, 1.0, default=0.5),),
        "Brightness",
        "a control the page has never heard of",
        group="colour",
    )
    received: list[tuple[str, list]] = []

    def handle(address: str, args: list) -> list:
        received.append((address, args))
        return []

    surface = WebSurface(
        handle,
        lambda: [("/e2m/state/brightness", [0.25])],
        port=0,
        addresses=(
            *ADDRESSES,
            extra,
            OscAddress(
                "/e2m/state/brightness",
                (Argument("brightness", "f"),),
                "brightness",
                "echo",
                direction="out",
                group="state",
            ),
        ),
    )
    surface.start()
    page = _open(browser, surface.port)
    try:
        assert page.locator("#panel-colour h2").inner_text().lower() == "colour"
        page.wait_for_function("document.getElementById('ctl-brightness').value === '0.25'", timeout=5000)
        page.locator("#ctl-brightness").scroll_into_view_if_needed()
        box = page.locator("#ctl-brightness").bounding_box()
        page.mouse.click(box["x"] + 0.9 * box["width"], box["y"] + box["height"] / 2)
        assert wait_until(lambda: any(a == "/e2m/brightness" and args[0] > 0.8 for a, args in received), 5)
    finally:
        page.close()
        surface.close()
