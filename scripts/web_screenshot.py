"""Regenerate the README's web screenshot: ``sevila web --model tiny-trained`` answering a NeedleQA clip's question in
headless Chromium (Playwright). Writes ``docs/images/web_tiny_trained.png``.

    .venv/bin/python scripts/web_screenshot.py [--out docs/images/web_tiny_trained.png]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sevila_tools.demo import make_clip


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str:
    for c in (os.environ.get("SEVILA_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium")):
        if c and Path(c).is_file():
            return c
    raise SystemExit("no Chromium: apt-get install chromium, or set SEVILA_CHROMIUM")


def _wait(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sevila web exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit("sevila web did not start")


def shoot(out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    work = Path(tempfile.mkdtemp())
    video, plan = make_clip(work)
    port = _port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    sevila = Path(sys.executable).with_name("sevila")
    proc = subprocess.Popen([str(sevila), "web", "--model", "tiny-trained", "--device", "cpu", "--port", str(port),
                             "--allow-dir", str(work)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait(url, proc)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=_chromium(), headless=True,
                                         args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            page.set_default_timeout(240_000)
            page.goto(url, wait_until="domcontentloaded")
            page.locator("#sevila-video input[type=file]").set_input_files(str(video))
            page.locator("#sevila-video").get_by_text(".mp4").wait_for()
            page.locator("#sevila-question textarea").fill(plan.question.text + "?")
            page.locator("#sevila-options textarea").fill("\n".join(o + "." for o in plan.question.options))
            page.locator("#sevila-run").click()
            expect(page.locator("#sevila-keyframes .thumbnail-item img")).to_have_count(4)
            gold = "ABCDE"[plan.question.answer]
            want = f"({gold}) {plan.question.options[plan.question.answer]}."
            expect(page.locator("#sevila-answer textarea")).to_have_value(want)
            page.wait_for_timeout(800)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/images/web_tiny_trained.png"))
    shoot(ap.parse_args().out)
