"""A minimal W3C WebDriver client over HTTP (selenium is not installed): enough to drive chromedriver."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference


class WebDriverError(RuntimeError):
    pass


class Browser:
    """One WebDriver session."""

    def __init__(self, driver_url: str, session: str) -> None:
        self.session_url = f"{driver_url}/session/{session}"
        self.http = httpx.Client(base_url=self.session_url, timeout=60.0)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.http.request(method, path, json=body)
        value = r.json().get("value")
        if r.status_code >= 400:
            raise WebDriverError(f"{method} {path}: {value}")
        return value

    def get(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        return self._call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def find_all(self, css: str) -> list[str]:
        return [e[ELEMENT] for e in self._call("POST", "/elements", {"using": "css selector", "value": css})]

    def type(self, css: str, text: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/click", {})

    def text(self, css: str) -> str:
        return self._call("GET", f"/element/{self.find(css)}/text")

    def script(self, source: str, *args: Any) -> Any:
        return self._call("POST", "/execute/sync", {"script": source, "args": list(args)})

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))
        return path

    def wait(self, what: str, condition: Callable[[], Any], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}")

    def quit(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(self.session_url, timeout=30.0)  # the exact session URL: no trailing slash
        self.http.close()


def processes_using(marker: str) -> list[int]:
    """Ids of processes whose command line contains ``marker`` (our private profile folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def chromium(port: int, profile: Path, width: int = 1280, height: int = 1000) -> Iterator[Browser]:
    """Start chromedriver on ``port`` and a headless Chromium session with its profile in ``profile``.

    On the way out the session is closed, chromedriver stopped, and any Chromium process still using
    ``profile`` (which only this session's browser does) is ended by its id.
    """
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([str(CHROMEDRIVER), f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    browser = None
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/status", timeout=2).json()["value"]["ready"]:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise WebDriverError("chromedriver did not start")
            time.sleep(0.2)
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": str(CHROMIUM),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    f"--user-data-dir={profile}",
                    f"--window-size={width},{height}",
                ],
            },
        }
        r = httpx.post(url + "/session", json={"capabilities": {"alwaysMatch": caps}}, timeout=90)
        value = r.json()["value"]
        if r.status_code >= 400:
            raise WebDriverError(f"cannot start a session: {value}")
        browser = Browser(url, value["sessionId"])
        yield browser
    finally:
        if browser is not None:
            browser.quit()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in processes_using(f"--user-data-dir={profile}"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
