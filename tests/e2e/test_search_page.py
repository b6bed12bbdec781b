"""The search page in a real browser: `cart-search --serve` on the index `kedro run` trained,
loaded by headless Chromium (driven over the DevTools protocol), which runs the page's script,
fetches every system's results and renders them; the test then reads the rendered page."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the search page in headless Chromium

CART_SEARCH = str(Path(sys.executable).parent / "cart-search")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page(trained_project):
    project, result = trained_project
    assert result.returncode == 0, result.stderr[-3000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [CART_SEARCH, "--serve", "--port", str(port), "--project", str(project)],
        cwd=project,
        env={**os.environ, "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start: {server.stdout.read().decode()[-3000:]}")
            time.sleep(1)
    yield url
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_every_system_answers_side_by_side_and_the_page_fits_1280_px(page, tmp_path):
    import base64

    from tests.e2e.browser import browser_page

    with browser_page(f"{page}/?q=a+brown+hen&k=3", tmp_path / "profile", 1280, 900) as tab:
        tab.wait_for("document.getElementById('status').dataset.state === 'done'")
        shown = tab.evaluate(
            """Object.fromEntries([...document.querySelectorAll('section[data-modality]')].map(
                 s => [s.dataset.modality, Object.fromEntries(
                   [...s.querySelectorAll('ol[data-system]')].map(
                     o => [o.dataset.system, o.querySelectorAll('li.hit').length]))]))"""
        )
        systems = {"cart": 3, "cart_rerank": 3, "cart_lookup_rerank": 3, "dual_tower": 3,
                   "pair_lookup": 3}  # fmt: skip
        assert shown == {"image": systems, "audio": systems, "video": systems}
        served = tab.evaluate(
            """[...document.querySelectorAll('section[data-modality] .version')].map(
                 v => [v.dataset.version, v.textContent])"""
        )
        assert len(served) == 3 and all(v and text == f"index {v}" for v, text in served)
        # nothing wider than the window: no sideways scrolling at 1280 px
        assert tab.evaluate("document.documentElement.scrollWidth") <= 1280
        assert tab.evaluate("document.querySelector('img[src^=\"/media/images/\"]') !== null")
        assert tab.evaluate("document.querySelector('audio[src^=\"/media/\"]') !== null")
        assert tab.evaluate("document.querySelector('video[src^=\"/media/video/\"]') !== null")
        seconds = tab.evaluate("[...document.querySelectorAll('[data-seconds]')].length")
        assert seconds == 15  # the time each system took, per modality
        if os.environ.get("SEARCH_PAGE_SCREENSHOT"):  # for the docs: a picture of the page
            shot = tab.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            Path(os.environ["SEARCH_PAGE_SCREENSHOT"]).write_bytes(base64.b64decode(shot["data"]))


def test_the_api_and_media_refuse_what_is_not_theirs(page):
    status, body = get(f"{page}/api/search?q=a+brown+hen&k=2")
    payload = json.loads(body)
    assert status == 200 and set(payload["modalities"]) == {"image", "audio", "video"}
    assert set(payload["modalities"]["image"]) == {
        "cart",
        "cart_rerank",
        "cart_lookup_rerank",
        "dual_tower",
        "pair_lookup",
    }
    hit = payload["modalities"]["image"]["cart"]["hits"][0]
    status, picture = get(page + hit["media_url"])
    assert status == 200 and len(picture) > 100

    assert get(f"{page}/api/search?q=%20&k=2")[0] == 400  # empty query
    assert get(f"{page}/api/search?q=hen&k=0")[0] == 400
    assert get(f"{page}/media/../../pyproject.toml")[0] == 404  # outside the dataset
    assert get(f"{page}/media/manifest.csv")[0] == 404  # in the dataset, but not an item
