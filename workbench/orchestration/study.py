"""The default study: every method on one model and task, one table of ratios to LoRA.

    result = run_study("default", "runs/study")       # every registered method, resumable
    print(study_markdown(result))                        # accuracy, memory, time, params vs LoRA

`workbench study` runs it and then serves the app on its runs; analyses/study.py writes the table to
analyses/out/study.md. Sizes (STUDY_SIZES): "smoke" (tiny-llama, seconds: tests), "default" (the
default model smollm2-135m on polarity, about 15 minutes on 2 CPU cores) and "full" (a GPU).
Paper-figure scripts (analyses/) build their grids on the same sizes, so their runs reuse the study's.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.comparisons import BASELINE
from workbench.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from workbench.orchestration.sweeps import Grid, MethodEntry, SweepResult
    from workbench.store import RunReader


@dataclass(frozen=True)
class StudySize:
    """The settings of one study size; `methods` holds per-method option / train overrides."""

    model: str
    task: str
    train: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> {options, "train": {}}
    note: str = ""  # the run budget, said in the study table and the docs


STUDY_SIZES: dict[str, StudySize] = {
    # seconds on tiny-llama (random weights: accuracy means nothing); used by the tests
    "smoke": StudySize(
        model="tiny-llama",
        task="polarity",
        train={"steps": 2, "batch_size": 4, "max_length": 64, "eval_examples": 8, "eval_batch_size": 8},
        record={"saliency_every": 1, "grads_every": 1, "probe_examples": 2},
        methods={"smt": {"warmup_steps": 2}, "spsft": {"rank": 8}},
        note="2 steps of batch 4, 8 eval examples per run",
    ),
    # the default model on this 2-core CPU machine: ~1.5 s a step, ~30 s per 100 eval examples
    "default": StudySize(
        model="smollm2-135m",
        task="polarity",
        train={"steps": 30, "batch_size": 8, "max_length": 128, "eval_examples": 100, "eval_batch_size": 16},
        record={"saliency_every": 10, "grads_every": 10},
        # 30 steps are few: the LoRA-based methods (one adapter, one lr) at 2.5x LoRA's default 2e-4 move
        # accuracy above the base model's (80% -> 84% on these 100 examples; at 2e-4 it stays at 80%)
        methods={
            "lora": {"train": {"lr": 5e-4}},
            "velora": {"train": {"lr": 5e-4}},
            "sage": {"train": {"lr": 5e-4}},
            "tokentune": {"train": {"lr": 5e-4}},
            "smt": {"warmup_steps": 10},
        },
        note=(
            "30 steps of batch 8, 100 eval examples before and after per run, LoRA / VeLoRA / SAGE / "
            "TokenTune at lr 5e-4, the others at their default lr: about 15 min on 2 quiet CPU cores"
        ),
    ),
    # a GPU: paper-like lengths of training and evaluation
    "full": StudySize(
        model="smollm2-135m",
        task="polarity",
        train={"steps": 300, "batch_size": 16, "max_length": 128, "eval_examples": 1000, "eval_every": 100},
        record={"saliency_every": 50, "grads_every": 50, "grads_frozen": True},
        methods={"smt": {"warmup_steps": 100}},
        note="300 steps of batch 16, 1000 eval examples per run: minutes each on one GPU",
    ),
}


# The practitioner's alternatives, run beside every registered method (entry label -> method, entry
# settings): LoRA with gradient checkpointing (the memory baseline a sparse backward must beat) and
# SAGE with it. The kernel is the study's train.attn (sdpa) for every entry, so ratios are like for like.
STUDY_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "lora-checkpointing": ("lora", {"train": {"gradient_checkpointing": True}}),
    "sage-checkpointing": ("sage", {"train": {"gradient_checkpointing": True}}),
}


def study_size(size: str) -> StudySize:
    """The StudySize named `size` (ConfigError listing the sizes otherwise)."""
    if size not in STUDY_SIZES:
        raise ConfigError(f"unknown study size {size!r}; sizes: {', '.join(STUDY_SIZES)}")
    return STUDY_SIZES[size]


def default_runs_dir(size: str) -> str:
    """Where a study (and the analyses) of `size` keep their runs: runs/study, runs/study-smoke ..."""
    from workbench.store.schema import DEFAULT_RUNS_DIR

    return f"{DEFAULT_RUNS_DIR}/study" if size == "default" else f"{DEFAULT_RUNS_DIR}/study-{size}"


def method_entry(size: str, method: str, label: str | None = None, **options: Any) -> MethodEntry:
    """A sweep entry for `method` with the size's overrides for it, then `options` (a "train" key
    holds train settings for this entry only)."""
    from workbench.orchestration.sweeps import MethodEntry

    base = copy.deepcopy(study_size(size).methods.get(method, {}))
    train = {**base.pop("train", {}), **options.pop("train", {})}
    record = {**base.pop("record", {}), **options.pop("record", {})}
    return MethodEntry(label or method, method, {**base, **options}, train, record)


def size_grid(
    size: str,
    name: str,
    entries: list[MethodEntry],
    *,
    model: str | None = None,
    task: str | None = None,
    train: dict[str, Any] | None = None,
    record: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
) -> Grid:
    """A sweep Grid on a study size's model, task and settings (`train` / `record` update them)."""
    from workbench.orchestration.sweeps import build_grid

    spec = study_size(size)
    return build_grid(
        name,
        entries,
        model=model or spec.model,
        task=task or spec.task,
        train={**spec.train, **(train or {})},
        record={**spec.record, **(record or {})},
        seeds=seeds,
    )


