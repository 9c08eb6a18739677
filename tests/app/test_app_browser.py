"""End to end in a real browser: `streamlit run app.py` on 127.0.0.1, Debian chromium driven by playwright.

Loads every page (with a run picked by `?run=` where the page shows one kind of run), waits for it to
finish rendering, takes a screenshot into tmp, and checks that no page shows an exception and that the
chart pages draw plotly charts. Skipped, with the reason, where chromium or playwright is missing.
"""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = pytest.mark.browser

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


def test_every_page_in_chromium(server, run_ids, browser_kit, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    from workbench.app.main import PAGES as APP_PAGES

    titles = {url: title for _, title, _, url in APP_PAGES}
    titles[""] = APP_PAGES[0][1]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_kit.chromium, args=browser_kit.args)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        for url_path, label, charts in PAGES:
            query = f"?run={run_ids[label]}" if label else ""
            page.goto(f"{server}/{url_path}{query}")
            browser_kit.wait_rendered(page, titles[url_path])
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
