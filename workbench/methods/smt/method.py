"""SMT, the method: warm-up, block selection, swap to sparse linears, save / restore / merge.

prepare(): (1) warm-up: `warmup_steps` batches of real fine-tuning of the target matrices, summing
their gradients (GW-selection), or forward-only input-norm statistics (AW-selection); (2) score every
b x b block and keep the top-k within the budget (global or per matrix); (3) replace each target that
got blocks by a SparseBlockLinear and freeze everything else. Targets that got no block stay plain
frozen nn.Linear: no weight gradient, no saved input (the paper: "SMT freezes these layers").
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from workbench.methods.activation_phase import input_channel_norms
from workbench.methods.base import (
    BlockGridSelection,
    MethodDefaults,
    PrepareContext,
    Selection,
    freeze,
    swap_linears,
    unswap_linears,
)
from workbench.methods.gradient_phase import accumulate_gradients
from workbench.methods.registry import register_method
from workbench.methods.smt.config import BLOCK_SIZE_CANDIDATES, SMTOptions
from workbench.methods.smt.layer import SparseBlockLinear
from workbench.methods.smt.scoring import (
    block_scores,
    blocks_for_fraction,
    column_block_scores,
    default_block_size,
    select_top_blocks,
    select_top_columns,
)
from workbench.models.anatomy import LINEAR_NAMES, MLP_LINEARS, PROJECTIONS, ModelAnatomy
from workbench.validation import require

Key = tuple[int, str]  # (transformer block index, projection name)
WARMED = "warmup."  # adapter_state prefix of the parameters a whole-model warm-up changed


@register_method
class SMT(MethodDefaults):
    """Sparse sub-matrix tuning (He et al., ICLR 2025): only the top-scoring weight blocks train."""

    name = "smt"
    # The authors' script trains the blocks at 1e-4 (smt_learning_rate), between LoRA's 2e-4 and full
    # fine-tuning's 2e-5: the blocks are raw weight deltas (no alpha/r scaling), updated by Adam.
    default_lr = 1e-4
    options_class = SMTOptions
    requires = (PROJECTIONS,)  # the q/k/v/o and MLP Linear layers by name
    gradient = "selected"  # the chosen blocks' gradient is the dense one restricted to them
    table_options = ("budget", "targets", "selection")
    color = "#009E73"
    tiny_options = {"warmup_steps": 2, "block_size": 16, "budget_blocks": 6}

    def __init__(self, options: SMTOptions) -> None:
        self.options = options
        self.block_size: int | None = None  # resolved by check()
        self.model: nn.Module | None = None
        self.anatomy: ModelAnatomy | None = None
        self.targets: list[str] = []  # qualified names of every targeted projection (swapped or not)
        self.swapped: dict[Key, SparseBlockLinear] = {}  # the targets that got blocks
        self.warmup_updated = False  # True when the warm-up changed the target weights (saved in the state)
        # Per target matrix: median / mean of |g| per warm-up step averaged over the steps (the paper's
        # Fig. 3), max of |g| over the steps. Empty for activation selection (no gradient). Reported
        # through selection() as each grid's phase_grad_stats.
        self._warmup_grad_stats: dict[Key, dict[str, float]] = {}
        self._grids: list[BlockGridSelection] = []

    # ---- checks and budget -------------------------------------------------------------------------

    def _keys(self, anatomy: ModelAnatomy) -> list[Key]:
        return [(block.index, name) for block in anatomy.blocks for name in self.options.target_names]

    def _pools(self, total_params: int) -> list[tuple[str, tuple[str, ...], int]]:
        """(option name, projection names, block count) of each top-k pool.

        One pool over all targets, or two (attention under `budget`, MLP under `mlp_budget`).
        """
        opts, b = self.options, self.block_size
        names = opts.target_names
        main = opts.budget_blocks or blocks_for_fraction(opts.budget, total_params, b)
        main_option = "budget_blocks" if opts.budget_blocks else "budget"
        mlp = tuple(n for n in names if n in MLP_LINEARS)
        if opts.mlp_budget is None or not mlp:
            return [(main_option, names, main)]
        pools = [("mlp_budget", mlp, blocks_for_fraction(opts.mlp_budget, total_params, b))]
        rest = tuple(n for n in names if n not in MLP_LINEARS)
        return [(main_option, rest, main), *pools] if rest else pools

    def check(self, anatomy: ModelAnatomy) -> None:
        """Resolve the block size and check it and the budget against the model (ConfigError)."""
        keys = self._keys(anatomy)
        shapes = {key: tuple(anatomy.blocks[key[0]].linear(key[1]).weight.shape) for key in keys}
        b = self.options.block_size
        if b is None:
            dims = sorted({d for shape in shapes.values() for d in shape})
            b = default_block_size(dims)
            require(
                b is not None,
                f"no default SMT block size: none of {', '.join(map(str, BLOCK_SIZE_CANDIDATES))} divides "
                f"every target dimension ({', '.join(map(str, dims))}); set method.block_size",
            )
        for (index, name), (out_features, in_features) in shapes.items():
            require(
                out_features % b == 0 and in_features % b == 0,
                f"block_size {b} does not divide {name} weight ({out_features}, {in_features}) "
                f"of block {index}",
            )
        self.block_size = b
        total = sum(p.numel() for p in anatomy.model.parameters())  # tied weights counted once
        for option, names, k in self._pools(total):
            held = sum(shapes[key][0] * shapes[key][1] for key in keys if key[1] in names) // (b * b)
            require(
                k <= held,
                f"SMT method.{option} asks for {k} blocks of {b}x{b} ({k * b * b:,} parameters; the "
                f"model has {total:,}) but {', '.join(names)} hold only {held} blocks "
                f"({held * b * b:,} parameters)",
            )
            matrices = [key for key in keys if key[1] in names]
            if self.options.selection == "activation":
                cheapest = min(shapes[key][0] for key in matrices) // b
                require(
                    k >= cheapest,
                    f"SMT activation selection trains whole input channels: a column of {b}-wide blocks "
                    f"costs out_features/{b} blocks ({cheapest} in the cheapest of {', '.join(names)}), but "
                    f"method.{option} gives {k} blocks; raise the budget or use selection gradient / random",
                )
            elif self.options.scope == "per_matrix_equal":
                each = -(-k // len(matrices))  # the most any matrix gets
                smallest = min(shapes[key][0] * shapes[key][1] for key in matrices) // (b * b)
                require(
                    each <= smallest,
                    f"SMT scope per_matrix_equal gives up to {each} of the {k} blocks to each of "
                    f"{len(matrices)} matrices, but the smallest holds {smallest} blocks of {b}x{b}; "
                    "lower the budget or use scope global / per_matrix",
                )

    # ---- prepare: warm-up, scoring, selection, swap ----------------------------------------------

    def prepare(self, ctx: PrepareContext) -> None:
        self.check(ctx.anatomy)
        self.model, self.anatomy = ctx.model, ctx.anatomy
        keys = self._keys(ctx.anatomy)
        self.targets = [ctx.anatomy.blocks[i].linear_path(name) for i, name in keys]
        total = sum(p.numel() for p in ctx.model.parameters())
        selected: dict[Key, torch.Tensor] = {}
        if self.options.selection == "activation":
            scores, selected = self._activation_selection(ctx, keys, total)
        else:
            if self.options.selection == "gradient":
                scores = self._gradient_scores(ctx, keys)
            else:
                scores = self._random_scores(ctx, keys)
            for _, names, k in self._pools(total):
                pool = [key for key in keys if key[1] in names]
                masks = select_top_blocks([scores[key] for key in pool], k, self.options.scope)
                selected.update(zip(pool, masks, strict=True))

        b = self.block_size
        self._grids = [
            BlockGridSelection(
                i, n, b, scores[(i, n)], selected[(i, n)], dict(self._warmup_grad_stats.get((i, n), {}))
            )
            for i, n in keys
        ]
        freeze(ctx.model)
        chosen = [key for key in keys if selected[key].any()]
        self.swapped = swap_linears(
            ctx.anatomy, chosen, lambda linear, i, n: SparseBlockLinear.from_mask(linear, selected[(i, n)], b)
        )

    def _gradient_scores(self, ctx: PrepareContext, keys: list[Key]) -> dict[Key, torch.Tensor]:
        """GW-selection: warm-up gradient sums G per target, scored per block; also |g| statistics."""
        opts = self.options
        weights = {key: ctx.anatomy.blocks[key[0]].linear(key[1]).weight for key in keys}
        # Per-step stats of each step's gradient (before clipping): (sum of medians, sum of means, max) per
        # matrix, kept on the device so the warm-up has no host sync per step. Cost on CPU at SmolLM2 (90
        # q/k/v grads): 0.18 s of CPU per step, ~3% of a forward+backward at 8 x 128 tokens.
        sums = {key: torch.zeros(3, device=w.device) for key, w in weights.items()}

        def stats(grads: dict[Key, torch.Tensor]) -> None:
            for key, grad in grads.items():
                a = grad.detach().abs().float()
                sums[key][:2] += torch.stack([a.median(), a.mean()])
                sums[key][2] = torch.maximum(sums[key][2], a.max())

        warmup_ctx = ctx if opts.warmup_lr is None else dataclasses.replace(ctx, lr=opts.warmup_lr)
        trained = list(ctx.model.parameters()) if opts.warmup_scope == "model" else None
        with ctx.phase("warmup"):
            grads = accumulate_gradients(
                warmup_ctx,
                weights,
                opts.warmup_steps,
                update=opts.update_during_warmup,
                trained=trained,
                on_step=stats,
            )
        self.warmup_updated = opts.update_during_warmup
        steps = opts.warmup_steps
        self._warmup_grad_stats = {}
        for key, s in sums.items():
            median, mean, peak = s.tolist()
            self._warmup_grad_stats[key] = {"median": median / steps, "mean": mean / steps, "max": peak}
        return {key: block_scores(g, self.block_size, opts.score).cpu() for key, g in grads.items()}

    def _random_scores(self, ctx: PrepareContext, keys: list[Key]) -> dict[Key, torch.Tensor]:
        """Random selection (the paper's Table 9 control): uniform scores per block from a generator
        seeded with the run's seed, so the top-k is a uniform draw; no warm-up, no data."""
        generator = torch.Generator().manual_seed(ctx.seed)
        b = self.block_size
        scores = {}
        for key in keys:
            out_features, in_features = ctx.anatomy.blocks[key[0]].linear(key[1]).weight.shape
            scores[key] = torch.rand(out_features // b, in_features // b, generator=generator)
        return scores

    def _activation_selection(
        self, ctx: PrepareContext, keys: list[Key], total: int
    ) -> tuple[dict[Key, torch.Tensor], dict[Key, torch.Tensor]]:
        """AW-selection as the authors' code: each input channel scored by its mean |x| over real tokens,
        averaged over the warm-up batches (forward only, no weight update); whole columns train, at the
        block size: column blocks of every row (`scoring.select_top_columns`). (scores, masks) per key;
        a block's score is its column's."""
        linears = {key: ctx.anatomy.blocks[key[0]].linear(key[1]) for key in keys}
        with ctx.phase("warmup"):
            norms = input_channel_norms(ctx, linears, self.options.warmup_steps, stat="mean_abs")
        self.warmup_updated = False
        b = self.block_size
        columns = {key: column_block_scores(norms[key], b) for key in keys}
        rows = {key: linear.weight.shape[0] // b for key, linear in linears.items()}
        selected: dict[Key, torch.Tensor] = {}
        for _, names, k in self._pools(total):
            pool = [key for key in keys if key[1] in names]
            masks = select_top_columns(
                [columns[key] for key in pool],
                [rows[key] for key in pool],
                [(name, index) for index, name in pool],
                k,
                self.options.scope,
            )
            selected.update(zip(pool, masks, strict=True))
        scores = {key: columns[key].expand(rows[key], -1).clone() for key in keys}
        return scores, selected

    # ---- the contract ------------------------------------------------------------------------------

    def _path(self, key: Key) -> str:
        return self.anatomy.blocks[key[0]].linear_path(key[1])

    @property
    def swapped_paths(self) -> list[str]:
        """Qualified names of the projections replaced by a SparseBlockLinear (targets that got blocks)."""
        return [self._path(key) for key in self.swapped]

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {f"{self._path(key)}.blocks": module.blocks for key, module in self.swapped.items()}

    def selection(self) -> list[Selection]:
        """The block grid of every target matrix: scores (NaN after `restore`) and chosen blocks."""
        return list(self._grids)

    def resolved_options(self) -> dict[str, Any]:
        """The block size (chosen from the shapes when `block_size` is None) and the blocks each
        projection got (the budget resolved to a count and split by the selection)."""
        return {"block_size": self.block_size, "blocks": self.allocation()}

    def allocation(self) -> dict[str, int]:
        """Chosen blocks per projection name (the paper's Fig. 5: V takes most of them)."""
        out = dict.fromkeys(self.options.target_names, 0)
        for grid in self._grids:
            out[grid.module] += int(grid.selected.sum())
        return out

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Per swapped module `<path>.blocks` (m, b, b) and `<path>.block_index` (m, 2).

        When the warm-up updated the targets, their weights are part of the result too: `<path>.weight`
        for every target matrix (the base model alone no longer rebuilds the trained one); when it tuned
        the whole model (`warmup_scope = "model"`), every other parameter too, as `warmup.<name>`.
        """
        state: dict[str, torch.Tensor] = {}
        for key, module in self.swapped.items():
            state[f"{self._path(key)}.blocks"] = module.blocks.detach()
            state[f"{self._path(key)}.block_index"] = module.block_index
        if self.warmup_updated:
            targets = set()
            for index, name in self._keys(self.anatomy):
                weight = self.anatomy.blocks[index].linear(name).weight  # base weight, also when swapped
                state[f"{self._path((index, name))}.weight"] = weight.detach()
                targets.add(id(weight))
            if self.options.warmup_scope == "model":
                blocks = {id(module.blocks) for module in self.swapped.values()}
                for name, param in self.model.named_parameters():
                    if id(param) not in targets and id(param) not in blocks:
                        state[f"{WARMED}{name.replace('.base_layer.', '.')}"] = param.detach()
        return state

    def restore(self, model: nn.Module, anatomy: ModelAnatomy, state: dict[str, torch.Tensor]) -> None:
        """Rebuild the trained model on a fresh base model from `adapter_state()`; no warm-up runs."""
        self.check(anatomy)  # resolves the block size the state must use
        self.model, self.anatomy = model, anatomy
        b = self.block_size
        keys = self._keys(anatomy)
        self.targets = [self._path(key) for key in keys]
        known = {self._path((i, name)): (i, name) for i in range(anatomy.num_blocks) for name in LINEAR_NAMES}
        parts: dict[Key, dict[str, torch.Tensor]] = {}
        params = dict(model.named_parameters())
        warmed = {entry.removeprefix(WARMED): t for entry, t in state.items() if entry.startswith(WARMED)}
        unknown = sorted(set(warmed) - set(params))
        if unknown:
            raise ValueError(
                f"SMT adapter state has warm-up weights for unknown parameters, e.g. {unknown[:3]}"
            )
        for entry, tensor in state.items():
            if entry.startswith(WARMED):
                continue
            path, _, part = entry.rpartition(".")
            if path not in known or part not in ("blocks", "block_index", "weight"):
                raise ValueError(f"SMT adapter state has an unexpected key {entry!r}")
            parts.setdefault(known[path], {})[part] = tensor
        sparse = {key: p for key, p in parts.items() if "blocks" in p or "block_index" in p}
        for key, p in sparse.items():
            if "blocks" not in p or "block_index" not in p:
                raise ValueError(f"SMT adapter state for {self._path(key)} lacks .blocks or .block_index")
            if p["blocks"].shape[-1] != b:
                raise ValueError(f"SMT adapter state has blocks of {p['blocks'].shape[-1]}, options give {b}")

        freeze(model)
        with torch.no_grad():  # the warm-up's updates of the weights come first
            for name, tensor in warmed.items():
                params[name].copy_(tensor)
            for (index, name), p in parts.items():
                if "weight" in p:
                    anatomy.blocks[index].linear(name).weight.copy_(p["weight"])
        self.warmup_updated = any("weight" in p for p in parts.values())
        self.swapped = swap_linears(
            anatomy,
            list(sparse),
            lambda linear, i, name: SparseBlockLinear(
                linear, sparse[(i, name)]["block_index"], b, values=sparse[(i, name)]["blocks"]
            ),
        )
        self._grids = []
        for key in keys:
            out_features, in_features = anatomy.blocks[key[0]].linear(key[1]).weight.shape
            chosen = torch.zeros(out_features // b, in_features // b, dtype=torch.bool)
            if key in self.swapped:
                rows, cols = self.swapped[key].block_index.cpu().unbind(dim=1)
                chosen[rows, cols] = True
            scores = torch.full(chosen.shape, float("nan"))  # no warm-up ran: the scores are unknown
            self._grids.append(BlockGridSelection(key[0], key[1], b, scores, chosen))

    def merge(self) -> nn.Module:
        """Fold the blocks into the weights (plain nn.Linear everywhere) and return the causal LM."""
        unswap_linears(self.anatomy, self.swapped)
        self.swapped = {}
        return self.model
