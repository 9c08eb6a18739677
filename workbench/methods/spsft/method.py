"""The SPSFT method: score rows, keep the top r per linear, train them as W_f through RowSparseLinear."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from workbench.methods.base import (
    MethodDefaults,
    PrepareContext,
    RowSelection,
    Selection,
    freeze,
    swap_linears,
    unswap_linears,
)
from workbench.methods.registry import register_method
from workbench.methods.spsft.config import SPSFTOptions
from workbench.methods.spsft.importance import compute_importance, top_rows
from workbench.methods.spsft.layer import RowSparseLinear
from workbench.models.anatomy import PROJECTIONS, ModelAnatomy

# adapter_state keys: "<linear path>.<suffix>", e.g. "model.layers.3.mlp.down_proj.weight_f"
ROWS, WEIGHT_F, SCORES = "rows", "weight_f", "scores"


@register_method
class SPSFT(MethodDefaults):
    """Structured-pruning sparse fine-tuning: per target linear, train only its top-r important rows."""

    name = "spsft"
    default_lr = 2e-5  # the paper's Llama setting (LoRA 1e-4 there), linear decay after 3% warm-up
    options_class = SPSFTOptions
    requires = (PROJECTIONS,)  # the q/k/v/o and MLP Linear layers by name
    table_options = ("rank", "ratio", "importance")
    color = "#CC79A7"
    tiny_options = {"rank": 4, "importance": "taylor", "importance_batches": 2}

    def __init__(self, options: SPSFTOptions) -> None:
        self.options = options
        self.model: nn.Module | None = None
        self.anatomy: ModelAnatomy | None = None
        self.swapped: dict[tuple[int, str], RowSparseLinear] = {}
        self.scores: dict[tuple[int, str], torch.Tensor] = {}  # (d_out,) fp32 on CPU, for the recorders

    # ---- contract ----------------------------------------------------------------------------------

    def check(self, anatomy: ModelAnatomy) -> None:
        self.options.check(anatomy)

    def prepare(self, ctx: PrepareContext) -> None:
        """Importance phase (ctx.phase("importance")), top-r selection, swap the targets, freeze the rest."""
        self.check(ctx.anatomy)
        targets = self._targets(ctx.anatomy)
        linears = {key: ctx.anatomy.blocks[key[0]].linear(key[1]) for key in targets}
        with ctx.phase("importance"):
            scores = compute_importance(ctx, linears, self.options)
        self.scores = {key: s.detach().float().cpu() for key, s in scores.items()}
        rows = {key: top_rows(s, self.options.rows_for(s.numel())) for key, s in self.scores.items()}
        self._install(ctx.model, ctx.anatomy, rows, init=self.options.init)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {f"{self._path(key)}.{WEIGHT_F}": module.weight_f for key, module in self.swapped.items()}

    def selection(self) -> list[Selection]:
        out: list[Selection] = []
        for (block, name), module in self.swapped.items():
            selected = torch.zeros(module.out_features, dtype=torch.bool)
            selected[module.rows.cpu()] = True
            scores = self.scores.get((block, name))
            if scores is None:  # restored from a state without scores
                scores = torch.full((module.out_features,), float("nan"))
            out.append(RowSelection(block=block, module=name, scores=scores, selected=selected))
        return out

    def resolved_options(self) -> dict[str, Any]:
        """Rows trained per target projection (`rank`, or `ratio` of its output features), as a list
        over blocks where the blocks differ."""
        rows: dict[str, list[int]] = {}
        for (_, name), module in sorted(self.swapped.items()):
            rows.setdefault(name, []).append(int(module.rows.numel()))
        return {"rows": {name: r[0] if len(set(r)) == 1 else r for name, r in rows.items()}}

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Per target: `<path>.rows` (r,) long, `<path>.weight_f` (r, d_in), `<path>.scores` (d_out,) fp32."""
        state: dict[str, torch.Tensor] = {}
        for key, module in self.swapped.items():
            path = self._path(key)
            state[f"{path}.{ROWS}"] = module.rows.detach().contiguous()
            state[f"{path}.{WEIGHT_F}"] = module.weight_f.detach().contiguous()
            if key in self.scores:
                state[f"{path}.{SCORES}"] = self.scores[key].contiguous()
        return state

    def restore(self, model: nn.Module, anatomy: ModelAnatomy, state: dict[str, torch.Tensor]) -> None:
        """Rebuild the trained modules from `adapter_state()` on a fresh base model (no importance phase)."""
        targets = self._targets(anatomy)
        expected = {f"{anatomy.blocks[i].linear_path(n)}.{s}" for i, n in targets for s in (ROWS, WEIGHT_F)}
        missing = expected - set(state)
        if missing:
            raise ValueError(f"SPSFT state lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
        allowed = expected | {f"{anatomy.blocks[i].linear_path(n)}.{SCORES}" for i, n in targets}
        unexpected = set(state) - allowed
        if unexpected:
            raise ValueError(f"SPSFT state has unexpected keys, e.g. {sorted(unexpected)[:3]}")
        rows, values, self.scores = {}, {}, {}
        for i, n in targets:
            path = anatomy.blocks[i].linear_path(n)
            rows[(i, n)] = state[f"{path}.{ROWS}"].long().cpu()
            values[(i, n)] = state[f"{path}.{WEIGHT_F}"]
            if f"{path}.{SCORES}" in state:
                self.scores[(i, n)] = state[f"{path}.{SCORES}"].float().cpu()
        self._install(model, anatomy, rows, init="zeros")
        with torch.no_grad():
            for key, module in self.swapped.items():
                if values[key].shape != module.weight_f.shape:
                    raise ValueError(
                        f"{self._path(key)}.{WEIGHT_F} has shape {tuple(values[key].shape)}, "
                        f"expected {tuple(module.weight_f.shape)}"
                    )
                module.weight_f.copy_(values[key])

    def merge(self) -> nn.Module:
        """Fold W_f into the selected rows and put plain nn.Linear modules back; returns the causal LM."""
        unswap_linears(self.anatomy, self.swapped)
        self.swapped = {}
        return self.model

    # ---- helpers -----------------------------------------------------------------------------------

    def _targets(self, anatomy: ModelAnatomy) -> list[tuple[int, str]]:
        return [(block.index, name) for block in anatomy.blocks for name in self.options.target_names]

    def _path(self, key: tuple[int, str]) -> str:
        return self.anatomy.blocks[key[0]].linear_path(key[1])

    def _install(
        self, model: nn.Module, anatomy: ModelAnatomy, rows: dict[tuple[int, str], torch.Tensor], init: str
    ) -> None:
        """Freeze the model, then replace each target by a RowSparseLinear on its selected rows."""
        self.model, self.anatomy = model, anatomy
        freeze(model)
        # kaiming init draws from the global RNG: the run's seed (set by the loop) makes it reproducible
        self.swapped = swap_linears(
            anatomy, list(rows), lambda linear, i, n: RowSparseLinear(linear, rows[(i, n)], init=init)
        )
