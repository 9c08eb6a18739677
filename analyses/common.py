"""What every analysis script shares: sizes and arguments, making or reusing runs, writing outputs.

Each script reproduces one figure or table of a paper on the default model. It states its run budget
in its docstring and takes one size:

    --smoke    tiny-llama, a couple of steps: seconds (the tests run every script at this size)
    (default)  smollm2-135m on polarity: minutes on a 2-core CPU
    --generative  smollm2-135m on verb_forms (free-text answers, exact match): the study's generative run
    --full     paper-like lengths for a GPU

Runs are made through the sweep machinery (workbench.orchestration.sweeps), in the study's runs dir of
that size (runs/study, runs/study-smoke, runs/study-full): a run whose settings match a completed run
there is reused, so scripts share runs with each other and with `workbench study`. Figures come only from
workbench.figures (and workbench.comparisons); outputs go to analyses/out/<script>/ (analyses/out/<size>/
<script>/ for the other sizes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import WorkbenchError
from workbench.orchestration.study import default_runs_dir, method_entry, size_grid, study_points
from workbench.orchestration.sweeps import MethodEntry, Point, expand, run_key, run_points

HERE = Path(__file__).resolve().parent
FORMATS = ("pdf", "svg", "png", "html")
FIGURE_SIZES = {"one-column": "one", "two-column": "two"}


@dataclass
class Analysis:
    """One script's settings, from its command line (`parse_args`)."""

    name: str  # the script's name: its output folder
    size: str  # smoke | default | generative | full
    runs_dir: Path
    out: Path  # this script's output folder
    formats: tuple[str, ...]
    figure_size: str  # "one" or "two" (columns of a paper)
    model: str | None  # overrides of the size's model / task (None: the size's)
    task: str | None
    progress: bool
    rerun: bool = False  # make every run again instead of reusing completed ones
    options: dict[str, Any] = field(default_factory=dict)  # the script's own flags

    @property
    def out_root(self) -> Path:
        """analyses/out (default size) or analyses/out/<size>: where study.md goes."""
        return self.out.parent


