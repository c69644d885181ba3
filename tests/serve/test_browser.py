"""The web page in Debian's headless Chromium: type a query, see results, open an explanation, screenshot.

Driven by Selenium through the system chromedriver (tests/serve/webdriver.py). Screenshots go to
the test's temporary folder, or to ``$DAER_SCREENSHOTS`` when that is set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from benchmarks.bench_service import free_port, serve_thread

from daer.serve.app import create_app
from daer.serve.backend import LibraryBackend
from tests.serve.webdriver import CHROMEDRIVER, CHROMIUM, chromium, processes_using

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver): "
    "apt-get install -y chromium chromium-driver",
)

IMAGES_LOADED = (
    "return Array.from(document.querySelectorAll(arguments[0])).every(i => i.complete && i.naturalWidth > 0)"
)


def test_search_explain_in_chromium(backend: LibraryBackend, tmp_path: Path) -> None:
    shots = Path(os.environ.get("DAER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    app = create_app(backend=backend, api_key="")
    with serve_thread(app) as base, chromium(free_port(), tmp_path / "profile", height=1400) as browser:
        browser.get(base + "/")
        assert "daer" in browser.script("return document.title")
        browser.type("#q", "a dining chair with armrests")
        browser.click("#go")
        cards = browser.wait("result cards", lambda: browser.find_all(".card"))
        assert len(cards) == 12  # the page asks for 12 by default
        browser.wait("result renders", lambda: browser.script(IMAGES_LOADED, ".card img"))
        status = browser.text("#status")
        assert status.startswith("12 results in"), status
        first = browser.script("return document.querySelector('.card').dataset.id")
        assert backend.shape(first) is not None
        browser.screenshot(shots / "search.png")

        browser.click(".card")
        browser.wait("explanation", lambda: browser.find_all(".word"))
        browser.wait("heat maps", lambda: browser.script(IMAGES_LOADED, ".word img"))
        words = browser.script("return Array.from(document.querySelectorAll('.word strong')).map(e => e.textContent)")
        assert words == ["dining", "chair", "armrests"]  # HAF scores content words only
        assert browser.script("return document.getElementById('explain').hidden") is False
        assert first in browser.text("#explain-title")
        assert "score" in browser.text("#explain-meta")
        assert len(browser.find_all(".word .pts li")) == 5 * len(words)
        browser.screenshot(shots / "explain.png")

        # upload a mesh to classify: the top labels appear, best first
        mesh = tmp_path / "tetra.obj"
        mesh.write_bytes(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
        browser.click(".classify summary")
        browser.type("#file", str(mesh))
        browser.type("#labels", "chair, lamp, table")
        browser.click("#classify-form button")
        preds = browser.wait("predictions", lambda: browser.find_all("#classify-out li"))
        assert len(preds) == 3
        first_label = browser.script("return document.querySelector('#classify-out li strong').textContent")
        assert first_label in {"chair", "lamp", "table"}
        assert browser.text("#classify-up") in {"read with x up", "read with y up", "read with z up"}

        # a refused query shows the server's message rather than failing silently
        browser.script("document.getElementById('q').removeAttribute('maxlength')")
        browser.script("document.getElementById('q').value = arguments[0]", "x" * 600)
        browser.click("#go")
        browser.wait("error message", lambda: "512" in browser.text("#status"))
        assert browser.script("return document.getElementById('status').classList.contains('error')")
    assert processes_using(str(tmp_path / "profile")) == []  # no Chromium left behind
    assert (shots / "search.png").stat().st_size > 10_000 and (shots / "explain.png").stat().st_size > 10_000
