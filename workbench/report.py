"""Plain-text reports of runs for the terminal (the CLI's `run`, `ls` and `show`)."""

from __future__ import annotations

import math
from typing import Any

from workbench.store.summary import run_records

MEMORY_ROWS = (
    ("saved_activations", "saved activations (peak step)"),
    ("saved_peak", "saved, live peak (fwd + bwd)"),
    ("params_frozen", "parameters, frozen"),
    ("params_trainable", "parameters, trainable"),
    ("gradients", "gradients"),
    ("optimizer_state", "optimizer state"),
    ("total_logical", "total logical"),
    ("allocator_max_allocated", "GPU allocator peak"),
    ("nvml_used", "GPU device used (NVML)"),
    ("rss_window_peak", "process peak RSS (this run)"),
    ("rss_lifetime_peak", "process peak RSS (lifetime)"),
)


def mib(nbytes: float | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:,.1f} MiB"


def _number_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pct(value: Any) -> str:
    return "-" if _number_missing(value) else f"{100 * value:.1f}%"


def format_accuracy(value: Any, interval: Any = None) -> str:
    """ "84.0% [75.6, 89.9]": an accuracy and its 95% interval [low, high] when there is one."""
    if not (isinstance(interval, (list, tuple)) and len(interval) == 2) or any(
        _number_missing(end) for end in interval
    ):
        return _pct(value)
    return f"{_pct(value)} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


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
        scored = (
            f" (95% intervals, {summary['eval_examples_scored']} examples)"
            if summary.get("eval_examples_scored")
            else ""
        )
        before, after = (
            format_accuracy(summary.get(f"accuracy_{when}"), summary.get(f"accuracy_{when}_ci"))
            for when in ("before", "after")
        )
        metric = str(summary.get("eval_metric", "accuracy")).replace("_", " ")  # or "exact match"
        lines.append(f"  {metric} before {before}  after {after}{scored}")
        loglik = [summary.get(f"answer_loglik_per_token_{when}") for when in ("before", "after")]
        if all(isinstance(v, (int, float)) for v in loglik):
            lines.append(f"  answer log-likelihood per token before {loglik[0]:.3f}  after {loglik[1]:.3f}")
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
        phases = summary.get("memory_phase_peak_bytes")
        for phase, phase_peaks in phases.items() if isinstance(phases, dict) else ():
            if phase != "eval" and isinstance(phase_peaks, dict) and "total_logical" in phase_peaks:
                label = f"selection phase {phase!r}, peak"  # SMT's warm-up, SPSFT's importance
                lines.append(f"    {label:<32}{mib(phase_peaks['total_logical']):>14}")
        first, last = summary.get("fidelity_first"), summary.get("fidelity_last")
        if isinstance(first, dict) and isinstance(last, dict):
            stat = next((s for s in ("cosine", "coverage") if s in last), None)
            if stat is not None:
                oracle = f" (oracle {last['oracle_coverage']:.3f})" if "oracle_coverage" in last else ""
                values = f"first {first[stat]:.3f}  last {last[stat]:.3f}{oracle}"
                lines.append(f"  gradient fidelity ({stat}) {values}")
        if summary.get("fidelity_note"):
            lines.append(f"  fidelity: {summary['fidelity_note']}")
        if summary.get("memory_note"):
            lines.append(f"  note: {summary['memory_note']}")
        if summary.get("saliency_note"):
            lines.append(f"  saliency: {summary['saliency_note']}")
    return "\n".join(lines)


def format_run_list(entries: list[Any]) -> str:
    """One line per run (`workbench.store.summary.run_records`); corrupt directories with their error."""
    lines = [
        f"{'id':<40} {'status':<12} {'method':<10} {'setup':<20} {'model':<14} {'task':<12} {'acc':>7} "
        f"{'saved':>12}"
    ]
    for r in run_records(entries):
        if r["status"] == "corrupt":
            lines.append(f"{r['id']:<40} {'corrupt':<12} {r['error']}")
            continue
        lines.append(
            f"{r['id']:<40} {r['status']:<12} {r['method'] or '-':<10} {r['setup']:<20} "
            f"{r['model'] or '-':<14} {r['task'] or '-':<12} {_pct(r['accuracy']):>7} "
            f"{mib(r['saved_activations_bytes']):>12}"
        )
    return "\n".join(lines)


def format_memory_sweep(sweep: Any) -> str:
    """The memory sweep's table (its `sweep` table as a DataFrame): per length and batch size, the saved
    activations and the logical total (parameters, gradients, AdamW state, saved activations), in MiB,
    or "out of memory"."""
    lines = [f"{'length':>7} {'batch':>6} {'saved':>14} {'total logical':>14}"]
    for (length, batch), point in sweep.groupby(["length", "batch_size"], sort=True):
        if (point["status"] == "oom").any():
            lines.append(f"{length:>7} {batch:>6} {'out of memory':>29}")
            continue
        logical = point[point["source"] == "logical"].set_index("category")["bytes"]
        saved = mib(logical.get("saved_activations"))
        lines.append(f"{length:>7} {batch:>6} {saved:>14} {mib(logical.sum()):>14}")
    return "\n".join(lines)
