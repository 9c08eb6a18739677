"""The Ray engine of sweeps (issue 18, part 1): a local 2-CPU Ray runs the same runs as the serial engine."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from workbench.errors import ConfigError
from workbench.orchestration import ray_engine
from workbench.orchestration.sweeps import format_summary, parse_grid, run_grid, run_key, summary_rows
from workbench.store import list_runs

ray = pytest.importorskip("ray", reason="the ray extra: pip install 'workbench[ray]'")

CLI = [sys.executable, "-m", "workbench"]


def grid(task: str, **extra) -> dict:
    return {
        "name": "g",
        "model": "tiny-llama",
        "task": task,
        "resources": {"cpus": 1},
        "train": {"steps": 3, "batch_size": 4, "eval_examples": 8, "max_length": 32},
        "record": {"saliency": False, "fidelity": False},
        "methods": {"lora": {"r": [2, 4]}, "full": {"train": {"lr": [1e-4, 1e-3]}}},
        **extra,
    }


def _comparable(result) -> list[dict]:
    rows = summary_rows(result)
    return [{k: r[k] for k in ("point", "status", "accuracy", "trainable_parameters")} for r in rows]


def test_the_ray_engine_runs_the_grid_the_serial_engine_runs(tiny_task, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray workers run each point on 1 thread (resources.cpus = 1)
    try:
        t0 = time.perf_counter()
        serial = run_grid(grid(tiny_task), tmp_path / "serial", progress=False)
        t1 = time.perf_counter()
        before = signal.getsignal(signal.SIGTERM)
        on_ray = run_grid(grid(tiny_task), tmp_path / "ray", progress=False, engine="ray")
        t2 = time.perf_counter()
        assert signal.getsignal(signal.SIGTERM) is before  # Ray's own handler does not outlive the sweep
    finally:
        torch.set_num_threads(threads)
    print(f"4-point tiny grid: serial {t1 - t0:.1f} s, ray (local, 2 CPUs) {t2 - t1:.1f} s")
    assert [o.action for o in on_ray.outcomes] == ["ran"] * 4
    assert _comparable(on_ray) == _comparable(serial)
    keys = [{run_key(e.reader.config) for e in list_runs(tmp_path / d)} for d in ("serial", "ray")]
    assert keys[0] == keys[1] and len(keys[0]) == 4
    assert not list((tmp_path / "ray" / ".claims").iterdir())  # every worker released its claim
    assert format_summary(on_ray).splitlines()[-1] == format_summary(serial).splitlines()[-1]
    again = run_grid(grid(tiny_task), tmp_path / "ray", progress=False, engine="ray")
    assert [o.action for o in again.outcomes] == ["reused"] * 4  # resumable like the serial engine


def test_a_point_no_node_can_hold_is_recorded_not_schedulable_and_the_others_run(tiny_task, tmp_path):
    data = grid(tiny_task, methods={"lora": {"r": 2}, "full": {"resources": {"gpus": 1}}})
    result = run_grid(data, tmp_path, progress=False, engine="ray")
    assert [o.action for o in result.outcomes] == ["ran", "failed"]
    assert result.outcomes[1].error.startswith("not schedulable: it asks for gpus = 1")
    assert "failed" in format_summary(result)


def test_resources_are_checked_and_stay_out_of_the_run_key(tiny_task):
    points = parse_grid(grid(tiny_task, methods={"lora": {"resources": {"cpus": 2, "gpus": 0.5}}})).points
    assert (points[0].resources.cpus, points[0].resources.gpus) == (2, 0.5)
    plain = parse_grid(grid(tiny_task, methods=["lora"])).points[0]
    assert points[0].key == plain.key
    for bad, message in [
        ({"cpus": 0}, "resources.cpus must be a number > 0"),
        ({"gpus": -1}, "resources.gpus must be a number >= 0"),
        ({"tpus": 1}, "unknown resource(s) tpus"),
        (3, "resources must be a table"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_grid(grid(tiny_task, resources=bad))


def test_bad_engines_and_addresses_are_one_clear_error(tiny_task, tmp_path):
    with pytest.raises(ConfigError, match="unknown sweep engine 'dask'; choose one of: serial, ray"):
        run_grid(grid(tiny_task), tmp_path, engine="dask")
    with pytest.raises(ConfigError, match="needs --engine ray"):
        run_grid(grid(tiny_task), tmp_path, address="127.0.0.1:6379")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster at 127.0.0.1:9"):
        run_grid(grid(tiny_task), tmp_path, engine="ray", address="127.0.0.1:9")
    assert time.perf_counter() - t0 < 10
    assert not list_runs(tmp_path)


def test_an_address_that_never_answers_is_given_up_after_a_bounded_wait(monkeypatch):
    waited = []

    def silent(target, timeout):  # a host that drops every packet: the connect times out
        waited.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(ray_engine.socket, "create_connection", silent)
    with pytest.raises(ConfigError, match="waited up to 10 s"):
        ray_engine.check_reachable("ray://head.example:10001")
    assert waited == [ray_engine.ADDRESS_TIMEOUT_S]


def test_without_ray_installed_the_engine_says_how_to_get_it(tiny_task, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'workbench\[ray\]'"):
        run_grid(grid(tiny_task), tmp_path, engine="ray")


def test_the_cli_takes_engine_and_address(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('name = "x"\nmethods = ["lora"]\n')
    out = subprocess.run(
        [*CLI, "sweep", "--config", str(path), "--engine", "spark"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "unknown sweep engine 'spark'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
