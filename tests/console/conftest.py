"""The console tests drive a real gateway's pages in headless Chromium (Debian's chromium and
chromium-driver, installed by scripts/install-test-deps.sh; nothing is downloaded here)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gatewayproc import Gateway, free_port, start_gateway

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"  # kept out of git
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def console_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with a second location and the console also on a port of its own."""
    console_port = free_port()
    with start_gateway(tmp_path_factory.mktemp("console"),
                       {"fast": {"type": "mem", "legacyAwsBehavior": False, "details": {}}},
                       config={"console": {"port": console_port}}) as gateway:
        gateway.extra["console_port"] = console_port
        yield gateway


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(downloads: Path) -> Iterator[Any]:
    # Never let Selenium Manager fetch a browser or driver: the Debian ones are given below.
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for needed in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(needed):
            pytest.fail(f"{needed} is missing: run scripts/install-test-deps.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,860", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    })
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.set_page_load_timeout(30)
    SCREENSHOTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
