"""``sevila web`` end to end: the real command as a subprocess, driven in headless Chromium by Playwright.

Needs a Chromium binary (Debian: ``apt-get install chromium chromium-driver``; ``.ci/run`` installs it) or
``SEVILA_CHROMIUM=/path/to/chrome``. A missing browser fails the test; it never skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sevila_tools.schemas import RANDOM_WEIGHTS_NOTICE

pytestmark = pytest.mark.slow

QUESTION = "what is the square doing?"
OPTIONS = ["moving left.", "moving right.", "standing still."]
START_TIMEOUT_S = 300  # model load + gradio import on a busy 2-core machine
RUN_TIMEOUT_MS = 240_000
BROWSER_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


def chromium_binary() -> str:
    """``$SEVILA_CHROMIUM``, else Debian's chromium (the real binary, not its shell wrapper); fail if none."""
    candidates = [os.environ.get("SEVILA_CHROMIUM"), "/usr/lib/chromium/chromium"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail(
        "no Chromium: run `apt-get install -y chromium chromium-driver` (see .ci/run) or set SEVILA_CHROMIUM"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sevila_command() -> list[str]:
    script = Path(sys.executable).with_name("sevila")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sevila_tools.cli.app"]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def _wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sevila web exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    _stop(proc)
    pytest.fail(f"sevila web did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``sevila web --model tiny-random --port <free port>`` running until the module's tests end."""
    folder = tmp_path_factory.mktemp("web_server")
    port, log = _free_port(), folder / "server.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(folder / "gradio"),
    }
    cmd = [*_sevila_command(), "web", "--model", "tiny-random", "--device", "cpu", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_ready(proc, url, log)
        yield url
    finally:
        _stop(proc)
    assert proc.returncode is not None


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_binary(), headless=True, args=BROWSER_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(60_000)
    yield context.new_page()
    context.close()


def _open_and_ask(page, url: str, video: Path, options: list[str]) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#sevila-video input[type=file]").set_input_files(str(video))
    page.locator("#sevila-video").get_by_text(video.suffix).wait_for()  # the upload is listed
    page.locator("#sevila-question textarea").fill(QUESTION)
    page.locator("#sevila-options textarea").fill("\n".join(options))
    page.locator("#sevila-run").click()


def test_upload_ask_and_see_keyframes_answer_and_notice(server, page, video_file, tmp_path):
    from playwright.sync_api import expect

    _open_and_ask(page, server, Path(video_file), OPTIONS)
    answer = page.locator("#sevila-answer textarea")
    expect(answer).to_have_value(re.compile(r"^\([ABC]\) "), timeout=RUN_TIMEOUT_MS)
    assert answer.input_value()[4:] in OPTIONS
    thumbs = page.locator("#sevila-keyframes .thumbnail-item img")
    expect(thumbs).to_have_count(4)
    for i in range(4):
        expect(thumbs.nth(i)).to_be_visible()
        assert re.match(r"\d+\.\d\d s · frame \d+ · score ", thumbs.nth(i).get_attribute("alt"))
    expect(page.locator("#sevila-provenance").get_by_text(RANDOM_WEIGHTS_NOTICE)).to_be_visible()
    expect(page.locator("#sevila-timeline img")).to_be_visible()
    expect(page.locator("#sevila-probs")).to_contain_text("(C) standing still.")
    expect(page.locator("#sevila-json")).to_contain_text("sevila-result")
    page.wait_for_timeout(500)  # let images finish painting before the screenshot
    shot = tmp_path / "web_tiny_random.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000


def test_text_renamed_mp4_shows_a_readable_error(server, page, tmp_path):
    from playwright.sync_api import expect

    fake = tmp_path / "fake.mp4"
    fake.write_text("this is a text file, not a video\n" * 20)
    _open_and_ask(page, server, fake, OPTIONS)
    status = page.locator("#sevila-status")
    expect(status).to_contain_text(re.compile(r"error: not a readable video: fake\.mp4 \("), timeout=RUN_TIMEOUT_MS)
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)  # no error badge on the other panels
    assert "Traceback" not in page.content()
    assert page.locator("#sevila-answer textarea").input_value() == ""


def test_gradio_client_calls_the_answer_endpoint(server, video_file):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    status, timeline, gallery, answer, probs, result_json = client.predict(
        video=handle_file(str(video_file)),
        question=QUESTION,
        options="\n".join(OPTIONS),
        num_frames=32,
        num_keyframes=4,
        selector="localizer",
        api_name="/answer",
    )
    assert status == "done" and answer[4:] in OPTIONS and len(gallery) == 4
    assert Path(timeline).is_file()
    result = json.loads(Path(result_json).read_text())
    assert result["answer"]["answer_text"] == answer[4:]
    assert result["localization"]["notice"] == RANDOM_WEIGHTS_NOTICE
    assert len(result["localization"]["keyframes"]) == 4
    assert {lab["label"] for lab in probs["confidences"]} == {
        f"({'ABC'[i]}) {o}" for i, o in enumerate(OPTIONS)
    }
