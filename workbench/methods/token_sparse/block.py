"""The sparse decoder block of SAGE and TokenTune, and the wrapper that switches it on per training forward.

Two block forwards, both calling the block's own modules (norms, q/k/v/o projections, MLP: plain Linear
or peft LoRA layers alike), RoPE through the model's `apply_rotary_pos_emb`, masks built here from the
batch's 2-D mask, in the block's own style (models/anatomy.py: pre-norm as LLaMA, sandwich norms as
Gemma 2 with its soft-capped attention, post-norms as OLMo 2; q/k norms as Qwen3 and OLMo 2):

- `sparse_backward_block` (every block outside the aligned set): the forward *values* are the dense
  ones; only the kept tokens S carry gradient through the block. Selected queries attend to all keys;
  keys/values of unselected tokens are constants; the block's contribution F(h)_i of an unselected token
  is a constant, but the residual stream carries gradient for every position (h_out = h + F(h)).
  Autograd saves only S's activations (a compact (B, p, .) path) plus the keys/values of all positions,
  which the selected queries' attention backward needs (with grouped K/V these are small).
- `sparse_forward_block` (the deepest `align_layers` blocks, Sec. 3.4): only S passes through the block,
  attending among S with original positions (RoPE) and causal order; the other tokens bypass it
  unchanged. S is chosen, by the same procedure, among the tokens that passed the previous aligned block,
  so tokens leave for good (nested sets) and output tokens always stay.

`SparseBlocks` replaces each decoder layer's `forward` by an instance attribute (the class's forward stays
reachable as `originals[i]` and comes back on `uninstall`); outside `activate(...)` every layer runs its
normal dense forward, so evaluation is identical across methods.

Gradient checkpointing (train.gradient_checkpointing): transformers' wrapper lives on the class forward,
which the sparse path replaces, so the sparse block checkpoints itself. The selection (saliency, no
gradient) runs once, in the forward; only the sparse block's compact path is checkpointed, with the
chosen tokens as an input: the forward keeps the block input (plus the small masks), and the backward
recomputes the compact path with the same tokens. The recomputation re-enters the layer (`layer(...)`
with the `REPLAY` keyword), so module hooks, the saved-tensor tracker's among them, see it as the
layer's own, as they see transformers' recomputation of a dense block.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from workbench.methods.base import TokenSelection
from workbench.methods.token_sparse.budget import Choice, TokenSelector
from workbench.methods.token_sparse.saliency import (
    BlockView,
    after_first_output,
    allowed_keys,
    attention_input,
    attention_probs,
    compact_order,
    gather_rows,
    project_heads,
    project_queries,
    rope_function,
    sliding_window,
    softcap,
)
from workbench.models.anatomy import ModelAnatomy
from workbench.models.checkpointing import checkpointing_on

# keyword of the layer call that replays the sparse block with given tokens (see the module docstring)
REPLAY = "_workbench_sparse_replay"
# ---- attention with an explicit mask, same kernel family as the model -------------------------------


def attend(
    attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """Attention output before o_proj, (B, m, H*hd), for q (B, H, m, hd), k/v (B, Hkv, N, hd).

    allowed (B, 1, m, N) bool. Models loaded with sdpa use scaled_dot_product_attention (so memory
    comparisons keep the kernel family); otherwise, and for soft-capped scores (Gemma 2, which sdpa cannot
    compute), the eager math of transformers, without copying K/V per query group. Masked entries get the
    dtype's minimum rather than -inf, as transformers does, so a row with no allowed key (a padding slot)
    stays finite.
    """
    b, h, m, hd = q.shape
    cap = softcap(attn)
    if getattr(attn.config, "_attn_implementation", "eager") == "sdpa" and cap is None:
        bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill(~allowed, torch.finfo(q.dtype).min)  # (B, 1, m, N)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, scale=attn.scaling, enable_gqa=k.shape[1] != h
        )  # (B, H, m, hd)
    else:
        probs = attention_probs(q, k, allowed, attn.scaling, cap).to(q.dtype)  # (B, Hkv, g, m, N)
        hkv, g, n_keys = k.shape[1], h // k.shape[1], k.shape[2]
        out = torch.matmul(probs.view(b, hkv, g * m, n_keys), v).view(b, h, m, hd)  # (B, H, m, hd)
    return out.transpose(1, 2).reshape(b, m, h * hd)


def _gather_heads(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, heads, n, hd) at positions index (B, m) -> (B, heads, m, hd)."""
    b, heads, _, hd = x.shape
    return x.gather(2, index[:, None, :, None].expand(b, heads, index.shape[1], hd))


