"""Plain-text reports of runs for the terminal (the CLI's `run`, `ls` and `show`)."""

from __future__ import annotations

import math
from typing import Any

MEMORY_ROWS = (
    ("saved_activations", "saved activations (peak step)"),
    ("params_frozen", "parameters, frozen"),
    ("params_trainable", "parameters, trainable"),
    ("gradients", "gradients"),
    ("optimizer_state", "optimizer state"),
    ("total_logical", "total logical"),
    ("allocator_max_allocated", "GPU allocator peak"),
    ("nvml_used", "GPU device used (NVML)"),
    ("process_rss_peak", "process peak RSS"),
)


def mib(nbytes: float | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:,.1f} MiB"


def _pct(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def format_run_report(
    run_id: str,
    run_dir: str,
    summary: dict[str, Any],
    *,
    status: str = "completed",
    config: dict[str, Any] | None = None,
) -> str:
    """Accuracy before/after, step time and the memory breakdown of one run."""
    lines = [f"run {run_id} ({status})", f"  stored in {run_dir}"]
    if config:
        lines.append(
            f"  {config.get('method')} on {config.get('model')} / {config.get('task')}, "
            f"options {config.get('method_options')}"
        )
    if summary:
        lines.append(
            f"  accuracy before {_pct(summary.get('accuracy_before'))}  "
            f"after {_pct(summary.get('accuracy_after'))}"
        )
        if summary.get("median_step_seconds") is not None:
            lines.append(f"  median step time {summary['median_step_seconds']:.3f} s")
        if summary.get("trainable_parameters") is not None:
            lines.append(
                f"  trainable parameters {summary['trainable_parameters']:,} of "
                f"{summary.get('total_parameters', 0):,}"
            )
        peaks = summary.get("memory_peak_bytes") or {}
        if peaks:
            lines.append("  memory (logical = exact tensor bytes; RSS/GPU = measured peaks):")
            for key, label in MEMORY_ROWS:
                if key in peaks:
                    lines.append(f"    {label:<32}{mib(peaks[key]):>14}")
        if summary.get("memory_note"):
            lines.append(f"  note: {summary['memory_note']}")
    return "\n".join(lines)


def run_list_records(entries: list[Any]) -> list[dict[str, Any]]:
    """JSON-ready rows of `workbench ls`."""
    records = []
    for entry in entries:
        if entry.error is not None:
            records.append({"id": entry.id, "path": str(entry.path), "error": str(entry.error)})
            continue
        run = entry.reader
        config, summary = run.config or {}, run.summary or {}
        records.append(
            {
                "id": run.id,
                "name": run.name,
                "status": run.status,
                "method": config.get("method"),
                "model": config.get("model"),
                "task": config.get("task"),
                "accuracy": summary.get("accuracy_after"),
                "saved_activation_bytes": (summary.get("memory_peak_bytes") or {}).get("saved_activations"),
                "median_step_seconds": summary.get("median_step_seconds"),
            }
        )
    return records


def format_run_list(entries: list[Any]) -> str:
    """One line per run; corrupt directories are listed with their error."""
    lines = [f"{'id':<40} {'status':<12} {'method':<10} {'model':<14} {'task':<12} {'acc':>7} {'saved':>12}"]
    for r in run_list_records(entries):
        if "error" in r:
            lines.append(f"{r['id']:<40} {'corrupt':<12} {r['error']}")
            continue
        lines.append(
            f"{r['id']:<40} {r['status']:<12} {r['method'] or '-':<10} {r['model'] or '-':<14} "
            f"{r['task'] or '-':<12} {_pct(r['accuracy']):>7} {mib(r['saved_activation_bytes']):>12}"
        )
    return "\n".join(lines)
