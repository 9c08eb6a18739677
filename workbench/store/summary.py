"""One row per run, from manifests only (fast for many runs): the one run-summary projection, used by
the app's Runs table and trade-off figures, `workbench ls`, the sweep summary and the study table.

    frame = runs_frame(list_runs("runs"))     # RunEntry list (broken runs kept, with their error)
    frame = runs_frame([RunReader(p), ...])   # or readers
    rows = run_records(list_runs("runs"))     # the same rows as JSON-ready dicts (`workbench ls --json`)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# memory source -> (label, summary.memory_peak_bytes keys tried in order)
MEMORY_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "saved_activations": ("saved activations", ("saved_activations",)),
    # live saved bytes at their peak over forward and backward (recomputation included): the honest
    # activation figure under gradient checkpointing, equal to saved_activations without it
    "saved_peak": ("saved activations, live peak", ("saved_peak",)),
    "total_logical": ("total logical", ("total_logical",)),
    "allocator": ("GPU allocator peak", ("allocator_max_allocated",)),
    "device": ("GPU device used (NVML, whole device)", ("nvml_used",)),
    # the process's peak RSS over the run's recorded steps, reset at each (workbench.memory.device): its
    # own figure, weights and interpreter included; runs recorded before that (a lifetime peak, shared
    # by every run trained in one process) have none, so a frontier never mixes the two
    "rss": ("process peak RSS (CPU and GPU runs, model included)", ("rss_window_peak",)),
}


def key_options(method: Any, options: Any) -> tuple[str, ...]:
    """The options worth a column for `method`: its class's `table_options` (the method registry); for a
    method this installation does not know, its first few options. Other options still show in
    `options` (hover, details)."""
    from workbench.methods import METHODS  # discovery imports the method packages (torch): only when used

    if isinstance(method, str) and method in METHODS:
        return METHODS.get(method).table_options
    return tuple(options)[:3] if isinstance(options, dict) else ()


COLUMNS = [
    "id",
    "name",
    "method",
    "key_options",
    "model",
    "task",
    "attn",
    "checkpointing",
    "setup",
    "variant",
    "status",
    "seed",
    "setting",
    "metric",  # what `accuracy` holds: "accuracy" (the likeliest candidate) or "exact_match" (generation)
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "accuracy_before",
    "saved_activations_bytes",
    "saved_peak_bytes",
    "total_logical_bytes",
    "allocator_bytes",
    "device_bytes",
    "rss_bytes",
    "selection_peak_bytes",  # the selection phases' largest total logical memory (SMT, SPSFT)
    "fidelity",  # the gradient's fidelity at the last recorded step: cosine, or coverage (SMT, SPSFT)
    "fidelity_stat",  # which of the two
    "step_seconds",
    "trainable_parameters",
    "created",
    "options",
    "steps",
    "kind",
    "path",
    "error",
]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if isinstance(value, float) and math.isnan(value) else float(value)


def memory_bytes(summary: dict[str, Any], source: str) -> float | None:
    """The peak bytes of one memory source from a run summary (None when the run did not measure it)."""
    peaks = summary.get("memory_peak_bytes") or {}
    if not isinstance(peaks, dict):
        return None
    for key in MEMORY_SOURCES[source][1]:
        value = _number(peaks.get(key))
        if value is not None:
            return value
    return None


def format_options(options: Any, keys: Sequence[str] | None = None) -> str:
    """ "r=16, targets=all" from a method's options dict (only `keys` when given, in that order)."""
    if not isinstance(options, dict):
        return ""
    if keys is not None:  # key options: the ones set (None means "not used", e.g. TokenTune's count)
        items = [(k, options[k]) for k in keys if options.get(k) is not None]
    else:
        items = list(options.items())
    return ", ".join(f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in items)


def setup_label(attn: Any, checkpointing: bool) -> str:
    """How a run's steps were computed, for tables and legends: "sdpa", "eager + checkpointing"."""
    return f"{attn} + checkpointing" if checkpointing else str(attn)


def variant_label(method: Any, attn: Any, checkpointing: bool) -> str:
    """A method and how it ran, short for the default kernel: "lora", "lora + checkpointing",
    "lora (eager)"."""
    label = f"{method} + checkpointing" if checkpointing else str(method)
    return label if attn == "sdpa" else f"{label} ({attn})"


def _interval_ends(interval: Any) -> dict[str, float | None]:
    """accuracy_low / accuracy_high from a summary's [low, high] (None for runs without one)."""
    ends = interval if isinstance(interval, list) and len(interval) == 2 else [None, None]
    return {"accuracy_low": _number(ends[0]), "accuracy_high": _number(ends[1])}


def configuration_name(name: Any) -> str:
    """A run's name without its seed ("study-lora seed=1" -> "study-lora"): the name of its configuration."""
    return str(name).split(" seed=")[0]


def setting_key(config: dict[str, Any]) -> str:
    """A short hash of what a run computes except its seed (the config without name, runs dir and
    train.seed): the runs of one configuration over several seeds share it."""
    from workbench.provenance import json_digest

    kept = {k: v for k, v in config.items() if k not in ("name", "runs_dir")}
    train = kept.get("train")
    if isinstance(train, dict):
        kept["train"] = {k: v for k, v in train.items() if k != "seed"}
    return json_digest(kept, 12)


def _task_name(task: Any) -> Any:
    """A local task file reads as its file name (the full path is in the run's config)."""
    return task.replace("\\", "/").rsplit("/", 1)[-1] if isinstance(task, str) and "/" in task else task