def parse_args(
    name: str,
    doc: str | None,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Analysis:
    """The shared command line: --smoke / --full, --runs-dir, --out, --format, --size, --model, --task;
    `extra` adds a script's own flags (their values land in `Analysis.options`)."""
    parser = argparse.ArgumentParser(
        prog=f"analyses/{name}.py",
        description=(doc or "").split("\n\n")[0],
        epilog="Sizes: --smoke (tiny-llama, seconds), default (minutes on 2 CPU cores), --generative (the "
        "default model on a generative task, exact match), --full (a GPU).",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--smoke", action="store_const", dest="size", const="smoke", help="tiny-llama, seconds"
    )
    group.add_argument("--full", action="store_const", dest="size", const="full", help="paper-like, on a GPU")
    group.add_argument(
        "--generative",
        action="store_const",
        dest="size",
        const="generative",
        help="the default model on verb_forms, exact match (the generative regime)",
    )
    parser.add_argument("--runs-dir", dest="runs_dir", help="run store (default runs/study[-<size>])")
    parser.add_argument("--out", help="output root (default analyses/out, analyses/out/<size>)")
    parser.add_argument("--format", default=",".join(FORMATS), help="figure formats: pdf,svg,png,html,csv")
    parser.add_argument("--size", choices=list(FIGURE_SIZES), default="two-column", dest="figure_size")
    parser.add_argument("--model", help="another model than the size's")
    parser.add_argument("--task", help="another task than the size's")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--rerun", action="store_true", help="make every run again, even completed ones")
    shared = {action.dest for action in parser._actions}
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    size = args.size or "default"
    root = Path(args.out) if args.out else HERE / "out" / ("" if size == "default" else size)
    return Analysis(
        name=name,
        size=size,
        runs_dir=Path(args.runs_dir or default_runs_dir(size)),
        out=root / name,
        formats=tuple(f.strip() for f in args.format.split(",") if f.strip()),
        figure_size=FIGURE_SIZES[args.figure_size],
        model=args.model,
        task=args.task,
        progress=not args.quiet,
        rerun=args.rerun,
        options={k: v for k, v in vars(args).items() if k not in shared},
    )


def run_script(
    run: Callable[[Analysis], list[Path]],
    name: str,
    doc: str | None,
    argv: Sequence[str] | None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """A script's main: parse the arguments, `run(analysis)` -> files written, print them. A
    WorkbenchError (bad setting, failed run) is one line on stderr and exit status 2."""
    analysis = parse_args(name, doc, argv, extra)
    try:
        paths = run(analysis)
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{name} ({analysis.size}): wrote {len(paths)} files to {analysis.out}")
    for path in paths:
        print(f"  {path}")
    return 0


# ---- runs -----------------------------------------------------------------------------------------


def entry(a: Analysis, method: str, label: str | None = None, **options: Any) -> MethodEntry:
    """A grid entry of `method` with the size's per-method settings and `options`."""
    return method_entry(a.size, method, label, **options)


def make_runs(a: Analysis, name: str, entries: list[MethodEntry], **settings: Any) -> list[tuple[Point, Any]]:
    """Make (or reuse) the runs of `entries` at the analysis' size; (point, run) in grid order.

    `settings` update the size's grid (train={...}, record={...}, seeds=[...]). A failed run stops the
    analysis with its error (a figure from a partial grid would mislead)."""
    grid = size_grid(a.size, name, entries, model=a.model, task=a.task, **settings)
    return _run(a, expand(grid))


def study_runs(a: Analysis) -> list[tuple[Point, Any]]:
    """The study's runs at this size (every method at each of the size's seeds), made or reused."""
    return _run(a, study_points(a.size, model=a.model, task=a.task))


def _run(a: Analysis, points: list[Point]) -> list[tuple[Point, Any]]:
    result = run_points(points, a.runs_dir, progress=a.progress, rerun=a.rerun)
    if result.failed:
        lines = "; ".join(f"{o.point.name}: {o.error}" for o in result.failed)
        raise WorkbenchError(f"{len(result.failed)} run(s) failed: {lines}")
    if result.claimed:  # another sweep process on this runs dir is running them: no table from half the runs
        names = ", ".join(o.point.name for o in result.claimed[:5])
        raise WorkbenchError(
            f"{len(result.claimed)} point(s) are being run by another process on {a.runs_dir} ({names}); "
            "run this analysis again when it has finished"
        )
    return [(o.point, o.run) for o in result.outcomes]


def memory_sweep_run(
    a: Analysis,
    method: str,
    lengths: Sequence[int],
    batch_sizes: Sequence[int],
    *,
    cap_bytes: int | None = None,
    **options: Any,
) -> Any:
    """A memory-sweep run (workbench.orchestration.memory_sweep) of `method` at the size's model and
    task, reused when a completed one with the same settings exists in the runs dir."""
    from workbench.orchestration.assembly import config_inputs
    from workbench.orchestration.memory_sweep import memory_sweep_config, run_memory_sweep
    from workbench.orchestration.sweeps import finished_runs
    from workbench.store import RunReader

    grid = size_grid(a.size, a.name, [entry(a, method, **options)], model=a.model, task=a.task)
    (point,) = expand(grid)
    config = point.config(a.runs_dir)
    settings = memory_sweep_config(config, lengths, batch_sizes, cap_bytes=cap_bytes)
    found = None if a.rerun else finished_runs(a.runs_dir).get(run_key(settings, config_inputs(config)))
    if found is not None:
        return found
    result = run_memory_sweep(config, lengths, batch_sizes, cap_bytes=cap_bytes, progress=a.progress)
    return RunReader(result.run_dir)


# ---- outputs --------------------------------------------------------------------------------------


def write_figure(a: Analysis, fig: Any, stem: str) -> list[Path]:
    """Export a workbench.figures Figure in the analysis' formats and paper size."""
    from workbench.figures import export

    return export(fig, a.out, stem=stem, formats=a.formats, size=a.figure_size)


def write_table(a: Analysis, table: pd.DataFrame, stem: str, title: str, notes: Sequence[str] = ()) -> Path:
    """Write `table` as markdown (with a title and notes) and CSV; returns the markdown file."""
    a.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(a.out / f"{stem}.csv", index=False)
    text = "\n".join([f"# {title}", "", *[f"{n}\n" for n in notes], markdown(table), ""])
    path = a.out / f"{stem}.md"
    path.write_text(text, encoding="utf-8")
    return path


def markdown(table: pd.DataFrame) -> str:
    """A plain markdown table (floats with 4 significant digits, NaN as "-")."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if value != value else f"{value:.4g}"
        return str(value)

    head = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def mib(value: Any) -> float:
    """Bytes as MiB (NaN stays NaN)."""
    return float(value) / 2**20 if value is not None else float("nan")
