"""SparseBlockLinear: exact gradients against dense autograd, frozen elsewhere, lean saved tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.memory.saved import track_saved_tensors
from workbench.methods.smt.layer import SparseBlockLinear, SparseBlockLinearFunction, column_slice

B_SIZE = 16
# (row block, column block) on a (32, 64) weight: a (2, 4) grid; 4 blocks in 3 distinct column blocks
INDEX = torch.tensor([[0, 1], [1, 3], [0, 3], [1, 0]])
SHAPES = {"2d": (10, 64), "3d": (3, 7, 64), "4d": (2, 3, 4, 64)}


def make_layer(
    bias: bool = True, dtype: torch.dtype = torch.float64, values: bool = True
) -> SparseBlockLinear:
    torch.manual_seed(0)
    base = nn.Linear(64, 32, bias=bias).to(dtype).requires_grad_(False)
    init = torch.randn(len(INDEX), B_SIZE, B_SIZE, dtype=dtype) * 0.1 if values else None
    return SparseBlockLinear(base, INDEX, B_SIZE, values=init)


def dense_reference(layer: SparseBlockLinear) -> torch.Tensor:
    """W + blocks, assembled block by block (independent of the layer's own scatter)."""
    w = layer.base_layer.weight.detach().clone()
    b = B_SIZE
    for k, (r, c) in enumerate(INDEX.tolist()):
        w[r * b : (r + 1) * b, c * b : (c + 1) * b] += layer.blocks.detach()[k]
    return w


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("bias", [True, False])
def test_output_and_gradients_equal_dense_autograd(shape: tuple[int, ...], bias: bool) -> None:
    layer = make_layer(bias=bias)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()

    w_ref = dense_reference(layer).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    y_ref = F.linear(x_ref, w_ref, layer.base_layer.bias)
    (y_ref * upstream).sum().backward()

    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-12)
    b = B_SIZE
    for k, (r, c) in enumerate(INDEX.tolist()):
        expected = w_ref.grad[r * b : (r + 1) * b, c * b : (c + 1) * b]
        torch.testing.assert_close(layer.blocks.grad[k], expected, rtol=0, atol=1e-12)
    assert layer.base_layer.weight.grad is None


