"""The baselines a practitioner would pick next to the sparse methods: SDPA, gradient checkpointing, VeLoRA
(issue 12). Saved bytes (packed in the forward, and their live peak over forward and backward), state
bytes and interleaved step times of every row at n = 128, 512 and 1024, and which rows are on the
memory / step-time Pareto frontier at each length.

    python benchmarks/baselines.py            # smollm2-135m, polarity, batch 8 (4 at n = 1024), sdpa
    python benchmarks/baselines.py --smoke    # tiny-llama, seconds: checks the script still works

Rows, all on the same LoRA (r 16, alpha 32, dropout 0, all linears) where they have one, SDPA attention
unless the row says eager: LoRA with eager attention; LoRA (the reference of every ratio); LoRA with
gradient checkpointing (transformers' non-reentrant checkpointing of every block); VeLoRA (peft's
VeloraConfig, 64 groups: sub-tokens of 9 of SmolLM2's 576 features); SAGE at tau 0.9, n_min 8, align 0
and half the blocks; SAGE align 0 with checkpointing (its sparse blocks recompute under checkpointing
too); TokenTune keeping 30% of the tokens;
SMT at LoRA's parameter count (q/k/v, 2 warm-up batches: the warm-up is timed apart, not in the step);
SPSFT rank 32 on all linears, l2 importance (no batches).

The honest memory figure under checkpointing is the live peak (`saved_peak`): block inputs plus the
largest recomputed block; without checkpointing it equals the bytes packed in the forward. The frontier
is taken on (live saved peak, step time ratio to LoRA): a row is on it when no other row is at most as
large in both and smaller in one. VeLoRA approximates LoRA's lora_A gradient: its cosine to LoRA's, on
the measurement batch from LoRA's trained adapters, is reported per length.

The batch is capped at `--max-tokens` tokens (default 4096): 8 x 128, 8 x 512, 4 x 1024. At 8 x 1024 eager
LoRA alone would save about 20 GiB (the (B, H, n, n) probabilities of 30 blocks), more than this
machine's 24 GiB leave beside ten loaded models.
Writes benchmarks/results/baselines.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/x.py` from anywhere

from benchmarks.common import (  # noqa: E402
    LORA_R16,
    Bench,
    Column,
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
from benchmarks.smt_vs_lora import matched_budget  # noqa: E402
from workbench.data import Batch  # noqa: E402
from workbench.lm import answer_loss  # noqa: E402

BASELINE = "lora"
CHECKPOINTING = {"gradient_checkpointing": True}
SAGE = {**LORA_R16, "n_min": 8, "tau": 0.9}

COLUMNS: list[Column] = [
    ("method", "label", ""),
    ("saved MiB", "saved_mib", ".1f"),
    ("saved x", "saved_ratio", ".3f"),
    ("peak MiB", "saved_peak_mib", ".1f"),
    ("peak x", "saved_peak_ratio", ".3f"),
    ("state MiB", "state_mib", ".2f"),
    ("step s", "step_seconds", ".2f"),
    ("step x", "step_ratio", ".3f"),
    ("cpu x", "step_cpu_ratio", ".3f"),
    ("frontier", "frontier", ""),
]


def method_specs(num_blocks: int, smt_budget: int, smt_warmup: int, velora_groups: int) -> list[MethodSpec]:
    """Every row of the benchmark (see the module docstring)."""
    half = num_blocks // 2
    return [
        MethodSpec("lora eager", "lora", LORA_R16, {"attn": "eager"}),
        MethodSpec(BASELINE, "lora", LORA_R16),
        MethodSpec("lora + checkpointing", "lora", LORA_R16, CHECKPOINTING),
        MethodSpec("velora", "velora", {**LORA_R16, "num_groups": velora_groups}),
        MethodSpec("sage align 0", "sage", {**SAGE, "align_layers": 0}),
        MethodSpec(f"sage align {half}", "sage", {**SAGE, "align_layers": half}),
        MethodSpec("sage + checkpointing", "sage", {**SAGE, "align_layers": 0}, CHECKPOINTING),
        MethodSpec("tokentune 0.3", "tokentune", {**LORA_R16, "fraction": 0.3}),
        MethodSpec("smt", "smt", {"targets": "qkv", "budget_blocks": smt_budget, "warmup_steps": smt_warmup}),
        MethodSpec("spsft r32", "spsft", {"rank": 32, "importance": "l2", "targets": "all"}),
    ]


def pareto_frontier(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Labels of the rows no other row beats on both live saved peak and step time (ratio to LoRA)."""

    def point(row: Mapping[str, Any]) -> tuple[float, float]:
        return row["saved_peak_bytes"], row["step_ratio"]

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] <= b[0] and a[1] <= b[1] and a != b

    return [r["label"] for r in rows if not any(dominates(point(o), point(r)) for o in rows)]


