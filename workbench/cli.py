"""`workbench` command line: parse, build the config, call the library, print."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from workbench.config import RunConfig, apply_overrides, load_toml
from workbench.errors import WorkbenchError

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


def build_run_config(args: argparse.Namespace) -> RunConfig:
    """Config file, then explicit flags, then --set overrides (later wins)."""
    data: dict[str, Any] = load_toml(args.config) if args.config else {}
    flags = [
        f"{key}={json.dumps(getattr(args, flag))}"
        for flag, key in RUN_FLAGS.items()
        if getattr(args, flag) is not None
    ]
    return RunConfig.from_dict(apply_overrides(data, flags + list(args.set)))


def cmd_run(args: argparse.Namespace) -> int:
    from workbench.report import format_run_report
    from workbench.train import train

    config = build_run_config(args)
    result = train(config, progress=not args.quiet)
    print(format_run_report(result.run_id, result.run_dir, result.summary))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from workbench.report import format_run_list, run_list_records
    from workbench.store import list_runs

    entries = list_runs(args.runs_dir)
    if args.json:
        print(json.dumps(run_list_records(entries), indent=2))
    else:
        print(
            format_run_list(entries) if entries else f"no runs in {args.runs_dir} (make one: workbench run)"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from workbench.report import format_run_report
    from workbench.store import open_run

    run = open_run(args.runs_dir, args.run)
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
    from workbench.export import export_run
    from workbench.store import open_run

    out = export_run(open_run(args.runs_dir, args.run), args.out)
    print(f"exported {args.run} to {out} (load with AutoModelForCausalLM.from_pretrained)")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="fine-tune a model with a method on a task, recorded in the run store")
    run.add_argument("--model", help="built-in alias (smollm2-135m, tiny-llama, ...), local dir or hub id")
    run.add_argument("--task", help="built-in task (polarity, strategyqa, ...) or a local .jsonl/.csv")
    run.add_argument("--method", help="full, lora, sage, tokentune, smt, spsft")
    run.add_argument("--steps", type=int, help="optimizer steps")
    run.add_argument("--batch-size", type=int, dest="batch_size")
    run.add_argument("--max-length", type=int, dest="max_length", help="tokens per example")
    run.add_argument("--lr", type=float, help="peak learning rate (default: the method's)")
    run.add_argument("--seed", type=int)
    run.add_argument("--name", help="run name shown in listings")
    run.add_argument("--runs-dir", dest="runs_dir", help="run store directory (default ./runs)")
    run.add_argument("--config", help="TOML file of settings ([train], [method], [record] tables)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set method.r=16 --set train.grad_accum=2",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    ls = sub.add_parser("ls", help="list runs")
    ls.add_argument("--runs-dir", dest="runs_dir", default="runs")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)

    show = sub.add_parser("show", help="show one run's summary")
    show.add_argument("run", help="run id, unique id prefix, or path to a run directory")
    show.add_argument("--runs-dir", dest="runs_dir", default="runs")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)

    fetch = sub.add_parser("fetch", help="prefetch the default model and data into the cache")
    fetch.add_argument("--model", default="smollm2-135m")
    fetch.add_argument("--tasks", nargs="*", default=["polarity"])
    fetch.set_defaults(func=cmd_fetch)
    export = sub.add_parser("export", help="merge a run's training into the weights and save a normal model")
    export.add_argument("run", help="run id, unique id prefix, or path to a run directory")
    export.add_argument("--out", required=True, help="directory for the transformers model")
    export.add_argument("--runs-dir", dest="runs_dir", default="runs")
    export.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the run is marked interrupted and keeps what it flushed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
