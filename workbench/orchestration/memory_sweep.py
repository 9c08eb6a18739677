"""Memory scaling sweep: one forward + backward per (sequence length, batch size) point, no training.

    result = run_memory_sweep(config, lengths=[64, 128, 256, 512], batch_sizes=[1, 4, 8, 16])

The method is prepared once (its selection phases run on the task's training batches, as in a run),
then every point runs a training-mode forward (the method's forward context) and backward on a batch of
exactly `length` real tokens per example and records, into the run's `sweep` table:
- source logical: saved_activations (bytes autograd saved for backward, exact, any device) and the
  static categories params_frozen, params_trainable, gradients (after the backward);
- on GPU, source allocator: max_allocated / max_reserved of the point; source device: nvml_used.
A point that runs out of memory (torch.OutOfMemoryError, a RuntimeError saying "out of memory", or
saved activations above `cap_bytes`: a logical cap that simulates a smaller device, on CPU too) is one
row with status "oom" and null bytes, as the SAGE paper's Fig. 4 marks them, and the sweep goes on.

Batches: real token ids from the task, each example encoded as in training (prompt truncated from the
left, gold answer kept) and, when shorter, preceded by real prompt tokens of other examples up to the
length (so every position is a real token: SAGE's budget depends on real tokens); or synthetic
(uniform random ids, the last token the answer). The run's manifest config carries kind "memory-sweep".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from workbench.config import RunConfig
from workbench.data import Batch, collate, encode_example, pad_token_id
from workbench.data.batch import IGNORE_INDEX
from workbench.memory.point import measure_point
from workbench.orchestration.assembly import prepare_method, setup_run, train_stream
from workbench.orchestration.signals import raise_if_stopped, stop_on_signals
from workbench.store import RunWriter, environment_info
from workbench.validation import require

KIND = "memory-sweep"  # manifest config["kind"] of a sweep run


@dataclass
class MemorySweepResult:
    """Where the memory-sweep run is and what it found."""

    run_id: str
    run_dir: str
    summary: dict[str, Any]


def run_memory_sweep(
    config: RunConfig,
    lengths: Sequence[int],
    batch_sizes: Sequence[int],
    *,
    synthetic: bool = False,
    cap_bytes: int | None = None,
    progress: bool = True,
) -> MemorySweepResult:
    """Measure every (length, batch size) point for `config`'s method and model into a new run."""
    _check(lengths, batch_sizes, cap_bytes)
    setup = setup_run(config)
    model, tok, cfg = setup.loaded.model, setup.loaded.tokenizer, config.train
    limit = getattr(model.config, "max_position_embeddings", None)
    require(
        limit is None or max(lengths) <= limit,
        f"length {max(lengths)} exceeds the model's {limit} positions",
    )
    writer = RunWriter.create(
        config.runs_dir,
        name=f"{KIND}-{config.display_name}",
        config=memory_sweep_config(config, lengths, batch_sizes, synthetic=synthetic, cap_bytes=cap_bytes),
        environment={**environment_info(setup.device), "inputs": setup.inputs},
    )
    with stop_on_signals(), writer:
        torch.manual_seed(cfg.seed)
        make = (
            _synthetic_batch(model.config.vocab_size, cfg.seed) if synthetic else _task_batch(setup.task, tok)
        )
        if synthetic:
            prep: Iterator[Batch] = (
                make(cfg.max_length, cfg.batch_size).to(setup.device) for _ in itertools.count()
            )
        else:
            prep = train_stream(setup)
        prepare_method(setup, prep)  # the same assembly as a training run, without recorders
        model.train()
        points = list(itertools.product(lengths, batch_sizes))
        counts = {"ok": 0, "oom": 0}
        largest = 0
        for length, batch_size in tqdm(points, desc=f"memory sweep {config.method}", disable=not progress):
            raise_if_stopped()
            batch = make(length, batch_size).to(setup.device)
            measured = measure_point(model, setup.method, batch, setup.device, cap_bytes)
            counts["oom" if measured is None else "ok"] += 1
            point = {"method": config.method, "length": length, "batch_size": batch_size}
            if measured is None:
                writer.add("sweep", {**point, "status": "oom"})
            else:
                largest = max(largest, measured[("logical", "saved_activations")])
                writer.add(
                    "sweep",
                    [
                        {**point, "status": "ok", "source": s, "category": c, "bytes": b}
                        for (s, c), b in measured.items()
                    ],
                )
            writer.flush()  # one point at a time: a sweep killed by a real OOM keeps the points before it
        summary = {
            "kind": KIND,
            "points": len(points),
            "oom_points": counts["oom"],
            "max_saved_activations_bytes": largest,
        }
        writer.update_summary(**summary)
        writer.finish("completed")
    return MemorySweepResult(writer.run_id, str(writer.run_dir), writer.summary)


def memory_sweep_config(
    config: RunConfig,
    lengths: Sequence[int],
    batch_sizes: Sequence[int],
    *,
    synthetic: bool = False,
    cap_bytes: int | None = None,
) -> dict[str, Any]:
    """The manifest config of a memory-sweep run: the run's config, its kind and the sweep's points (what
    `workbench.orchestration.sweeps.run_key` hashes to find a completed sweep with the same settings)."""
    sweep = {"lengths": list(lengths), "batch_sizes": list(batch_sizes), "synthetic": synthetic}
    return {**config.to_dict(), "kind": KIND, "sweep": {**sweep, "cap_bytes": cap_bytes}}


def _check(lengths: Sequence[int], batch_sizes: Sequence[int], cap_bytes: int | None) -> None:
    require(bool(lengths) and min(lengths) >= 2, f"sweep lengths must be >= 2, got {list(lengths)}")
    require(
        bool(batch_sizes) and min(batch_sizes) >= 1,
        f"sweep batch sizes must be >= 1, got {list(batch_sizes)}",
    )
    require(cap_bytes is None or cap_bytes > 0, f"sweep cap_bytes must be > 0, got {cap_bytes}")


def _synthetic_batch(vocab_size: int, seed: int):
    """Batches of uniform random ids whose last token is the answer."""
    generator = torch.Generator().manual_seed(seed)

    def make(length: int, batch_size: int) -> Batch:
        ids = torch.randint(vocab_size, (batch_size, length), generator=generator)  # (B, n)
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[:, -1] = ids[:, -1]
        return Batch(ids, torch.ones_like(ids), labels, tuple(range(batch_size)))

    return make


def _task_batch(task: Any, tokenizer: Any):
    """Batches of exactly `length` real tokens per example from the task's training examples."""
    examples = task.train
    prompts = itertools.cycle(examples)
    filler: list[int] = []  # real prompt tokens of the task, in order, grown on demand

    def make(length: int, batch_size: int) -> Batch:
        rows = []
        for i in range(batch_size):
            ids, labels = encode_example(tokenizer, examples[i % len(examples)], length)
            missing = length - len(ids)
            while len(filler) < missing:
                filler.extend(tokenizer(next(prompts).prompt, add_special_tokens=False)["input_ids"])
            rows.append((filler[:missing] + ids, [IGNORE_INDEX] * missing + labels))
        return collate(rows, pad_token_id(tokenizer))

    return make
