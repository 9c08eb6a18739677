"""The Python API: make runs, sweep grids, open runs and draw their figures from a script or notebook.

    import workbench as wb

    run = wb.run(model="tiny-llama", method="lora", steps=5, r=8)   # -> Run (trains, records, stores)
    run.summary["accuracy_after"], run.table("memory")              # manifest summary, DataFrames
    runs = wb.sweep({"name": "rank", "methods": {"lora": {"r": [4, 8]}}, "train": {"steps": 5}})
    runs = wb.open_runs("runs", method="lora")                       # every readable run, filtered
    fig = wb.tradeoff(wb.runs_frame(runs), "saved_activations")      # figures from workbench.figures
    wb.export_figure(fig, "paper/", formats=("pdf", "png"), size="two")

Keyword options of `run` are routed by name (`option_sections` lists them):

1. `model`, `task`, `method`, `name`, `runs_dir` are the run's top-level settings;
2. any other keyword goes to the one section that has a setting of that name: `train`
   (workbench.config.TrainConfig: steps, lr, batch_size ...), `record` (RecordConfig: saliency,
   grads_every ...) or the method's options (`method_options`: r for LoRA, budget for SMT ...);
3. a name no section has is an error that lists what the sections accept; a name two sections have
   is ambiguous and must be given in an explicit section dict: `train={...}`, `record={...}` or
   `method_options={...}`; a setting given twice (keyword and section dict) is an error too.

`config=` starts from a TOML file in the `workbench run --config` layout (or a dict in the layout of
`RunConfig.from_dict`: the method's options under `method_options`); keywords override it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.config import RecordConfig, RunConfig, TrainConfig, load_toml
from workbench.errors import ConfigError
from workbench.store import DEFAULT_RUNS_DIR, RunReader, list_runs, resolve_run

if TYPE_CHECKING:
    import pandas as pd

    from workbench.figures import Figure
    from workbench.orchestration.sweeps import Grid

TOP_LEVEL = ("model", "task", "method", "name", "runs_dir")


class Tables(Mapping[str, "pd.DataFrame"]):
    """A run's recorded tables by name (those with rows), each read on first access and then kept."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._cache: dict[str, pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._cache:
            if name not in self._run.table_names():  # run.table(name) gives the empty frame instead
                raise KeyError(f"run {self._run.id} recorded no {name!r} table; it has {', '.join(self)}")
            self._cache[name] = self._run.table(name)
        return self._cache[name]

    def __contains__(self, name: object) -> bool:
        return name in self._run.table_names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._run.table_names())

    def __len__(self) -> int:
        return len(self._run.table_names())

    def __repr__(self) -> str:
        return f"Tables({', '.join(self)})"


class Run(RunReader):
    """One run of the store, as the API returns it: a `RunReader` (id, name, path, status, config,
    summary, table(name), tensors(name)) plus `tables` (every recorded table as a DataFrame, read
    lazily) and its figures.

        run = wb.open_run("latest")
        run.tables["metrics"].query("name == 'loss'")
        for stem, fig in run.figures("memory_blocks"): ...
    """

    @classmethod
    def of(cls, reader: RunReader | str | os.PathLike[str]) -> Run:
        """The Run of a RunReader, or of a run directory path."""
        return cls(reader.path if isinstance(reader, RunReader) else reader)

    @property
    def tables(self) -> Tables:
        """Every table this run recorded, name -> DataFrame (each read once, on first access)."""
        if not hasattr(self, "_tables"):
            self._tables = Tables(self)
        return self._tables

    @property
    def method(self) -> str | None:
        return self.config.get("method")

    def figures(self, kind: str) -> list[tuple[str, Figure]]:
        """(file stem, Figure) of figure `kind` for this run (workbench.figures.FIGURES lists kinds)."""
        return figures_for(kind, [self])

    def __repr__(self) -> str:
        return f"Run({self.id!r}, method={self.method!r}, status={self.status!r})"


# ---- making runs ------------------------------------------------------------------------------------


def option_sections(method: str = "lora") -> dict[str, tuple[str, ...]]:
    """The settings each section accepts for `method`: {"train": (...), "record": (...), "method": (...)}."""
    from workbench.methods import method_options_class

    names = lambda klass: tuple(f.name for f in dataclasses.fields(klass))  # noqa: E731
    return {
        "train": names(TrainConfig),
        "record": names(RecordConfig),
        "method": names(method_options_class(method)),
    }