def test_gradcheck() -> None:
    torch.manual_seed(0)
    base = nn.Linear(16, 8, dtype=torch.float64).requires_grad_(False)  # small: gradcheck is O(inputs)
    layer = SparseBlockLinear(base, torch.tensor([[0, 1], [1, 1], [1, 3]]), 4)
    x = torch.randn(2, 3, 16, dtype=torch.float64, requires_grad=True)
    blocks = torch.randn(3, 4, 4, dtype=torch.float64, requires_grad=True)

    def fn(x: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        fn = SparseBlockLinearFunction.apply
        return fn(x, blocks, base.weight, base.bias, layer.block_index, layer.layout)

    assert torch.autograd.gradcheck(fn, (x, blocks))


@pytest.mark.parametrize("shape", [SHAPES["2d"], SHAPES["3d"]], ids=["2d", "3d"])
def test_unchosen_weights_never_change(shape: tuple[int, ...]) -> None:
    layer = make_layer(dtype=torch.float32, values=False)
    w0 = layer.base_layer.weight.detach().clone()
    trainable = [name for name, p in layer.named_parameters() if p.requires_grad]
    assert trainable == ["blocks"]  # so the optimizer holds state for the blocks only
    optimizer = torch.optim.AdamW([layer.blocks], lr=1e-2)
    for _ in range(3):
        layer(torch.randn(shape)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    assert set(optimizer.state) == {layer.blocks}

    merged = layer.merged_linear().weight.detach()
    chosen = torch.zeros(2, 4, dtype=torch.bool)
    chosen[INDEX[:, 0], INDEX[:, 1]] = True
    chosen = chosen.repeat_interleave(B_SIZE, 0).repeat_interleave(B_SIZE, 1)  # (32, 64)
    assert torch.equal(merged[~chosen], w0[~chosen])
    assert (merged[chosen] != w0[chosen]).all()
    assert torch.equal(layer.base_layer.weight, w0)


def _saved_bytes(layer: nn.Module, x: torch.Tensor) -> tuple[int, list[tuple[int, ...]]]:
    with track_saved_tensors(layer) as tracker:
        y = layer(x)
    y.sum().backward()  # the saved slices must be enough for backward
    return tracker.total_bytes, [r.shape for r in tracker.records]


def test_saves_only_the_needed_column_slices() -> None:
    layer = make_layer(dtype=torch.float32)
    B, n, d = 4, 9, 64
    x = torch.randn(B, n, d, requires_grad=True)
    total, shapes = _saved_bytes(layer, x)
    distinct = len(set(INDEX[:, 1].tolist()))  # 3 column blocks: never the whole (B, n, d) input
    assert total == distinct * B * n * B_SIZE * 4
    assert shapes == [(B, n, B_SIZE)] * distinct

    x2 = torch.randn(B * n, d, requires_grad=True)  # 2-D input: same bytes
    assert _saved_bytes(layer, x2)[0] == distinct * B * n * B_SIZE * 4


def test_two_column_blocks_cost_two_slices() -> None:
    torch.manual_seed(0)
    base = nn.Linear(64, 32).requires_grad_(False)
    layer = SparseBlockLinear(base, torch.tensor([[0, 2], [1, 2], [1, 0]]), B_SIZE)
    B, n = 2, 5
    total, _ = _saved_bytes(layer, torch.randn(B, n, 64, requires_grad=True))
    assert total == 2 * B * n * B_SIZE * 4


def test_a_slice_that_is_a_contiguous_view_is_still_copied() -> None:
    # x[..., c*b:(c+1)*b] of a (1, 1, d) input is contiguous, yet a view of the whole input
    layer = make_layer(dtype=torch.float32)
    total, _ = _saved_bytes(layer, torch.randn(1, 1, 64, requires_grad=True))
    assert total == 3 * B_SIZE * 4


def test_nothing_saved_when_the_blocks_are_frozen() -> None:
    layer = make_layer(dtype=torch.float32)
    layer.blocks.requires_grad_(False)
    total, _ = _saved_bytes(layer, torch.randn(2, 5, 64, requires_grad=True))
    assert total == 0  # grad_input needs only W_eff, rebuilt from parameters


def test_merged_linear_and_no_grad_forward_match() -> None:
    layer = make_layer(dtype=torch.float32)
    x = torch.randn(3, 5, 64)
    merged = layer.merged_linear()
    assert type(merged) is nn.Linear
    assert merged.weight.dtype == layer.base_layer.weight.dtype
    assert merged.weight.device == layer.base_layer.weight.device
    with torch.no_grad():
        expected = F.linear(x, dense_reference(layer), layer.base_layer.bias)
        torch.testing.assert_close(layer(x), expected)
        torch.testing.assert_close(merged(x), expected)
    torch.testing.assert_close(layer(x), expected)  # autograd path


def test_starts_as_the_base_layer() -> None:
    layer = make_layer(dtype=torch.float32, values=False)
    x = torch.randn(4, 64)
    assert torch.equal(layer(x), layer.base_layer(x))


def test_bad_construction() -> None:
    base = nn.Linear(64, 32).requires_grad_(False)
    with pytest.raises(ValueError, match="does not divide"):
        SparseBlockLinear(base, INDEX, 24)
    with pytest.raises(ValueError, match="outside"):
        SparseBlockLinear(base, torch.tensor([[2, 0]]), B_SIZE)
    with pytest.raises(ValueError, match="twice"):
        SparseBlockLinear(base, torch.tensor([[1, 1], [1, 1]]), B_SIZE)


def test_unfrozen_base_is_refused() -> None:
    layer = make_layer(dtype=torch.float32)
    layer.base_layer.weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="frozen"):
        layer(torch.randn(2, 64))


def test_layers_reading_one_input_share_its_column_copies() -> None:
    """q, k and v read the same hidden state: each column block is copied once for the three, so their
    saved bytes never exceed the input's, and each layer's gradient is still its own dense one."""
    torch.manual_seed(0)
    bases = [nn.Linear(64, 32).requires_grad_(False) for _ in range(3)]
    # 6 slices over 4 column blocks: unshared they would be 1.5x the input
    indexes = [
        torch.tensor([[0, 0], [1, 1]]),
        torch.tensor([[0, 1], [1, 2]]),
        torch.tensor([[0, 2], [0, 3], [1, 3]]),
    ]
    layers = [SparseBlockLinear(base, index, B_SIZE, values=torch.randn(len(index), 16, 16) * 0.1)
              for base, index in zip(bases, indexes, strict=True)]  # fmt: skip
    x = torch.randn(2, 5, 64, requires_grad=True)
    with track_saved_tensors(nn.ModuleList(layers)) as tracker:
        h = x * 1.0  # one shared input, made inside the tracked region like a norm's output
        out = sum(layer(h).sum() for layer in layers)
    # 4 distinct column blocks over the three layers: the input's bytes once (unshared: 1.5x)
    assert tracker.total_bytes == h.numel() * 4
    out.backward()
    for layer, index in zip(layers, indexes, strict=True):
        w = layer.effective_weight().detach().requires_grad_(True)
        F.linear(h.detach(), w, layer.bias).sum().backward()
        for k, (r, c) in enumerate(index.tolist()):
            expected = w.grad[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16]
            torch.testing.assert_close(layer.blocks.grad[k], expected)


def test_an_input_changed_in_place_gets_fresh_copies() -> None:
    h = torch.randn(2, 3, 64)
    before = column_slice(h, 1, B_SIZE)
    assert column_slice(h, 1, B_SIZE) is before  # asked again: the same copy
    h.add_(1.0)  # a new version: the copy taken before must not be handed out again
    after = column_slice(h, 1, B_SIZE)
    assert after is not before and torch.equal(after, h[..., 16:32])


def test_blocks_stay_fp32_over_a_bf16_base_so_small_updates_survive() -> None:
    torch.manual_seed(0)
    base = nn.Linear(64, 32).to(torch.bfloat16).requires_grad_(False)
    layer = SparseBlockLinear(base, INDEX, B_SIZE)
    assert layer.blocks.dtype == torch.float32 and layer.base_layer.weight.dtype == torch.bfloat16
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16, requires_grad=True)
    y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().square().sum().backward()
    assert layer.blocks.grad.dtype == torch.float32 and torch.isfinite(layer.blocks.grad).all()
    # the blocks' gradient equals the dense weight gradient's blocks (bf16 inputs, fp32 accumulation)
    w = layer.effective_weight().float().requires_grad_(True)
    F.linear(x.detach().float(), w, base.bias.float()).square().sum().backward()
    for k, (r, c) in enumerate(INDEX.tolist()):
        expected = w.grad[r * B_SIZE : (r + 1) * B_SIZE, c * B_SIZE : (c + 1) * B_SIZE]
        torch.testing.assert_close(layer.blocks.grad[k], expected, rtol=0.05, atol=0.05)
    # an AdamW step of lr 1e-4 moves every block entry by 1e-4: none of it is rounded away
    optimizer = torch.optim.AdamW([layer.blocks], lr=1e-4, weight_decay=0.0)
    optimizer.step()
    torch.testing.assert_close(
        layer.blocks.detach().abs(), torch.full_like(layer.blocks, 1e-4), rtol=1e-3, atol=0
    )
