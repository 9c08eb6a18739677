"""SPSFT and FA-SPSFT vs LoRA and FA-LoRA: saved bytes, state bytes, step time, Table 7 (issue 5).

    python benchmarks/spsft_vs_lora.py           # smollm2-135m, polarity, batch 8 x 128 tokens
    python benchmarks/spsft_vs_lora.py --smoke   # tiny-llama, seconds: checks the script still works

LoRA r 16 (alpha 32, dropout 0) on all linears and on the MLP only (FA-LoRA, "frozen attention");
SPSFT at rank 32 (the paper pairs SPSFT r = 2k with LoRA r = k: W_f is r x d_in where LoRA has
r x (d_in + d_out), so the trainable counts come out about equal; the script prints both counts and
the rank that would match exactly) on all linears and on the MLP only (FA-SPSFT), importance `l2`
(the paper's LLM choice, no gradients: its phase is timed apart). SPSFT is compared with LoRA and
FA-SPSFT with both LoRA and FA-LoRA. Targets (issue 5): saved bytes and step time at or below LoRA's.
The memory also in the paper's Table 7 form (`table7_memory`: mem_M = the base model's parameters, as
inference under no_grad saves nothing; mem = mem_FT + mem_Aux, logical bytes).
Writes benchmarks/results/spsft_vs_lora.json.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/x.py` from anywhere

from benchmarks.common import (  # noqa: E402
    LORA_R16,
    MEMORY_COLUMNS,
    MIB,
    Bench,
    Column,
    MethodSpec,
    base_parser,
    format_table,
    measure,
    ratios_against,
    release,
    settings_from_args,
    write_result,
)
from workbench.methods.spsft.config import SPSFT_TARGETS  # noqa: E402
from workbench.methods.spsft.report import TABLE7_ROWS, table7_memory  # noqa: E402

TABLE7_COLUMNS: list[Column] = [("method", "label", "")] + [(f"{k} MiB", k, ".1f") for k in TABLE7_ROWS]


def method_specs(rank: int, importance: str) -> list[MethodSpec]:
    """LoRA, FA-LoRA, SPSFT, FA-SPSFT (same LoRA settings, same SPSFT rank and importance)."""
    spsft = {"rank": rank, "importance": importance}
    return [
        MethodSpec("lora", "lora", LORA_R16),
        MethodSpec("fa-lora", "lora", {**LORA_R16, "targets": "mlp"}),
        MethodSpec(f"spsft r{rank}", "spsft", {**spsft, "targets": "all"}),
        MethodSpec(f"fa-spsft r{rank}", "spsft", {**spsft, "targets": "mlp"}),
    ]


def matching_rank(lora_r: int, shapes: dict[str, tuple[int, int]], targets: str) -> float:
    """The SPSFT rank with exactly LoRA-r's trainable count on the same targets: r (d_in + d_out) / d_in."""
    names = SPSFT_TARGETS[targets]
    return lora_r * sum(sum(shapes[n]) for n in names) / sum(shapes[n][1] for n in names)


def table7(row: dict[str, Any]) -> dict[str, Any]:
    """The paper's Table 7 rows (bytes) of one measured method; mem_M = the base model's parameters."""
    categories = {**row["static"], "saved_activations": row["saved_bytes"]}
    return {"label": row["label"], **table7_memory(categories, mem_m=row["base_param_bytes"])}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns {"ratios": {"vs lora": ..., "vs fa-lora": ...}, "table7": ..., ...}."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=None, help="tokens per example (default 128)")
    parser.add_argument("--rank", type=int, default=32, help="SPSFT rows per linear (paper: 2x LoRA's r)")
    parser.add_argument("--importance", default="l2", help="SPSFT importance (l2 | taylor | qm_taylor | ...)")
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    length = args.length or (32 if settings.smoke else 128)

    with Bench.open(settings) as bench:
        batch = bench.batch(length)
        prepared = [bench.prepare(spec, length) for spec in method_specs(args.rank, args.importance)]
        rows = measure(prepared, batch, settings.repeats)
        release(prepared)
        matched = {t: matching_rank(LORA_R16["r"], bench.linear_shapes, t) for t in SPSFT_TARGETS}

    ratios = {"vs lora": ratios_against(rows, "lora"), "vs fa-lora": ratios_against(rows, "fa-lora")}
    tables = [table7(row) for row in rows]
    print(f"\n{settings.label}, {length} tokens per example, {settings.repeats} interleaved rounds")
    print(
        f"rank: SPSFT r={args.rank}; the rank matching LoRA r={LORA_R16['r']}'s count exactly: "
        + ", ".join(f"{t} {r:.1f}" for t, r in matched.items())
    )
    print(format_table(rows, MEMORY_COLUMNS))
    fa = ratios["vs fa-lora"]
    print(
        "vs fa-lora: "
        + ", ".join(
            f"{label} saved {r['saved']:.3f}x state {r['state']:.3f}x step {r['step']:.3f}x"
            for label, r in fa.items()
            if label.startswith("fa-")
        )
    )
    for row in rows:
        phase = row["phases"].get("importance")
        if phase:
            print(f"{row['label']}: importance phase {phase['seconds']:.2f} s ({phase['forwards']} forwards)")
    print("\nTable 7 form (logical bytes; mem = mem_TTL - mem_M = mem_FT + mem_Aux)")
    print(
        format_table(
            [{k: (v / MIB if k != "label" else v) for k, v in t.items()} for t in tables], TABLE7_COLUMNS
        )
    )

    payload = {"length": length, "rank": args.rank, "matching_rank": matched, "table7": tables, "rows": rows}
    path = write_result(settings, "spsft_vs_lora", {"ratios": ratios, **payload})
    print(f"\nwrote {path}")
    return {"ratios": ratios, **payload, "path": str(path)}


if __name__ == "__main__":
    main()
