"""The search page in a real browser: `cart-search --serve` on the index `kedro run` trained,
loaded by headless Chromium, which runs the page's script, fetches both systems' results and
renders them (`--dump-dom` prints the DOM after the script ran)."""

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
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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
def test_a_query_renders_both_systems_side_by_side_in_headless_chromium(page, tmp_path):
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=60000",  # let the page's fetch and rendering finish
    ]
    dom = subprocess.run(
        [*command, "--dump-dom", f"{page}/?q=a+brown+hen&k=3"],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout

    assert 'data-state="done"' in dom, dom[-2000:]
    for modality in ("image", "audio", "video"):
        section = re.search(rf'data-modality="{modality}".*?</section>', dom, re.S).group(0)
        for system in ("cart", "dual_tower"):
            hits = re.search(rf'data-system="{system}">(.*?)</ol>', section, re.S).group(1)
            assert len(re.findall(r'class="hit" data-item-id="[^"]+"', hits)) == 3
    assert re.search(r'<img src="/media/images/[^"]+"', dom)  # thumbnails for images
    assert re.search(r'<audio controls="" preload="none" src="/media/[^"]+"', dom)  # players
    assert re.search(r'<video controls="" preload="none" width="120" src="/media/video/', dom)
    assert re.search(r'data-seconds="[0-9.e-]+"', dom)  # the time each system took
    if os.environ.get("SEARCH_PAGE_SCREENSHOT"):  # for the docs: a picture of the page
        subprocess.run(
            [*command, "--window-size=1280,1400", f"--screenshot={os.environ['SEARCH_PAGE_SCREENSHOT']}",
             f"{page}/?q=a+brown+hen&k=3"],
            capture_output=True,
            timeout=300,
        )  # fmt: skip


def test_the_api_and_media_refuse_what_is_not_theirs(page):
    status, body = get(f"{page}/api/search?q=a+brown+hen&k=2")
    payload = json.loads(body)
    assert status == 200 and set(payload["modalities"]) == {"image", "audio", "video"}
    hit = payload["modalities"]["image"]["cart"]["hits"][0]
    status, picture = get(page + hit["media_url"])
    assert status == 200 and len(picture) > 100

    assert get(f"{page}/api/search?q=%20&k=2")[0] == 400  # empty query
    assert get(f"{page}/api/search?q=hen&k=0")[0] == 400
    assert get(f"{page}/media/../../pyproject.toml")[0] == 404  # outside the dataset
    assert get(f"{page}/media/manifest.csv")[0] == 404  # in the dataset, but not an item
