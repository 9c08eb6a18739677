"""Sweeps: a grid of runs over methods x options x seeds, resumable, with one progress bar.

A grid is a small TOML file (or the same layout as a dict). `workbench sweep --config sweep.toml` and
`workbench.sweep(grid)` run it:

    # workbench sweep --config rank.toml
    name = "rank"                 # run names: "<name>-<label> <axis>=<value> ..."
    model = "smollm2-135m"        # top-level run keys: model, task, runs_dir
    task = "polarity"
    seeds = [0, 1]                # train.seed of each point (optional; default: the [train] seed)
    resources = {cpus = 1}        # what a point needs on the Ray engine (cpus, gpus)

    [train]                       # settings of every point; a list is a grid axis
    steps = 40
    lr = [1e-4, 3e-4]

    [record]                      # what every point records (workbench.config.RecordConfig)
    saliency_every = 5

    [methods.lora]                # one table per method: its options; a list is an axis of this method
    r = [8, 16]
    [methods.full.train]          # train (or record) settings for this method only
    lr = 2e-5
    [methods.sage-random]         # a second variant of one method: `method` names it
    method = "sage"
    metric = "random"

`methods = ["lora", "full"]` (a list) runs methods with their default options. A list value is always an
axis; to give a list-valued option one value, wrap it: `[[1, 2]]`. Points are the product of every axis
of a method, for each seed, in file order.

Resuming: every point's resolved config (without its name and runs dir) and the content hashes of its
task's examples and its model's weights (`workbench.provenance`, recorded in every manifest) hash to a
`run_key`. A point whose key matches a *completed* run in the runs dir is skipped and that run reused
(also a run made by another sweep or by hand with the same settings); an interrupted or failed run is
run again (the old directory stays, marked so). Settings, data or model changed since -> a different
key -> a new run.

Sharing a runs dir: several sweep processes may run at once on one runs dir (the same grid or
overlapping ones). Each point is claimed before it runs (workbench.orchestration.claims: a lock file
`<runs_dir>/.claims/<key>.lock` made with O_EXCL, released when the point ends however it ends, stolen
from a dead process on the same host); a point another live sweep holds is skipped and reported
"claimed elsewhere", and a point another sweep completed meanwhile is reused. Running the sweep again
once the others are done collects every run.

Engines: the serial engine (default) runs the points one after the other in this process; `--engine ray`
(`run_grid(..., engine="ray")`) runs each as a Ray task with its resources (`resources = {cpus = 2,
gpus = 1}` at the top level or in `[methods.<label>.resources]`; not part of the run key) on a local Ray
or the cluster at `--address` (ray_engine.py, docs/SCALING.md). Claims and resuming work the same.

Bounds: every axis needs at least one value, and a grid may have at most MAX_POINTS points (the product
of its axis lengths, counted before anything is expanded).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.config import RunConfig, _read_toml
from workbench.errors import ConfigError, WorkbenchError
from workbench.orchestration.claims import claim_owner, claimed
from workbench.provenance import json_digest
from workbench.recorders.base import RecorderBase, StepInfo
from workbench.store.schema import DEFAULT_RUNS_DIR
from workbench.validation import shown

if TYPE_CHECKING:
    from tqdm import tqdm as Tqdm

    from workbench.store import RunReader

SWEEP_KEYS = ("name", "model", "task", "runs_dir", "seeds", "resources", "train", "record", "methods")
ENGINES = ("serial", "ray")  # how points run: one after the other here, or as Ray tasks (ray_engine.py)
SECTIONS = ("train", "record")
MAX_POINTS = 10_000  # points of one grid (sum over methods of the product of their axis lengths)
# keys of RunConfig.to_dict() that do not change what a run computes: they stay out of its run key
UNKEYED = ("name", "runs_dir")


# ---- the grid ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """What one point needs on the Ray engine (`resources = {cpus = 2, gpus = 1}`): CPU cores (its torch
    threads) and GPUs. The serial engine runs every point here, whatever it asks for; never in the run
    key (they change where a run computes, not what)."""

    cpus: float = 1.0
    gpus: float = 0.0

    @classmethod
    def parse(cls, value: Any, where: str, base: Resources | None = None) -> Resources:
        base = base or cls()
        if value is None:
            return base
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where}: resources must be a table like {{cpus = 2, gpus = 1}}, got {shown(value)}"
            )
        unknown = sorted(set(value) - {"cpus", "gpus"})
        if unknown:
            raise ConfigError(f"{where}: unknown resource(s) {', '.join(unknown)}; accepted: cpus, gpus")
        out = dataclasses.replace(base, **value)
        for name, low in (("cpus", 0.0), ("gpus", 0.0)):
            v = getattr(out, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or v < low or (name == "cpus" and v <= 0) or v > 1024:
                rule = "> 0" if name == "cpus" else ">= 0"
                raise ConfigError(
                    f"{where}: resources.{name} must be a number {rule} (at most 1024), got {shown(v)}"
                )
        return out


@dataclass(frozen=True)
class MethodEntry:
    """One `[methods.<label>]` table: a method, its options and its own train / record settings."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    resources: Any = None  # the [methods.<label>.resources] table, over the grid's


