"""End to end in a real browser: `streamlit run app.py` on 127.0.0.1, Debian chromium driven by playwright.

Loads every page (with a run picked by `?run=` where the page shows one kind of run), waits for it to
finish rendering, takes a screenshot into tmp, and checks that no page shows an exception and that the
chart pages draw plotly charts. Skipped, with the reason, where chromium or playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# url path, run label for ?run= (None: the default pick), charts expected at least
PAGES = (
    ("", None, 0),  # the default page (Runs) lives at the root URL
    ("tradeoffs", None, 2),
    ("saliency", "sage", 3),
    ("blocks", "smt", 3),
    ("rows", "spsft", 2),
    ("gradients", "lora", 2),
    ("memory", "sweep", 1),
    ("compare", None, 1),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("streamlit did not become healthy")


@pytest.fixture(scope="module")
def server(runs_dir):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not installed at {CHROMIUM} (apt-get install -y chromium)")
    pytest.importorskip("playwright", reason="pip install playwright (never `playwright install`)")
    port = _free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--", "--runs-dir", str(runs_dir),
    ]  # fmt: skip
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_rendered(page, title: str) -> None:
    """The page's title is shown and the script has stopped running."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=60_000,
    )
    page.wait_for_timeout(800)  # let plotly finish drawing


def _wait_charts(page, charts: int) -> None:
    """Up to 60 s for `charts` plotly charts: a loaded machine may still be drawing after the script ends
    (the first figure with method colours imports the method packages). The count is asserted after."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            f"() => document.querySelectorAll('.js-plotly-plot').length >= {charts}", timeout=60_000
        )
    except PlaywrightTimeout:
        pass


def test_every_page_in_chromium(server, run_ids, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    from workbench.app.main import PAGES as APP_PAGES

    titles = {url: title for _, title, _, url in APP_PAGES}
    titles[""] = APP_PAGES[0][1]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        for url_path, label, charts in PAGES:
            query = f"?run={run_ids[label]}" if label else ""
            page.goto(f"{server}/{url_path}{query}")
            _wait_rendered(page, titles[url_path])
            name = url_path or "runs"
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            exceptions = page.locator('[data-testid="stException"]')
            assert exceptions.count() == 0, f"{name}: {exceptions.first.inner_text()}"
            assert page.locator('[data-testid="stDialog"]').count() == 0, (
                f"{name}: a dialog (page not found?)"
            )
            _wait_charts(page, charts)
            assert page.locator(".js-plotly-plot").count() >= charts, url_path
        browser.close()
    keep = os.environ.get("WORKBENCH_SCREENSHOTS")
    if keep:  # look at them: WORKBENCH_SCREENSHOTS=/some/dir pytest -m browser
        shutil.copytree(shots, keep, dirs_exist_ok=True)
    assert sorted(p.name for p in shots.iterdir()) == sorted(f"{u or 'runs'}.png" for u, _, _ in PAGES)
