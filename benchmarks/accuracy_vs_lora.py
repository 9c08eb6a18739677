"""Accuracy of every method vs LoRA after the same short training run (issues 3, 4 and 5).

    python benchmarks/accuracy_vs_lora.py                  # smollm2-135m, polarity: lora sage smt spsft
    python benchmarks/accuracy_vs_lora.py --methods lora sage sage-align tokentune smt spsft spsft-lr
    python benchmarks/accuracy_vs_lora.py --methods lora sage --steps 100 --threads 1
    python benchmarks/accuracy_vs_lora.py --smoke          # tiny-llama, seconds: checks the script works

Each method trains through the real loop (`workbench.orchestration.train.train`) with the same steps,
batch size, max length, seed (so the same training batches in the same order), warm-up/decay schedule and
the same held-out eval examples, scored by answer log-likelihood before and after training. Learning
rates are each method's default (LoRA, SAGE, TokenTune 2e-4; SMT 1e-4; SPSFT 2e-5, the papers' values)
unless --lr sets one for all; `spsft-lr` is SPSFT at LoRA's 2e-4 (a short run at 2e-5 barely moves SPSFT,
so the pair separates the method from its learning rate). Method settings are those of the memory
benchmarks: LoRA r 16 / alpha 32 / dropout 0 on all linears (also under SAGE and TokenTune); SAGE tau
0.9, n_min 8, align 0 or half the blocks; TokenTune 30%; SMT on q/k/v with LoRA's parameter count and a
10-step warm-up (its warm-up batches are training batches too: SMT sees 10 more batches); SPSFT rank
32, l2 importance. `run s` in the table is each run's wall time, `run cpu s` its process CPU time
(steady on a shared machine). Runs are recorded (lightly) in benchmarks/results/runs, the table in
benchmarks/results/accuracy_vs_lora.json. Target (issue 3): SAGE within 2 accuracy points of LoRA.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/x.py` from anywhere

from benchmarks.common import (  # noqa: E402
    LORA_R16,
    Column,
    MethodSpec,
    Settings,
    base_parser,
    format_table,
    limited_threads,
    settings_from_args,
    write_result,
)
from benchmarks.smt_vs_lora import matched_budget  # noqa: E402
from workbench.config import RecordConfig, RunConfig, TrainConfig  # noqa: E402
from workbench.methods.lora import LoraOptions, apply_lora  # noqa: E402
from workbench.models import load_model  # noqa: E402
from workbench.orchestration.train import train  # noqa: E402

METHODS = ("lora", "sage", "sage-align", "tokentune", "smt", "spsft", "spsft-lr")
DEFAULT_METHODS = ("lora", "sage", "smt", "spsft")  # one per issue (3, 4, 5) and the baseline
LR_OF = {"spsft-lr": 2e-4}  # keys trained at another lr than their method's default (unless --lr)
COLUMNS: list[Column] = [
    ("method", "label", ""),
    ("lr", "lr", ".0e"),
    ("trainable", "trainable_params", ",d"),
    ("acc before", "accuracy_before", ".3f"),
    ("acc after", "accuracy_after", ".3f"),
    ("vs lora (points)", "points_vs_lora", "+.1f"),
    ("final loss", "final_loss", ".3f"),
    ("step s", "median_step_seconds", ".2f"),
    ("run s", "run_seconds", ".0f"),
    ("run cpu s", "run_cpu_seconds", ".0f"),
]


def method_spec(key: str, num_blocks: int, smt_budget: int, warmup_steps: int) -> MethodSpec:
    """The benchmark's settings of method `key` (one of METHODS)."""
    sage = {**LORA_R16, "tau": 0.9, "n_min": 8}
    specs = {
        "lora": MethodSpec("lora", "lora", LORA_R16),
        "sage": MethodSpec("sage tau 0.9 align 0", "sage", {**sage, "align_layers": 0}),
        "sage-align": MethodSpec(
            f"sage tau 0.9 align {num_blocks // 2}", "sage", {**sage, "align_layers": num_blocks // 2}
        ),
        "tokentune": MethodSpec("tokentune 0.3", "tokentune", {**LORA_R16, "fraction": 0.3}),
        "smt": MethodSpec(
            f"smt {smt_budget} blocks", "smt", {"budget_blocks": smt_budget, "warmup_steps": warmup_steps}
        ),
        "spsft": MethodSpec("spsft r32", "spsft", {"rank": 32, "importance": "l2"}),
        "spsft-lr": MethodSpec("spsft r32 lr 2e-4", "spsft", {"rank": 32, "importance": "l2"}),
    }
    return specs[key]


def smt_matched_budget(model: str) -> tuple[int, int]:
    """(blocks of the model, SMT blocks matching LoRA r 16's trainable count) on a throwaway copy."""
    loaded = load_model(model)
    num_blocks, shapes = loaded.anatomy.num_blocks, loaded.anatomy.linear_shapes()
    peft_model = apply_lora(loaded.model, LoraOptions(**LORA_R16))
    lora_count = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return num_blocks, matched_budget(lora_count, shapes, num_blocks)["budget_blocks"]


def run_methods(
    settings: Settings,
    methods: list[str],
    train_config: TrainConfig,
    record: RecordConfig,
    runs_dir: Path,
    warmup_steps: int,
) -> list[dict[str, Any]]:
    """Train each of `methods` (keys of METHODS) with the same settings; one result row per method."""
    num_blocks, smt_budget = smt_matched_budget(settings.model)

    rows: list[dict[str, Any]] = []
    for key in methods:
        spec = method_spec(key, num_blocks, smt_budget, warmup_steps)
        lr = train_config.lr if train_config.lr is not None else LR_OF.get(key)
        config = RunConfig(
            model=settings.model,
            task=settings.task,
            method=spec.method,
            name=f"bench-{spec.label.replace(' ', '-')}",
            runs_dir=str(runs_dir),
            train=dataclasses.replace(train_config, lr=lr),
            record=record,
            method_options=dict(spec.options),
        )
        start, start_cpu = time.perf_counter(), time.process_time()
        result = train(config, progress=False)
        summary = result.summary
        rows.append(
            {
                "label": spec.label,
                "method": spec.method,
                "options": dict(spec.options),
                "run_id": result.run_id,
                "lr": summary["lr"],
                "trainable_params": summary["trainable_parameters"],
                "accuracy_before": summary["accuracy_before"],
                "accuracy_after": summary["accuracy_after"],
                "final_loss": summary["final_loss"],
                "median_step_seconds": summary["median_step_seconds"],
                "run_seconds": time.perf_counter() - start,
                "run_cpu_seconds": time.process_time() - start_cpu,
            }
        )
        print(
            f"{spec.label}: {rows[-1]['accuracy_before']:.3f} -> {rows[-1]['accuracy_after']:.3f}", flush=True
        )

    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train every method; returns {"ratios": {label: {"accuracy_after", "points_vs_lora"}}, "rows": ...}."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per method (default 40)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per example (default 128)")
    parser.add_argument("--eval-examples", type=int, default=None, help="held-out examples (default 200)")
    parser.add_argument("--lr", type=float, default=None, help="one learning rate for all (default: each's)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="SMT warm-up steps (default 10)")
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    smoke = settings.smoke
    steps = args.steps or (2 if smoke else 40)
    train_config = TrainConfig(
        steps=steps,
        batch_size=settings.batch_size,
        max_length=args.max_length or (64 if smoke else 128),
        eval_examples=args.eval_examples or (4 if smoke else 200),
        lr=args.lr,
        seed=settings.seed,
        train_examples=16 if smoke else None,  # smoke: encode 16 examples, not the whole train split
    )
    # Light recording: the runs stay inspectable in the app without the recorders costing steps.
    record = RecordConfig(memory_every=25, grads_every=25, saliency_every=25)
    runs_dir = settings.out / "runs"

    with limited_threads(settings.threads):
        warmup_steps = args.warmup_steps or (2 if smoke else 10)
        rows = run_methods(settings, args.methods, train_config, record, runs_dir, warmup_steps)
    lora = next((row for row in rows if row["method"] == "lora"), None)
    for row in rows:
        row["points_vs_lora"] = (
            100 * (row["accuracy_after"] - lora["accuracy_after"]) if lora else float("nan")
        )
    print(
        f"\n{settings.model}, {settings.task}: {steps} steps x batch {settings.batch_size}, max length "
        f"{train_config.max_length}, {train_config.eval_examples} eval examples, seed {settings.seed}"
    )
    print(format_table(rows, COLUMNS))
    ratios = {row["label"]: {k: row[k] for k in ("accuracy_after", "points_vs_lora")} for row in rows}
    payload = {"train": vars(train_config), "runs_dir": str(runs_dir), "rows": rows}
    path = write_result(settings, "accuracy_vs_lora", {"ratios": ratios, **payload})
    print(f"\nwrote {path}")
    return {"ratios": ratios, **payload, "path": str(path)}


if __name__ == "__main__":
    main()
