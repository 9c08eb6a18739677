"""`workbench` command line: parse, build the config, call the library, print."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from workbench.config import RunConfig, apply_overrides, load_toml, toml_value
from workbench.errors import WorkbenchError
from workbench.store.schema import DEFAULT_RUNS_DIR

# CLI flag -> dotted config key. Flags left unset do not override the config file.
RUN_FLAGS = {
    "model": "model",
    "task": "task",
    "method": "method",
    "name": "name",
    "runs_dir": "runs_dir",
    "steps": "train.steps",
    "batch_size": "train.batch_size",
    "max_length": "train.max_length",
    "lr": "train.lr",
    "seed": "train.seed",
}


EXIT_CODES = (
    "exit codes: 0 done; 1 some runs of a sweep or study failed, or figures had nothing to draw; 2 a "
    "configuration, data or store error (one line on stderr), or a usage error (argparse's own message); "
    "128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP); 141 stdout closed (`| head`)"
)

METHOD_LIST = "{registered methods}"  # filled in from the method registry when help is shown


class HelpFormatter(argparse.HelpFormatter):
    """Lists the registered methods where a help text says METHOD_LIST.

    Only when help is shown: the registry imports every method package (torch, peft), which a plain
    `workbench ls` should not pay for.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text and METHOD_LIST in text:
            from workbench.methods import METHODS

            text = text.replace(METHOD_LIST, ", ".join(METHODS.names()))
        return text


def print_json(obj: Any) -> None:
    """`--json` output: one JSON document on stdout (NaN as null, numpy / paths as plain values)."""
    print(json.dumps(_jsonable(obj), indent=2, default=str))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalars
        return _jsonable(obj.item())
    return obj


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame's rows as JSON-ready dicts."""
    return [dict(row) for row in frame.to_dict(orient="records")]


def build_run_config(args: argparse.Namespace) -> RunConfig:
    """Config file, then explicit flags, then --set overrides (later wins).

    Flags become `key=<TOML value>` overrides (`toml_value`: JSON, but nan / inf as TOML spells them)."""
    data: dict[str, Any] = load_toml(args.config) if args.config else {}
    flags = [
        f"{key}={toml_value(getattr(args, flag))}"
        for flag, key in RUN_FLAGS.items()
        if getattr(args, flag) is not None
    ]
    return RunConfig.from_dict(apply_overrides(data, flags + list(args.set)))