def study_methods() -> list[str]:
    """Every registered method, the LoRA baseline first (a new method joins the study by itself)."""
    from workbench.methods import METHODS

    names = list(METHODS)
    return [BASELINE] + [m for m in names if m != BASELINE]


def study_grid(size: str = "default", *, model: str | None = None, task: str | None = None) -> Grid:
    """The study's sweep: every method once, then the STUDY_VARIANTS, at `size`."""
    entries = [method_entry(size, m) for m in study_methods()]
    for label, (method, settings) in STUDY_VARIANTS.items():
        entries.append(method_entry(size, method, label, **copy.deepcopy(settings)))
    return size_grid(size, "study", entries, model=model, task=task)


@dataclass
class StudyResult:
    """The study's sweep result, its runs dir and its table (`study_table`)."""

    size: str
    runs_dir: str
    sweep: SweepResult
    table: pd.DataFrame


def run_study(
    size: str = "default",
    runs_dir: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    task: str | None = None,
    progress: bool = True,
    rerun: bool = False,
) -> StudyResult:
    """Run (or reuse) every method at `size` in `runs_dir` (default: `default_runs_dir(size)`) under
    one progress bar, and tabulate them against LoRA. `rerun` runs them all again (e.g. to measure
    step times again on a quiet machine)."""
    from workbench.orchestration.sweeps import run_grid

    runs_dir = str(runs_dir or default_runs_dir(size))
    result = run_grid(study_grid(size, model=model, task=task), runs_dir, progress=progress, rerun=rerun)
    return StudyResult(size, runs_dir, result, study_table(result.runs))


# ---- the table ----------------------------------------------------------------------------------------


def study_table(runs: list[RunReader], baseline: str = BASELINE) -> pd.DataFrame:
    """One row per run: method, key options, setup and the values of
    `workbench.comparisons.RATIO_COLUMNS` (accuracy, saved activations, their live peak, total logical
    memory, step time, trainable parameters), each also as a ratio to the `baseline` run on the same
    attention kernel without checkpointing."""
    from workbench.comparisons import ratio_table
    from workbench.store.summary import runs_frame

    return ratio_table(runs_frame(runs), baseline)


