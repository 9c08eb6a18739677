"""SAGE vs LoRA on generative tasks: saved bytes per `output_rows`, and exact match after a short run
(issue 14).

    python benchmarks/sage_generative.py --threads 1    # smollm2-135m; pos_tags and verb_forms; 256 tokens
    python benchmarks/sage_generative.py --smoke        # tiny-llama, seconds: checks the script still works

Memory, per task (default pos_tags, answers of 20-50 tokens: the long-answer regime of instruction data,
and verb_forms, about 13): one batch of 8 examples of exactly 256 tokens (worked examples of the task as
demonstrations, then the question; `common.packed_demonstrations`), measured as every benchmark measures
(saved-activation bytes of one training forward, state bytes, interleaved step time). Rows: LoRA; SAGE
(tau 0.9, n_min 8, align 0) with output_rows all / first / last, the output tokens forced into the kept
set (the paper's S = Top-p(u) | Y); and output_rows all without forcing them. Also: the share of the 256
tokens SAGE keeps per block, and how many of them are answer positions.

Exact match: LoRA and SAGE with each output_rows setting trained through the training loop (`train`)
for `--train-steps` steps of batch 8 on `--train-task` (default verb_forms), scored on the same 100
held-out examples by greedy generation and exact match, with the 95% Wilson interval, before and after.
Writes benchmarks/results/sage_generative.json (the runs: benchmarks/results/sage_generative_runs).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/x.py` from anywhere

from benchmarks.common import (  # noqa: E402
    LORA_R16,
    MEMORY_COLUMNS,
    Bench,
    MethodSpec,
    Prepared,
    base_parser,
    format_table,
    measure,
    ratios_against,
    release,
    settings_from_args,
    write_result,
)
from workbench.config import RunConfig, TrainConfig  # noqa: E402
from workbench.orchestration.train import train  # noqa: E402

SAGE = {"n_min": 8, "tau": 0.9, "align_layers": 0, **LORA_R16}
OUTPUT_ROWS = ("all", "first", "last")


def method_specs() -> list[MethodSpec]:
    """LoRA; SAGE with each output_rows (outputs forced) and with output_rows all, outputs not forced."""
    specs = [MethodSpec("lora", "lora", LORA_R16)]
    specs += [MethodSpec(f"sage rows {rows}", "sage", {**SAGE, "output_rows": rows}) for rows in OUTPUT_ROWS]
    specs.append(MethodSpec("sage rows all, not forced", "sage", {**SAGE, "force_outputs": False}))
    return specs


def kept(p: Prepared, batch: Any, length: int) -> dict[str, Any] | None:
    """Per block: the mean share of the `length` tokens kept, and of the answer positions kept."""
    selections = p.method.selection()
    if not selections:
        return None
    outputs = batch.output_mask  # (B, n)
    return {
        "kept_share_per_block": [
            round(float(s.selected.float().sum(-1).mean()) / length, 4) for s in selections
        ],
        "answer_positions": round(float(outputs.sum(-1).float().mean()), 1),
        "answer_positions_kept_per_block": [
            round(float((s.selected & outputs).sum(-1).float().mean()), 1) for s in selections
        ],
    }


def memory_table(settings: Any, task: str, length: int) -> list[dict[str, Any]]:
    """The memory rows of every spec on one packed batch of `task`."""
    with Bench.open(dataclasses.replace(settings, task=task)) as bench:
        batch = bench.batch(length)
        prepared = [bench.prepare(spec, length) for spec in method_specs()]
        rows = measure(prepared, batch, settings.repeats)
        for row, p in zip(rows, prepared, strict=True):
            row["kept"] = kept(p, batch, length)
        release(prepared)
    return rows


def exact_match_runs(settings: Any, task: str, steps: int, eval_examples: int) -> list[dict[str, Any]]:
    """LoRA and SAGE (each output_rows) trained `steps` steps on `task`, exact match before and after."""
    runs_dir = settings.out / "sage_generative_runs"
    rows = []
    for spec in method_specs()[:4]:
        train_config = TrainConfig(
            steps=steps,
            batch_size=settings.batch_size,
            max_length=128,
            eval_examples=eval_examples,
            lr=5e-4,  # the study's lr for the LoRA-based methods (30 steps are few)
            seed=settings.seed,
            device="cpu",
            attn=settings.attn,
        )
        config = RunConfig(
            settings.model,
            task,
            spec.method,
            name=f"{spec.label} {task}",
            runs_dir=str(runs_dir),
            train=train_config,
            method_options=dict(spec.options),
        )
        summary = train(config, progress=not settings.smoke).summary
        rows.append(
            {
                "label": spec.label,
                "exact_match_before": summary["accuracy_before"],
                "exact_match_after": summary["accuracy_after"],
                "interval_after": summary["accuracy_after_ci"],
                "loglik_per_token_after": summary["answer_loglik_per_token_after"],
                "max_new_tokens": summary["max_new_tokens"],
                "step_seconds": summary["median_step_seconds"],
            }
        )
        low, high = summary["accuracy_after_ci"]
        print(
            f"  {spec.label}: exact match {100 * summary['accuracy_before']:.1f}% -> "
            f"{100 * summary['accuracy_after']:.1f}% [{100 * low:.1f}, {100 * high:.1f}], answer log-lik "
            f"per token {summary['answer_loglik_per_token_after']:.3f}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns {"ratios": {task: {label: ratios}}, "memory", "exact_match", "path"}."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=None, help="memory tasks (default pos_tags verb_forms)")
    parser.add_argument("--length", type=int, default=None, help="tokens per example (default 256)")
    parser.add_argument("--train-task", default="verb_forms", help="task of the short runs (verb_forms)")
    parser.add_argument("--train-steps", type=int, default=None, help="steps of the short runs (default 30)")
    parser.add_argument("--eval-examples", type=int, default=None, help="held-out examples scored (100)")
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    # smoke: tiny-llama's byte-level tokenizer spells answers out (pos_tags' reach 90 tokens)
    tasks = args.tasks or (["verb_forms"] if settings.smoke else ["pos_tags", "verb_forms"])
    length = args.length or (128 if settings.smoke else 256)

    memory: dict[str, Any] = {}
    for task in tasks:
        rows = memory_table(settings, task, length)
        memory[task] = rows
        shape = f"batch {settings.batch_size} x {length} tokens"
        print(f"\n{settings.model}, {task}, {shape}, {settings.repeats} interleaved rounds")
        print(format_table(rows, MEMORY_COLUMNS))
        for row in rows:
            if row["kept"]:
                k = row["kept"]
                print(
                    f"  {row['label']}: kept share per block {k['kept_share_per_block']}; answer positions "
                    f"{k['answer_positions']}, kept per block {k['answer_positions_kept_per_block']}"
                )
    ratios = {task: ratios_against(rows, "lora") for task, rows in memory.items()}

    steps = args.train_steps or (2 if settings.smoke else 30)
    scored = args.eval_examples or (8 if settings.smoke else 100)
    print(f"\nexact match on {args.train_task}: {steps} steps of batch {settings.batch_size}, {scored} eval")
    em = exact_match_runs(settings, args.train_task, steps, scored)

    payload = {"length": length, "ratios": ratios, "memory": memory, "exact_match": em}
    path = write_result(settings, "sage_generative", payload)
    print(f"\nwrote {path}")
    return {**payload, "path": str(path)}


if __name__ == "__main__":
    main()