@dataclass(frozen=True)
class Grid:
    """A parsed sweep file: shared settings, the method entries and the seeds."""

    name: str
    methods: tuple[MethodEntry, ...]
    top: dict[str, Any] = field(default_factory=dict)  # model, task
    train: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None
    runs_dir: str | None = None
    resources: Resources = field(default_factory=Resources)

    @functools.cached_property
    def points(self) -> tuple[Point, ...]:
        """Every point in order (methods in file order, then axes, then seeds), each validated once:
        the grid keeps them."""
        return tuple(_expand(self))


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its name, its config (RunConfig.from_dict layout) and what varies in it."""

    label: str  # the method entry's label
    name: str
    data: dict[str, Any]
    axes: dict[str, Any]  # dotted key -> value of this point's grid axes, e.g. {"method.r": 8}
    resolved: RunConfig  # RunConfig.from_dict(data), validated when the grid was expanded
    resources: Resources = field(default_factory=Resources)  # what it needs on the Ray engine

    def config(self, runs_dir: str | os.PathLike[str] | None = None) -> RunConfig:
        """The validated RunConfig of this point (a copy; in `runs_dir` when given)."""
        config = copy.copy(self.resolved)  # the runs dir is not validated and not part of the run key
        if runs_dir is not None:
            config.runs_dir = str(runs_dir)
        return config

    @property
    def key(self) -> str:
        return run_key(self.resolved.to_dict())


def parse_grid(data: dict[str, Any], *, where: str = "sweep") -> Grid:
    """Check a sweep dict (TOML layout above) and return its Grid; every mistake is one ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table of settings, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in {where}; accepted: {', '.join(SWEEP_KEYS)} "
            "(method options go in [methods.<method>] tables)"
        )
    name = data.get("name", "sweep")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: name must be a non-empty string, got {name!r}")
    methods = _parse_methods(data.get("methods"), where)
    seeds = data.get("seeds")
    if seeds is not None:
        seeds = seeds if isinstance(seeds, list) else [seeds]
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(
                f"{where}: seeds must be a list of integers (at least one), got {shown(data['seeds'])}"
            )
        seeds = tuple(seeds)
    runs_dir = data.get("runs_dir")
    if runs_dir is not None and (not isinstance(runs_dir, str) or not runs_dir.strip()):
        raise ConfigError(f"{where}: runs_dir must be a non-empty directory name, got {shown(runs_dir)}")
    sections = {s: _section(data.get(s), f"[{s}]", where) for s in SECTIONS}
    grid = Grid(
        name=name.strip(),
        methods=methods,
        top={k: data[k] for k in ("model", "task") if k in data},
        train=sections["train"],
        record=sections["record"],
        seeds=seeds,
        runs_dir=runs_dir,
        resources=Resources.parse(data.get("resources"), where),
    )
    grid.points  # noqa: B018  (validate every point now, before anything runs)
    return grid


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Read and check a sweep TOML file."""
    return parse_grid(_read_toml(Path(path)), where=str(path))


def build_grid(name: str, entries: Iterable[MethodEntry], **shared: Any) -> Grid:
    """A Grid built in code (analyses): `shared` holds model, task, train, record, seeds, runs_dir."""
    train = dict(shared.pop("train", {}) or {})
    record = dict(shared.pop("record", {}) or {})
    seeds = shared.pop("seeds", None)
    runs_dir = shared.pop("runs_dir", None)
    unknown = set(shared) - {"model", "task"}
    if unknown:
        raise ConfigError(f"unknown grid setting(s) {', '.join(sorted(unknown))}; accepted: model, task")
    grid = Grid(name, tuple(entries), shared, train, record, tuple(seeds) if seeds else None, runs_dir)
    grid.points  # noqa: B018  (validate every point now)
    return grid


def _section(value: Any, what: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {what} must be a table of key = value, got {value!r}")
    return dict(value)


def _parse_methods(value: Any, where: str) -> tuple[MethodEntry, ...]:
    if value is None:
        raise ConfigError(f'{where} names no methods: add methods = ["lora", ...] or [methods.<name>] tables')
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        if not value or not all(isinstance(m, str) for m in value):
            raise ConfigError(f"{where}: methods must be a list of method names, got {value!r}")
        return tuple(MethodEntry(m, m) for m in value)
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}: methods must be a list of names or [methods.<name>] tables")
    entries = []
    for label, table in value.items():
        table = _section(table, f"[methods.{label}]", where)
        method = table.pop("method", label)
        if not isinstance(method, str):
            raise ConfigError(f"{where}: [methods.{label}] method must be a name, got {method!r}")
        train = _section(table.pop("train", None), f"[methods.{label}.train]", where)
        record = _section(table.pop("record", None), f"[methods.{label}.record]", where)
        resources = _section(table.pop("resources", None), f"[methods.{label}.resources]", where)
        entries.append(MethodEntry(label, method, table, train, record, resources or None))
    return tuple(entries)


def _axes(prefix: str, values: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """(dotted key, values) of one section, a scalar being an axis of one value."""
    return [(f"{prefix}.{k}", v if isinstance(v, list) else [v]) for k, v in values.items()]


def _method_axes(grid: Grid, entry: MethodEntry) -> list[tuple[str, list[Any]]]:
    """The axes of one method entry (train, record, method options, then seeds); an empty list axis is
    one ConfigError naming it."""
    axes = (
        _axes("train", {**grid.train, **entry.train})
        + _axes("record", {**grid.record, **entry.record})
        + _axes("method", entry.options)
    )
    if grid.seeds is not None:
        axes = [(k, v) for k, v in axes if k != "train.seed"] + [("train.seed", list(grid.seeds))]
    for key, values in axes:
        if not values:
            raise ConfigError(
                f"sweep {grid.name!r}, [methods.{entry.label}]: the axis {key} is an empty list, so the grid "
                "has no points; give it at least one value (a list-valued option with one value is "
                "wrapped: [[1, 2]])"
            )
    return axes


def grid_size(grid: Grid) -> int:
    """How many points `grid` has, from its axis lengths alone (nothing is expanded or validated)."""
    return sum(math.prod(len(values) for _, values in _method_axes(grid, e)) for e in grid.methods)


def expand(grid: Grid) -> list[Point]:
    """Every point of the grid in order (methods in file order, then axes, then seeds), each validated."""
    return list(grid.points)


def _expand(grid: Grid) -> Iterator[Point]:
    """The points of `grid`; the one place a point's config is built and validated. A grid of more than
    MAX_POINTS points is one ConfigError, raised before the first point is built."""
    size = grid_size(grid)
    if size > MAX_POINTS:
        raise ConfigError(
            f"sweep {grid.name!r} has {size:,} points (the product of each method's axis lengths), more "
            f"than the {MAX_POINTS:,} one sweep may have; shorten its axes or split it into several sweeps"
        )
    for entry in grid.methods:
        axes = _method_axes(grid, entry)
        resources = Resources.parse(
            entry.resources, f"sweep {grid.name!r}, [methods.{entry.label}]", grid.resources
        )
        varying = [k for k, values in axes if len(values) > 1]
        for combo in itertools.product(*(values for _, values in axes)):
            chosen = dict(zip((k for k, _ in axes), combo, strict=True))
            shown = {k: chosen[k] for k in varying}
            data: dict[str, Any] = {
                **grid.top,
                "method": entry.method,
                "name": point_name(grid.name, entry.label, shown),
            }
            for key, value in chosen.items():
                section, option = key.split(".", 1)
                data.setdefault("method_options" if section == "method" else section, {})[option] = value
            try:
                config = RunConfig.from_dict(copy.deepcopy(data))
            except ConfigError as err:
                raise ConfigError(f"sweep {grid.name!r}, point {data['name']!r}: {err}") from None
            yield Point(entry.label, data["name"], data, shown, config, resources)


def point_name(sweep: str, label: str, axes: dict[str, Any]) -> str:
    """ "<sweep>-<label> r=8 seed=1": the varying values in the name, without their section."""
    parts = [f"{sweep}-{label}"] + [f"{k.split('.', 1)[1]}={_short(v)}" for k, v in axes.items()]
    return " ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


# ---- run keys and finished runs -----------------------------------------------------------------------


def run_key(config: dict[str, Any], inputs: dict[str, Any] | None = None) -> str:
    """A short hash of a run's resolved config (RunConfig.to_dict or a manifest's config), without
    the keys that do not change what it computes (name, runs dir), and of the content hashes of its
    inputs when given (`environment.inputs` of a manifest, `config_inputs` of a point): equal
    settings on equal data and model, equal key."""
    kept: dict[str, Any] = {k: v for k, v in config.items() if k not in UNKEYED}
    if inputs is not None:
        kept = {"config": kept, "inputs": inputs}
    return json_digest(kept)


def finished_runs(runs_dir: str | os.PathLike[str]) -> dict[str, RunReader]:
    """run key (settings and input hashes) -> the newest completed run with that key in `runs_dir`
    (broken runs are ignored; a run recorded without input hashes keys on its settings alone, so it
    matches no point and runs again)."""
    from workbench.store import list_runs

    found: dict[str, RunReader] = {}
    for entry in list_runs(runs_dir):  # oldest first: a newer run of the same key wins
        if entry.reader is not None and entry.reader.status == "completed":
            inputs = entry.reader.environment.get("inputs")
            found[run_key(entry.reader.config, inputs if isinstance(inputs, dict) else None)] = entry.reader
    return found


def reusable_run(config: RunConfig, finished: dict[str, RunReader]) -> RunReader | None:
    """The completed run in `finished` (`finished_runs`) made with `config`'s settings on the same
    task and model contents, if any. Hashes the inputs (loads the model) only when some finished run
    has these settings."""
    from workbench.orchestration.assembly import config_inputs

    settings = config.to_dict()
    if not any(run_key(run.config) == run_key(settings) for run in finished.values()):
        return None
    return finished.get(run_key(settings, config_inputs(config)))


# ---- running --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one point: "reused" (a completed run existed), "ran", "failed", or "claimed"
    (another live sweep holds the point: not run here, `claimed_by` says who)."""

    point: Point
    action: str
    run: RunReader | None = None
    error: str | None = None
    claimed_by: str | None = None