TRAINING_KINDS = ("train", "profiled")  # runs that trained: the workbench loop's and loops of your own


def completed_training(frame: Any) -> Any:
    """The rows of a runs frame that are completed training runs (not memory sweeps or timing passes)."""
    return frame[(frame["status"] == "completed") & frame["kind"].fillna("train").isin(TRAINING_KINDS)]


def run_record(run: Any) -> dict[str, Any]:
    """The row of one readable run (a RunReader or anything with its manifest properties)."""
    config, summary = run.config or {}, run.summary or {}
    method = config.get("method")
    options = config.get("method_options") or {}
    keys = key_options(method, options)
    train = config.get("train") or {}
    if not isinstance(train, dict):
        train = {}
    attn = train.get("attn", "eager")  # runs from before train.attn existed ran eager attention
    checkpointing = bool(train.get("gradient_checkpointing", False))
    record = {
        "id": run.id,
        "name": run.name,
        "method": method,
        "key_options": format_options(options, keys),
        "model": config.get("model"),
        "task": _task_name(config.get("task")),
        "attn": attn,
        "checkpointing": checkpointing,
        "setup": setup_label(attn, checkpointing),
        "variant": variant_label(method, attn, checkpointing),
        "status": run.status,
        "seed": _number(train.get("seed", 0)),
        "setting": setting_key(config),
        "metric": summary.get("eval_metric", "accuracy"),  # runs from before eval_metric ranked candidates
        "accuracy": _number(summary.get("accuracy_after")),
        **_interval_ends(summary.get("accuracy_after_ci")),
        "accuracy_before": _number(summary.get("accuracy_before")),
        "step_seconds": _number(summary.get("median_step_seconds")),
        "trainable_parameters": _number(summary.get("trainable_parameters")),
        "created": run.created,
        "options": format_options(options),
        "steps": train.get("steps"),
        # "memory-sweep" for sweep runs (no accuracy), "profiled" for a loop of your own (wb.profile)
        "kind": config.get("kind") or "train",
        "path": str(run.path),
        "error": run.status_message if run.status in ("failed", "interrupted") else None,
    }
    for source in MEMORY_SOURCES:
        record[f"{source}_bytes"] = memory_bytes(summary, source)
    record["selection_peak_bytes"] = selection_peak_bytes(summary)
    record["fidelity_stat"], record["fidelity"] = headline_fidelity(summary)
    return record


def headline_fidelity(summary: dict[str, Any]) -> tuple[str | None, float | None]:
    """(stat, value) of the run's whole-model fidelity at its last recorded step (recorders/fidelity.py):
    cosine for approximate and exact gradients, coverage for SMT / SPSFT; (None, None) without one."""
    last = summary.get("fidelity_last")
    if isinstance(last, dict):
        for stat in ("cosine", "coverage"):
            if stat in last:
                return stat, _number(last[stat])
    return None, None


def score_label(frame: Any) -> str:
    """What the `accuracy` column of a runs frame (or a table built on one) holds, for labels:
    "accuracy" (the likeliest candidate), "exact match" (greedy generation), or both when runs mix them."""
    metrics = sorted(set(frame["metric"].dropna())) if "metric" in frame and len(frame) else []
    return " / ".join(m.replace("_", " ") for m in metrics) or "accuracy"


def selection_peak_bytes(summary: dict[str, Any]) -> float | None:
    """The largest total logical memory of the run's selection phases (SMT's warm-up, SPSFT's
    importance: every phase but evaluation) at any of their steps; None when it ran none (or was
    recorded before phases recorded their whole memory)."""
    phases = summary.get("memory_phase_peak_bytes")
    if not isinstance(phases, dict):
        return None
    totals = [
        _number(peaks.get("total_logical"))
        for phase, peaks in phases.items()
        if phase != "eval" and isinstance(peaks, dict)
    ]
    totals = [t for t in totals if t is not None]
    return max(totals) if totals else None


def run_records(runs: Sequence[Any]) -> list[dict[str, Any]]:
    """One record per run (`run_record`). `runs` holds RunEntry (broken ones get status "corrupt", their
    path and their error) or RunReader objects."""
    from workbench.errors import StoreError

    if isinstance(runs, (str, bytes)) or not isinstance(runs, Sequence):
        raise StoreError(f"expected a list of runs (from list_runs or open_runs), got {type(runs).__name__}")
    records = []
    for item in runs:
        reader = getattr(item, "reader", item)
        if reader is not None and not hasattr(reader, "manifest"):
            raise StoreError(
                f"expected runs (RunEntry or RunReader: list_runs, open_runs), got {type(item).__name__}"
            )
        if reader is None:  # a RunEntry that could not be read
            records.append({"id": item.id, "status": "corrupt", "path": str(item.path), "error": item.error})
            continue
        records.append(run_record(reader))
    return records


def runs_frame(runs: Sequence[Any]) -> pd.DataFrame:
    """`run_records` as a DataFrame with the COLUMNS, numbers as numbers (NaN where missing)."""
    import pandas as pd  # here: listing runs (`workbench ls`) needs no pandas

    frame = pd.DataFrame.from_records(run_records(runs), columns=COLUMNS)
    numeric = ("seed", "accuracy", "accuracy_low", "accuracy_high", "accuracy_before", "step_seconds")
    for column in (*numeric, "trainable_parameters", "steps", "selection_peak_bytes", "fidelity"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for source in MEMORY_SOURCES:
        frame[f"{source}_bytes"] = pd.to_numeric(frame[f"{source}_bytes"], errors="coerce")
    return frame
