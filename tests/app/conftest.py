"""A runs directory of REAL tiny runs for the app tests (built once per session).

One tiny-llama run per registered method (3 steps, every recorder on every step), a memory sweep (with
an OOM point from a logical cap) when the sweep exists, an interrupted run (its process died before it
finished), a run whose table file is corrupt, and a directory whose manifest is not JSON.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

# per-method options that keep a 3-step tiny run fast (SMT's default warm-up is 100 batches)
FAST_OPTIONS = {"smt": {"warmup_steps": 2}, "spsft": {"importance_batches": 2}}

INTERRUPTED = """
import sys, os
from workbench.store import RunWriter
w = RunWriter.create(sys.argv[1], name="interrupted-lora", config={"method": "lora", "model": "tiny-llama",
    "task": "colours", "method_options": {"r": 16}}, environment={"device": "cpu"})
w.add("metrics", [{"step": 1, "split": "train", "name": "loss", "value": 5.0}])
w.flush()
os._exit(1)  # die without finishing: the manifest stays "running" with a dead pid
"""


def _config(method: str, task: str, runs_dir: Path):
    from workbench.config import RecordConfig, RunConfig, TrainConfig

    return RunConfig(
        model="tiny-llama",
        task=str(task),
        method=method,
        runs_dir=str(runs_dir),
        method_options=dict(FAST_OPTIONS.get(method, {})),
        train=TrainConfig(steps=3, eval_examples=8, batch_size=4, max_length=32, save_weights=False),
        record=RecordConfig(saliency_every=1, grads_every=1, probe_examples=2),
    )


def _profiled_run(runs_dir: Path) -> str:
    """A loop of its own recorded by wb.profile (kind "profiled": no accuracy, no fidelity)."""
    import torch

    import workbench as wb
    from workbench.models import load_model

    loaded = load_model("tiny-llama")
    model, optimizer = loaded.model, torch.optim.AdamW(loaded.model.parameters(), lr=1e-3)
    ids = torch.randint(3, model.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0))
    probe = [("red sky. colour:", " red"), ("blue sky. colour:", " blue")]
    record = {"saliency_every": 1, "grads_every": 1}
    with wb.profile(
        model, runs_dir=str(runs_dir), name="own-loop", tokenizer=loaded.tokenizer, probe=probe, record=record
    ) as prof:
        for _ in range(3):
            model(input_ids=ids, labels=ids).loss.backward()
            prof.step(optimizer=optimizer)
            optimizer.step()
            optimizer.zero_grad()
    return prof.run_id


def build_runs(root: Path, task: str) -> dict[str, str]:
    """Make the fixture runs of `task` under root/runs; returns {label: run id}."""
    from workbench.methods import METHODS
    from workbench.orchestration.memory_sweep import run_memory_sweep
    from workbench.orchestration.train import train

    runs_dir = root / "runs"
    ids: dict[str, str] = {}
    for method in METHODS.names():
        ids[method] = train(_config(method, task, runs_dir), progress=False).run_id
    ids["profiled"] = _profiled_run(runs_dir)
    sweep = _config("lora", task, runs_dir)
    ids["sweep"] = run_memory_sweep(sweep, [8, 16, 32], [1, 2, 4], cap_bytes=700_000, progress=False).run_id
    subprocess.run([sys.executable, "-c", INTERRUPTED, str(runs_dir)], check=False)
    ids["interrupted"] = next(p.name for p in runs_dir.iterdir() if p.name.endswith("interrupted-lora"))
    # a readable run whose memory table file is garbage
    broken = runs_dir / "zz-broken-table"
    shutil.copytree(runs_dir / ids["lora"], broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest.update(id=broken.name, name="lora-broken-table")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    for part in (broken / "memory").glob("*.parquet"):
        part.write_bytes(b"not parquet at all")
    ids["broken_table"] = broken.name
    # a directory that is not a readable run
    corrupt = runs_dir / "corrupt-run"
    corrupt.mkdir()
    (corrupt / "manifest.json").write_text("{not json")
    ids["corrupt"] = corrupt.name
    return ids


@pytest.fixture(scope="session")
def fixture_runs(tmp_path_factory, tiny_task) -> tuple[Path, dict[str, str]]:
    """(runs dir, {label: run id}) of the real tiny runs; labels are method names plus profiled,
    sweep, interrupted, broken_table and corrupt."""
    root = tmp_path_factory.mktemp("app-runs")
    ids = build_runs(root, tiny_task)
    return root / "runs", ids


@pytest.fixture(scope="session")
def runs_dir(fixture_runs) -> Path:
    return fixture_runs[0]


@pytest.fixture(scope="session")
def run_ids(fixture_runs) -> dict[str, str]:
    return fixture_runs[1]


ROOT = Path(__file__).resolve().parents[2]
PAGES = ("runs", "tradeoffs", "saliency", "blocks", "rows", "gradients", "memory", "compare")


def _make_app(runs_dir: Path | str, page: str | None = None, run: str | None = None):
    """An AppTest of app.py on `runs_dir`, run once, then switched to `page` with `run` picked."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["runs_dir"] = str(runs_dir)
    if run is not None:
        at.session_state["run"] = run
    at.run()
    if page is not None and page != "runs":
        at.switch_page(f"workbench/app/pages/{page}.py").run()
    return at


