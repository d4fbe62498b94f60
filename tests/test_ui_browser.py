"""The web demo end to end: a real headless Chromium drives the page served on 127.0.0.1.

The browser is Debian's ``chromium`` (``make test`` installs it where apt is available); Playwright drives
that system browser (``playwright install`` downloads cannot work offline, and are never needed). The
model is a :class:`ScriptedBackend` that answers like a trained AwaRes model would, so the page's answer,
regions and RTR are known in advance; the screenshot of the finished page goes to ``docs/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

gr = pytest.importorskip("gradio", reason="the web demo needs the ui extra: pip install 'awares[ui]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright: pip install playwright")

from awares_tool.backends import default_model_path  # noqa: E402
from awares_tool.backends.scripted import ScriptedBackend  # noqa: E402
from awares_tool.ui import build_app, launch_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "examples" / "images" / "code_and_shapes.png"
# The committed picture in docs/ is refreshed only on request (AWARES_UPDATE_SCREENSHOT=1), so a test run
# never dirties the checkout; otherwise the screenshot is still taken, into a temporary file.
SCREENSHOT = REPO / "docs" / "ui_screenshot.png"
CHROMIUM = os.environ.get("AWARES_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Chromium's own background traffic (updates, sync, QUIC probes) fails slowly on a closed network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> bytes:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@contextlib.contextmanager
def _browser_page(url: str):
    """A page of headless system Chromium opened on ``url`` (closed afterwards)."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (make test does it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(url, wait_until="domcontentloaded")
            yield page
        finally:
            browser.close()


def _reply(messages) -> str:
    """Answer like the trained model: request the top-right quarter for the code, read it from the crop."""
    images = [getattr(p, "label", "") or "" for m in messages for p in m.content if hasattr(p, "image")]
    if any(label.startswith("crop") or label == "full image" for label in images):
        return "808"
    question = next(m.text_content for m in messages if m.role == "user")
    return "GET_CROPS: ['1']" if "code" in question.lower() else "red"


@pytest.fixture(scope="module")
def server():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (make test does it)")
    page = build_app(ScriptedBackend(_reply, name="scripted-test"))
    port = _free_port()
    launch_app(page, host="127.0.0.1", port=port, block=False)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, 60)
        yield url
    finally:
        page.close()


def test_browser_upload_ask_and_compare(server, tmp_path):
    expect = sync_api.expect
    with _browser_page(server) as page:
        expect(page.locator("#status")).to_contain_text("scripted-test", timeout=60_000)

        page.locator("#upload input[type=file]").set_input_files(str(IMAGE))
        expect(page.locator("#status")).to_contain_text("Image ready: code_and_shapes.png, 448x448",
                                                        timeout=60_000)
        page.locator("#question textarea").fill("What is the code?")
        page.locator("#ask").click()

        answer = page.locator("#answer")
        expect(answer).to_contain_text("Answer: 808", timeout=60_000)
        expect(answer).to_contain_text("Fetched regions: 1 (top-right quarter)")
        expect(page.locator("#ledger")).to_contain_text("RTR 0.500")
        expect(page.locator("#ledger")).to_contain_text("crop 1")
        expect(page.locator("#timings")).to_contain_text("over 2 model turn(s)")
        expect(page.locator("#status")).to_contain_text("Done: awares answered")
        expect(page.locator("#overlay img")).to_have_count(1)
        expect(page.locator("#crops img").first).to_be_visible()

        page.locator("#compare").click()
        table = page.locator("#comparison")
        expect(table).to_contain_text("fullres", timeout=60_000)
        expect(table).to_contain_text("AwaRes used 50% of the full-resolution visual tokens")
        expect(page.locator("#status")).to_contain_text("Done: full resolution")

        expect(page.locator("#crops img").first).to_be_visible()
        page.wait_for_function(  # every picture decoded before the screenshot
            "() => [...document.querySelectorAll('#lowres img, #overlay img, #crops img')]"
            ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOT if os.environ.get("AWARES_UPDATE_SCREENSHOT") else tmp_path / "ui_screenshot.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.fixture()
def ui_process():
    """``awares ui`` with no arguments, as a user starts it (the embedded default model), on a free port."""
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "awares_tool.cli", "ui", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", 120, proc)
        yield proc, f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_awares_ui_without_arguments_answers_in_the_browser(ui_process):
    """The page served by a bare ``awares ui`` answers an example question with the embedded model."""
    if not (default_model_path() / "config.json").is_file():
        pytest.skip("the embedded default model is not in this checkout")
    from awares_tool import crop_on_demand
    from awares_tool.ui.render import region_labels

    question = "What is the code?"
    expected = crop_on_demand(str(IMAGE), question)  # what the same model answers through the Python API
    _, url = ui_process
    expect = sync_api.expect
    with _browser_page(url) as page:
        page.locator("#upload input[type=file]").set_input_files(str(IMAGE))
        expect(page.locator("#status")).to_contain_text("Image ready", timeout=60_000)
        page.locator("#question textarea").fill(question)
        page.locator("#ask").click()
        expect(page.locator("#status")).to_contain_text("Done: awares answered", timeout=180_000)
        expect(page.locator("#answer")).to_contain_text(f"Answer: {expected.answer}")
        expect(page.locator("#ledger")).to_contain_text(f"RTR {expected.tokens.rtr:.3f}")
        regions = ", ".join(region_labels(expected)) or "none"
        expect(page.locator("#answer")).to_contain_text(f"Fetched regions: {regions}")


def test_awares_ui_starts_without_arguments(ui_process):
    """``awares ui`` with no arguments serves the page, which says whether the default model is there."""
    proc, url = ui_process
    config = json.loads(_wait_http(url + "config", 30, proc))
    texts = json.dumps([c.get("props", {}).get("value") for c in config["components"]])
    if (default_model_path() / "config.json").is_file():
        assert "loads on the first question" in texts
    else:
        assert "the embedded default model is missing" in texts
    assert proc.poll() is None
