"""The app served safely (issue 19, point 8): the runs dir box stays inside the directory the app was
started on unless `--allow-any-dir`; user text (run names, status messages, tokens) is shown as text,
never markdown; the study's app child stops with the study on SIGINT, SIGTERM and SIGHUP."""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workbench.app.text import WORD_JOINER, md_code, md_code_block, md_escape

IMG = "![](http://example.com/x.png)"
BOLD = "**bold** [link](http://x)"
HOSTILE = (
    IMG,
    BOLD,
    "<img src=x onerror=alert(1)>",
    ":red[boom] :material/home: $x^2$ ~~gone~~ `code` # heading | a | b |",
    "1. list _em_ \\*not escaped\\* &amp; <b>bold</b> www.example.com a@b.co",
    "[ref]: http://example.com/ref",
)
# elements whose text Streamlit renders as markdown, and widgets whose labels it renders as markdown
TEXT_KINDS = ("markdown", "caption", "title", "header", "subheader", "info", "warning", "error", "success")
LABEL_KINDS = (
    "button",
    "download_button",
    "selectbox",
    "multiselect",
    "text_input",
    "toggle",
    "radio",
    "select_slider",
    "metric",
    "expander",
    "page_link",
    "button_group",
)


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _markdown():
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def _rendered_text(md, source: str) -> str:
    """What a reader sees of `source` rendered as markdown: the HTML's text, entities decoded."""
    out = md.render(source)
    assert "<img" not in out and "<a " not in out, out
    return html.unescape(re.sub(r"<[^>]+>", "", out)).strip()


# ---- escaping -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_renders_as_itself(text) -> None:
    """Rendered, escaped text reads as the text itself (an invisible word joiner aside), with no markup,
    no image, no link, and no bare URL or e-mail address left for GFM to turn into a link."""
    md = _markdown()
    shown = _rendered_text(md, md_escape(text))
    assert shown.replace(WORD_JOINER, "") == text
    assert "://" not in shown and "www." not in shown.lower() and not re.search(r"@\w", shown)
    assert (
        _rendered_text(md, f"Run {md_escape(text)} (failed)").replace(WORD_JOINER, "")
        == f"Run {text} (failed)"
    )
    assert _rendered_text(md, md_code(text)) == text
    assert _rendered_text(md, md_code_block(text + "\n```\n" + text)) == text + "\n```\n" + text


def _hostile_runs(root: Path) -> dict[str, str]:
    """Two failed SAGE-like runs named IMG and BOLD, with hostile status messages and tokens."""
    from workbench.store import RunWriter

    ids = {}
    for name in (IMG, BOLD):
        writer = RunWriter.create(
            root,
            name=name,
            config={"method": "sage", "model": "tiny-llama", "task": IMG, "method_options": {}},
            environment={"device": "cpu"},
        )
        writer.add(
            "metrics", [{"step": s, "split": "train", "name": "loss", "value": 1 / s} for s in (1, 2, 3)]
        )
        tokens = [IMG, " ", BOLD, "<img src=x>", ":red[x]", "$"]
        writer.add(
            "saliency",
            [
                {
                    "step": 1,
                    "sample": 0,
                    "layer": layer,
                    "position": i,
                    "token": t,
                    "score": 0.1,
                    "selected": i % 2 == 0,
                }
                for layer in (0, 1)
                for i, t in enumerate(tokens)
            ],
        )
        writer.finish("failed", message=f"{IMG} <img src=x onerror=alert(1)> {BOLD}")
        ids[name] = writer.id
    return ids


def _strings(at) -> list[tuple[str, str]]:
    """(kind, text) of every element whose text or label Streamlit renders as markdown."""
    out = []
    for kind in TEXT_KINDS:
        out += [(kind, str(el.value)) for el in at.get(kind)]
    for kind in LABEL_KINDS:
        for el in at.get(kind):
            proto = getattr(el, "proto", None)
            for text in (
                getattr(el, "label", None),
                getattr(proto, "label", None),
                getattr(proto, "help", None),
            ):
                if isinstance(text, str) and text:
                    out.append((kind, text))
    return out


@pytest.mark.parametrize(
    "page", ("runs", "saliency", "blocks", "tradeoffs", "compare", "memory", "gradients")
)
def test_run_names_messages_and_tokens_are_text(page, tmp_path, make_app) -> None:
    """A run named `![](http://example.com/x.png)` (and one with bold and a link) renders no image and no
    link anywhere: every markdown body holds its escaped text; its status message and tokens likewise."""
    md = _markdown()
    ids = _hostile_runs(tmp_path / "runs")
    for name, run_id in ids.items():
        at = make_app(tmp_path / "runs", page, run=run_id)
        no_exception(at)
        strings = _strings(at)
        for kind, text in strings:
            assert not re.search(r"(?<!\\)!\[", text), (kind, text)
            _rendered_text(md, text)  # asserts: no <img>, no <a>
            assert "<strong>bold" not in md.render(text), (kind, text)
        if page in ("runs", "saliency", "blocks"):  # the name is shown, escaped
            assert any(md_escape(name) in text for _, text in strings), strings
    at = make_app(tmp_path / "runs", "runs", run=ids[IMG])
    warnings = " ".join(str(e.value) for e in at.error)
    assert md_escape(f"{IMG} <img src=x onerror=alert(1)>") in warnings  # the reason, as text


# ---- the runs directory box -----------------------------------------------------------------------------


def _runs_dir_box(at, value: str):
    at.sidebar.text_input(key="runs_dir").set_value(value).run()
    return at


