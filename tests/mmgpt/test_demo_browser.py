"""The gradio demo in a real browser (slow): headless Chromium uploads a picture and a clip through
the page, asks, and the chat shows what ``model.chat`` answers; a screenshot is kept.

Needs Debian's ``chromium`` and ``chromium-driver``::

    .venv/bin/python -m pytest -q -m slow tests/mmgpt/test_demo_browser.py
    MMGPT_UPDATE_SCREENSHOT=1 .venv/bin/python -m pytest -q -m slow tests/mmgpt/test_demo_browser.py   # also writes docs/demo.png
    MMGPT_UPDATE_SCREENSHOT=1 MMGPT_DEMO_CHECKPOINT=runs/quickstart/final .venv/bin/python -m pytest -q -m slow \
        tests/mmgpt/test_demo_browser.py   # the same with a trained model instead of the tiny random one
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from mmgpt.demo.app import EMPTY_ANSWER, build_app, launch
from tests.conftest import expected, free_port, readable_model

ROOT = Path(__file__).resolve().parents[2]


class WebDriver:
    """Just enough of the W3C WebDriver protocol, spoken to chromedriver over HTTP."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([shutil.which("chromedriver"), f"--port={port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                httpx.get(f"{self.base}/status", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--hide-scrollbars"]
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": shutil.which("chromium"), "args": args}}
        self.session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]

    def call(self, method: str, path: str, body: dict | None = None):
        url = self.base + (path if path == "/session" else f"/session/{self.session}{path}")
        r = httpx.request(method, url, json=body if method == "POST" else None, timeout=120)
        value = r.json()["value"]
        if r.status_code != 200:
            raise RuntimeError(f"webdriver {path}: {value}")
        return value

    def find(self, css: str, timeout: float = 30):
        end = time.time() + timeout
        while True:
            try:
                return next(iter(self.call("POST", "/element", {"using": "css selector", "value": css}).values()))
            except RuntimeError:
                if time.time() > end:
                    raise
                time.sleep(0.2)

    def script(self, js: str, *args):
        return self.call("POST", "/execute/sync", {"script": js, "args": list(args)})

    def close(self) -> None:
        try:
            self.call("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.mark.slow
def test_browser_upload_image_and_clip_and_screenshot(tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    from mmgpt.cli.common import load_checkpoint
    from mmgpt.datasets.shapestones import generate

    checkpoint = os.environ.get("MMGPT_DEMO_CHECKPOINT")  # a trained model makes a better screenshot
    model = load_checkpoint(checkpoint) if checkpoint else readable_model()
    app = build_app(model, examples_dir=tmp_path / "examples")
    url = launch(app, port=free_port(), block=False, quiet=True)
    generate(tmp_path / "items", train=0, val=0, test=0, gen=8, seed=1, progress=False)
    image, clip = (str(tmp_path / "items" / "media" / "gen" / f"000000.{ext}") for ext in ("png", "wav"))
    question = "How many shapes and beeps are there?"
    want = expected(model, image=image, audio=clip, text=question, tokens=64)
    driver = WebDriver(free_port())
    try:
        driver.call("POST", "/url", {"url": url})
        driver.call("POST", f"/element/{driver.find('#image input[type=file]')}/value", {"text": image})
        driver.find("#image img")  # the preview shows once the upload is done
        driver.call("POST", f"/element/{driver.find('#audio input[type=file]')}/value", {"text": clip})
        driver.find("#audio audio")  # the player shows once the upload is done
        driver.call("POST", f"/element/{driver.find('#question textarea')}/value", {"text": question})
        driver.call("POST", f"/element/{driver.find('#send')}/click", {})
        answer = want or EMPTY_ANSWER  # the tiny model always answers; a checkpoint might not
        end, shown = time.time() + 60, ""
        while not (question in shown and answer in shown) and time.time() < end:
            time.sleep(0.3)
            shown = driver.script("return document.querySelector('#chat').innerText")
        png = base64.b64decode(driver.call("GET", "/screenshot"))
        (tmp_path / "demo.png").write_bytes(png)  # before the checks: a failure leaves a picture to look at
        assert question in shown and answer in shown and (want or checkpoint)
        assert driver.script("return document.querySelectorAll('#chat img').length") >= 1  # the image, inline
        players = "#chat audio, #chat .minimal-audio-player"
        assert driver.script(f"return document.querySelectorAll('{players}').length") >= 1  # the clip, inline
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("MMGPT_UPDATE_SCREENSHOT") == "1":
            (ROOT / "docs").mkdir(exist_ok=True)
            shutil.copyfile(tmp_path / "demo.png", ROOT / "docs" / "demo.png")
    finally:
        driver.close()
        app.close()
    assert len(png) > 10_000