def cmd_run(args: argparse.Namespace) -> int:
    config = build_run_config(args)  # first: a config error needs no training code (imports take seconds)
    from workbench.orchestration.train import train
    from workbench.report import format_run_report

    result = train(config, progress=not args.quiet)
    if args.json:
        record = {"id": result.run_id, "path": result.run_dir, "status": result.status}
        print_json({**record, "summary": result.summary})
    else:
        print(format_run_report(result.run_id, result.run_dir, result.summary))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from workbench.report import format_run_list
    from workbench.store import list_runs
    from workbench.store.summary import run_records

    entries = list_runs(args.runs_dir)
    if args.json:
        print(json.dumps(run_records(entries), indent=2))
    else:
        print(
            format_run_list(entries) if entries else f"no runs in {args.runs_dir} (make one: workbench run)"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from workbench.report import format_run_report
    from workbench.store import resolve_run

    run = resolve_run(args.runs_dir, args.run)
    if args.json:
        print(json.dumps({"manifest": run.manifest, "status": run.status}, indent=2, default=str))
    else:
        print(format_run_report(run.id, str(run.path), run.summary, status=run.status, config=run.config))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from workbench.data import load_task
    from workbench.models import load_model

    load_model(args.model)
    for task in args.tasks:
        load_task(task)
    print(f"cached: model {args.model}, tasks {', '.join(args.tasks)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from workbench.model_export import export_model
    from workbench.store import resolve_run

    peft = getattr(args, "peft", False)
    out = export_model(resolve_run(args.runs_dir, args.run), args.out, force=args.force, peft=peft)
    how = "PeftModel.from_pretrained(base, DIR)" if peft else "AutoModelForCausalLM.from_pretrained"
    print(f"exported {args.run} to {out} (load with {how})")
    return 0


def cmd_memory_sweep(args: argparse.Namespace) -> int:
    from workbench.orchestration.memory_sweep import run_memory_sweep

    result = run_memory_sweep(
        build_run_config(args),
        _int_list(args.lengths, "--lengths"),
        _int_list(args.batch_sizes, "--batch-sizes"),
        synthetic=args.synthetic,
        cap_bytes=args.cap_bytes,
        progress=not args.quiet,
    )
    from workbench.report import format_memory_sweep
    from workbench.store import RunReader

    s = result.summary
    table = RunReader(result.run_dir).table("sweep")
    if args.json:
        print_json({"run_id": result.run_id, "summary": s, "sweep": frame_records(table)})
        return 0
    print(format_memory_sweep(table))
    print(
        f"memory sweep {result.run_id}: {s['points']} points, {s['oom_points']} out of memory, "
        f"largest saved activations {s['max_saved_activations_bytes'] / 2**20:,.1f} MiB ({result.run_dir})"
    )
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        from workbench.errors import ConfigError

        raise ConfigError(f"{flag} expects comma-separated integers, e.g. 64,128,256; got {text!r}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    from workbench.orchestration.sweeps import format_summary, run_grid

    result = run_grid(
        args.config,
        args.runs_dir,
        progress=not args.quiet,
        rerun=args.rerun,
        engine=args.engine,
        address=args.address,
    )
    if args.json:
        from workbench.orchestration.sweeps import summary_rows

        print_json(summary_rows(result))
    else:
        print(format_summary(result))
    return 1 if result.failed else 0


FIGURE_SIZES = {"one-column": "one", "two-column": "two", "one": "one", "two": "two"}


def cmd_figures(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workbench.api import export_figures, figure_kinds, open_run, runs_at
    from workbench.errors import ConfigError
    from workbench.figures import FIGURES, FORMATS
    from workbench.figures.kinds import skip_reason

    if args.list:
        if args.json:
            print_json(figure_kinds())
        else:
            print("\n".join(f"{name:<20} {help}" for name, help in figure_kinds().items()))
        return 0
    if not args.run:
        raise ConfigError("name a run or runs directory: workbench figures RUN_OR_DIR --kind K --out DIR")
    if not args.out.strip():
        raise ConfigError("--out must not be empty: name the directory the figures go to, e.g. --out figures")
    formats = [f.strip().lower().lstrip(".") for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(
            f"unknown figure format(s) {', '.join(bad) or '(none)'}; formats: {', '.join(FORMATS)}"
        )
    kinds = list(FIGURES) if args.kind == "all" else [k.strip() for k in args.kind.split(",") if k.strip()]
    specs = [FIGURES.get(k) for k in kinds]  # an unknown kind fails here, before anything is drawn
    runs = runs_at(args.run) if Path(args.run).exists() else [open_run(args.run, args.runs_dir)]
    written = 0
    for spec in specs:
        paths = export_figures(spec.name, runs, args.out, formats=formats, size=FIGURE_SIZES[args.size])
        written += len(paths)
        if paths:
            stems = sorted({p.stem for p in paths})
            more = f" and {len(stems) - 3} more" if len(stems) > 3 else ""
            print(f"{spec.name}: {len(paths)} files ({', '.join(stems[:3])}{more})")
        else:
            print(f"{spec.name}: skipped, {skip_reason(spec.name, runs)}")
    print(f"wrote {written} files to {args.out}")
    return 0 if written else 1


def cmd_study(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workbench.orchestration.study import markdown_table, run_study, serve_app, study_markdown
    from workbench.orchestration.sweeps import format_summary

    result = run_study(
        args.size,
        args.runs_dir,
        model=args.model,
        task=args.task,
        seeds=args.seeds,
        timing=not args.no_timing,
        timing_rounds=args.timing_rounds,
        timing_threads=args.timing_threads,
        progress=not args.quiet,
        rerun=args.rerun,
    )
    if args.json:
        print_json({"runs_dir": str(result.runs_dir), "table": frame_records(result.table)})
    else:
        print(format_summary(result.sweep))
        print()
        print(markdown_table(result.table))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(study_markdown(result), encoding="utf-8")
        print(f"wrote {args.out}")
    if args.no_app:
        return 1 if result.sweep.failed else 0
    return serve_app(result.runs_dir, port=args.port)


def cmd_export_metrics(args: argparse.Namespace) -> int:
    from workbench.integrations.tensorboard import export_metrics
    from workbench.store import resolve_run

    tool, out = args.to
    if tool != "tensorboard":
        from workbench.errors import ConfigError

        raise ConfigError(f"unknown tool {tool!r} for --to; accepted: tensorboard")
    directory = export_metrics(resolve_run(args.runs_dir, args.run), out)
    print(f"wrote {args.run}'s scalars to {directory} (open with: tensorboard --logdir {out})")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from workbench.orchestration.study import serve_app

    return serve_app(args.runs_dir, port=args.port, allow_any_dir=args.allow_any_dir)


def add_research_commands(sub: argparse._SubParsersAction) -> None:
    """The `sweep`, `figures` and `study` commands (scripted profiling and paper figures)."""
    sweep = sub.add_parser("sweep", help="run a grid of runs (methods x options x seeds), resumable")
    sweep.add_argument(
        "--config", required=True, help="sweep TOML file (layout: workbench/orchestration/sweeps.py)"
    )
    sweep.add_argument(
        "--runs-dir",
        dest="runs_dir",
        help=f"run store (default: the file's runs_dir, or ./{DEFAULT_RUNS_DIR})",
    )
    sweep.add_argument("--rerun", action="store_true", help="run every point again, even completed ones")
    sweep.add_argument(
        "--engine",
        default="serial",
        help="serial (default: one point after the other here) or ray (each point a Ray task with its "
        "[resources]; pip install 'workbench[ray]'; docs/SCALING.md)",
    )
    sweep.add_argument(
        "--address",
        help="with --engine ray: the Ray cluster (host:port, ray://host:port or auto); default: a local Ray "
        "started for the sweep",
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--json", action="store_true", help="print the result as JSON (no table)")
    sweep.set_defaults(func=cmd_sweep)

    figures = sub.add_parser("figures", help="export figures of runs: PDF/SVG/PNG (paper style), HTML, CSV")
    figures.add_argument("run", nargs="?", help="a run directory, a runs directory, or a run id / prefix")
    figures.add_argument("--kind", default="all", help="figure kind(s), comma-separated, or all (--list)")
    figures.add_argument("--out", default="figures", help="output directory (default ./figures)")
    figures.add_argument("--format", default="pdf,svg,png,html", help="comma-separated: pdf,svg,png,html,csv")
    figures.add_argument("--size", choices=list(FIGURE_SIZES), default="one-column", help="paper width")
    figures.add_argument(
        "--runs-dir", dest="runs_dir", default=DEFAULT_RUNS_DIR, help="where a run id is looked up"
    )
    figures.add_argument("--list", action="store_true", help="list the figure kinds and exit")
    figures.add_argument("--json", action="store_true", help="print the result as JSON (no table)")
    figures.set_defaults(func=cmd_figures)

    study = sub.add_parser(
        "study", help="every method on the default model and task, a table vs LoRA, then the app on its runs"
    )
    study.add_argument(
        "--size",
        choices=["smoke", "default", "generative", "full"],  # workbench.orchestration.study.STUDY_SIZES
        default="default",
        help="smoke: tiny-llama, seconds; default: minutes on a CPU; generative: verb_forms by exact match; "
        "full: a GPU",
    )
    study.add_argument(
        "--runs-dir", dest="runs_dir", help="run store (default runs/study, runs/study-<size>)"
    )
    study.add_argument("--model", help="another model than the size's (default smollm2-135m)")
    study.add_argument("--task", help="another task than the size's (default polarity)")
    study.add_argument(
        "--seeds", type=int, help="seeds per method (default: the size's, 3 at default; variants run one)"
    )
    study.add_argument(
        "--timing-rounds", dest="timing_rounds", type=int, help="rounds of the interleaved timing pass (7)"
    )
    study.add_argument(
        "--timing-threads", dest="timing_threads", type=int, help="torch threads while timing (default 1)"
    )
    study.add_argument(
        "--no-timing", dest="no_timing", action="store_true", help="no timing pass: sequential step times"
    )
    study.add_argument("--out", help="also write the results page (markdown) here")
    study.add_argument("--rerun", action="store_true", help="run every method again, even completed runs")
    study.add_argument("--no-app", dest="no_app", action="store_true", help="do not serve the app afterwards")
    study.add_argument("--port", type=int, default=8501, help="the app's port (default 8501)")
    study.add_argument("--quiet", action="store_true", help="no progress bar")
    study.add_argument("--json", action="store_true", help="print the result as JSON (no table)")
    study.set_defaults(func=cmd_study)

    metrics = sub.add_parser(
        "export-metrics", help="write a run's scalars in another tool's format (TensorBoard event files)"
    )
    metrics.add_argument("run", help="run id, unique id prefix, or path to a run directory")
    metrics.add_argument(
        "--to",
        nargs=2,
        metavar=("TOOL", "DIR"),
        required=True,
        help="tensorboard DIR: event files under DIR/<run id> (pip install 'workbench[tensorboard]')",
    )
    metrics.add_argument("--runs-dir", dest="runs_dir", default=DEFAULT_RUNS_DIR)
    metrics.set_defaults(func=cmd_export_metrics)

    app = sub.add_parser(
        "app", help="serve the app on a runs dir (127.0.0.1, file watcher off; Ctrl-C or SIGTERM stop it)"
    )
    app.add_argument("--runs-dir", dest="runs_dir", default=DEFAULT_RUNS_DIR, help="the run store to show")
    app.add_argument("--port", type=int, default=8501, help="the app's port (default 8501)")
    app.add_argument(
        "--allow-any-dir",
        dest="allow_any_dir",
        action="store_true",
        help="let the Runs directory box open any directory (default: the runs dir and its subdirectories)",
    )
    app.set_defaults(func=cmd_app)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("workbench")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__, epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"workbench {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="fine-tune a model with a method on a task, recorded in the run store",
        formatter_class=HelpFormatter,
    )
    run.add_argument("--model", help="built-in alias (smollm2-135m, tiny-llama, ...), local dir or hub id")
    run.add_argument("--task", help="built-in task (polarity, strategyqa, ...) or a local .jsonl/.csv")
    run.add_argument("--method", help=f"one of: {METHOD_LIST}")
    run.add_argument("--steps", type=int, help="optimizer steps")
    run.add_argument("--batch-size", type=int, dest="batch_size")
    run.add_argument("--max-length", type=int, dest="max_length", help="tokens per example")
    run.add_argument("--lr", type=float, help="peak learning rate (default: the method's)")
    run.add_argument("--seed", type=int)
    run.add_argument("--name", help="run name shown in listings")
    run.add_argument(
        "--runs-dir", dest="runs_dir", help=f"run store directory (default ./{DEFAULT_RUNS_DIR})"
    )
    run.add_argument("--config", help="TOML file of settings ([train], [method], [record] tables)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set method.r=16 --set train.grad_accum=2",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars (model loading included)")
    run.add_argument("--json", action="store_true", help="print the result as JSON (no table)")
    run.set_defaults(func=cmd_run)

    ls = sub.add_parser("ls", help="list runs")
    ls.add_argument("--runs-dir", dest="runs_dir", default=DEFAULT_RUNS_DIR)
    ls.add_argument("--json", action="store_true", help="print the result as JSON (no table)")
    ls.set_defaults(func=cmd_ls)

    show = sub.add_parser("show", help="show one run's summary")
    show.add_argument("run", help="run id, unique id prefix, or path to a run directory")
    show.add_argument("--runs-dir", dest="runs_dir", default=DEFAULT_RUNS_DIR)
    show.add_argument("--json", action="store_true", help="print the result as JSON (no table)")
    show.set_defaults(func=cmd_show)

    fetch = sub.add_parser("fetch", help="prefetch the default model and data into the cache")
    fetch.add_argument("--model", default="smollm2-135m")
    fetch.add_argument("--tasks", nargs="*", default=["polarity"])
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch.set_defaults(func=cmd_fetch)
    export = sub.add_parser("export", help="merge a run's training into the weights and save a normal model")
    export.add_argument("run", help="run id, unique id prefix, or path to a run directory")
    export.add_argument("--out", required=True, help="directory for the transformers model")
    export.add_argument(
        "--force",
        action="store_true",
        help="replace a non-empty --out (e.g. a previous export; never a directory with subdirectories)",
    )
    export.add_argument(
        "--peft",
        action="store_true",
        help="a LoRA-family run (lora, velora, sage/tokentune on base lora): write its peft adapter "
        "directory (adapter_config.json + adapter_model.safetensors) instead of merging",
    )
    export.add_argument("--runs-dir", dest="runs_dir", default=DEFAULT_RUNS_DIR)
    export.add_argument("--quiet", action="store_true", help="no progress bars (model loading)")
    export.set_defaults(func=cmd_export)
    sweep = sub.add_parser(
        "memory-sweep",
        help="saved-activation bytes (and GPU peaks) per sequence length x batch size",
        formatter_class=HelpFormatter,
    )
    sweep.add_argument("--method", help=f"one of: {METHOD_LIST}")
    sweep.add_argument("--model", help="built-in alias, local dir or hub id")
    sweep.add_argument("--task", help="task whose token ids fill the batches (default polarity)")
    sweep.add_argument("--synthetic", action="store_true", help="random token ids instead of task text")
    sweep.add_argument("--lengths", default="64,128,256,512", help="sequence lengths, comma-separated")
    sweep.add_argument("--batch-sizes", dest="batch_sizes", default="1,4,8,16", help="comma-separated")
    sweep.add_argument(
        "--cap-bytes", dest="cap_bytes", type=int, help="saved-activation bytes above which a point is OOM"
    )
    sweep.add_argument("--name", help="run name shown in listings")
    sweep.add_argument(
        "--runs-dir", dest="runs_dir", help=f"run store directory (default ./{DEFAULT_RUNS_DIR})"
    )
    sweep.add_argument("--config", help="TOML file of settings ([train], [method])")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--json", action="store_true", help="print the result as JSON (no table)")
    sweep.set_defaults(
        func=cmd_memory_sweep, steps=None, batch_size=None, max_length=None, lr=None, seed=None
    )
    add_research_commands(sub)
    return parser


def silence_progress() -> None:
    """`--quiet`: no progress bar anywhere, the libraries' included (transformers' "Loading weights",
    the hub's downloads): tqdm's own switch (TQDM_DISABLE) and the libraries' ones."""
    import os

    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from transformers.utils import logging as hf_logging  # the commands with --quiet load it anyway

    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if getattr(args, "quiet", False):
        silence_progress()
    try:
        runs_dir = getattr(args, "runs_dir", None)
        if runs_dir is not None and not str(runs_dir).strip():
            from workbench.errors import ConfigError

            raise ConfigError(
                f"runs_dir must not be empty (got --runs-dir {runs_dir!r}): name the run store's directory, "
                f"e.g. --runs-dir {DEFAULT_RUNS_DIR}"
            )
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe fails here, inside the try, not in the interpreter's exit
        return code
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP during a run (Terminated)
        signum = getattr(exc, "signum", 2)
        print(
            f"interrupted ({signal.Signals(signum).name}): the run is marked interrupted and keeps every "
            "recorded step",
            file=sys.stderr,
        )
        return 128 + signum
    except BrokenPipeError:  # the reader went away (`workbench ls | head`): exit quietly, 128 + SIGPIPE
        import os

        # stdout at devnull, so the interpreter's final flush does not fail again (Python docs,
        # library/signal.html, "Note on SIGPIPE")
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (captured)
            pass
        return 141


if __name__ == "__main__":
    sys.exit(main())