def run_config(
    model: str | None = None,
    task: str | None = None,
    method: str | None = None,
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    record: Mapping[str, Any] | None = None,
    method_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> RunConfig:
    """The validated RunConfig that `run` would train with these arguments (routing rule: module doc)."""
    if config is None:
        data: dict[str, Any] = {}
    elif isinstance(config, Mapping):
        data = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in config.items()}
    else:
        data = load_toml(config)
    for key, value in (("model", model), ("task", task), ("method", method)):
        if value is not None:
            data[key] = value
    for key in ("name", "runs_dir", "template"):  # template: task.template
        if key in options:
            data[key] = options.pop(key)
    explicit = {"train": train, "record": record, "method_options": method_options}
    for section, values in explicit.items():
        if values is not None:
            data[section] = {**data.get(section, {}), **dict(values)}
    if not isinstance(data.get("method", RunConfig.method), str):
        raise ConfigError(f"method must be a method's name (a string), got {data['method']!r}")
    accepted = option_sections(data.get("method", RunConfig.method))
    aliases = _section_aliases(data.get("method", RunConfig.method))  # e.g. lora_alpha -> method alpha
    for key, value in options.items():
        homes = [s for s, names in accepted.items() if key in names or key in aliases[s]]
        if not homes:
            raise ConfigError(_unknown_option(key, accepted, data.get("method", RunConfig.method)))
        if len(homes) > 1:
            raise ConfigError(
                f"option {key!r} is ambiguous: both {' and '.join(homes)} have it; pass it in a section "
                f"dict instead, e.g. {homes[0].replace('method', 'method_options')}={{{key!r}: ...}}"
            )
        section = "method_options" if homes[0] == "method" else homes[0]
        given = explicit[section]
        if given is not None and key in given:
            raise ConfigError(f"option {key!r} is given twice: as a keyword and in {section}=")
        data.setdefault(section, {})[key] = value
    return RunConfig.from_dict(data)


def _section_aliases(method: str) -> dict[str, dict[str, str]]:
    """The aliases each section's options class declares (`Validated.aliases`), e.g. LoRA's lora_alpha."""
    from workbench.methods import method_options_class

    return {
        "train": TrainConfig.aliases,
        "record": RecordConfig.aliases,
        "method": method_options_class(method).aliases,
    }