def _listed(at) -> set[str]:
    """The ids of the runs the sidebar lists (its run picker's choices)."""
    return set(at.session_state["_workbench_context"].readable["id"])


def _copy_run(runs_dir: Path, run_id: str, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    shutil.copytree(runs_dir / run_id, to / run_id)


def test_a_dir_outside_the_start_dir_is_refused(runs_dir, run_ids, tmp_path, make_app) -> None:
    root = tmp_path / "root"
    _copy_run(runs_dir, run_ids["lora"], root)
    outside = tmp_path / "elsewhere"
    _copy_run(runs_dir, run_ids["sage"], outside)
    (root / "link-out").symlink_to(outside)
    at = make_app(root)
    no_exception(at)
    assert run_ids["lora"] in str(at.sidebar.selectbox(key="run").value)
    for value in (str(outside), str(root / ".." / "elsewhere"), str(root / "link-out"), "/", "\x00"):
        _runs_dir_box(at, value)
        no_exception(at)
        errors = " ".join(str(e.value) for e in at.error)
        assert "outside the runs directory this app was started on" in errors, value
        assert "--allow-any-dir" in errors
        assert not _listed(at) and not at.dataframe and not at.get("plotly_chart"), value
    _runs_dir_box(at, str(root))  # back home
    assert not at.error and _listed(at) == {run_ids["lora"]}


def test_a_subdirectory_of_the_start_dir_is_opened(runs_dir, run_ids, tmp_path, make_app) -> None:
    root = tmp_path / "root"
    _copy_run(runs_dir, run_ids["lora"], root)
    _copy_run(runs_dir, run_ids["smt"], root / "study")
    at = make_app(root)
    for value in (str(root / "study"), str(root / "study" / ".." / "study"), ""):
        _runs_dir_box(at, value)
        no_exception(at)
        assert not at.error, value
    assert _listed(at) == {run_ids["lora"]}  # the empty box: the start dir
    _runs_dir_box(at, str(root / "study"))
    assert _listed(at) == {run_ids["smt"]}


def test_allow_any_dir_lets_the_box_open_any_dir(runs_dir, run_ids, tmp_path, make_app, monkeypatch) -> None:
    """`streamlit run app.py -- --runs-dir DIR --allow-any-dir`: the flag is read from sys.argv as
    --runs-dir is, and lifts the restriction."""
    from workbench.app.options import app_options

    assert app_options(["--runs-dir", "x", "--allow-any-dir"]).allow_any_dir
    assert not app_options(["--runs-dir", "x"]).allow_any_dir
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    _copy_run(runs_dir, run_ids["lora"], root)
    _copy_run(runs_dir, run_ids["sage"], outside)
    monkeypatch.setattr(sys, "argv", ["app.py", "--runs-dir", str(root), "--allow-any-dir"])
    at = make_app(root)
    _runs_dir_box(at, str(outside))
    no_exception(at)
    assert not at.error and _listed(at) == {run_ids["sage"]}


def test_the_start_dir_comes_from_argv(runs_dir, run_ids, tmp_path, monkeypatch) -> None:
    """Unseeded, as in a browser session: the box starts on --runs-dir and stays inside it."""
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "root"
    _copy_run(runs_dir, run_ids["lora"], root)
    monkeypatch.setattr(sys, "argv", ["app.py", "--runs-dir", str(root)])
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=120).run()
    no_exception(at)
    assert at.sidebar.text_input(key="runs_dir").value == str(root)
    assert _listed(at) == {run_ids["lora"]}
    _runs_dir_box(at, str(runs_dir))
    assert "outside the runs directory" in " ".join(str(e.value) for e in at.error)


# ---- the study's app child ------------------------------------------------------------------------------

CHILD = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(120)"
STUBBORN = (
    "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path(sys.argv[1]).touch(); time.sleep(120)"
)


def _serve_fake_app(monkeypatch, tmp_path, code: str, signum: int) -> tuple[int, subprocess.Popen, float]:
    """serve_app with a fake app child (`code`), `signum` sent to this process once the child runs."""
    from workbench.orchestration import study

    ready = tmp_path / f"ready-{signum}"
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def popen(command):
        assert "--server.fileWatcherType" in command
        child = real_popen([sys.executable, "-c", code, str(ready)])
        started.append(child)
        return child

    def send() -> None:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(study.subprocess, "Popen", popen)
    before = signal.getsignal(signum)
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    start = time.monotonic()
    code_ = study.serve_app(tmp_path, port=8799)
    took = time.monotonic() - start
    sender.join(5)
    assert signal.getsignal(signum) == before  # the study's handlers are put back
    return code_, started[0], took


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_the_app_child_stops_with_the_study(name, monkeypatch, tmp_path) -> None:
    signum = getattr(signal, name)
    code, child, took = _serve_fake_app(monkeypatch, tmp_path, CHILD, signum)
    assert child.poll() is not None, "the app child still runs"
    assert child.returncode == -signal.SIGTERM  # terminated by the study
    assert code == (0 if signum == signal.SIGINT else 128 + signum)
    assert took < 20


def test_an_app_child_that_ignores_sigterm_is_killed(monkeypatch, tmp_path) -> None:
    from workbench.orchestration import study

    monkeypatch.setattr(study, "APP_STOP_GRACE_SECONDS", 0.5)
    code, child, _ = _serve_fake_app(monkeypatch, tmp_path, STUBBORN, signal.SIGTERM)
    assert child.returncode == -signal.SIGKILL
    assert code == 128 + signal.SIGTERM
