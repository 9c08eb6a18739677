"""workbench: see inside memory-efficient sparse fine-tuning (SAGE, SMT, SPSFT, LoRA, full, TokenTune).

    import workbench as wb

    run = wb.run(model="tiny-llama", method="lora", steps=5, r=8)   # train, record, store -> Run
    run.tables["memory"]                                            # recorded tables as DataFrames
    runs = wb.sweep("sweep.toml")                                    # a grid, resumable
    runs = wb.open_runs("runs", method=["lora", "sage"])
    fig = wb.tradeoff(wb.runs_frame(runs), "saved_activations")      # any figure of workbench.figures
    wb.export_figure(fig, "paper/", formats=("pdf", "png"), size="two")

Names load on first use, so `import workbench` stays cheap (no torch): the API (workbench.api: run,
sweep, open_run, open_runs, Run, run_config, figures_for, export_figures, figure_kinds), the study
(workbench.orchestration.study: run_study), the measurement functions for any model and loop
(workbench.memory: track_saved_tensors, static_bytes, static_bytes_by_location, locate,
measure_device_peaks), `profile` (a run recorded around your own training loop:
workbench.orchestration.profile), and every public name of workbench.figures (tradeoff,
saliency_heatmap, runs_frame ...) except `export`: `wb.export_figure` says what it writes (a run's
trained model: workbench.model_export.export_model).
See docs/API.md for a worked example.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

_API = (
    "Run",
    "Tables",
    "export_figure",
    "export_figures",
    "figure_kinds",
    "figures_for",
    "open_run",
    "open_runs",
    "option_sections",
    "run",
    "run_config",
    "runs_at",
    "sweep",
)
_STUDY = ("run_study", "study_table", "STUDY_SIZES")
# a run recorded around your own training loop (workbench.orchestration.profile)
_PROFILE = ("profile", "Profile")
# the measurement functions, for any nn.Module and any training loop (workbench.memory)
_MEMORY = (
    "track_saved_tensors",
    "static_bytes",
    "static_bytes_by_location",
    "locate",
    "measure_device_peaks",
)


def _figure_names() -> list[str]:
    # all but `export`: at the top level a bare "export" would not say what it exports
    return [n for n in importlib.import_module("workbench.figures").__all__ if n != "export"]


def __getattr__(name: str) -> Any:
    """Load API, study and figure names on first access (PEP 562)."""
    homes = {
        **dict.fromkeys(_API, "workbench.api"),
        **dict.fromkeys(_STUDY, "workbench.orchestration.study"),
        **dict.fromkeys(_MEMORY, "workbench.memory"),
        **dict.fromkeys(_PROFILE, "workbench.orchestration.profile"),
    }
    if name in homes:
        module = importlib.import_module(homes[name])
        value = globals()[name] = getattr(module, name)  # later lookups skip this function
        return value
    if name.startswith("_"):
        raise AttributeError(name)
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a submodule: wb.figures, wb.store
        return importlib.import_module(f"{__name__}.{name}")
    if name in _figure_names():
        return getattr(importlib.import_module("workbench.figures"), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API, *_STUDY, *_MEMORY, *_PROFILE, *_figure_names()})


__all__ = [*_API, *_STUDY, *_MEMORY]
