"""Every figure kind by name, built straight from runs in the store (the CLI export and analyses).

    from workbench.figures.kinds import FIGURES, figures_for
    for stem, fig in figures_for("memory_blocks", [RunReader("runs/abc")]):
        export(fig, "out", stem=stem)

A kind is either per run (one figure for each run that recorded its tables) or across runs (one
figure over all the runs given; the trade-off kinds, which compare runs, need at least two). Every
file stem names the run ids it draws, so figures of different runs exported to one folder never
overwrite each other. The app builds the same figures through the same functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench.figures.blocks import block_grid, block_share, warmup_grads
from workbench.figures.curves import metric_curves, time_phases
from workbench.figures.data import label_runs
from workbench.figures.fidelity import fidelity_heatmap, fidelity_lines, fidelity_tradeoff
from workbench.figures.gradients import grad_heatmap, grad_lines
from workbench.figures.memory import memory_blocks, memory_phases, memory_steps, memory_sweep
from workbench.figures.rows import row_importance, row_selection
from workbench.figures.saliency import position_selection, saliency_heatmap, token_budget
from workbench.figures.tradeoff import tradeoff
from workbench.registry import Registry
from workbench.store.summary import runs_frame


@dataclass(frozen=True)
class FigureKind:
    """A figure the workbench can draw from runs: which tables it needs and how to build it."""

    name: str
    help: str
    tables: tuple[str, ...]  # store tables read; () = manifests only
    per_run: bool  # one figure per run (True) or one across all runs (False)
    build: Callable[[Sequence[Any]], Any]  # runs (RunReader) -> Figure
    min_runs: int = 1  # fewer usable runs draw nothing (a trade-off of one run is one point)


FIGURES: Registry[FigureKind] = Registry("figure kind")


def run_labels(runs: Sequence[Any]) -> list[str]:
    """A short label per run: its name, or its id where names repeat."""
    names = [r.name for r in runs]
    return [r.name if names.count(r.name) == 1 else r.id for r in runs]


def run_method(run: Any) -> str | None:
    """The method of a run (RunReader), None when its config names none."""
    config = getattr(run, "config", None)
    method = config.get("method") if isinstance(config, dict) else None
    return str(method) if method else None


def labelled(runs: Sequence[Any], table: str) -> pd.DataFrame:
    """`table` of every run stacked, with a `run` label column and each run's `method` (figures draw a
    run in its method's colour, the colour it has on the trade-off plots)."""
    labels = run_labels(runs)
    methods = {label: m for label, r in zip(labels, runs, strict=True) if (m := run_method(r))}
    return label_runs(dict(zip(labels, (r.table(table) for r in runs), strict=True)), methods=methods)


def _selection(run: Any) -> dict[str, Any]:
    """What a run's saliency marks are: its summary's `saliency_source` and its method."""
    summary = getattr(run, "summary", None) or {}
    return {"source": summary.get("saliency_source"), "method": run_method(run)}


def _kind(name: str, help: str, tables: tuple[str, ...], per_run: bool, min_runs: int = 1) -> Callable:
    def decorator(build: Callable[[Sequence[Any]], Any]) -> Callable:
        FIGURES.register(name)(FigureKind(name, help, tables, per_run, build, min_runs))
        return build

    return decorator


@_kind("tradeoff", "memory (total logical) vs accuracy, Pareto frontier", (), False, min_runs=2)
def _tradeoff(runs: Sequence[Any]) -> Any:
    return tradeoff(runs_frame(runs), "total_logical")


@_kind("tradeoff_saved", "saved-activation memory vs accuracy, Pareto frontier", (), False, min_runs=2)
def _tradeoff_saved(runs: Sequence[Any]) -> Any:
    return tradeoff(runs_frame(runs), "saved_activations")


@_kind("step_time", "median step time vs accuracy, Pareto frontier", (), False, min_runs=2)
def _step_time(runs: Sequence[Any]) -> Any:
    return tradeoff(runs_frame(runs), "step_time")


@_kind("saliency_heatmap", "block x token saliency of the last step's first example", ("saliency",), True)
def _saliency(runs: Sequence[Any]) -> Any:
    return saliency_heatmap(runs[0].table("saliency"), **_selection(runs[0]))


@_kind("token_budget", "tokens kept per example (p) per block", ("saliency",), True)
def _budget(runs: Sequence[Any]) -> Any:
    return token_budget(runs[0].table("saliency"), **_selection(runs[0]))


@_kind("position_selection", "how often each relative position is chosen, per block", ("saliency",), True)
def _positions(runs: Sequence[Any]) -> Any:
    return position_selection(runs[0].table("saliency"), **_selection(runs[0]))


@_kind("block_grid", "SMT chosen blocks per layer and projection", ("blocks",), True)
def _grid(runs: Sequence[Any]) -> Any:
    return block_grid(runs[0].table("blocks"))


@_kind("block_share", "SMT share of chosen blocks per layer and projection", ("blocks",), True)
def _share(runs: Sequence[Any]) -> Any:
    return block_share(runs[0].table("blocks"))


@_kind("warmup_grads", "SMT warm-up median |grad| of Q, K, V per layer", ("grads",), True)
def _warmup(runs: Sequence[Any]) -> Any:
    run = runs[0]
    blocks = run.table("blocks") if "blocks" in run.table_names() else None
    return warmup_grads(run.table("grads"), blocks)


