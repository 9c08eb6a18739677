"""The saved-tensor accounting counts exactly what autograd keeps, once per storage."""

import torch
from torch import nn

from workbench.memory import locate, static_bytes, track_saved_tensors


class Known(nn.Module):
    """Saves, by hand: x (via mul), a view of x (same storage), and exp(x) (a new storage)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x * x  # mul saves x (twice, same storage)
        b = x[:, :2] * 3.0  # multiplication by a scalar saves nothing
        c = x.t().sin()  # sin saves its input: a view of x, same storage as x
        d = x.exp()  # exp saves its output: a new storage
        return a.sum() + b.sum() + c.sum() + d.sum()


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.known = Known()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.known(x) + self.lin(x).sum()


def test_counts_each_storage_once_and_views_as_their_storage():
    x = torch.randn(5, 4, requires_grad=True)
    model = Outer()
    with track_saved_tensors(model) as tracker:
        model(x)
    elem = 5 * 4 * 4  # bytes of a (5, 4) float32 tensor
    # x (saved by mul, by sin through a view: one storage) + exp's output; the Linear saves x again
    # (same storage) and its weight (a parameter: excluded).
    assert tracker.total_bytes == 2 * elem
    assert tracker.by_module == {"known": 2 * elem}


def test_a_view_counts_its_whole_storage():
    big = torch.randn(100, 8)
    model = nn.Identity()
    with track_saved_tensors(model) as tracker:
        w = torch.randn(8, requires_grad=True)
        (big[:1] * w).sum()  # mul saves the (1, 8) view, which keeps the (100, 8) storage alive
    assert tracker.total_bytes == 100 * 8 * 4
    assert tracker.records[0].shape == (1, 8)


def test_a_copied_slice_counts_only_the_slice():
    big = torch.randn(100, 8)
    with track_saved_tensors(nn.Identity()) as tracker:
        w = torch.randn(2, requires_grad=True)
        (big[:, :2].contiguous() * w).sum()  # a column slice is not contiguous: .contiguous() copies
        (big[:1].clone() * w[0]).sum()  # a row slice already is: only .clone() copies it
    assert tracker.total_bytes == 100 * 2 * 4 + 1 * 8 * 4


def test_nothing_saved_under_no_grad_and_outside_the_context():
    model = nn.Linear(4, 4)
    x = torch.randn(3, 4, requires_grad=True)
    with track_saved_tensors(model) as tracker, torch.no_grad():
        model(x).exp()
    assert tracker.total_bytes == 0
    model(x).exp()  # hooks removed: no error, no records
    assert tracker.records == []


def test_static_bytes_categories():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    out = static_bytes(model, opt)
    assert out["params_frozen"] == 16 * 4
    assert out["params_trainable"] == (4 + 8 + 2) * 4
    assert out["gradients"] == (4 + 8 + 2) * 4
    # AdamW: exp_avg and exp_avg_sq per parameter, plus a scalar step tensor each (4 bytes, float32)
    assert out["optimizer_state"] == 2 * (4 + 8 + 2) * 4 + 3 * 4


def test_locate():
    assert locate("model.layers.3.self_attn.q_proj.lora_A.default") == (3, "q_proj")
    assert locate("model.layers.12.mlp") == (12, "mlp")
    assert locate("model.layers.0.self_attn") == (0, "self_attn")
    assert locate("model.norm") == (-1, "norm")
    assert locate("lm_head") == (-1, "lm_head")
    assert locate("(outside modules)") == (-1, "loss")