def _mlp_delta(layer: nn.Module, hidden: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
    """The block's contribution F(h), (B, m, d), given its attention output a (after o_proj).

    Pre-norm (LLaMA): a + MLP(post_attention(h + a)). Sandwich (Gemma 2/3) and post-norm (OLMo 2)
    normalise a (post_attention) and the MLP's output (post_feedforward); sandwich also the MLP's input
    (pre_feedforward): a' + post_feedforward(MLP(pre_feedforward(h + a'))) with a' = post_attention(a).
    """
    post_mlp = getattr(layer, "post_feedforward_layernorm", None)
    if post_mlp is None:
        return attn_out + layer.mlp(layer.post_attention_layernorm(hidden + attn_out))
    a = layer.post_attention_layernorm(attn_out)
    mid = hidden + a
    pre_mlp = getattr(layer, "pre_feedforward_layernorm", None)
    return a + post_mlp(layer.mlp(mid if pre_mlp is None else pre_mlp(mid)))


# ---- the two sparse block forwards --------------------------------------------------------------------


def sparse_backward_block(view: BlockView, selected: torch.Tensor) -> torch.Tensor:
    """Block output (B, n, d) with the dense values, gradient through the selected tokens only.

    `selected` (B, n) bool (within the real tokens). Tokens are laid out in *slots*: the selected first
    (compact_order), then the rest; keys and values are concatenated in slot order and the mask is built
    from the slots' original positions, so nothing is scattered until the output.
    """
    layer, attn, h = view.layer, view.attn, view.hidden
    window = sliding_window(attn)
    rope = rope_function(attn)
    order, valid, p = compact_order(selected)  # order (B, n); valid (B, p)
    sel, rest = order[:, :p], order[:, p:]  # (B, p), (B, n - p) positions
    key_ok = view.candidates.gather(1, order)  # (B, n) real tokens, slot order

    # Unselected tokens: keys, values, queries without gradient (keys reused from the saliency step).
    with torch.no_grad():
        normed_rest = gather_rows(view.normed, rest)  # (B, n-p, d)
        k_rest = _gather_heads(view.keys, rest)  # (B, Hkv, n-p, hd)
        v_rest = project_heads(attn, "v", normed_rest)  # (B, Hkv, n-p, hd)

    # Selected tokens: the compact path autograd records. RoPE is applied here, *with* gradient, so
    # q_proj / k_proj get their gradient (the authors rotated under no_grad and lost it).
    hs = gather_rows(h, sel)  # (B, p, d)
    normed = attention_input(layer, hs)
    q = project_heads(attn, "q", normed)  # (B, H, p, hd)
    k = project_heads(attn, "k", normed)  # (B, Hkv, p, hd)
    v = project_heads(attn, "v", normed)
    q, k = rope(q, k, gather_rows(view.cos, sel), gather_rows(view.sin, sel))
    # Slots past a row's count hold unselected tokens (rows keep different numbers): constants as well.
    slot_ok = valid[:, None, :, None]  # (B, 1, p, 1)
    k = torch.where(slot_ok, k, k.detach())
    v = torch.where(slot_ok, v, v.detach())
    keys = torch.cat([k, k_rest], dim=2)  # (B, Hkv, n, hd), slot order
    values = torch.cat([v, v_rest], dim=2)

    out_sel = hs[:, :0]
    if p:
        a = attn.o_proj(attend(attn, q, keys, values, allowed_keys(sel, order, key_ok, window)))  # (B, p, d)
        delta = _mlp_delta(layer, hs, a)
        out_sel = hs + torch.where(valid[..., None], delta, delta.detach())  # (B, p, d)

    out_rest = hs[:, :0]
    if rest.shape[1]:
        with torch.no_grad():  # F(h)_i of unselected tokens: a constant
            cos_r, sin_r = gather_rows(view.cos, rest), gather_rows(view.sin, rest)
            q_rest = project_queries(attn, normed_rest, cos_r, sin_r)  # (B, H, n-p, hd)
            a_rest = attn.o_proj(
                attend(attn, q_rest, keys, values, allowed_keys(rest, order, key_ok, window))
            )
            delta_rest = _mlp_delta(layer, gather_rows(h, rest), a_rest)  # (B, n-p, d)
        out_rest = gather_rows(h, rest) + delta_rest  # the residual keeps every position's gradient

    slots = torch.cat([out_sel, out_rest], dim=1)  # (B, n, d), slot order
    return gather_rows(slots, torch.argsort(order, dim=1))  # back to positions


def sparse_forward_block(view: BlockView, selected: torch.Tensor) -> torch.Tensor:
    """Block output (B, n, d) where only the selected tokens pass through the block (alignment).

    The selected tokens attend among themselves (positions and causal order kept: RoPE cos/sin gathered,
    mask rows and columns from their original positions); every other token bypasses the block unchanged.
    """
    layer, attn, h = view.layer, view.attn, view.hidden
    window = sliding_window(attn)
    order, valid, p = compact_order(selected)
    if p == 0:
        return h
    sel = order[:, :p]  # (B, p) positions, ascending within the valid slots
    hs = gather_rows(h, sel)  # (B, p, d)
    normed = attention_input(layer, hs)
    q = project_heads(attn, "q", normed)  # (B, H, p, hd)
    k = project_heads(attn, "k", normed)  # (B, Hkv, p, hd)
    v = project_heads(attn, "v", normed)
    q, k = rope_function(attn)(q, k, gather_rows(view.cos, sel), gather_rows(view.sin, sel))
    a = attn.o_proj(attend(attn, q, k, v, allowed_keys(sel, sel, valid, window)))  # keys: valid slots only
    out = hs + _mlp_delta(layer, hs, a)  # (B, p, d)
    out = torch.where(valid[..., None], out, hs)  # filler slots pass unchanged
    return h.scatter(1, sel[..., None].expand_as(out), out)


@torch.no_grad()
def reproduction_gaps(anatomy: ModelAnatomy, length: int = 8) -> dict[str, float]:
    """Per decoder layer (by path): how far the sparse block's forward values are from the layer's own.

    One probe sequence of `length` tokens through the decoder in eval mode; each layer's input, cos/sin
    and output are caught by a hook, and `sparse_backward_block` runs on that input with every other token
    selected (both its paths). The gap is the largest difference relative to the largest output entry:
    rounding-level for a layer the block styles describe, large for one that computes something else.
    """
    model = anatomy.model
    embeddings = model.get_input_embeddings()
    device = embeddings.weight.device
    ids = ((torch.arange(length, device=device) * 37 + 5) % embeddings.num_embeddings)[None]  # (1, n)
    seen: dict[int, tuple] = {}

    def catch(index: int) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            out = output[0] if isinstance(output, tuple) else output
            seen[index] = (hidden, kwargs.get("position_embeddings"), out)

        return hook

    handles = [b.module.register_forward_hook(catch(b.index), with_kwargs=True) for b in anatomy.blocks]
    training = {module: module.training for module in model.modules()}
    try:
        model.eval()
        anatomy.decoder(input_ids=ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in training.items():
            module.training = mode
    real = torch.ones(1, length, dtype=torch.bool, device=device)
    outputs = torch.zeros_like(real)
    outputs[:, -1] = True
    selected = (torch.arange(length, device=device) % 2 == 0)[None] | outputs  # (1, n)
    gaps = {}
    for block in anatomy.blocks:
        hidden, (cos, sin), want = seen[block.index]
        view = BlockView(block.module, block.index, hidden, cos, sin, real, outputs)
        got = sparse_backward_block(view, selected)
        scale = want.abs().max().float().clamp(min=torch.finfo(torch.float32).tiny)
        gaps[block.path] = ((got - want).abs().max().float() / scale).item()
    return gaps


# ---- switching it on per training forward -------------------------------------------------------------


@dataclass
class SparsePass:
    """State of one training forward: the batch's masks, the tokens still passing, what was chosen."""

    real: torch.Tensor  # (B, n) bool, real tokens
    outputs: torch.Tensor  # (B, n) bool, output tokens Y (within the real tokens)
    alive: torch.Tensor | None = None  # (B, n) bool, tokens still passing through the aligned blocks
    memo: dict = field(default_factory=dict)  # selector scratch for this forward
    selections: dict[int, TokenSelection] = field(default_factory=dict)

    def begin(self, block: int) -> None:
        """Block 0 starts a new forward (a context may hold several)."""
        if block == 0 or self.alive is None:
            self.alive = self.real
            self.memo = {}
            self.selections = {}


class SparseBlocks:
    """Installs the sparse block on every decoder layer; `activate` turns it on for one training forward."""

    def __init__(self, anatomy: ModelAnatomy, selector: TokenSelector, align_layers: int = 0) -> None:
        self.anatomy = anatomy
        self.selector = selector
        num = anatomy.num_blocks
        self.aligned = frozenset(range(num - align_layers, num))  # the deepest blocks
        self.originals: dict[int, Callable] = {}  # block index -> the layer's own (class) forward
        self._signatures: dict[int, inspect.Signature] = {}
        self.active: SparsePass | None = None
        self.last: SparsePass | None = None

    def install(self) -> None:
        for block in self.anatomy.blocks:
            layer = block.module
            if "forward" in vars(layer):
                raise RuntimeError(f"{block.path} already has an instance forward (wrapped twice?)")
            self.originals[block.index] = layer.forward
            self._signatures[block.index] = inspect.signature(layer.forward)
            layer.forward = functools.partial(self._forward, block.index, layer)

    def uninstall(self) -> None:
        """Give every layer back its class forward (a plain transformers model again)."""
        for block in self.anatomy.blocks:
            vars(block.module).pop("forward", None)
        self.originals.clear()

    @contextmanager
    def activate(self, attention_mask: torch.Tensor, output_mask: torch.Tensor) -> Iterator[None]:
        """Run the sparse blocks during forwards inside; attention_mask and output_mask are (B, n)."""
        real = attention_mask.bool()
        self.active = SparsePass(real=real, outputs=output_mask.bool() & real)
        try:
            yield
        finally:
            self.last, self.active = self.active, None

    def selections(self) -> list[TokenSelection]:
        """TokenSelection per block of the latest training forward (empty before the first)."""
        state = self.active or self.last
        return [state.selections[i] for i in sorted(state.selections)] if state else []

    def _forward(self, index: int, layer: nn.Module, *args, **kwargs) -> torch.Tensor:
        """The installed forward of block `index`: dense outside `activate`, else select and go sparse.

        The decoder's 4-D mask argument is ignored on purpose: it is None for a batch without padding
        (the authors' future-leak defect); masks are rebuilt from the 2-D batch mask instead.
        """
        replay = kwargs.pop(REPLAY, None)
        if replay is not None:  # the checkpointed sparse block (its forward, then its recomputation)
            *masks, selected = replay
            return self._sparse(BlockView(layer, index, args[0], *masks), selected)
        state = self.active
        original = self.originals[index]
        if state is None:
            return original(*args, **kwargs)
        bound = self._signatures[index].bind(*args, **kwargs).arguments
        hidden = bound["hidden_states"]
        cache = bound.get("cache", bound.get("past_key_values"))  # renamed in transformers 5
        if cache is not None and cache.get_seq_length() > 0:  # an empty cache is merely left empty
            raise RuntimeError(
                "the sparse training forward cannot continue from a KV cache (use_cache=False)"
            )
        if hidden.shape[:2] != state.real.shape:
            raise RuntimeError(
                f"hidden states {tuple(hidden.shape[:2])} do not match the batch masks "
                f"{tuple(state.real.shape)} given to forward_context"
            )
        if bound.get("position_embeddings") is None:
            raise RuntimeError("the decoder passed no position_embeddings (cos, sin) to its layers")
        cos, sin = bound["position_embeddings"]  # (B or 1, n, hd): 1 when the caller gave no position_ids
        cos, sin = cos.expand(hidden.shape[0], -1, -1), sin.expand(hidden.shape[0], -1, -1)
        state.begin(index)
        aligned = index in self.aligned
        view = BlockView(
            layer, index, hidden, cos, sin, state.alive if aligned else state.real, state.outputs
        )
        choice = (
            self._select_causally(view, state.memo) if aligned else self.selector.select(view, state.memo)
        )
        state.selections[index] = TokenSelection(
            block=index,
            scores=choice.scores.detach(),
            selected=choice.selected,
            budget=choice.budget,
            sparse_forward=aligned,
        )
        if aligned:
            state.alive = choice.selected
        if checkpointing_on(layer) and torch.is_grad_enabled():
            inputs = (view.hidden, view.cos, view.sin, view.candidates, view.outputs, choice.selected)
            return layer._gradient_checkpointing_func(functools.partial(_replay, layer), *inputs)
        return self._sparse(view, choice.selected)

    def _select_causally(self, view: BlockView, memo: dict) -> Choice:
        """An aligned block's choice changes what later blocks compute at every position it drops, so it
        reads nothing after each example's first output position: the selector sees only the candidates
        up to it (its query row is the only output row), and every token after it (the rest of the
        answer) passes on. A later answer token thus never changes an earlier position's output."""
        later = view.candidates & after_first_output(view.outputs)
        probe = view.restricted(view.candidates & ~later)
        choice = self.selector.select(probe, memo)
        return Choice(choice.scores, choice.selected | later, choice.budget)

    def _sparse(self, view: BlockView, selected: torch.Tensor) -> torch.Tensor:
        """The block's sparse forward for the chosen tokens: sparse forward in aligned blocks, else
        sparse backward."""
        block = sparse_forward_block if view.index in self.aligned else sparse_backward_block
        return block(view, selected)


def _replay(layer: nn.Module, hidden: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    """Run `layer`'s sparse block on hidden with (cos, sin, candidates, outputs, selected) through the
    layer's call, so that hooks see it (the function a checkpoint records and re-runs)."""
    return layer(hidden, **{REPLAY: rest})