@_kind("row_importance", "SPSFT row importance distributions per layer", ("rows",), True)
def _importance(runs: Sequence[Any]) -> Any:
    return row_importance(runs[0].table("rows"))


@_kind("row_selection", "SPSFT chosen rows per layer", ("rows",), True)
def _row_selection(runs: Sequence[Any]) -> Any:
    return row_selection(runs[0].table("rows"))


@_kind("grad_heatmap", "gradient norm per block over steps, runs side by side", ("grads",), False)
def _grad_heatmap(runs: Sequence[Any]) -> Any:
    return grad_heatmap(labelled(runs, "grads"), max_points=None)


@_kind("grad_lines", "gradient norm per module over steps", ("grads",), False)
def _grad_lines(runs: Sequence[Any]) -> Any:
    return grad_lines(labelled(runs, "grads"), max_points=None)


@_kind("fidelity_heatmap", "gradient fidelity (cosine / coverage) per layer over steps", ("fidelity",), False)
def _fidelity_heatmap(runs: Sequence[Any]) -> Any:
    return fidelity_heatmap(labelled(runs, "fidelity"), max_points=None)


@_kind(
    "fidelity_lines",
    "whole-model gradient fidelity over steps (and SMT/SPSFT's oracle)",
    ("fidelity",),
    False,
)
def _fidelity_lines(runs: Sequence[Any]) -> Any:
    return fidelity_lines(labelled(runs, "fidelity"), max_points=None)


@_kind("fidelity_tradeoff", "gradient fidelity vs saved activations, frontier", (), False, min_runs=2)
def _fidelity_tradeoff(runs: Sequence[Any]) -> Any:
    return fidelity_tradeoff(runs_frame(runs))


@_kind("memory_steps", "logical memory per step by category, runs side by side", ("memory",), False)
def _memory_steps(runs: Sequence[Any]) -> Any:
    return memory_steps(labelled(runs, "memory"), max_points=None)


@_kind("memory_blocks", "saved activations per block and module", ("memory",), False)
def _memory_blocks(runs: Sequence[Any]) -> Any:
    return memory_blocks(labelled(runs, "memory"))


@_kind("memory_phases", "peak memory per phase", ("memory",), False)
def _memory_phases(runs: Sequence[Any]) -> Any:
    return memory_phases(labelled(runs, "memory"))


@_kind("memory_sweep", "memory vs length and batch size, OOM marked", ("sweep",), False)
def _sweep(runs: Sequence[Any]) -> Any:
    return memory_sweep(labelled(runs, "sweep"))


@_kind("loss", "training loss over steps", ("metrics",), False)
def _loss(runs: Sequence[Any]) -> Any:
    return metric_curves(labelled(runs, "metrics"), "loss", "train", max_points=None)


@_kind("accuracy", "evaluation accuracy over steps", ("metrics",), False)
def _accuracy(runs: Sequence[Any]) -> Any:
    return metric_curves(labelled(runs, "metrics"), "accuracy", "eval", max_points=None)


@_kind("time_phases", "wall time per phase", ("timing",), False)
def _time(runs: Sequence[Any]) -> Any:
    return time_phases(labelled(runs, "timing"))


MAX_STEM_IDS = 3  # a figure of more runs names the first and a hash of them all


def figure_stem(kind: str, runs: Sequence[Any]) -> str:
    """The file stem of `kind` drawn from `runs`: the kind and the run ids ("loss-<id>",
    "loss-<id1>-<id2>"), past MAX_STEM_IDS runs the first id, the count and a hash of every id, so two
    exports of different runs into one folder never overwrite each other."""
    ids = [str(r.id) for r in runs]
    if len(ids) <= MAX_STEM_IDS:
        return "-".join([kind, *ids])
    digest = hashlib.sha1("\n".join(sorted(ids)).encode()).hexdigest()[:8]
    return f"{kind}-{ids[0]}-and-{len(ids) - 1}-more-{digest}"


def usable_runs(kind: str, runs: Sequence[Any]) -> list[Any]:
    """The runs that recorded every table `kind` reads."""
    spec = FIGURES.get(kind)
    return [r for r in runs if all(t in r.table_names() for t in spec.tables)]


def skip_reason(kind: str, runs: Sequence[Any]) -> str:
    """Why `figures_for(kind, runs)` draws nothing, in words (for the CLI)."""
    spec = FIGURES.get(kind)
    usable = usable_runs(kind, runs)
    if usable and len(usable) < spec.min_runs:
        return f"it compares runs: give at least {spec.min_runs} (got {len(usable)})"
    reads = f" (it reads {', '.join(spec.tables)})" if spec.tables else ""
    return f"nothing to draw from these runs{reads}"


def figures_for(kind: str, runs: Sequence[Any]) -> list[tuple[str, Any]]:
    """(file stem, Figure) for `kind` over `runs` (RunReader): one per run that recorded what the kind
    shows, or one across the runs that did. Empty when none did, or when a kind comparing runs (the
    trade-offs) gets fewer than its `min_runs`. Each stem names the run ids (`figure_stem`). Unknown
    kind: ConfigError."""
    spec = FIGURES.get(kind)
    usable = usable_runs(kind, runs)
    if not usable or len(usable) < spec.min_runs:
        return []
    if spec.per_run:
        built = [(figure_stem(kind, [run]), spec.build([run])) for run in usable]
    else:
        built = [(figure_stem(kind, usable), spec.build(usable))]
    return [(stem, fig) for stem, fig in built if not fig.empty]
