"""RowSparseLinear: exact gradients, zero-init identity, merge, and what it saves for backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks

from workbench.methods.spsft.layer import RowSparseLinear

ROWS = torch.tensor([1, 4, 6])  # r = 3 of 8 output rows
D_IN, D_OUT = 5, 8


def _layer(init: str = "kaiming", dtype: torch.dtype = torch.float64) -> RowSparseLinear:
    torch.manual_seed(0)
    base = nn.Linear(D_IN, D_OUT, bias=True, dtype=dtype)
    return RowSparseLinear(base, ROWS, init=init)


def _dense_reference(layer: RowSparseLinear) -> nn.Linear:
    """W_eff = W + M W_f as one dense, fully trainable linear: the naive autograd reference."""
    dense = layer.merged_linear()
    dense.requires_grad_(True)
    return dense


@pytest.mark.parametrize("shape", [(7, D_IN), (2, 3, D_IN)], ids=["2d", "3d"])
def test_gradients_equal_selected_rows_of_dense_gradient(shape: tuple[int, ...]) -> None:
    layer = _layer()
    with torch.no_grad():
        layer.bias_f.normal_()  # the selected rows' bias update (the base has a bias)
    dense = _dense_reference(layer)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    target = torch.randn(*shape[:-1], D_OUT, dtype=torch.float64)

    out, ref = layer(x), dense(x_ref)
    torch.testing.assert_close(out, ref)
    ((out - target) ** 2).sum().backward()
    ((ref - target) ** 2).sum().backward()

    torch.testing.assert_close(layer.weight_f.grad, dense.weight.grad[ROWS])  # dW_f = dW[rows]
    torch.testing.assert_close(layer.bias_f.grad, dense.bias.grad[ROWS])  # db_f = db[rows]
    torch.testing.assert_close(x.grad, x_ref.grad)  # the input gradient sees W + M W_f
    assert layer.base_layer.weight.grad is None  # the base stays frozen


def test_zero_init_output_equals_base_exactly() -> None:
    layer = _layer(init="zeros", dtype=torch.float32)
    x = torch.randn(2, 3, D_IN)
    assert torch.equal(layer(x), layer.base_layer(x))
    assert torch.count_nonzero(layer.weight_f) == 0


def test_kaiming_init_perturbs_only_selected_rows() -> None:
    layer = _layer(init="kaiming", dtype=torch.float32)
    x = torch.randn(4, D_IN)
    diff = (layer(x) - layer.base_layer(x)).abs().sum(0)  # (d_out,)
    changed = torch.nonzero(diff).flatten()
    assert changed.tolist() == ROWS.tolist()


def test_merged_linear_matches_forward_and_touches_only_selected_rows() -> None:
    layer = _layer()
    merged = layer.merged_linear()
    assert type(merged) is nn.Linear
    x = torch.randn(6, D_IN, dtype=torch.float64)
    torch.testing.assert_close(merged(x), layer(x))
    unselected = torch.ones(D_OUT, dtype=torch.bool)
    unselected[ROWS] = False
    assert torch.equal(merged.weight[unselected], layer.base_layer.weight[unselected])
    assert torch.equal(merged.bias, layer.base_layer.bias)
    assert merged.weight.dtype == torch.float64


def _saved_shapes(module: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(t.shape))
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        module(x).sum()
    return shapes


class _NaiveIndexAdd(nn.Module):
    """What the Function avoids: autograd's own index_add, which saves its (..., r) source."""

    def __init__(self, layer: RowSparseLinear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lay = self.layer
        return lay.base_layer(x).index_add(-1, lay.rows, x @ lay.weight_f.t())


def test_only_input_is_saved_not_the_rank_r_product() -> None:
    layer = _layer()
    x = torch.randn(2, 3, D_IN, dtype=torch.float64)
    naive = _saved_shapes(_NaiveIndexAdd(layer), x)
    assert (2, 3, len(ROWS)) in naive  # the detector works: plain autograd keeps x W_f^T
    shapes = _saved_shapes(layer, x)
    assert (2, 3, len(ROWS)) not in shapes
    assert (2, 3, D_IN) in shapes  # x, for W_f's gradient
    # besides the (r,) row index and W_f (r, d_in) themselves, nothing saved is r wide
    assert [s for s in shapes if s[-1] == len(ROWS) and s not in ((len(ROWS),), (len(ROWS), D_IN))] == []


def test_nothing_saved_when_w_f_is_frozen() -> None:
    layer = _layer()
    layer.weight_f.requires_grad_(False)
    x = torch.randn(2, 3, D_IN, dtype=torch.float64, requires_grad=True)
    assert (2, 3, D_IN) not in _saved_shapes(layer, x)  # x is only needed for dW_f


@pytest.mark.parametrize(
    "rows, message",
    [([], "non-empty"), ([1, 1], "distinct"), ([0, D_OUT], "must lie in"), ([-1], "must lie in")],
)
def test_bad_rows_rejected(rows: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RowSparseLinear(nn.Linear(D_IN, D_OUT), torch.tensor(rows, dtype=torch.long))


def test_unknown_init_rejected() -> None:
    with pytest.raises(ValueError, match="accepted: zeros, kaiming"):
        RowSparseLinear(nn.Linear(D_IN, D_OUT), ROWS, init="normal")


def test_half_precision_base_keeps_w_f_in_fp32() -> None:
    torch.manual_seed(0)
    layer = RowSparseLinear(nn.Linear(D_IN, D_OUT, dtype=torch.bfloat16), ROWS, init="kaiming")
    assert layer.weight_f.dtype == torch.float32  # full-precision trainable rows, as peft does for LoRA
    x = torch.randn(2, 3, D_IN, dtype=torch.bfloat16, requires_grad=True)
    out = layer(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert layer.weight_f.grad.dtype == torch.float32 and x.grad.dtype == torch.bfloat16
    expected = torch.ones(2, 3, len(ROWS)).reshape(-1, len(ROWS)).t() @ x.detach().float().reshape(-1, D_IN)
    torch.testing.assert_close(layer.weight_f.grad, expected, rtol=2e-2, atol=2e-2)
    assert layer.merged_linear().weight.dtype == torch.bfloat16
