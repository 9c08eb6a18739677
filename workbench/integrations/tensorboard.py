"""A run's scalars in TensorBoard's own format: `workbench export-metrics RUN --to tensorboard DIR`.

    export_metrics(RunReader("runs/<id>"), "tb")     # tb/<id>/events.out.tfevents.*
    # tensorboard --logdir tb

Why TensorBoard (and not MLflow) as the one bridge: its format is plain event files any TensorBoard,
W&B (`wandb sync`) or script reads, with no server or database; torch already ships the writer, and
the optional extra (`pip install 'workbench[tensorboard]'`) is one package, where MLflow brings a web
stack (Flask, SQLAlchemy, Alembic) of its own.

Written, per recorded step: every train / eval metric (`train/loss`, `train/lr`, `eval/accuracy` or
`eval/exact_match` with its interval ends ...), memory by category and source
(`memory/logical/saved_activations` ... in bytes, training steps), step time per phase
(`time/forward` ... in seconds), and gradient norms per layer (`grad_norm/layer_03`: the norm over the
layer's recorded modules, `grad_norm/total`); the run's config and summary as text.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ConfigError, StoreError
from workbench.figures.data import main_rank

if TYPE_CHECKING:
    import pandas as pd

    from workbench.store import RunReader

EXTRA = "pip install 'workbench[tensorboard]'"


def scalars(run: RunReader) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar the export writes, in table order (rank 0's rows of a
    data-parallel run)."""
    out: list[tuple[str, int, float]] = []
    names = run.table_names()
    if "metrics" in names:
        metrics = run.table("metrics")
        metrics = metrics[metrics["split"].isin(["train", "eval"])]
        out += [(f"{r.split}/{r.name}", int(r.step), float(r.value)) for r in metrics.itertuples()]
    if "memory" in names:
        out += _memory(main_rank(run.table("memory")))
    if "timing" in names:
        timing = main_rank(run.table("timing")).groupby(["step", "phase"], as_index=False)["seconds"].sum()
        out += [(f"time/{r.phase}", int(r.step), float(r.seconds)) for r in timing.itertuples()]
    if "grads" in names:
        out += _grad_norms(main_rank(run.table("grads")))
    return [(tag, step, value) for tag, step, value in out if math.isfinite(value)]


def _memory(memory: pd.DataFrame) -> list[tuple[str, int, float]]:
    train = memory[memory["phase"].fillna("train") == "train"]
    totals = train.groupby(["step", "source", "category"], as_index=False)["bytes"].sum()
    return [(f"memory/{r.source}/{r.category}", int(r.step), float(r.bytes)) for r in totals.itertuples()]


def _grad_norms(grads: pd.DataFrame) -> list[tuple[str, int, float]]:
    norms = grads[(grads["stat"] == "norm") & (grads["phase"].fillna("train") == "train")]
    if norms.empty:
        return []
    squares = norms.assign(sq=norms["value"] ** 2)
    per_layer = squares.groupby(["step", "layer"], as_index=False)["sq"].sum()
    total = squares.groupby("step", as_index=False)["sq"].sum()
    out = [(f"grad_norm/{_layer(r.layer)}", int(r.step), math.sqrt(r.sq)) for r in per_layer.itertuples()]
    return out + [("grad_norm/total", int(r.step), math.sqrt(r.sq)) for r in total.itertuples()]


def _layer(layer: int) -> str:
    return "other" if layer < 0 else f"layer_{int(layer):02d}"


def export_metrics(run: RunReader, out: str | os.PathLike[str]) -> Path:
    """Write `run`'s scalars as TensorBoard event files under `out/<run id>/`; returns that directory.

    ConfigError when the tensorboard package is missing (the optional extra), StoreError when `out`
    cannot be written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"the TensorBoard bridge needs the tensorboard package: {EXTRA}") from None
    if not str(out).strip():
        raise ConfigError("name the directory: workbench export-metrics RUN --to tensorboard DIR")
    directory = Path(out) / run.id
    rows = scalars(run)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(log_dir=str(directory))
        try:
            for tag, step, value in rows:
                writer.add_scalar(tag, value, global_step=step)
            writer.add_text("config", _code(run.config))
            writer.add_text("summary", _code(run.summary))
        finally:
            writer.close()
    except OSError as err:
        raise StoreError(f"cannot write TensorBoard files to {directory}: {err.strerror or err}") from None
    return directory


def _code(obj: object) -> str:
    """A JSON block TensorBoard's text tab shows as code (markdown: four-space indent)."""
    text = json.dumps(obj, indent=2, default=str)
    return "\n".join("    " + line for line in text.splitlines())