@dataclass
class SweepResult:
    """Every point's outcome, in grid order."""

    outcomes: list[Outcome]

    @property
    def runs(self) -> list[RunReader]:
        """The runs of the points that have one (reused, ran, or failed after their run started)."""
        return [o.run for o in self.outcomes if o.run is not None]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.action == "failed"]

    @property
    def claimed(self) -> list[Outcome]:
        """Points another sweep was running: run the sweep again after it to collect their runs."""
        return [o for o in self.outcomes if o.action == "claimed"]


def work_units(config: RunConfig) -> int:
    """The progress-bar size of one run: its training batches plus its evaluation batches."""
    t = config.train
    if not t.eval_examples:
        return t.steps * t.grad_accum
    evals = 2 + ((t.steps - 1) // t.eval_every if t.eval_every else 0)  # before, every k steps, after
    return t.steps * t.grad_accum + evals * math.ceil(t.eval_examples / t.eval_batch_size)


class SweepProgress(RecorderBase):
    """Moves the sweep's one progress bar: training batches at each step end, evaluation batches at
    the end of each evaluation. Observes only (writes nothing to the store)."""

    name = "progress"

    def __init__(self, bar: Tqdm, label: str, config: RunConfig) -> None:
        super().__init__()
        self.bar, self.label, self.config = bar, label, config
        self.done = 0

    def _advance(self, units: int) -> None:
        self.bar.update(units)
        self.done += units

    def on_phase_start(self, name: str, step: int) -> None:
        self.bar.set_postfix_str(f"{self.label}: {name}", refresh=False)

    def on_phase_end(self, name: str, step: int, seconds: float) -> None:
        t = self.config.train
        if name == "eval" and t.eval_examples:
            self._advance(math.ceil(t.eval_examples / t.eval_batch_size))
        self.bar.set_postfix_str(f"{self.label}: train", refresh=False)

    def on_step_end(self, info: StepInfo) -> None:
        self._advance(self.config.train.grad_accum)
        self.bar.set_postfix_str(f"{self.label}: step {info.step} loss {info.loss:.3f}", refresh=False)


def run_points(
    points: Sequence[Point],
    runs_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    rerun: bool = False,
    engine: str = "serial",
    address: str | None = None,
) -> SweepResult:
    """Run every point not already completed in `runs_dir` (all of them when `rerun`) under one progress
    bar: one after the other here (engine "serial"), or as Ray tasks with each point's resources on a
    local Ray or the cluster at `address` (engine "ray", workbench.orchestration.ray_engine). A run that
    fails is recorded and the sweep goes on; Ctrl-C stops it (the runs in progress read "interrupted" and
    run again next time).

    Each point is claimed in `runs_dir` while it runs (workbench.orchestration.claims), so sweeps in
    other processes on the same runs dir skip it ("claimed") and reuse its run once completed; a point
    claimed by another live sweep is skipped here in the same way."""
    from tqdm.auto import tqdm

    if not str(runs_dir).strip():
        raise ConfigError("runs_dir must not be empty: name the run store's directory (default ./runs)")
    check_engine(engine, address)
    started = _run_ids(runs_dir)  # with rerun, only runs made after this moment are reused
    finished = {} if rerun else finished_runs(runs_dir)
    configs = [p.config(runs_dir) for p in points]
    keys = [run_key(c.to_dict()) for c in configs]
    outcomes: list[Outcome | None] = [None] * len(points)
    todo = []
    for i, key in enumerate(keys):
        reused_run = reusable_run(configs[i], finished) if finished else None
        if reused_run is not None:
            outcomes[i] = Outcome(points[i], "reused", reused_run)
        elif key in keys[:i]:  # the same settings twice in one grid: one run
            outcomes[i] = Outcome(points[i], "duplicate")
        else:
            todo.append(i)
    total = sum(work_units(configs[i]) for i in todo)
    reused = len(points) - len(todo)
    desc = f"{len(todo)} runs" + (f" ({reused} reused)" if reused else "")
    from workbench.models.loading import no_loading_bars

    quiet = no_loading_bars() if progress and todo else contextlib.nullcontext()
    with quiet, tqdm(total=total, desc=desc, unit="batch", disable=not progress or not todo) as bar:
        if engine == "ray" and todo:
            tasks = [PointTask(points[i], configs[i], keys[i], str(runs_dir), started, rerun) for i in todo]
            for i, outcome in zip(todo, _run_on_ray(tasks, bar, address), strict=True):
                outcomes[i] = outcome
        for n, i in enumerate(todo if engine == "serial" else (), 1):
            task = PointTask(points[i], configs[i], keys[i], str(runs_dir), started, rerun)
            tracker = SweepProgress(bar, f"{n}/{len(todo)} {task.point.name}", task.config)
            outcomes[i] = task.run(tracker)
            if outcomes[i].action == "claimed":
                bar.set_postfix_str(
                    f"{tracker.label}: claimed elsewhere ({outcomes[i].claimed_by})", refresh=False
                )
            bar.update(work_units(task.config) - tracker.done)
    for i in todo:  # points other sweeps held: completed by now?
        if outcomes[i] is not None and outcomes[i].action == "claimed":
            done = _completed_since(configs[i], runs_dir, started if rerun else None)
            if done is not None:
                outcomes[i] = Outcome(points[i], "reused", done)
    for i, outcome in enumerate(outcomes):  # duplicates share the outcome of their first point
        if outcome is not None and outcome.action == "duplicate":
            first = outcomes[keys.index(keys[i])]
            outcomes[i] = dataclasses.replace(first, point=points[i]) if first else outcome
    return SweepResult([o for o in outcomes if o is not None])


def check_engine(engine: Any, address: Any) -> None:
    """One ConfigError for an engine that is not one of ENGINES, or an address without the Ray engine."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown sweep engine {shown(engine)}; choose one of: {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise ConfigError("--address names a Ray cluster: it needs --engine ray")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ConfigError(
            f"address must be a Ray address (host:port, ray://host:port or auto), got {shown(address)}"
        )


@dataclass(frozen=True)
class PointTask:
    """One point to run, with all it needs: what the serial loop runs here and a Ray worker runs there."""

    point: Point
    config: RunConfig
    key: str
    runs_dir: str
    started: frozenset[str] | set[str]  # run ids before the sweep began (reuse under rerun)
    rerun: bool

    def run(self, tracker: SweepProgress) -> Outcome:
        """Claim the point, then run it (or report who holds it: action "claimed")."""
        with claimed(self.runs_dir, self.key) as claim:
            if claim is None:
                return Outcome(self.point, "claimed", claimed_by=claim_owner(self.runs_dir, self.key))
            return _run_point(self, tracker)


def _run_on_ray(tasks: list[PointTask], bar: Tqdm, address: str | None) -> list[Outcome]:
    """The Ray engine: each task a Ray task with its point's resources (ray_engine.py); outcomes in order.
    The bar advances as points finish."""
    from workbench.orchestration.ray_engine import Job, run_jobs

    outcomes: list[Outcome | None] = [None] * len(tasks)

    def done(i: int, result: Outcome | None, error: str | None) -> None:
        task = tasks[i]
        outcomes[i] = result if error is None else _failed_elsewhere(task, error)
        bar.update(work_units(task.config))
        bar.set_postfix_str(f"{task.point.name}: {outcomes[i].action}", refresh=False)

    bar.set_postfix_str(f"{len(tasks)} points on Ray", refresh=False)
    run_jobs(
        [Job(run_in_worker, t, t.point.resources.cpus, t.point.resources.gpus) for t in tasks], address, done
    )
    return [o for o in outcomes if o is not None]


def run_in_worker(task: PointTask) -> Outcome:
    """In a Ray worker: run one point as the serial engine does, with torch threads = its CPUs (the run
    itself goes into the shared runs dir)."""
    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(max(1, int(task.point.resources.cpus)))
    with tqdm(disable=True) as bar:
        return task.run(SweepProgress(bar, task.point.name, task.config))


def _failed_elsewhere(task: PointTask, error: str) -> Outcome:
    """A point whose Ray task raised, died or could not be scheduled: failed, with its run if it began."""
    return Outcome(task.point, "failed", _new_run(task.runs_dir, set(task.started), task.key), error)


def _run_point(task: PointTask, tracker: SweepProgress) -> Outcome:
    """Run one point this process has claimed, unless another sweep completed it meanwhile (then that
    run is reused: under `rerun`, only a run made since the sweep `started`)."""
    from workbench.orchestration.train import train
    from workbench.recorders import default_recorders
    from workbench.store import RunReader

    point, config, key, runs_dir = task.point, task.config, task.key, task.runs_dir
    started, rerun = task.started, task.rerun
    done = _completed_since(config, runs_dir, started if rerun else None)
    if done is not None:
        return Outcome(point, "reused", done)
    tracker.bar.set_postfix_str(f"{tracker.label}: loading", refresh=True)
    before = _run_ids(runs_dir)
    try:
        result = train(config, progress=False, recorders=[*default_recorders(config.record), tracker])
        return Outcome(point, "ran", RunReader(result.run_dir))
    except (KeyboardInterrupt, ConfigError):
        raise  # Ctrl-C stops the sweep; a bad setting (unknown model ...) would fail every point
    except Exception as err:  # a run that failed: keep going, report it at the end
        run = _new_run(runs_dir, before, key)
        if run is None and not isinstance(err, WorkbenchError):
            raise  # failed before its run existed and not a user-facing error: a bug
        return Outcome(point, "failed", run, f"{type(err).__name__}: {err}")


def _completed_since(
    config: RunConfig, runs_dir: str | os.PathLike[str], existing: set[str] | frozenset[str] | None
) -> RunReader | None:
    """A completed run of `config` in `runs_dir` now (not one of the `existing` run ids, when given)."""
    finished = finished_runs(runs_dir)
    if existing is not None:
        finished = {k: run for k, run in finished.items() if run.path.name not in existing}
    return reusable_run(config, finished) if finished else None


def run_grid(
    grid: Grid | dict[str, Any] | str | os.PathLike[str],
    runs_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    rerun: bool = False,
    engine: str = "serial",
    address: str | None = None,
) -> SweepResult:
    """Expand `grid` (a Grid, a dict in the sweep layout, or a TOML path) and run it in `runs_dir`
    (default: the grid's runs_dir, else DEFAULT_RUNS_DIR) on `engine` ("serial" or "ray", see
    `run_points`)."""
    if isinstance(grid, (str, os.PathLike)):
        grid = load_grid(grid)
    elif isinstance(grid, dict):
        grid = parse_grid(grid)
    if runs_dir is None:
        runs_dir = grid.runs_dir or DEFAULT_RUNS_DIR
    return run_points(grid.points, runs_dir, progress=progress, rerun=rerun, engine=engine, address=address)


def _run_ids(runs_dir: str | os.PathLike[str]) -> set[str]:
    path = Path(runs_dir)
    return {p.name for p in path.iterdir() if not p.name.startswith(".")} if path.is_dir() else set()


def _new_run(runs_dir: str | os.PathLike[str], before: set[str], key: str) -> RunReader | None:
    """The run a failed point left behind: a directory made since `before` with the point's key."""
    from workbench.errors import StoreError
    from workbench.store import RunReader

    for run_id in sorted(_run_ids(runs_dir) - before):
        try:
            reader = RunReader(Path(runs_dir) / run_id)
        except StoreError:
            continue
        if run_key(reader.config) == key:
            return reader
    return None


# ---- the summary table --------------------------------------------------------------------------------


def summary_rows(result: SweepResult) -> list[dict[str, Any]]:
    """One dict per point: name, method, what happened, status and the run's key numbers."""
    from workbench.store.summary import run_record

    rows = []
    for o in result.outcomes:
        record = run_record(o.run) if o.run is not None else {}
        rows.append(
            {
                "point": o.point.name,
                "method": o.point.data["method"],
                "done": o.action,
                "status": record.get("status", "elsewhere" if o.action == "claimed" else "-"),
                "accuracy_before": record.get("accuracy_before"),
                "accuracy": record.get("accuracy"),
                "saved_activations_bytes": record.get("saved_activations_bytes"),
                "total_logical_bytes": record.get("total_logical_bytes"),
                "step_seconds": record.get("step_seconds"),
                "trainable_parameters": record.get("trainable_parameters"),
                "run": o.run.id if o.run is not None else "-",
                "error": o.error,
                "claimed_by": o.claimed_by,
            }
        )
    return rows


def format_summary(result: SweepResult) -> str:
    """The table printed at the end of a sweep (accuracy, memory in MiB, step time, trainable params)."""
    from workbench.report import mib

    def pct(v: Any) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    rows = summary_rows(result)
    width = max([len("point")] + [len(r["point"]) for r in rows])
    head = (
        f"{'point':<{width}}  {'method':<9} {'done':<7} {'status':<11} {'acc0%':>6} {'acc%':>6} "
        f"{'saved act.':>12} {'total logical':>14} {'step s':>7} {'trainable':>12}  run"
    )
    lines = [head]
    for r in rows:
        step = "-" if r["step_seconds"] is None else f"{r['step_seconds']:.3f}"
        trainable = "-" if r["trainable_parameters"] is None else f"{int(r['trainable_parameters']):,}"
        lines.append(
            f"{r['point']:<{width}}  {r['method']:<9} {r['done']:<7} {r['status']:<11} "
            f"{pct(r['accuracy_before']):>6} {pct(r['accuracy']):>6} {mib(r['saved_activations_bytes']):>12} "
            f"{mib(r['total_logical_bytes']):>14} {step:>7} {trainable:>12}  {r['run']}"
        )
    for r in rows:
        if r["error"]:
            lines.append(f"failed: {r['point']}: {r['error']}")
    for r in rows:
        if r["claimed_by"]:
            lines.append(
                f"claimed elsewhere: {r['point']}: another sweep runs it ({r['claimed_by']}); run this sweep "
                "again after it to collect the run"
            )
    counts = {a: sum(o.action == a for o in result.outcomes) for a in ("ran", "reused", "failed")}
    claimed_points = len(result.claimed)
    lines.append(
        ", ".join(f"{n} {a}" for a, n in counts.items())
        + (f", {claimed_points} claimed elsewhere" if claimed_points else "")
    )
    seeds = format_seed_means(result)
    return "\n".join(lines + ([""] + [seeds] if seeds else []))


def format_seed_means(result: SweepResult) -> str:
    """Where points differ only in their seed: one line per configuration with the mean ± 95% Student-t
    half-width over its completed seeds (accuracy in %, saved activations and total logical memory in
    MiB, step seconds); "" when no configuration ran more than one seed."""
    from workbench.comparisons import aggregate_seeds, ratio_table
    from workbench.store.summary import configuration_name, runs_frame

    runs = [o.run for o in result.outcomes if o.run is not None]
    if not runs:
        return ""
    table = aggregate_seeds(ratio_table(runs_frame(list({r.id: r for r in runs}.values()))))
    if table.empty or table["seeds"].max() < 2:
        return ""

    def cell(mean: float, half: float, scale: float, spec: str) -> str:
        if math.isnan(mean):
            return "-"
        text = format(mean * scale, spec)
        return text if math.isnan(half) else f"{text} ± {format(half * scale, spec)}"

    width = max(len(configuration_name(x)) for x in table["label"])
    lines = [
        f"means over seeds (± 95% half-width):\n{'configuration':<{width}}  {'seeds':>5}  {'acc%':>11}  "
        f"{'saved act. MiB':>16}  {'total MiB':>16}  {'step s':>13}"
    ]
    for _, r in table.iterrows():
        lines.append(
            f"{configuration_name(r['label']):<{width}}  {r['seeds']:>5}  "
            f"{cell(r['accuracy'], r['accuracy_pm'], 100, '.1f'):>11}  "
            f"{cell(r['saved_activations'], r['saved_activations_pm'], 2**-20, ',.1f'):>16}  "
            f"{cell(r['total_logical'], r['total_logical_pm'], 2**-20, ',.1f'):>16}  "
            f"{cell(r['step_time'], r['step_time_pm'], 1, '.3f'):>13}"
        )
    return "\n".join(lines)
