"""The sparse linear of SMT: a frozen nn.Linear plus trainable b x b blocks, with a lean backward.

y = x W_eff^T (+ bias), W_eff = W + scatter(blocks). Only the m selected blocks train: a dense
(m, b, b) parameter, no torch.sparse (Appendix G of the paper: sparse formats cost index memory and
time). For backward the layer saves only the input column slices the blocks need, as copies (one per
distinct column block), never the whole input; the base weight and the blocks are parameters, saved
for free and used to rebuild W_eff for grad_input.

Layers that read the same input tensor (q, k and v read one normalised hidden state) share their copies:
one contiguous copy per (input tensor, column block), kept in a table keyed weakly by the input, so the
copies for q, k and v together never exceed the input's own bytes. Each layer still saves the copy with
`ctx.save_for_backward` (the memory recorder, which deduplicates by storage, counts it once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

# input tensor -> {(its version, column block, block size): the contiguous copy of that column slice}.
# Weak on the input: an entry lives as long as the input tensor does (a forward's hidden state), no longer.
_SHARED_SLICES: WeakIdKeyDictionary = WeakIdKeyDictionary()


@dataclass(frozen=True)
class BlockLayout:
    """Where the m blocks sit, as Python ints (fixed at construction: no device syncs in forward)."""

    block_size: int
    rows: tuple[int, ...]  # (m,) row-block index of each block
    cols: tuple[int, ...]  # (m,) column-block index of each block
    distinct_cols: tuple[int, ...]  # the column blocks whose input slices backward needs, sorted
    slots: tuple[int, ...]  # (m,) position of each block's column in `distinct_cols`

    @classmethod
    def from_index(cls, block_index: torch.Tensor, block_size: int) -> BlockLayout:
        rows = tuple(int(r) for r in block_index[:, 0].tolist())
        cols = tuple(int(c) for c in block_index[:, 1].tolist())
        distinct = tuple(sorted(set(cols)))
        slot_of = {c: i for i, c in enumerate(distinct)}
        return cls(block_size, rows, cols, distinct, tuple(slot_of[c] for c in cols))


def effective_weight(weight: torch.Tensor, blocks: torch.Tensor, block_index: torch.Tensor) -> torch.Tensor:
    """W + scatter(blocks): a new (out, in) tensor; `weight` is not modified.

    Built as a copy of W with the blocks index_put into a (R, C, b, b) view, so the forward is one
    dense GEMM (the paper's Appendix G). Measured on CPU (1 thread, CPU time) at SmolLM2 shapes, 576 x 576,
    b = 64, 1-8 blocks (1-10%), input 8 x 128 tokens: F.linear on this W_eff costs 1-4% more than the
    plain dense forward; F.linear on W plus the blocks' contributions added to the output costs 3-9% more
    with one small matmul per block and 6-24% with one batched gathered matmul + index_add (which also
    needs a (..., m, b) temporary).
    """
    out_features, in_features = weight.shape
    b = blocks.shape[-1]
    w = weight.detach().clone(memory_format=torch.contiguous_format)  # (out, in), viewable below
    grid = w.view(out_features // b, b, in_features // b, b).permute(0, 2, 1, 3)  # (R, C, b, b) view of w
    grid.index_put_((block_index[:, 0], block_index[:, 1]), blocks.detach().to(w.dtype), accumulate=True)
    return w


def column_slice(x: torch.Tensor, col: int, b: int) -> torch.Tensor:
    """x[..., col*b:(col+1)*b] as a tensor owning its storage, shared by every layer that asks for the
    same column block of the same input (unchanged since: its version is part of the key)."""
    copies = _SHARED_SLICES.get(x)
    key = (x._version, col, b)
    if copies is not None and key in copies:
        return copies[key]
    copy = _own_copy(x[..., col * b : (col + 1) * b])
    if copy is not x:  # x itself (one block spans it) must not be a value of its own weak entry
        _SHARED_SLICES.setdefault(x, {})[key] = copy
    return copy


def _own_copy(t: torch.Tensor) -> torch.Tensor:
    """`t` as a tensor that owns its whole storage: a contiguous copy unless it already is one.

    A slice saved as a view would keep the entire input alive (the authors' defect); `.contiguous()`
    is not enough either, since a slice of a (1, 1, d) input is contiguous yet still a view.
    """
    whole = t.storage_offset() == 0 and t.untyped_storage().nbytes() == t.numel() * t.element_size()
    if t.is_contiguous() and whole:
        return t
    return t.clone(memory_format=torch.contiguous_format)


class SparseBlockLinearFunction(torch.autograd.Function):
    """y = x W_eff^T + bias; gradients for x and the blocks only (W and bias are frozen)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,  # (..., in)
        blocks: torch.Tensor,  # (m, b, b)
        weight: torch.Tensor,  # (out, in), frozen
        bias: torch.Tensor | None,  # (out,), frozen
        block_index: torch.Tensor,  # (m, 2) long: (row block, column block)
        layout: BlockLayout,
    ) -> torch.Tensor:
        y = F.linear(x, effective_weight(weight, blocks, block_index), bias)  # (..., out)
        b = layout.block_size
        slices: list[torch.Tensor] = []
        if ctx.needs_input_grad[1]:  # the blocks' gradient needs x[..., cols]; nothing else of x
            slices = [column_slice(x, c, b) for c in layout.distinct_cols]  # each (..., b), shared
        # weight, blocks and block_index are parameters/buffers: saving them costs no activation memory
        ctx.save_for_backward(weight, blocks, block_index, *slices)
        ctx.layout = layout
        return y

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, blocks, block_index, *slices = ctx.saved_tensors
        layout: BlockLayout = ctx.layout
        b = layout.block_size
        grad_x = grad_blocks = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out.matmul(effective_weight(weight, blocks, block_index))  # (..., in)
        if ctx.needs_input_grad[1]:
            g = grad_out.reshape(-1, grad_out.shape[-1])  # (N, out), N = all leading dims
            grad_blocks = torch.empty_like(blocks)  # (m, b, b)
            # One (b, N) @ (N, b) product per block on strided views: no gathered (N, m, b) temporary.
            # Accumulated in the blocks' dtype (fp32 over a half-precision base: (b, N) slices, small).
            for k, (r, slot) in enumerate(zip(layout.rows, layout.slots, strict=True)):
                x_cols = slices[slot].reshape(-1, b).to(blocks.dtype)  # (N, b)
                torch.mm(g[:, r * b : (r + 1) * b].t().to(blocks.dtype), x_cols, out=grad_blocks[k])
        return grad_x, grad_blocks, None, None, None, None


class SparseBlockLinear(nn.Module):
    """A frozen nn.Linear (`base_layer`) plus trainable blocks: W_eff = W + scatter(blocks).

    `blocks` (m, b, b) starts at zero (a delta: the layer starts as the base layer) and is the only
    trainable tensor, so optimizer state exists only for it. `block_index` (m, 2) holds the (row block,
    column block) of each block. Accepts inputs of any leading shape (..., in).

    Cost (CPU, 1 thread, 576 x 576, b = 64, 1-5% of the blocks, input 8 x 128 tokens): forward +
    backward within 10% of a frozen nn.Linear, about 30% under a trainable dense one.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        block_index: torch.Tensor,
        block_size: int,
        values: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        weight = base_layer.weight
        out_features, in_features = weight.shape
        b = block_size
        if out_features % b or in_features % b:
            raise ValueError(f"block_size {b} does not divide the weight shape {tuple(weight.shape)}")
        index = block_index.detach().to(device="cpu", dtype=torch.long).reshape(-1, 2)
        rows, cols = out_features // b, in_features // b
        if len(index) and not (
            (index[:, 0] >= 0).all()
            and (index[:, 0] < rows).all()
            and (index[:, 1] >= 0).all()
            and (index[:, 1] < cols).all()
        ):
            raise ValueError(f"block index outside the ({rows}, {cols}) block grid")
        if len({tuple(p) for p in index.tolist()}) != len(index):
            raise ValueError("block index lists a block twice")
        self.base_layer = base_layer
        self.block_size = b
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("block_index", index.to(weight.device))
        # the blocks stay fp32 over a half-precision base (as peft keeps LoRA's A and B): lr 1e-4 updates
        # of bf16 blocks would be rounded away; the forward adds them to W in W's dtype
        dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        self.blocks = nn.Parameter(torch.zeros(len(index), b, b, device=weight.device, dtype=dtype))
        if values is not None:
            with torch.no_grad():
                self.blocks.copy_(values)
        self.layout = BlockLayout.from_index(index, b)

    @classmethod
    def from_mask(cls, base_layer: nn.Linear, selected: torch.Tensor, block_size: int) -> SparseBlockLinear:
        """Blocks where `selected` (out/b, in/b) is True, in row-major order."""
        return cls(base_layer, selected.nonzero(), block_size)

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight, without the blocks (for code that reads `.weight.dtype` and the like)."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def effective_weight(self) -> torch.Tensor:
        """(out, in) W + scatter(blocks), detached."""
        return effective_weight(self.base_layer.weight, self.blocks, self.block_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.base_layer.weight, self.base_layer.bias
        if weight.requires_grad or (bias is not None and bias.requires_grad):
            # the backward computes no dense weight gradient (it keeps no full input to compute it from)
            raise RuntimeError("SparseBlockLinear needs its base_layer frozen; only `blocks` can train")
        if len(self.layout.rows) == 0:
            return F.linear(x, weight, bias)
        if torch.is_grad_enabled() and (x.requires_grad or self.blocks.requires_grad):
            fn = SparseBlockLinearFunction.apply
            return fn(x, self.blocks, weight, bias, self.block_index, self.layout)
        return F.linear(x, self.effective_weight(), bias)  # no autograd: nothing to save

    @torch.no_grad()
    def merged_linear(self) -> nn.Linear:
        """A plain nn.Linear with weight W + scatter(blocks), on the base layer's device and dtype."""
        base = self.base_layer
        merged = nn.Linear(self.in_features, self.out_features, bias=base.bias is not None, device="meta")
        merged.weight = nn.Parameter(self.effective_weight(), requires_grad=base.weight.requires_grad)
        if base.bias is not None:
            merged.bias = nn.Parameter(base.bias.detach().clone(), requires_grad=base.bias.requires_grad)
        return merged

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"block_size={self.block_size}, blocks={len(self.layout.rows)}"
        )
