"""Content hashes of a run's inputs (workbench.provenance): stable, sensitive, in every manifest."""

from __future__ import annotations

import dataclasses

import torch

from workbench.data import load_task
from workbench.models import load_model
from workbench.provenance import model_sha256, task_sha256


def test_model_hash_is_stable_across_loads_and_kernels_and_sees_one_changed_weight():
    first = load_model("tiny-llama")
    again = load_model("tiny-llama", attn_implementation="sdpa")
    assert model_sha256(first.model) == model_sha256(again.model)
    assert len(model_sha256(first.model)) == 64
    with torch.no_grad():
        next(again.model.parameters()).view(-1)[0] += 1e-3
    assert model_sha256(first.model) != model_sha256(again.model)


def test_task_hash_is_stable_and_sees_a_label_and_the_split(tiny_task):
    task = load_task(tiny_task, seed=0)
    assert task_sha256(task) == task_sha256(load_task(tiny_task, seed=0))
    assert task_sha256(task) != task_sha256(load_task(tiny_task, seed=1))  # another split
    flipped = dataclasses.replace(task.eval[0], label=1 - task.eval[0].label)
    assert task_sha256(task) != task_sha256(dataclasses.replace(task, eval=[flipped, *task.eval[1:]]))


def test_every_manifest_records_versions_commit_and_input_hashes(tiny_task, tmp_path):
    from workbench.config import RunConfig
    from workbench.orchestration.assembly import config_inputs
    from workbench.orchestration.train import train
    from workbench.store import RunReader

    config = RunConfig.from_dict(
        {
            "model": "tiny-llama",
            "task": tiny_task,
            "method": "lora",
            "runs_dir": str(tmp_path),
            "train": {"steps": 1, "batch_size": 2, "eval_examples": 2},
        }
    )
    env = RunReader(train(config, progress=False).run_dir).environment
    assert {"torch", "transformers", "peft", "workbench", "workbench_checkout"} <= set(env)
    assert env["inputs"] == config_inputs(config)  # what a sweep predicts is what the run recorded
    assert set(env["inputs"]) == {"task_sha256", "task_file_sha256", "model_sha256"}
