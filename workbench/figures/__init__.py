"""Figures, defined once for the app, the `workbench figures` export and the paper analyses.

Each figure function takes tables read from the store (pandas DataFrames; `runs_frame` for run
summaries) and returns a `Figure`: its tidy `data` (the CSV), `.plotly()` for the app and HTML, and
`.matplotlib("one" | "two")` for a paper column or the full width. `export` writes PNG, SVG, PDF,
HTML and CSV; `FIGURES` / `figures_for` build any kind by name straight from runs.

    import workbench.figures as wf
    from workbench.store import list_runs
    fig = wf.tradeoff(wf.runs_frame(list_runs("runs")), "saved_activations")
    wf.export(fig, "paper/", stem="fig1", formats=("pdf", "png"), size="two")

Figure kinds and functions:
    tradeoff, step_time      tradeoff(runs_frame, x)                    memory / time vs accuracy
    saliency_heatmap         saliency_heatmap(saliency, step, sample)   block x token scores, chosen marked
    token_budget             token_budget(saliency, step)               tokens kept per block (p)
    position_selection       position_selection(saliency, step, span)   chosen share by relative position
                             (each takes source=, method=: the run's saliency_source says "would choose")
    block_grid, block_share  block_grid(blocks, step, value), block_share(blocks, step)     SMT
    warmup_grads             warmup_grads(grads, blocks)                SMT median |grad| per layer
    row_importance           row_importance(rows, step)                 SPSFT importance distributions
    row_selection            row_selection(rows, step)                  SPSFT chosen rows per layer
    grad_heatmap, grad_lines grad_heatmap(grads, stat, module), grad_lines(grads, stat)
    fidelity_heatmap/_lines  fidelity_heatmap(fidelity), fidelity_lines(fidelity)   cosine / coverage
    fidelity_tradeoff        fidelity_tradeoff(runs_frame, x)           fidelity vs memory, frontier
    memory_steps             memory_steps(memory)                       stacked categories per step
    memory_blocks            memory_blocks(memory, step)                saved activations per block
    memory_phases            memory_phases(memory)                      peak per phase
    memory_sweep             memory_sweep(sweep, source, category)      vs length / batch size, OOM marked
    metric_curves            metric_curves(metrics, name, split)        loss / accuracy over steps
    time_phases              time_phases(timing)                        seconds per phase
Multi-run tables carry a `run` column (`label_runs({label: table})`) and draw runs side by side;
`label_runs(..., methods={label: method})` adds each run's method, so a run keeps its method's colour
(the trade-off plots' colour) in every figure, several runs of one method told apart by line style.

A figure of your own (an analysis's ratio plot) is a `Figure(kind, title, data, spec)` with one of the
typed specs `LinesSpec`, `BarsSpec`, `HeatmapSpec`, `ScatterSpec`, `BoxSpec` (frozen dataclasses: a
misspelled option fails when the spec is built); it then draws in both backends and exports like the
built-in ones. `FIGURES` maps every kind name to how it is built from runs (CLI).
"""

from workbench.figures.base import Figure
from workbench.figures.blocks import block_grid, block_share, warmup_grads
from workbench.figures.curves import metric_curves, time_phases
from workbench.figures.data import downsample, label_runs, pareto_front
from workbench.figures.export import FORMATS, export, to_bytes
from workbench.figures.fidelity import fidelity_heatmap, fidelity_lines, fidelity_tradeoff
from workbench.figures.gradients import grad_heatmap, grad_lines, grad_stats
from workbench.figures.kinds import FIGURES, FigureKind, figures_for
from workbench.figures.memory import memory_blocks, memory_phases, memory_steps, memory_sweep
from workbench.figures.rows import row_importance, row_selection
from workbench.figures.saliency import position_selection, saliency_heatmap, token_budget
from workbench.figures.specs import BarsSpec, BoxSpec, HeatmapSpec, LinesSpec, ScatterSpec
from workbench.figures.tradeoff import TRADEOFF_X, tradeoff
from workbench.store.summary import MEMORY_SOURCES, runs_frame

__all__ = [
    "FIGURES",
    "FORMATS",
    "MEMORY_SOURCES",
    "TRADEOFF_X",
    "BarsSpec",
    "BoxSpec",
    "Figure",
    "FigureKind",
    "block_grid",
    "block_share",
    "downsample",
    "export",
    "fidelity_heatmap",
    "fidelity_lines",
    "fidelity_tradeoff",
    "figures_for",
    "grad_heatmap",
    "grad_lines",
    "grad_stats",
    "HeatmapSpec",
    "label_runs",
    "LinesSpec",
    "memory_blocks",
    "memory_phases",
    "memory_steps",
    "memory_sweep",
    "metric_curves",
    "pareto_front",
    "position_selection",
    "row_importance",
    "row_selection",
    "runs_frame",
    "saliency_heatmap",
    "ScatterSpec",
    "time_phases",
    "to_bytes",
    "token_budget",
    "tradeoff",
    "warmup_grads",
]
