"""Debian's headless Chromium driven by Selenium (through the system chromedriver, nothing downloaded).

A thin layer over ``selenium.webdriver.Chrome`` with the few CSS-selector helpers the page test reads
well with; every call is Selenium's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


class Browser:
    """One Chromium session: CSS-selector helpers over a Selenium driver."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    def get(self, url: str) -> None:
        self.driver.get(url)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def type(self, css: str, text: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, css).send_keys(text)

    def click(self, css: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def text(self, css: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def screenshot(self, path: Path) -> Path:
        if not self.driver.save_screenshot(str(path)):
            raise RuntimeError(f"screenshot to {path} failed")
        return path

    def wait(self, what: str, condition: Callable[[], Any], timeout: float = 60.0) -> Any:
        """The first truthy value of ``condition()``, polled until ``timeout`` seconds."""
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(
            lambda _: condition(), message=f"timed out waiting for {what}"
        )


def processes_using(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (Linux /proc), for checking that nothing is left behind."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(proc.name))
    return out


@contextlib.contextmanager
def chromium(port: int, profile: Path, width: int = 1280, height: int = 1000) -> Iterator[Browser]:
    """A headless Chromium session with its own profile folder; everything it started is stopped after."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-extensions", f"--user-data-dir={profile}", f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER), port=port))
    try:
        yield Browser(driver)
    finally:
        driver.quit()
        for pid in processes_using(f"--user-data-dir={profile}"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