def _decode(value):
    """Plotly's JSON packs numeric arrays as {"dtype", "bdata" (base64), "shape"}: unpack to lists."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            if "shape" in value:
                shape = value["shape"]
                array = array.reshape(
                    [int(n) for n in str(shape).split(",")] if isinstance(shape, str) else shape
                )
            return array.tolist()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _charts(at) -> list[dict]:
    """The plotly figures on the page (the chart elements carry the figure JSON), arrays unpacked."""
    return [_decode(json.loads(el.proto.spec)) for el in at.get("plotly_chart")]


def _texts(at) -> str:
    """Every info / warning / error / caption / markdown text on the page, joined."""
    parts = []
    for kind in ("info", "warning", "error", "caption", "markdown", "title", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


# Helpers are handed out as fixtures, not imported, so the tests work whatever pytest's import mode.
@pytest.fixture(scope="session")
def make_app():
    return _make_app


@pytest.fixture(scope="session")
def charts():
    return _charts


@pytest.fixture(scope="session")
def texts():
    return _texts


# ---- the browser tests' kit: serving the app and driving Debian chromium ------------------------------

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


@contextlib.contextmanager
def _serve(runs_dir: Path):
    """The app over `runs_dir` on a free port, started with the study's own command (127.0.0.1, the
    file watcher off: what the README and `workbench study` run); yields its URL."""
    from workbench.orchestration.study import app_command

    port = _free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = subprocess.Popen(app_command(runs_dir, port=port), cwd=ROOT, env=env, **quiet)
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


@pytest.fixture(scope="module")
def server(runs_dir, browser_kit):
    """The app served over the fixture runs (one per module that drives a browser)."""
    with browser_kit.serve(runs_dir) as url:
        yield url


def _wait_rendered(page, title: str) -> None:
    """The page's title is shown and the script has stopped running."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=60_000,
    )
    page.wait_for_timeout(800)  # let plotly finish drawing


@pytest.fixture(scope="session")
def browser_kit():
    """What the browser tests share (test_app_browser.py, test_app_readable.py): `serve(runs_dir)` (a
    context manager serving the app as the README does, yielding its URL), `wait_rendered(page, title)`,
    and chromium's path and arguments. Skips, with the reason, where chromium or playwright is missing."""
    from types import SimpleNamespace

    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not installed at {CHROMIUM} (apt-get install -y chromium)")
    pytest.importorskip("playwright", reason="pip install playwright (never `playwright install`)")
    return SimpleNamespace(serve=_serve, wait_rendered=_wait_rendered, chromium=CHROMIUM, args=ARGS)
