"""RowSparseLinear: a frozen nn.Linear plus trainable rows W_f scattered into fixed output rows.

    y = base(x) + M (W_f x + b_f),   W_f (r, d_in) trainable, M (d_out, r) the fixed 0/1 row map,
                                     b_f (r,) the selected rows' bias, trained where the linear has one

M is applied as an index add along the last dim (never a one-hot matmul). The memory point of the
paper: because M is fixed, the backward needs only x (for dW_f = g[..., rows]^T x); the product
x W_f^T is never kept. Autograd's own `index_add` saves its source, i.e. exactly that (..., r)
product (LoRA's cached A x), so the scatter goes through a small autograd Function that saves x only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class RowScatterAdd(torch.autograd.Function):
    """out = base_out + index_add over the last dim of (x W_f^T + b_f) at `rows`; saves only x for backward
    (b_f, the selected rows' bias update, is None where the linear has no bias)."""

    @staticmethod
    def forward(
        ctx: Any,
        base_out: torch.Tensor,
        x: torch.Tensor,
        weight_f: torch.Tensor,
        bias_f: torch.Tensor | None,
        rows: torch.Tensor,
    ) -> torch.Tensor:
        # base_out (..., d_out), x (..., d_in), weight_f (r, d_in), bias_f (r,) or None, rows (r,) long
        delta = x @ weight_f.to(x.dtype).t()  # (..., r): used here, then freed (not saved)
        if bias_f is not None:
            delta = delta + bias_f.to(x.dtype)
        out = base_out.index_add(-1, rows, delta)  # (..., d_out)
        # x is the module's whole input (not a slice), so saving it keeps nothing else alive. It is only
        # needed for W_f's gradient; weight_f is a parameter and rows a buffer (they exist anyway).
        ctx.save_for_backward(x if ctx.needs_input_grad[2] else None, weight_f, rows)
        ctx.bias_dtype = None if bias_f is None else bias_f.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight_f, rows = ctx.saved_tensors
        g_rows = grad_out.index_select(-1, rows)  # (..., r): dL/d(x W_f^T + b_f)
        grad_base = grad_out if ctx.needs_input_grad[0] else None  # the add passes gradient through
        grad_x = g_rows @ weight_f.to(g_rows.dtype) if ctx.needs_input_grad[1] else None  # (..., d_in)
        grad_w = grad_b = None
        flat = g_rows.reshape(-1, g_rows.shape[-1])  # (T, r)
        if ctx.needs_input_grad[2]:
            grad_w = (flat.t() @ x.reshape(-1, x.shape[-1])).to(weight_f.dtype)  # (r, d_in)
        if ctx.needs_input_grad[3]:
            grad_b = flat.sum(dim=0).to(ctx.bias_dtype)  # (r,)
        return grad_base, grad_x, grad_w, grad_b, None


class RowSparseLinear(nn.Module):
    """A frozen `base_layer` (nn.Linear) whose output rows `rows` get a trainable update W_f x (+ b_f)."""

    def __init__(self, base_layer: nn.Linear, rows: torch.Tensor, init: str = "zeros") -> None:
        """`rows` (r,) distinct output-row indices; `init` "zeros" (the paper) or "kaiming" (their code)."""
        super().__init__()
        out_features, in_features = base_layer.weight.shape
        rows = torch.as_tensor(rows, dtype=torch.long).flatten()
        if rows.numel() < 1 or rows.unique().numel() != rows.numel():
            raise ValueError(f"rows must be distinct and non-empty, got {rows.tolist()}")
        if int(rows.min()) < 0 or int(rows.max()) >= out_features:
            raise ValueError(f"rows must lie in [0, {out_features}), got {rows.min()}..{rows.max()}")
        self.base_layer = base_layer
        self.base_layer.requires_grad_(False)
        weight = base_layer.weight
        self.register_buffer("rows", rows.to(weight.device))  # (r,) long, fixed: the row map M
        # W_f is kept in fp32 over a half-precision base (as peft keeps LoRA's A and B, and as the paper
        # stores "all fine-tuning parameters in full precision"): bf16 would round lr 2e-5 updates away.
        # The forward computes in the input's dtype.
        dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        self.weight_f = nn.Parameter(
            torch.zeros(rows.numel(), in_features, device=weight.device, dtype=dtype)
        )  # (r, d_in)
        # the selected rows' bias trains too where the linear has one (Qwen2's q/k/v), from zero
        self.bias_f = (
            nn.Parameter(torch.zeros(rows.numel(), device=weight.device, dtype=dtype))
            if base_layer.bias is not None
            else None
        )
        if init == "kaiming":
            # nn.Linear's own default init, as the authors' code does: perturbs the model at step 0
            nn.init.kaiming_uniform_(self.weight_f, a=math.sqrt(5))
        elif init != "zeros":
            raise ValueError(f"unknown init {init!r}; accepted: zeros, kaiming")

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def rank(self) -> int:
        return self.rows.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_out); any number of leading dims."""
        return RowScatterAdd.apply(self.base_layer(x), x, self.weight_f, self.bias_f, self.rows)

    @torch.no_grad()
    def merged_linear(self) -> nn.Linear:
        """A plain nn.Linear with W[rows] += W_f and bias[rows] += b_f, on the base layer's device, dtype."""
        base = self.base_layer
        merged = nn.Linear(
            base.in_features,
            base.out_features,
            bias=base.bias is not None,
            device=base.weight.device,
            dtype=base.weight.dtype,
        )
        merged.weight.copy_(base.weight)
        merged.weight.index_add_(0, self.rows, self.weight_f.to(base.weight.dtype))
        if base.bias is not None:
            merged.bias.copy_(base.bias)
            merged.bias.index_add_(0, self.rows, self.bias_f.to(base.bias.dtype))
        merged.requires_grad_(base.weight.requires_grad)
        return merged

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"
