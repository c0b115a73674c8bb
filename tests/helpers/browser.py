"""A real headless Chromium for the console tests, driven by selenium and chromedriver.

Debian's `chromium` and `chromium-driver` (installed by `make deps-test`). The machine has no
internet: selenium is given both binaries, so Selenium Manager never tries to download one,
and Chromium starts with a new empty profile and everything that phones home switched off.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
WINDOW = (1360, 860)
# everything the brief of a headless test run asks for: no GPU, no QUIC, no first-run UI,
# no background networking, updates or sync
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    for path in paths:
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def chromium_path() -> str | None:
    return _first(CHROMIUM_CANDIDATES, "chromium")


def driver_path() -> str | None:
    return _first(DRIVER_CANDIDATES, "chromedriver")


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if chromium_path() is None or driver_path() is None:
        return "chromium and chromium-driver are not installed (make deps-test)"
    return None


@contextlib.contextmanager
def launch(window: tuple[int, int] = WINDOW) -> Iterator[WebDriver]:
    """A headless Chromium (a selenium `WebDriver`), with a fresh profile; quit at exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_path(), driver_path()
    assert browser is not None and driver is not None, missing()
    profile = Path(tempfile.mkdtemp(prefix="pushwire-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    service = Service(executable_path=driver, log_output=os.devnull)
    web = webdriver.Chrome(options=options, service=service)
    try:
        yield web
    finally:
        web.quit()  # ends chromedriver and the browser it started
        shutil.rmtree(profile, ignore_errors=True)
