"""Screenshots of the browser surface for docs/web/ (desktop, phone portrait, phone landscape).

    .venv/bin/python scripts/web_screenshots.py [--out docs/web]

Runs a daemon in this process (rule generator, no MIDI output, playing) and Debian's chromium
through Playwright, as tests/test_web_browser.py does.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = {  # name: viewport, phone?
    "desktop": ({"width": 1280, "height": 900}, False),
    "phone-portrait": ({"width": 390, "height": 844}, True),
    "phone-landscape": ({"width": 844, "height": 390}, True),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "web"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from e2m_live.live.config import build_config
    from e2m_live.live.daemon import Daemon

    config = build_config(
        overrides={
            "udp_port": 0,
            "tcp_port": -1,
            "midi": False,
            "generator": "rules",
            "http_port": 0,
            "realtime": False,
            "mood": "dreamy",
            "autoplay": True,
            "seed": 7,
        }
    )
    daemon = Daemon(config, out=io.StringIO())
    daemon.start()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        daemon.handle("/e2m/instruments", ["piano, strings, drums"])
        daemon.handle("/e2m/mute", ["drums"])
        time.sleep(6)  # a few bars, so the strip shows chords and the bar playing
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"), headless=True, args=["--no-sandbox"]
            )
            for name, (viewport, phone) in SIZES.items():
                page = browser.new_page(
                    viewport=viewport, is_mobile=phone, has_touch=phone, device_scale_factor=2 if phone else 1
                )
                page.goto(f"http://127.0.0.1:{daemon.web.port}/")
                page.wait_for_selector("body[data-connected='1']")
                page.evaluate("window.e2m.send('/e2m/mood', ['grumpy'])")  # an error to show
                time.sleep(1.5)
                page.screenshot(path=str(out / f"{name}.png"), full_page=name == "desktop")
                print(out / f"{name}.png")
                page.close()
            browser.close()
    finally:
        daemon.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