def adapter_gradients(p: Prepared, batch: Batch) -> dict[str, torch.Tensor]:
    """The trainable parameters' gradients of one forward and backward on `batch` (left cleared)."""
    p.optimizer.zero_grad(set_to_none=True)
    with p.method.forward_context(batch):
        answer_loss(p.model, batch).backward()
    grads = {name: param.grad.detach().clone() for name, param in p.params.items()}
    p.optimizer.zero_grad(set_to_none=True)
    return grads


def velora_cosine(lora: Prepared, velora: Prepared, batch: Batch) -> dict[str, float]:
    """Cosine of VeLoRA's adapter gradients to LoRA's on `batch`, VeLoRA given LoRA's trained adapters
    (LoRA's B is no longer zero after the timed steps, so lora_A has a gradient): mean and min over the
    lora_A matrices (approximated) and the mean over the lora_B ones (exact up to float)."""
    with torch.no_grad():
        for name, param in velora.params.items():
            param.copy_(lora.params[name])
    reference, approximate = adapter_gradients(lora, batch), adapter_gradients(velora, batch)
    cosines = {
        name: F.cosine_similarity(approximate[name].flatten(), grad.flatten(), dim=0).item()
        for name, grad in reference.items()
        if grad.abs().sum() > 0
    }
    a = [c for name, c in cosines.items() if "lora_A" in name]
    b = [c for name, c in cosines.items() if "lora_B" in name]
    return {
        "lora_A_mean": statistics.fmean(a),
        "lora_A_min": min(a),
        "lora_B_mean": statistics.fmean(b),
        "matrices": len(a),
    }


def measure_length(
    bench: Bench, length: int, batch_size: int, args: argparse.Namespace, repeats: int
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every row at `length` tokens: the measured rows (ratios to LoRA, frontier flag) and VeLoRA's
    gradient cosine to LoRA."""
    bench = dataclasses.replace(bench, settings=dataclasses.replace(bench.settings, batch_size=batch_size))
    batch = bench.batch(length)
    lora_trainable = bench.prepare(MethodSpec(BASELINE, "lora", LORA_R16), length).trainable_count
    budget = matched_budget(lora_trainable, bench.linear_shapes, bench.num_blocks)["budget_blocks"]
    specs = method_specs(bench.num_blocks, budget, args.smt_warmup, args.velora_groups)
    prepared = [bench.prepare(spec, length) for spec in specs]
    rows = measure(prepared, batch, repeats, baseline=BASELINE)
    by_label = {p.spec.label: p for p in prepared}
    cosine = velora_cosine(by_label[BASELINE], by_label["velora"], batch)
    release(prepared)
    frontier = pareto_frontier(rows)
    for row in rows:
        row["batch_size"] = batch_size
        row["frontier"] = "*" if row["label"] in frontier else ""
    return rows, cosine


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns {"ratios": {length: {label: ratios}}, "frontier", "velora_cosine", ...}."""
    parser = base_parser(__doc__.splitlines()[0], attn="sdpa")
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="tokens (default 128 512 1024)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="cap on batch x length (default 4096)")
    parser.add_argument("--smt-warmup", type=int, default=2, help="SMT warm-up batches (timed apart)")
    parser.add_argument("--velora-groups", type=int, default=None, help="VeLoRA num_groups (64; smoke 8)")
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    lengths = args.lengths or ([32, 64] if settings.smoke else [128, 512, 1024])
    args.velora_groups = args.velora_groups or (8 if settings.smoke else 64)

    results: dict[str, Any] = {}
    cosines: dict[str, Any] = {}
    with Bench.open(settings) as bench:
        for length in lengths:
            batch_size = max(1, min(settings.batch_size, args.max_tokens // length))
            rows, cosine = measure_length(bench, length, batch_size, args, settings.repeats)
            results[str(length)], cosines[str(length)] = rows, cosine
            print(f"\n{settings.model}, batch {batch_size} x {length} tokens, {settings.repeats} rounds")
            print(format_table(rows, COLUMNS))
            print(
                f"  velora lora_A gradient cosine to lora: mean {cosine['lora_A_mean']:.3f}, "
                f"min {cosine['lora_A_min']:.3f} ({cosine['matrices']} matrices); "
                f"lora_B mean {cosine['lora_B_mean']:.4f}"
            )

    ratios = {length: ratios_against(rows, BASELINE) for length, rows in results.items()}
    frontier = {length: [r["label"] for r in rows if r["frontier"]] for length, rows in results.items()}
    payload = {"ratios": ratios, "frontier": frontier, "velora_cosine": cosines, "results": results}
    path = write_result(settings, "baselines", payload)
    print(f"\nwrote {path}")
    return {**payload, "path": str(path)}


if __name__ == "__main__":
    main()