def _unknown_option(key: str, accepted: dict[str, tuple[str, ...]], method: str) -> str:
    every = [n for names in accepted.values() for n in names] + list(TOP_LEVEL)
    close = difflib.get_close_matches(key, every, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listed = "; ".join(f"{s}: {', '.join(names) or '(none)'}" for s, names in accepted.items())
    return f"unknown option {key!r} for method {method!r}.{hint} Accepted: {', '.join(TOP_LEVEL)}; {listed}"


def run(
    model: str | None = None,
    task: str | None = None,
    method: str | None = None,
    *,
    progress: bool = True,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    record: Mapping[str, Any] | None = None,
    method_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Run:
    """Fine-tune `model` on `task` with `method`, recording into the run store; returns the new Run.

    Defaults: smollm2-135m, polarity, lora, runs dir "runs". Options are routed by name (module doc):

        wb.run(method="lora", steps=5, r=8)                     # train.steps, method r
        wb.run(method="sage", tau=0.8, saliency_every=1)       # method tau, record.saliency_every
        wb.run(config="lora.toml", lr=1e-4, runs_dir="runs/x")  # a TOML file, then overrides
    """
    from workbench.orchestration.train import train as train_run

    resolved = run_config(
        model,
        task,
        method,
        config=config,
        train=train,
        record=record,
        method_options=method_options,
        **options,
    )
    return Run(train_run(resolved, progress=progress).run_dir)


def sweep(
    grid: Grid | Mapping[str, Any] | str | os.PathLike[str],
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    rerun: bool = False,
    engine: str = "serial",
    address: str | None = None,
) -> list[Run]:
    """Run every point of `grid` (a dict in the sweep TOML layout, a path to such a file, or a Grid;
    see workbench.orchestration.sweeps) that is not already completed in `runs_dir`; returns the runs
    in grid order.

        runs = wb.sweep({"name": "rank", "task": "polarity", "train": {"steps": 20},
                         "methods": {"lora": {"r": [4, 16]}, "sage": {}}})

    A run that fails is returned with status "failed" and the sweep goes on; `rerun` ignores
    completed runs and runs every point again. `engine="ray"` runs each point as a Ray task with its
    resources, on a local Ray or the cluster at `address` (docs/SCALING.md).
    """
    from workbench.orchestration.sweeps import Grid, run_grid

    if not isinstance(grid, (Grid, Mapping, str, os.PathLike)):
        raise ConfigError(
            f"sweep takes a grid: a dict in the sweep TOML layout, a path to a sweep TOML file or a Grid; "
            f"got {type(grid).__name__}"
        )
    result = run_grid(
        dict(grid) if isinstance(grid, Mapping) else grid,
        runs_dir,
        progress=progress,
        rerun=rerun,
        engine=engine,
        address=address,
    )
    return [Run.of(r) for r in result.runs]


# ---- reading runs -----------------------------------------------------------------------------------


def open_run(
    ref: str | os.PathLike[str] = "latest", runs_dir: str | os.PathLike[str] = DEFAULT_RUNS_DIR
) -> Run:
    """One run: an id in `runs_dir`, a unique id prefix, "latest", or a path to a run directory
    (`workbench.store.resolve_run`)."""
    return Run.of(resolve_run(runs_dir, ref))


def open_runs(
    runs_dir: str | os.PathLike[str] = DEFAULT_RUNS_DIR,
    *,
    method: str | Sequence[str] | None = None,
    model: str | None = None,
    task: str | None = None,
    status: str | Sequence[str] | None = None,
) -> list[Run]:
    """Every readable run in `runs_dir`, oldest first, optionally filtered (a broken run directory is
    skipped; `workbench ls` shows it with its error). Memory-sweep runs are included (their config
    has kind "memory-sweep")."""

    def wanted(value: Any, allowed: str | Sequence[str] | None) -> bool:
        if allowed is None:
            return True
        return value == allowed if isinstance(allowed, str) else value in allowed

    out = []
    for entry in list_runs(runs_dir):
        if entry.reader is None:
            continue
        config = entry.reader.config
        if (
            wanted(config.get("method"), method)
            and wanted(config.get("model"), model)
            and wanted(config.get("task"), task)
            and wanted(entry.reader.status, status)
        ):
            out.append(Run.of(entry.reader))
    return out


def runs_at(path: str | os.PathLike[str]) -> list[Run]:
    """The runs a path names: one run directory (it has a manifest.json) or every run of a runs dir."""
    from workbench.errors import StoreError
    from workbench.store.schema import MANIFEST

    root = Path(path)
    if (root / MANIFEST).is_file():
        return [Run(root)]
    if not root.is_dir():
        raise StoreError(f"{root} is neither a run directory nor a runs directory")
    return open_runs(root)


# ---- figures ------------------------------------------------------------------------------------------


def figures_for(kind: str, runs: Sequence[RunReader]) -> list[tuple[str, Figure]]:
    """(file stem, Figure) of figure `kind` over `runs`: one per run for per-run kinds (saliency,
    blocks ...), one across the runs otherwise; empty when no run recorded what the kind needs, or when a
    kind comparing runs (the trade-offs) gets fewer than two. Every stem names the run ids it draws."""
    from workbench.figures import figures_for as build

    return build(kind, list(runs))


def export_figures(
    kind: str,
    runs: Sequence[RunReader],
    out: str | os.PathLike[str],
    *,
    formats: Sequence[str] = ("pdf", "svg", "png", "html"),
    size: str = "one",
) -> list[Path]:
    """Write figure `kind` of `runs` into `out` in every format (paper `size`: "one" or "two"
    columns); returns the files written (none when no run recorded what the kind needs, or for a
    trade-off kind of fewer than two runs). File names hold the run ids (`<kind>-<run id>.<fmt>`), so
    exports of different runs into one folder never overwrite each other."""
    from workbench.figures import export

    paths: list[Path] = []
    for stem, fig in figures_for(kind, runs):
        paths += export(fig, out, stem=stem, formats=formats, size=size)
    return paths


def export_figure(
    fig: Figure,
    out_dir: str | os.PathLike[str],
    *,
    stem: str | None = None,
    formats: Sequence[str] = ("pdf", "svg", "png", "html"),
    size: str = "one",
) -> list[Path]:
    """Write one Figure as `<out_dir>/<stem>.<fmt>` (workbench.figures.export; a run's trained model is
    exported by `workbench.model_export.export_model`)."""
    from workbench.figures import export

    return export(fig, out_dir, stem=stem, formats=formats, size=size)


def figure_kinds() -> dict[str, str]:
    """Every figure kind the app shows, name -> what it draws."""
    from workbench.figures import FIGURES

    return {name: FIGURES.get(name).help for name in FIGURES}