def _value(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column in ("saved_activations", "saved_peak", "total_logical"):
        return f"{value / 2**20:,.1f} MiB"
    if column == "step_time":
        return f"{value:.2f} s"
    return f"{int(value):,}"


def _ratio(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}x"


def markdown_table(table: pd.DataFrame, baseline: str = BASELINE) -> str:
    """`study_table` as markdown: each cell "value (ratio to the baseline)", the accuracy with its 95%
    interval "84.0% [75.6, 89.9]"."""
    from workbench.comparisons import RATIO_COLUMNS
    from workbench.report import format_accuracy

    head = ["method", "options", "attention, checkpointing"] + [label for _, label in RATIO_COLUMNS.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells = [str(row["method"]), str(row["key_options"] or "-"), str(row["setup"])]
        for column in RATIO_COLUMNS:
            if column == "accuracy":
                value = format_accuracy(row["accuracy"], (row["accuracy_low"], row["accuracy_high"]))
            else:
                value = _value(column, row[column])
            cells.append(f"{value} ({_ratio(row[f'{column}_vs_{baseline}'])})")
        if row["status"] != "completed":
            cells[0] += f" ({row['status']})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_markdown(result: StudyResult, *, command: str | None = None) -> str:
    """The study's results page (analyses/out/study.md): settings, the table and how to remake it."""
    spec = study_size(result.size)
    runs = result.sweep.runs
    config = runs[0].config if runs else {}
    train = config.get("train", spec.train)
    before = result.table["accuracy_before"].dropna()
    device = runs[0].environment.get("device", "?") if runs else "?"
    command = command or f"workbench study --size {result.size} --no-app"
    lines = [
        f"# Study: every method on {config.get('model', spec.model)} / {config.get('task', spec.task)}",
        "",
        f"Regenerate: `{command}` (runs in `{result.runs_dir}`; completed runs there are reused, "
        "`--rerun` measures them again).",
        "",
        f"Size `{result.size}` ({len(runs)} runs; {spec.note}). Each run: {train.get('steps')} steps "
        f"of batch {train.get('batch_size')}, max length {train.get('max_length')}, accuracy on "
        f"{train.get('eval_examples')} held-out examples"
        + (f" (before training: {100 * before.iloc[0]:.1f}%)" if len(before) else "")
        + f"; device {device}.",
        "",
        f"Each cell: the value (its ratio to {BASELINE} on the same attention kernel, without "
        "checkpointing); accuracy with its 95% Wilson interval on the held-out examples. Memory is "
        "logical (exact tensor bytes): saved activations packed in the "
        "forward at the peak step; their live peak over forward and backward (recomputation included: "
        "the honest figure under gradient checkpointing); and the total of parameters, gradients, "
        "optimizer state and that live peak. Step time is the median wall time of a training step.",
        "",
        markdown_table(result.table),
        "",
        f"_Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC._",
        "",
    ]
    return "\n".join(lines)


# ---- serving the app ------------------------------------------------------------------------------------


def app_path() -> Path:
    """app.py of this checkout (next to the package); ConfigError when the package was installed
    without it (the app needs a source checkout)."""
    path = Path(__file__).resolve().parents[2] / "app.py"
    if not path.is_file():
        raise ConfigError(f"app.py not found at {path}: serving the app needs a source checkout")
    return path


def app_command(runs_dir: str | os.PathLike[str], port: int = 8501, address: str = "localhost") -> list[str]:
    """`streamlit run app.py -- --runs-dir DIR` as this Python runs it (headless: no browser prompt)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.headless",
        "true",
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--",
        "--runs-dir",
        str(runs_dir),
    ]


def serve_app(runs_dir: str | os.PathLike[str], port: int = 8501, address: str = "localhost") -> int:
    """Serve the app on `runs_dir` until Ctrl-C; prints the address first. Returns streamlit's code."""
    command = app_command(runs_dir, port, address)
    print(f"serving the app on {runs_dir}: open http://{address}:{port} (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0
