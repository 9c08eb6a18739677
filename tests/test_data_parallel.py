"""Data-parallel runs (issue 18, part 3): `torchrun --nproc-per-node 2 -m workbench run` on the CPU (gloo)
is one run whose gradients equal a single process's on the two ranks' batches together."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from workbench.config import RecordConfig, RunConfig, TrainConfig
from workbench.data.batch import IGNORE_INDEX, Batch
from workbench.errors import ConfigError
from workbench.lm import answer_loss
from workbench.orchestration.assembly import prepare_method, setup_run, train_stream
from workbench.orchestration.distributed import DataParallel
from workbench.recorders.grads import grad_label
from workbench.store import list_runs

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun (comes with torch) not found")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(task: str, runs_dir, method: str) -> RunConfig:
    return RunConfig(
        model="tiny-llama",
        task=task,
        method=method,
        runs_dir=str(runs_dir),
        train=TrainConfig(steps=2, batch_size=4, max_length=32, eval_examples=8, max_grad_norm=0.0),
        record=RecordConfig(grads_every=1, saliency=False, fidelity=False),
    )


def _torchrun(config: RunConfig, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "run.toml"
    t = config.train
    path.write_text(
        f'model = "{config.model}"\ntask = "{config.task}"\nmethod = "{config.method}"\n'
        f"[train]\nsteps = {t.steps}\nbatch_size = {t.batch_size}\nmax_length = {t.max_length}\n"
        f"eval_examples = {t.eval_examples}\nmax_grad_norm = {t.max_grad_norm}\n"
        "[record]\ngrads_every = 1\nsaliency = false\nfidelity = false\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [TORCHRUN, "--nproc-per-node", "2", "--master-port", str(_port()), "-m", "workbench", "run"]
    command += ["--config", str(path), "--runs-dir", config.runs_dir, "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _concatenated(a: Batch, b: Batch) -> Batch:
    """The two ranks' batches as one (right padding to the longer)."""
    n = max(a.input_ids.shape[1], b.input_ids.shape[1])

    def pad(x: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, n - x.shape[1]), value=value)

    return Batch(
        torch.cat([pad(a.input_ids, 0), pad(b.input_ids, 0)]),
        torch.cat([pad(a.attention_mask, 0), pad(b.attention_mask, 0)]),
        torch.cat([pad(a.labels, IGNORE_INDEX), pad(b.labels, IGNORE_INDEX)]),
    )


def _single_process_norms(config: RunConfig) -> dict[tuple[int, str], float]:
    """Step 1's gradient norms per (block, module) of one process on rank 0's and rank 1's batches."""
    setup = setup_run(config)
    torch.manual_seed(config.train.seed)
    batches = train_stream(setup)
    prepare_method(setup, batches)
    first, second = next(batches), next(batches)
    assert first.labels.ne(IGNORE_INDEX).sum() == second.labels.ne(IGNORE_INDEX).sum()  # same answer tokens
    answer_loss(setup.loaded.model, _concatenated(first, second)).backward()
    groups: dict[tuple[int, str], list[torch.Tensor]] = {}
    for name, p in setup.method.trainable_parameters().items():
        groups.setdefault(grad_label(name), []).append(p.grad.flatten())
    return {label: float(torch.cat(g).norm()) for label, g in groups.items()}


def _even_task(path) -> str:
    """Answers of one length (the tiny tokenizer reads characters), so every batch has as many answer
    tokens and the mean over the ranks' batch means is the mean over both batches."""
    words = [" red", " tan"]
    lines = [
        json.dumps({"prompt": f"{words[i % 2].strip()} sky {i % 7}. colour:", "answer": words[i % 2]})
        for i in range(64)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("method", ["lora", "smt"])
def test_two_gloo_processes_are_one_run_with_the_gradient_of_both_batches(tmp_path, method):
    config = _config(_even_task(tmp_path / "even.jsonl"), tmp_path / "runs", method)
    out = _torchrun(config, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (entry,) = list_runs(tmp_path / "runs")  # one run, made by rank 0
    run = entry.reader
    assert run.status == "completed"
    assert run.manifest["environment"]["data_parallel"] == {"world_size": 2, "backend": "gloo"}
    grads = run.table("grads").query("step == 1 and stat == 'norm' and phase == 'train'")
    assert set(grads["rank"]) == {0, 1}
    by_rank = [g.set_index(["layer", "module"])["value"].sort_index() for _, g in grads.groupby("rank")]
    assert by_rank[0].equals(by_rank[1])  # after the all-reduce every rank holds the same gradient
    expected = _single_process_norms(config)
    recorded = {(int(layer), module): value for (layer, module), value in by_rank[0].items()}
    assert recorded.keys() == expected.keys()
    for label, value in expected.items():
        assert recorded[label] == pytest.approx(value, rel=1e-5), label
    memory = run.table("memory")
    peaks = memory.query("source == 'device' and phase == 'train'")
    assert set(peaks["rank"]) == {0, 1}  # each process's own device peak
    assert set(run.table("timing")["rank"]) == {0, 1}
    assert set(run.table("metrics").query("split == 'eval'")["step"]) == {0, 2}  # rank 0 evaluated
    assert run.summary["accuracy_after"] is not None


def test_the_environment_is_read_and_checked():
    assert DataParallel.from_environment({}) is None
    assert DataParallel.from_environment({"WORLD_SIZE": "1"}) is None
    dp = DataParallel.from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (dp.rank, dp.world_size, dp.local_rank, dp.main) == (3, 4, 1, False)
    with pytest.raises(ConfigError, match="must be integers"):
        DataParallel.from_environment({"WORLD_SIZE": "two"})
    with pytest.raises(ConfigError, match="do not fit WORLD_SIZE 2"):
        DataParallel.from_environment({"WORLD_SIZE": "2", "RANK": "2"})


def test_a_method_that_cannot_run_data_parallel_is_one_error():
    class Stateful:
        name = "stateful"
        data_parallel = False

    dp = DataParallel(0, 2, 0)
    with pytest.raises(ConfigError, match="method 'stateful' cannot run data-parallel"):
        dp.check_method(Stateful())
