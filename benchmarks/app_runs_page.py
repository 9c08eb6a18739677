"""Runs page of a 50-run store: how long the app takes to render it (issue 7 target: under 2 s).

    python benchmarks/app_runs_page.py                 # 50 runs, AppTest, 5 repeats
    python benchmarks/app_runs_page.py --runs 200 --browser   # also time it in chromium

The store holds real runs: the smoke study's six tiny-llama runs (one per method, trained once in about
15 s), copied under new ids up to `--runs`, plus one unreadable run directory. Measured:
- cold: a fresh app session (`AppTest`) with empty caches renders the Runs page: scan the runs dir, read
  every manifest, build the table, draw the sidebar (the first visit);
- warm: the same session reruns (what every click costs; manifests come from st.cache_data);
- browser (optional), against `streamlit run`: chromium opening the app (Runs is the default page) in
  a new tab until the table is drawn (includes the frontend's start-up, the same for any page), and
  navigating to Runs from another page (one rerun and the table drawn: what a user waits for); and,
  as the baseline of the frontend's own start-up, opening the app on an empty store.
Each is the median of `--repeats`; the machine is shared, so no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 2.0


def make_store(runs_dir: Path, count: int) -> None:
    """`count` runs across the methods, and one corrupt run directory.

    The smoke study trains one tiny-llama run per method in a scratch directory; each is copied under
    new ids until there are `count`. The Runs page reads manifests (and lists table names), so a copy
    costs it what a distinct run would.
    """
    from workbench.orchestration.study import run_study

    scratch = runs_dir.parent / "study"
    run_study("smoke", scratch, progress=False)
    trained = sorted(p for p in scratch.iterdir() if (p / "manifest.json").is_file())
    runs_dir.mkdir(parents=True)
    for i in range(count):
        copy = runs_dir / f"run-{i:04d}"
        shutil.copytree(trained[i % len(trained)], copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest.update(id=copy.name, name=f"{manifest['name']}-{i}")
        (copy / "manifest.json").write_text(json.dumps(manifest))
    corrupt = runs_dir / "corrupt"
    corrupt.mkdir()
    (corrupt / "manifest.json").write_text("{oops")


def time_apptest(runs_dir: Path, repeats: int) -> dict[str, float]:
    """Median seconds of a cold session's first render and of a warm rerun of the Runs page."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    cold, warm, rows = [], [], 0
    for _ in range(repeats):
        st.cache_data.clear()
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.session_state["runs_dir"] = str(runs_dir)
        t0 = time.perf_counter()
        at.run()
        cold.append(time.perf_counter() - t0)
        assert not at.exception, [e.value for e in at.exception]
        rows = len(at.dataframe[0].value)
        t0 = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - t0)
    return {"cold_s": statistics.median(cold), "warm_s": statistics.median(warm), "rows": rows}


def time_browser(runs_dir: Path, repeats: int, *, empty: bool = False) -> dict[str, float]:
    """Median seconds in chromium until the runs table is drawn: loading the URL in a new tab (the
    frontend's own start-up included), and navigating to Runs from another page of the app. With
    `empty` (a store without runs: the baseline of the frontend alone) until the empty-store note is
    drawn, load only. Empty without chromium."""
    import socket
    import subprocess
    import urllib.request

    if not Path("/usr/bin/chromium").exists():
        return {}
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats",
               "false", "--", "--runs-dir", str(runs_dir)]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        loads, clicks = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"]
            )
            for _ in range(repeats):
                page = browser.new_page()  # a new session each time (the server's caches stay warm)
                t0 = time.perf_counter()
                page.goto(f"{url}/")  # the Runs page is the default page, at the root
                if empty:
                    page.locator('[data-testid="stAlert"]').first.wait_for(timeout=60_000)
                    loads.append(time.perf_counter() - t0)
                    page.close()
                    continue
                table = page.locator('[data-testid="stDataFrame"]').first
                table.wait_for(timeout=60_000)
                loads.append(time.perf_counter() - t0)
                page.get_by_role("link", name="Trade-offs").click()
                table.wait_for(state="detached", timeout=60_000)
                t0 = time.perf_counter()  # in-app navigation back to Runs: no page load, one rerun
                page.get_by_role("link", name="Runs").click()
                page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
                clicks.append(time.perf_counter() - t0)
                page.close()
            browser.close()
        if empty:
            return {"browser_load_empty_store_s": statistics.median(loads)}
        return {"browser_load_s": statistics.median(loads), "browser_nav_s": statistics.median(clicks)}
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50, help="runs in the store")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time the page in chromium")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp) / "runs"
        t0 = time.perf_counter()
        make_store(runs_dir, args.runs)
        built = time.perf_counter() - t0
        result = {"runs": args.runs, "store_build_s": round(built, 2), **time_apptest(runs_dir, args.repeats)}
        if args.browser:
            result.update(time_browser(runs_dir, args.repeats))
            (Path(tmp) / "empty").mkdir()
            result.update(time_browser(Path(tmp) / "empty", args.repeats, empty=True))
    result = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    print(json.dumps(result, indent=2))
    worst = max(result["cold_s"], result.get("browser_nav_s", 0.0))
    print(f"Runs page, {args.runs} runs: cold {result['cold_s']:.2f} s, warm {result['warm_s']:.2f} s "
          f"(target < {TARGET_SECONDS:.0f} s: {'met' if worst < TARGET_SECONDS else 'MISSED'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
