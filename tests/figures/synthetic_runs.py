"""Synthetic but well-formed runs (every table filled) for the figure tests: fake data, never shipped.

    path = write_synthetic_run("runs", method="smt", seed=1)

They go through the real store writer, so readers see exactly what a real run would produce; they
are marked as synthetic (name prefix "synthetic-", environment {"synthetic": true}) and never train.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from workbench.store import RunWriter

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
WORDS = ("the", "film", "was", "great", "and", "the", "acting", "felt", "true", ".", "Sentiment", ":")


def write_synthetic_run(
    runs_dir: str | os.PathLike[str],
    method: str = "lora",
    *,
    seed: int = 0,
    layers: int = 4,
    steps: int = 5,
    samples: int = 2,
    tokens: int = 12,
    sweep: bool = False,
    status: str = "completed",
    run_id: str | None = None,
) -> Path:
    """Write one synthetic run of `method` and return its directory.

    Tables: metrics, timing, memory, grads always; saliency for sage/tokentune, blocks for smt, rows
    for spsft; `sweep` adds a memory sweep (OOM at the largest sizes). `status` "running" leaves the
    run unfinished (as a crashed run looks once its process is gone).
    """
    rng = np.random.default_rng(seed)
    writer = RunWriter.create(
        runs_dir,
        name=f"synthetic-{method}",
        run_id=run_id,
        config={
            "model": "tiny-llama",
            "task": "synthetic",
            "method": method,
            "method_options": {"r": 16, "budget": 0.01, "seed": seed},
            "train": {"steps": steps, "batch_size": samples},
        },
        environment={"synthetic": True, "device": "cpu"},
    )
    _metrics(writer, rng, steps)
    _memory(writer, rng, steps, layers, method)
    _grads(writer, rng, steps, layers, method)
    last_fidelity = _fidelity(writer, rng, steps, layers, method)
    if method in ("sage", "tokentune"):
        _saliency(writer, rng, steps, layers, samples, tokens)
    if method == "smt":
        _blocks(writer, rng, layers)
    if method == "spsft":
        _rows(writer, rng, layers)
    if sweep:
        _sweep(writer, rng)
    saved = int(rng.integers(2, 9) * 2**20)
    writer.update_summary(
        accuracy_before=0.5,
        accuracy_after=float(np.round(rng.uniform(0.55, 0.9), 3)),
        median_step_seconds=float(rng.uniform(0.05, 0.5)),
        trainable_parameters=int(rng.integers(1_000, 100_000)),
        total_parameters=172_608,
        memory_peak_bytes={
            "saved_activations": saved,
            "total_logical": saved + 3 * 2**20,
            "rss_window_peak": 500 * 2**20,
        },
        fidelity_last=last_fidelity,
        **({"saliency_source": "method"} if method in ("sage", "tokentune") else {}),
    )
    if status == "running":
        writer.flush()
        return writer.path
    writer.finish(status)
    return writer.path


def _metrics(writer: RunWriter, rng: np.random.Generator, steps: int) -> None:
    loss = 6.0 * np.exp(-np.arange(1, steps + 1) / max(steps, 1)) + rng.normal(0, 0.05, steps)
    writer.add("metrics", {"step": np.arange(1, steps + 1), "split": "train", "name": "loss", "value": loss})
    writer.add("metrics", {"step": [0, steps], "split": "eval", "name": "accuracy", "value": [0.5, 0.75]})
    for phase in ("forward", "backward", "optimizer"):
        writer.add(
            "timing",
            {"step": np.arange(1, steps + 1), "phase": phase, "seconds": rng.uniform(0.01, 0.1, steps)},
        )
    writer.add("timing", {"step": [0, steps], "phase": "eval", "seconds": [0.2, 0.2]})


def _memory(writer: RunWriter, rng: np.random.Generator, steps: int, layers: int, method: str) -> None:
    def row(
        step: int,
        layer: int,
        module: str,
        category: str,
        nbytes: int,
        source: str = "logical",
        phase: str = "train",
    ) -> dict[str, Any]:
        return dict(
            step=step, layer=layer, module=module, category=category, bytes=nbytes, source=source, phase=phase
        )

    static = (
        ("params_frozen", 690_432),
        ("params_trainable", 65_536),
        ("gradients", 65_536),
        ("optimizer_state", 131_072),
    )
    rows: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        for layer in range(layers):
            for module in ATTENTION + MLP:
                rows.append(row(step, layer, module, "saved_activations", int(rng.integers(10_000, 60_000))))
        rows.append(row(step, -1, "loss", "saved_activations", 40_000))
        rows += [row(step, -1, "model", category, nbytes) for category, nbytes in static]
        rows.append(row(step, -1, "model", "rss_window_peak", int(5e8), "device"))
    phase = {"smt": "warmup", "spsft": "importance"}.get(method)
    if phase:
        rows.append(row(-1, -1, "model", "rss_window_peak", int(4.5e8), "device", phase))
    writer.add("memory", rows)


def _fidelity(
    writer: RunWriter, rng: np.random.Generator, steps: int, layers: int, method: str
) -> dict[str, float]:
    """Cosine per layer (LoRA, SAGE ...) or coverage and the oracle's (SMT, SPSFT), as the recorder
    writes them; returns the whole-model figures of the last step (the summary's fidelity_last)."""
    stats = ("coverage", "oracle_coverage") if method in ("smt", "spsft") else ("cosine", "rel_error")
    rows, last = [], {}
    for step in range(1, steps + 1):
        for layer, module in [*((layer, "q_proj") for layer in range(layers)), (-1, "model")]:
            values = dict(zip(stats, sorted(rng.uniform(0.3, 1.0, 2)), strict=True))
            if method in ("lora", "full"):
                values = {"cosine": 1.0, "rel_error": 0.0}
            rows += [dict(step=step, layer=layer, module=module, stat=s, value=v) for s, v in values.items()]
            if layer == -1 and step == steps:
                last = values
    writer.add("fidelity", rows)
    return last


def _grads(writer: RunWriter, rng: np.random.Generator, steps: int, layers: int, method: str) -> None:
    part = {
        "lora": ".lora_A",
        "sage": ".lora_A",
        "tokentune": ".lora_A",
        "smt": ".blocks",
        "spsft": ".weight_f",
    }
    rows = [
        dict(
            step=step,
            layer=layer,
            module=module + part.get(method, ""),
            stat=stat,
            value=float(rng.lognormal(-3, 0.5)),
            phase="train",
        )
        for step in range(1, steps + 1)
        for layer in range(layers)
        for module in ATTENTION
        for stat in ("median", "mean", "max", "norm")
    ]
    if method == "smt":
        rows += [
            dict(
                step=0,
                layer=layer,
                module=module,
                stat=stat,
                value=float(rng.lognormal(-6, 0.3)) * (3 if module == "v_proj" else 1),
                phase="warmup",
            )
            for layer in range(layers)
            for module in ("q_proj", "k_proj", "v_proj")
            for stat in ("median", "mean", "max")
        ]
    writer.add("grads", rows)


def _saliency(
    writer: RunWriter, rng: np.random.Generator, steps: int, layers: int, samples: int, tokens: int
) -> None:
    rows = []
    for step in range(1, steps + 1):
        for sample in range(samples):
            n = tokens - sample  # examples of different lengths
            for layer in range(layers):
                score = rng.dirichlet(np.ones(n))
                keep = set(np.argsort(-score)[: max(2, n // 3)].tolist()) | {n - 1}
                for pos in range(n):
                    rows.append(
                        dict(
                            step=step,
                            sample=sample,
                            layer=layer,
                            position=pos,
                            token=WORDS[pos % len(WORDS)],
                            score=float(score[pos]),
                            selected=pos in keep,
                        )
                    )
    writer.add("saliency", rows)


def _blocks(writer: RunWriter, rng: np.random.Generator, layers: int) -> None:
    rows = []
    for layer in range(layers):
        for module in ("q_proj", "k_proj", "v_proj"):
            grid = 4 if module == "q_proj" else 2  # grouped K/V: fewer output rows
            for r in range(grid):
                for c in range(4):
                    score = float(rng.uniform(0, 1)) * (2 if module == "v_proj" else 1)
                    rows.append(
                        dict(
                            step=0,
                            layer=layer,
                            module=module,
                            row_block=r,
                            col_block=c,
                            score=score,
                            selected=score > 1.2,
                        )
                    )
    writer.add("blocks", rows)


def _rows(writer: RunWriter, rng: np.random.Generator, layers: int) -> None:
    rows = []
    for layer in range(layers):
        for module in ("q_proj", "down_proj"):
            scores = rng.lognormal(0, 1, 64)
            chosen = set(np.argsort(-scores)[:8].tolist())
            rows += [
                dict(step=0, layer=layer, module=module, row=i, score=float(s), selected=i in chosen)
                for i, s in enumerate(scores)
            ]
    writer.add("rows", rows)


def _sweep(writer: RunWriter, rng: np.random.Generator) -> None:
    rows = []
    for method, scale in (("lora", 1.0), ("sage", 0.6)):
        for length in (64, 128, 256, 512):
            for batch in (1, 2, 4, 8):
                nbytes = int(scale * length * batch * 40_000)
                if nbytes > 3e7:
                    rows.append(dict(method=method, length=length, batch_size=batch, status="oom"))
                    continue
                for category, value in (
                    ("saved_activations", nbytes),
                    ("params_frozen", 690_432),
                    ("gradients", 65_536),
                ):
                    rows.append(
                        dict(
                            method=method,
                            length=length,
                            batch_size=batch,
                            status="ok",
                            bytes=value,
                            source="logical",
                            category=category,
                        )
                    )
    writer.add("sweep", rows)
