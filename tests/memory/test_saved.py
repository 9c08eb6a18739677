"""The saved-tensor accounting counts exactly what autograd keeps, once per storage."""

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

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


def test_locate_other_layouts():
    """The block is the first indexed module on the path, whatever the layout calls its layer list;
    inside a block without the LLaMA names, the kind is the block's own child."""
    assert locate("transformer.h.3.attn.c_attn") == (3, "attn")
    assert locate("base_model.model.transformer.h.3.attn.c_attn.lora_A.default") == (3, "attn")
    assert locate("transformer.h.10.ln_1") == (10, "ln_1")
    assert locate("transformer.h.2") == (2, "block")
    assert locate("model.layers.1.pre_feedforward_layernorm") == (1, "pre_feedforward_layernorm")
    assert locate("model.layers.1.self_attn.q_norm") == (1, "self_attn")
    assert locate("transformer.wte") == (-1, "other")


# -- peak of live saved bytes over forward and backward (recomputation included) ---------------------

N, D = 2, 4  # rows, block width; every tensor below is float32: 4 bytes an element
HIDDEN = (4, 16, 4)  # block 1 is the largest, and not the last one recomputed


class Chain(nn.Module):
    """Blocks Linear(D, h) -> GELU -> Linear(h, D), then loss = sum(out ** 2); each block optionally
    checkpointed (non-reentrant). A block saves, by hand: its input (first Linear, N x D), the GELU's
    input (N x h) and the GELU's output (second Linear's input, N x h); the loss saves `out` (N x D).
    The weights are parameters (excluded)."""

    def __init__(self, checkpointed: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(D, h), nn.GELU(), nn.Linear(h, D)) for h in HIDDEN
        )
        self.checkpointed = checkpointed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpointed else block(x)
        return x.pow(2).sum()


def _run_chain(checkpointed: bool):
    torch.manual_seed(0)
    model, x = Chain(checkpointed), torch.randn(N, D)
    with track_saved_tensors(model) as tracker:
        loss = model(x)
        after_forward = tracker.live_bytes
        loss.backward()
        del loss
    grads = [p.grad.clone() for p in model.parameters()]
    return tracker, after_forward, grads


def test_without_recomputation_the_peak_is_what_the_forward_packed():
    tracker, after_forward, _ = _run_chain(checkpointed=False)
    row = N * 4  # bytes of one row of width 1
    blocks = [row * D + 2 * row * h for h in HIDDEN]  # input + GELU input + GELU output
    assert blocks == [96, 288, 96]
    assert tracker.total_bytes == sum(blocks) + row * D == 512  # + what the loss saves
    assert tracker.peak_live_bytes == after_forward == 512  # the end of the forward
    assert tracker.live_bytes == 0  # the backward released every storage
    assert (
        tracker.peak_by_location()
        == tracker.by_location()
        == {
            (0, "block"): 96,
            (1, "block"): 288,
            (2, "block"): 96,
            (-1, "other"): 32,  # the loss, computed in the root module's forward
        }
    )


def test_with_checkpointing_the_peak_is_block_inputs_plus_the_recomputed_block():
    tracker, after_forward, grads = _run_chain(checkpointed=True)
    row = N * 4
    # The forward keeps only each checkpoint's input (x0, x1, x2: N x D each, saved in the root module's
    # forward) and the loss's `out`: 4 x 32 bytes.
    assert tracker.total_bytes == after_forward == 4 * row * D == 128
    # The backward releases `out`, then recomputes block 2 (x0, x1, x2 live + its GELU input and output,
    # N x 4 each: 96 + 64 = 160), frees block 2 with its input x2, recomputes block 1 (x0, x1 + N x 16
    # twice: 64 + 256 = 320), frees it, then block 0 (x0 + N x 4 twice: 32 + 64 = 96). The recomputed
    # blocks' first Linear saves the block input again: the same storage, not counted twice.
    assert tracker.peak_live_bytes == 2 * row * D + 2 * row * HIDDEN[1] == 320
    assert tracker.peak_by_location() == {(-1, "other"): 64, (1, "block"): 256}
    assert tracker.by_location() == {(-1, "other"): 128}
    assert tracker.live_bytes == 0
    # measuring changed nothing: the same gradients as without tracking, and autograd's hooks as found
    torch.manual_seed(0)
    model, x = Chain(checkpointed=True), torch.randn(N, D)
    model(x).backward()
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    assert torch._C._autograd._top_saved_tensors_default_hooks(False) is None


def test_a_graph_dropped_before_its_backward_releases_its_storages():
    w = torch.randn(8, requires_grad=True)
    with track_saved_tensors(nn.Identity()) as tracker:
        (torch.randn(100, 8) * w).sum()  # saves the (100, 8) input; the graph dies at once
        assert tracker.live_bytes == 0
        kept = (torch.randn(10, 8) * w).sum()
        assert tracker.live_bytes == 10 * 8 * 4
    assert tracker.total_bytes == (100 + 10) * 8 * 4  # packed: both
    assert tracker.peak_live_bytes == 100 * 8 * 4  # live at once: one
    assert kept.requires_grad
