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
import dataclasses
import math
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.comparisons import BASELINE
from workbench.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from workbench.config import RunConfig
    from workbench.orchestration.sweeps import Grid, MethodEntry, Point, SweepResult
    from workbench.orchestration.timing_pass import TimingPass
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
    seeds: int = 3  # seeds of every method (train.seed 0 ... seeds-1); the variants run the first only


# the default model on this 2-core CPU machine: ~1.5 s a step, ~30 s per 100 eval examples; 200 of
# polarity's 800 held-out examples per run (a 95% interval of about +-5.5 points at 84%) and 3 seeds
# keep the study near 45 minutes (the evaluation before training is scored once per seed)
_DEFAULT = StudySize(
    model="smollm2-135m",
    task="polarity",
    train={"steps": 30, "batch_size": 8, "max_length": 128, "eval_examples": 200, "eval_batch_size": 16},
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
        "30 steps of batch 8, 200 eval examples before and after per run, 3 seeds per method, LoRA / "
        "VeLoRA / SAGE / TokenTune at lr 5e-4, the others at their default lr: about 45 min on 2 "
        "quiet CPU cores"
    ),
)


STUDY_SIZES: dict[str, StudySize] = {
    # seconds on tiny-llama (random weights: accuracy means nothing); used by the tests
    "smoke": StudySize(
        model="tiny-llama",
        task="polarity",
        train={"steps": 2, "batch_size": 4, "max_length": 64, "eval_examples": 8, "eval_batch_size": 8},
        record={"saliency_every": 1, "grads_every": 1, "probe_examples": 2},
        methods={"smt": {"warmup_steps": 2}, "spsft": {"rank": 8}},
        note="2 steps of batch 4, 8 eval examples per run",
        seeds=2,
    ),
    "default": _DEFAULT,
    # the generative regime at the default size: verb conjugation (answers of about 13 tokens: every
    # answer position is an output row of SAGE's saliency), scored by exact match of a greedy generation
    # on 200 held-out verbs (a 95% interval of about +-7 points at 50%); 2 seeds keep it near 35 minutes
    "generative": dataclasses.replace(
        _DEFAULT,
        task="verb_forms",
        note=(
            "30 steps of batch 8 on verb_forms, exact match on 200 held-out verbs before and after per run, "
            "2 seeds per method, the default size's learning rates: about 35 min on 2 CPU cores"
        ),
        seeds=2,
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
# They run the first seed only: checkpointing recomputes the same gradients (tests/methods/
# test_kernels_and_checkpointing.py), so their accuracy is their method's, their memory is exact and
# their time comes from the timing pass.
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


def study_seeds(size: str, seeds: int | None = None) -> list[int]:
    """The study's seeds: 0 ... n-1 for `seeds` (default: the size's); one ConfigError for a count that
    is not a positive integer."""
    n = study_size(size).seeds if seeds is None else seeds
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--seeds must be a whole number of seeds >= 1, got {n!r}")
    return list(range(n))


def study_points(
    size: str = "default", *, model: str | None = None, task: str | None = None, seeds: int | None = None
) -> list[Point]:
    """The study's runs: every method at each seed, then the STUDY_VARIANTS at the first seed."""
    chosen = study_seeds(size, seeds)
    methods = [method_entry(size, m) for m in study_methods()]
    variants = [
        method_entry(size, method, label, **copy.deepcopy(settings))
        for label, (method, settings) in STUDY_VARIANTS.items()
    ]
    grids = [
        size_grid(size, "study", methods, model=model, task=task, seeds=chosen),
        size_grid(size, "study", variants, model=model, task=task, seeds=chosen[:1]),
    ]
    return [point for grid in grids for point in grid.points]


@dataclass
class StudyResult:
    """The study's sweep result, its runs dir, its timing pass and its table (`study_table`: one row
    per configuration, aggregated over seeds)."""

    size: str
    runs_dir: str
    sweep: SweepResult
    table: pd.DataFrame
    timing: TimingPass | None = None


def run_study(
    size: str = "default",
    runs_dir: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    task: str | None = None,
    seeds: int | None = None,
    timing: bool = True,
    timing_rounds: int | None = None,
    timing_threads: int | None = None,
    progress: bool = True,
    rerun: bool = False,
) -> StudyResult:
    """Run (or reuse) every method at `size` for `seeds` seeds (default: the size's) in `runs_dir`
    (default: `default_runs_dir(size)`) under one progress bar, then (with `timing`) time every
    configuration in the interleaved timing pass (workbench.orchestration.timing_pass), and tabulate
    them against LoRA. `rerun` runs and times them all again."""
    from workbench.orchestration.sweeps import run_points
    from workbench.orchestration.timing_pass import DEFAULT_ROUNDS, DEFAULT_THREADS, check_pass_settings

    rounds = DEFAULT_ROUNDS if timing_rounds is None else timing_rounds
    threads = DEFAULT_THREADS if timing_threads is None else timing_threads
    check_pass_settings(rounds, threads)
    points = study_points(size, model=model, task=task, seeds=seeds)  # every bad input fails here
    check_eval_size(points[0].resolved)
    runs_dir = str(runs_dir or default_runs_dir(size))
    result = run_points(points, runs_dir, progress=progress, rerun=rerun)
    timed = None
    if timing and not result.failed:
        timed = study_timing(points, runs_dir, rounds=rounds, threads=threads, rerun=rerun, progress=progress)
    return StudyResult(size, runs_dir, result, study_table(result.runs, timed), timed)


def check_eval_size(config: RunConfig) -> None:
    """One ConfigError when a run of `config` would score too few held-out examples for its accuracy's
    interval to mean anything (`workbench.stats.MIN_INTERVAL_EXAMPLES`), saying how many it has."""
    from workbench.data import load_task
    from workbench.stats import MIN_INTERVAL_EXAMPLES

    available = len(load_task(config.task, seed=config.train.seed).eval)
    scored = min(config.train.eval_examples, available)
    if scored < MIN_INTERVAL_EXAMPLES:
        raise ConfigError(
            f"the study would score {scored} held-out example(s) per run (train.eval_examples="
            f"{config.train.eval_examples}, {available} in the task's eval split): a 95% interval on fewer "
            f"than {MIN_INTERVAL_EXAMPLES} spans more than 60 points; use a larger eval set"
        )


def study_timing(
    points: list[Point], runs_dir: str, *, rounds: int, threads: int, rerun: bool, progress: bool
) -> TimingPass:
    """The timing pass over the study's configurations at their first seed (one per table row)."""
    from workbench.orchestration.timing_pass import run_timing_pass

    first = min(p.resolved.train.seed for p in points)
    configs = {p.label: p.config(runs_dir) for p in points if p.resolved.train.seed == first}
    return run_timing_pass(
        configs, runs_dir, baseline=BASELINE, rounds=rounds, threads=threads, rerun=rerun, progress=progress
    )


# ---- the table ----------------------------------------------------------------------------------------


def study_table(
    runs: list[RunReader], timing: TimingPass | None = None, baseline: str = BASELINE
) -> pd.DataFrame:
    """One row per configuration, its runs over seeds aggregated (`comparisons.aggregate_seeds`):
    method, key options, setup, seeds, each of `comparisons.RATIO_COLUMNS` (accuracy, saved
    activations, their live peak, total logical memory, step time, trainable parameters) as the mean
    and 95% half-width over seeds, and as a ratio to the `baseline` of the same seed on the same
    attention kernel without checkpointing. With a `timing` pass, step time and its ratio are the
    pass's (median over interleaved rounds; `step_time_low`/`high`: the extreme rounds' ratios;
    `step_cpu*`: process CPU time), else the training runs' medians (column `timing` says which).
    `accuracy_p`: the exact McNemar p-value against the baseline, seeds paired on the same examples
    (`accuracy_only` / `accuracy_only_baseline`: examples only it / only the baseline got right)."""
    from workbench.comparisons import aggregate_seeds, paired_test, ratio_table
    from workbench.store.summary import runs_frame, setting_key

    table = aggregate_seeds(ratio_table(runs_frame(runs), baseline), baseline)
    if table.empty:
        return table
    readers = {r.id: r for r in runs}
    plain_baseline = (table["method"] == baseline) & ~table["setup"].str.contains("checkpointing")
    references = {row["attn"]: row["runs"] for _, row in table[plain_baseline].iterrows()}
    tests = [
        paired_test([readers[i] for i in row["runs"]], [readers[i] for i in references.get(row["attn"], [])])
        for _, row in table.iterrows()
    ]
    table["accuracy_only"] = [t["only_a"] for t in tests]
    table["accuracy_only_baseline"] = [t["only_b"] for t in tests]
    table["accuracy_p"] = [t["p"] for t in tests]
    table["timing"] = "sequential"
    for column in ("step_time_low", "step_time_high", "step_cpu", f"step_cpu_vs_{baseline}"):
        table[column] = math.nan
    if timing is not None:
        labels = {setting_key(config): label for label, config in timing.configs.items()}
        for i, row in table.iterrows():
            label = labels.get(row["setting"])
            if label is None:
                continue
            median, low, high = timing.ratio(label)
            table.loc[i, ["step_time", f"step_time_vs_{baseline}", "step_time_low", "step_time_high"]] = (
                timing.seconds(label), median, low, high
            )  # fmt: skip
            table.loc[i, ["step_cpu", f"step_cpu_vs_{baseline}"]] = (
                timing.seconds(label, "cpu"), timing.ratio(label, "cpu")[0]
            )  # fmt: skip
            table.loc[i, "timing"] = "interleaved"
    return table


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _value(row: Any, column: str) -> str:
    """The mean over seeds, "± half-width" where the seeds differ (memory moves with the batches'
    padded lengths; an interleaved step time is the pass's median and has no spread over seeds)."""
    value = row[column]
    if _missing(value):
        return "-"
    half = math.nan if column == "step_time" and row["timing"] == "interleaved" else row[f"{column}_pm"]
    spread = not _missing(half) and half > 5e-4 * abs(value)
    if column in ("saved_activations", "saved_peak", "total_logical", "selection_peak"):
        return f"{value / 2**20:,.1f}" + (f" ± {half / 2**20:,.1f}" if spread else "") + " MiB"
    if column == "step_time":
        return f"{value:.2f}" + (f" ± {half:.2f}" if spread else "") + " s"
    return f"{int(value):,}"


def _ratio(row: Any, column: str, baseline: str) -> str:
    """ "0.62x [0.58, 0.66]" for an interleaved step time (the ratio's extreme rounds), "0.95x ± 0.03"
    with a 95% half-width over seeds where the seeds differ, else "0.23x"."""
    value = row[f"{column}_vs_{baseline}"]
    if _missing(value):
        return "-"
    if column == "step_time" and row["timing"] == "interleaved":
        return f"{value:.2f}x [{row['step_time_low']:.2f}, {row['step_time_high']:.2f}]"
    half = row[f"{column}_vs_{baseline}_pm"]
    return f"{value:.2f}x" if _missing(half) or half < 5e-3 else f"{value:.2f}x ± {half:.2f}"


def _accuracy(row: Any) -> str:
    """ "84.2% ± 1.3" (mean ± 95% half-width over seeds) or, for one run, "84.0% [75.6, 89.9]" (its
    Wilson interval on the held-out examples)."""
    from workbench.report import format_accuracy

    if row["seeds"] > 1 and not _missing(row["accuracy_pm"]):
        return f"{100 * row['accuracy']:.1f}% ± {100 * row['accuracy_pm']:.1f}"
    return format_accuracy(row["accuracy"], (row["accuracy_low"], row["accuracy_high"]))


def _paired(row: Any, baseline: str) -> str:
    """ "p=0.21 (12/9)": the McNemar p-value and the discordant examples (only this / only baseline)."""
    is_reference = row["method"] == baseline and "checkpointing" not in str(row["setup"])
    if is_reference or _missing(row["accuracy_p"]):
        return "-"
    return f"p={row['accuracy_p']:.2f} ({int(row['accuracy_only'])}/{int(row['accuracy_only_baseline'])})"


def markdown_table(table: pd.DataFrame, baseline: str = BASELINE) -> str:
    """`study_table` as markdown: each cell "value (ratio to the baseline)"; accuracy as "mean ± 95%
    half-width" over seeds (a single run: its Wilson interval), then the paired McNemar test against
    the baseline; an interleaved step time with its ratio's lowest and highest round."""
    from workbench.comparisons import MEAN_COLUMNS, RATIO_COLUMNS
    from workbench.store.summary import score_label

    score = score_label(table)
    head = ["method", "options", "attention, checkpointing", "seeds"]
    for column, (_, label) in RATIO_COLUMNS.items():
        head.append(score if column == "accuracy" else label)
        if column == "total_logical":
            head.append(MEAN_COLUMNS["selection_peak"][1])
    head.append(f"{score} vs {baseline}: McNemar")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells = [str(row["method"]), str(row["key_options"] or "-"), str(row["setup"]), str(row["seeds"])]
        for column in RATIO_COLUMNS:
            value = _accuracy(row) if column == "accuracy" else _value(row, column)
            cells.append(f"{value} ({_ratio(row, column, baseline)})")
            if column == "total_logical":  # next to the training peak: what selecting costs first
                cells.append(_value(row, "selection_peak") if "selection_peak" in row else "-")
        cells.append(_paired(row, baseline))
        if row["incomplete"]:
            cells[0] += f" ({row['incomplete']} run(s) not completed)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_markdown(result: StudyResult, *, command: str | None = None) -> str:
    """The study's results page (analyses/out/study.md): settings, the table and how to remake it."""
    spec = study_size(result.size)
    runs = result.sweep.runs
    config = runs[0].config if runs else {}
    train = config.get("train", spec.train)
    from workbench.store.summary import score_label

    before = result.table["accuracy_before"].dropna() if len(result.table) else []
    score = score_label(result.table)
    device = runs[0].environment.get("device", "?") if runs else "?"
    command = command or f"workbench study --size {result.size} --no-app"
    seeds = int(result.table["seeds"].max()) if len(result.table) else 0
    if result.timing is not None:
        timing = (
            f"Step time: the median of {len(result.timing.wall)} interleaved rounds of one step of every "
            f"configuration on the same batch, on {result.timing.threads} torch thread(s) (timing-pass "
            f"run `{result.timing.run_id}`); in brackets the ratio's lowest and highest round."
        )
    else:
        timing = "Step time: the training runs' medians, sequential: not comparable on a loaded machine."
    lines = [
        f"# Study: every method on {config.get('model', spec.model)} / {config.get('task', spec.task)}",
        "",
        f"Regenerate: `{command}` (runs in `{result.runs_dir}`; completed runs there are reused, "
        "`--rerun` measures them again).",
        "",
        f"Size `{result.size}` ({len(runs)} runs; {spec.note}). Each run: {train.get('steps')} steps "
        f"of batch {train.get('batch_size')}, max length {train.get('max_length')}, {score} on "
        f"{train.get('eval_examples')} held-out examples"
        + (f" (before training: {100 * before.mean():.1f}% on average)" if len(before) else "")
        + f"; up to {seeds} seeds per configuration (a seed changes the split, the batch order and the "
        f"initialisation); device {device}.",
        "",
        f"Each cell: the mean over seeds (its ratio to {BASELINE} of the same seed on the same attention "
        f"kernel without checkpointing, ± the 95% Student-t half-width over seeds). {score.capitalize()}"
        + (
            " (a greedy generation equal to the reference after normalisation, docs/GENERATIVE.md)"
            if "exact" in score
            else ""
        )
        + ": mean ± "
        "95% half-width over seeds (a single run: its 95% Wilson interval on the held-out examples); the "
        f"last column is the exact McNemar test against {BASELINE}, seeds paired on the same examples "
        f"(examples only this configuration / only {BASELINE} got right). Memory is logical (exact "
        "tensor bytes; seeds differ only through their batches' padded lengths): saved activations "
        "packed in the forward at the peak step; their live peak over forward and backward "
        "(recomputation included: the honest figure under gradient checkpointing); and the total of "
        "parameters, gradients, optimizer state and that live peak; next to it, the peak of the "
        "method's selection phase (SMT's warm-up, SPSFT's importance) counted the same way, with the "
        f"phase's gradients, optimizer state, fp32 masters and sums. {timing}",
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


APP_ADDRESS = "127.0.0.1"  # this machine only: reach it from elsewhere through an SSH tunnel
APP_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
APP_STOP_GRACE_SECONDS = 10.0  # after SIGTERM, how long the app may take to stop before it is killed


def app_command(
    runs_dir: str | os.PathLike[str],
    port: int = 8501,
    address: str = APP_ADDRESS,
    *,
    allow_any_dir: bool = False,
) -> list[str]:
    """`streamlit run app.py -- --runs-dir DIR` as this Python runs it: headless (no browser prompt),
    bound to `address` (this machine only by default), the file watcher off (it only reloads code, and
    on a big runs dir floods the terminal with inotify warnings), no usage statistics."""
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
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--",
        "--runs-dir",
        str(runs_dir),
        *(["--allow-any-dir"] if allow_any_dir else []),
    ]


class _AppStop(Exception):
    """A stop signal reached the study while it served the app."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_child(child: subprocess.Popen) -> None:
    """Terminate the app (SIGTERM: streamlit stops cleanly), kill it if it does not stop in time."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=APP_STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def serve_app(
    runs_dir: str | os.PathLike[str],
    port: int = 8501,
    address: str = APP_ADDRESS,
    *,
    allow_any_dir: bool = False,
) -> int:
    """Serve the app on `runs_dir` until the study is stopped; prints the address first.

    The app runs as a child process that stops with the study: SIGINT (Ctrl-C), SIGTERM (kill, docker
    stop) and SIGHUP (a closed terminal) terminate it and wait for it (a second signal kills it at once).
    Returns streamlit's exit code, 0 after Ctrl-C, 128 + the signal's number after SIGTERM / SIGHUP."""
    command = app_command(runs_dir, port, address, allow_any_dir=allow_any_dir)
    print(f"serving the app on {runs_dir}: open http://{address}:{port} (Ctrl-C stops it)", flush=True)
    child = subprocess.Popen(command)
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise _AppStop(signum)
        child.kill()  # asked again while stopping: stop now

    previous: dict[int, Any] = {}
    try:
        try:
            if threading.current_thread() is threading.main_thread():  # only it may install handlers
                for signum in APP_STOP_SIGNALS:
                    previous[signum] = signal.signal(signum, on_signal)
            return child.wait()
        except (_AppStop, KeyboardInterrupt):
            _stop_child(child)
    finally:
        try:
            _stop_child(child)  # whatever ended the wait, leave no app behind
        finally:
            for signum, handler in previous.items():
                if handler is not None:  # None: a handler not installed from Python, cannot be restored
                    signal.signal(signum, handler)
    signum = received[0] if received else signal.SIGINT
    return 0 if signum == signal.SIGINT else 128 + int(signum)
