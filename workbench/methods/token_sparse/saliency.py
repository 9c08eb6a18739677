"""Token saliency per block: pure metric functions (no state, no gradient) and `BlockView`, the lazily
computed block inputs a metric may read.

SAGE's score (Eq. 3) of token i in block l is the attention the output tokens Y pay to i, summed over
output rows and heads, from the block's *own* query/key projections (LoRA layers included, whatever
modules sit there), RoPE applied as the model applies it, grouped K/V shared per query group as the
model shares them, causal and padding masks built here from the 2-D mask (the model's 4-D mask is None
when a batch has no padding: relying on it lets future tokens leak, a defect of the authors' code).
Only the rows of Y are computed (q_Y K^T, (B, H, |Y|, n)); the (B, H, n, n) matrix is never built.

The block styles of the LLaMA layout (models/anatomy.py) enter here once: the attention reads
input_layernorm(h), or h itself in a post-norm block (OLMo 2, `attention_input`); queries and keys pass
the attention's q/k norm where it has one, over each head (Qwen3, Gemma 3) or over all heads (OLMo 2,
`project_heads`); attention scores are soft-capped where the attention says so (Gemma 2, `softcap`).

The same functions serve a recorder that observes LoRA / full runs (`attention_saliency`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

# Query rows of Y processed at once: bounds the (B, H, chunk, n) probabilities for long answers.
QUERY_CHUNK = 256


# ---- helpers shared with the sparse block -------------------------------------------------------------


def rope_function(attn: nn.Module) -> Callable:
    """The `apply_rotary_pos_emb` of the module that defines `attn`'s class (the model's own RoPE)."""
    module = inspect.getmodule(type(attn))
    fn = getattr(module, "apply_rotary_pos_emb", None)
    if fn is None:  # an attention class defined elsewhere: the LLaMA RoPE is the family's RoPE
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as fn
    return fn


def sliding_window(attn: nn.Module) -> int | None:
    """The attention window of this layer (Qwen2 / Mistral), None for full causal attention."""
    if hasattr(attn, "sliding_window"):  # Qwen2: per layer (None on full-attention layers)
        return attn.sliding_window
    return getattr(getattr(attn, "config", None), "sliding_window", None)  # Mistral: from the config


def softcap(attn: nn.Module) -> float | None:
    """The attention's logit soft-cap c (scores -> c * tanh(scores / c), Gemma 2), None without one."""
    return getattr(attn, "attn_logit_softcapping", None)


def attention_input(layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """What the block's attention reads: input_layernorm(h), or h itself in a post-norm block (OLMo 2)."""
    norm = getattr(layer, "input_layernorm", None)
    return hidden if norm is None else norm(hidden)


def project_heads(attn: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """(B, m, d) -> (B, heads, m, hd) through `{name}_proj` (name q, k or v), then the attention's
    `{name}_norm` where it has one: over all heads' features before the split (OLMo 2) or over each head's
    hd features after it (Qwen3, Gemma 3). No RoPE here."""
    b, m, _ = x.shape
    y = getattr(attn, f"{name}_proj")(x)  # (B, m, heads*hd)
    norm = getattr(attn, f"{name}_norm", None)
    per_head = norm is not None and norm.weight.shape[-1] == attn.head_dim
    if norm is not None and not per_head:
        y = norm(y)
    heads = y.view(b, m, y.shape[-1] // attn.head_dim, attn.head_dim).transpose(1, 2)  # no -1: m may be 0
    return norm(heads) if per_head else heads


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, n, ...) at positions index (B, m) -> (B, m, ...).

    Through index_select on the flattened rows: its backward keeps only the index, whereas `gather`
    saves its whole input for backward (a full (B, n, d) copy per block in the memory numbers).
    """
    b, n = x.shape[:2]
    flat = (index + torch.arange(b, device=index.device)[:, None] * n).reshape(-1)  # (B*m,)
    return x.reshape(b * n, *x.shape[2:]).index_select(0, flat).view(*index.shape, *x.shape[2:])


def compact_order(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Positions of `mask` (B, n) first, in ascending order, then the others, in ascending order.

    Returns order (B, n) long, valid (B, m) bool (slot s < count of its row) and m = the largest count.
    The first m slots hold every masked position of every row; rows with fewer fill them with their
    lowest unmasked positions (distinct indices, so scatters stay deterministic).
    """
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)  # (B, n)
    counts = mask.sum(1)  # (B,)
    m = int(counts.max()) if mask.numel() else 0
    valid = torch.arange(m, device=mask.device)[None, :] < counts[:, None]  # (B, m)
    return order, valid, m


def allowed_keys(
    query_pos: torch.Tensor, key_pos: torch.Tensor, key_ok: torch.Tensor, window: int | None
) -> torch.Tensor:
    """(B, 1, m, k) bool: query at sequence index query_pos (B, m) may attend key at key_pos (B, k).

    Causal by sequence index (as transformers' masks: kv_idx <= q_idx), keys restricted to key_ok (B, k)
    (real tokens, or the tokens still passing through in aligned blocks), optional sliding window.
    """
    ok = key_pos[:, None, :] <= query_pos[:, :, None]  # (B, m, k)
    if window is not None:
        ok = ok & (key_pos[:, None, :] > query_pos[:, :, None] - window)
    return (ok & key_ok[:, None, :])[:, None]  # (B, 1, m, k)


def attention_probs(
    q: torch.Tensor, k: torch.Tensor, allowed: torch.Tensor, scaling: float, cap: float | None = None
) -> torch.Tensor:
    """Softmax attention probabilities with grouped K/V, never repeating K in memory.

    q (B, H, m, hd), k (B, Hkv, n, hd), allowed (B, 1, m, n) -> (B, Hkv, g, m, n) with g = H / Hkv;
    query head h = kv_head * g + r, as transformers' repeat_kv lays them out. `cap`: the scores' soft-cap
    (Gemma 2), applied before the mask as the model does. The softmax runs in at least float32, as the
    model's eager attention does (float64 stays float64).
    """
    b, h, m, hd = q.shape
    hkv = k.shape[1]
    g = h // hkv
    scores = torch.matmul(q.reshape(b, hkv, g * m, hd), k.transpose(-1, -2)) * scaling  # (B, Hkv, g*m, n)
    if cap is not None:
        scores = torch.tanh(scores / cap) * cap
    scores = scores.view(b, hkv, g, m, -1)
    scores = scores.masked_fill(~allowed[:, :, None], torch.finfo(scores.dtype).min)
    dtype = torch.promote_types(q.dtype, torch.float32)
    return torch.softmax(scores, dim=-1, dtype=dtype)  # (B, Hkv, g, m, n)


def project_keys(
    attn: nn.Module, hidden_normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> torch.Tensor:
    """Rotated keys (B, Hkv, n, hd) of the block: k_proj (whatever module is there) and any k norm, then
    the model's RoPE."""
    k = project_heads(attn, "k", hidden_normed)  # (B, Hkv, n, hd)
    rope = rope_function(attn)
    return rope(k, k, cos, sin)[1]


def project_queries(
    attn: nn.Module, hidden_normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> torch.Tensor:
    """Rotated queries (B, H, m, hd) of the rows given (hidden_normed, cos, sin all (B, m, .))."""
    q = project_heads(attn, "q", hidden_normed)  # (B, H, m, hd); m may be 0
    rope = rope_function(attn)
    return rope(q, q, cos, sin)[0]


def normalise(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Scores (B, n) >= 0 rescaled to sum 1 over the candidate tokens of each row, 0 elsewhere.

    A row with no mass (no output token, or all-zero norms) becomes uniform over its candidates.
    """
    scores = scores.masked_fill(~candidates, 0.0)
    total = scores.sum(-1, keepdim=True)  # (B, 1)
    uniform = candidates.to(scores.dtype) / candidates.sum(-1, keepdim=True).clamp(min=1)
    return torch.where(total > 0, scores / total.clamp(min=torch.finfo(scores.dtype).tiny), uniform)


# ---- the metrics ---------------------------------------------------------------------------------------


@torch.no_grad()
def output_attention_mass(
    attn: nn.Module,
    hidden_normed: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: torch.Tensor,
    candidates: torch.Tensor,
    output_mask: torch.Tensor,
) -> torch.Tensor:
    """Unnormalised u_i = sum_{j in Y} sum_h A_h(j -> i), (B, n) float; keys (B, Hkv, n, hd) given.

    Y = output_mask & candidates; only keys among `candidates` (B, n) are attended.
    """
    outputs = output_mask & candidates
    order, valid, m = compact_order(outputs)  # the output rows first
    window = sliding_window(attn)
    positions = torch.arange(hidden_normed.shape[1], device=keys.device).expand(keys.shape[0], -1)  # (B, n)
    dtype = torch.promote_types(keys.dtype, torch.float32)
    total = torch.zeros(candidates.shape, dtype=dtype, device=keys.device)  # (B, n)
    for start in range(0, m, QUERY_CHUNK):
        stop = min(start + QUERY_CHUNK, m)
        rows = order[:, start:stop]  # (B, c) positions of output rows (and fillers past a row's count)
        q = project_queries(
            attn, gather_rows(hidden_normed, rows), gather_rows(cos, rows), gather_rows(sin, rows)
        )
        allowed = allowed_keys(rows, positions, candidates, window)  # (B, 1, c, n)
        probs = attention_probs(q, keys, allowed, attn.scaling, softcap(attn))  # (B, Hkv, g, c, n)
        row_ok = valid[:, start:stop].to(dtype)  # (B, c): padded rows count for nothing
        total += torch.einsum("bkgcn,bc->bn", probs, row_ok)
    return total


@torch.no_grad()
def attention_saliency(
    attn: nn.Module,
    hidden_normed: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    attention_mask: torch.Tensor,
    output_mask: torch.Tensor,
    num_kv_groups: int | None = None,
) -> torch.Tensor:
    """SAGE's saliency (Eq. 3) of one block, normalised to sum 1 over real tokens: (B, n) float.

    attn: the block's self-attention (q_proj / k_proj may be peft LoRA layers or plain Linear);
    hidden_normed (B, n, d): what the attention reads (`attention_input`); cos, sin (B, n, hd): the rotary
    embedding the decoder passes to its layers; attention_mask (B, n): 1 = real token (in aligned blocks:
    the tokens still passing through); output_mask (B, n) bool: the output tokens Y.
    `num_kv_groups` (H / Hkv) is read from the module; passing it only checks it.
    """
    if num_kv_groups is not None and num_kv_groups != attn.num_key_value_groups:
        raise ValueError(f"num_kv_groups={num_kv_groups} but the module has {attn.num_key_value_groups}")
    candidates = attention_mask.bool()
    keys = project_keys(attn, hidden_normed, cos, sin)  # (B, Hkv, n, hd)
    mass = output_attention_mass(attn, hidden_normed, cos, sin, keys, candidates, output_mask.bool())
    return normalise(mass, candidates)


@torch.no_grad()
def norm_saliency(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The "norm" metric: L2 norm of each token's block input (B, n, d), normalised over real tokens."""
    norms = hidden.to(torch.promote_types(hidden.dtype, torch.float32)).norm(dim=-1)  # (B, n)
    return normalise(norms, attention_mask.bool())


@torch.no_grad()
def random_saliency(attention_mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The "random" metric: i.i.d. uniform scores over real tokens, normalised; seeded by `generator`.

    Drawn on the generator's device (CPU) and moved, so a seed gives the same tokens on every device.
    """
    draws = torch.rand(attention_mask.shape, generator=generator, dtype=torch.float64)
    return normalise(draws.to(attention_mask.device), attention_mask.bool())


def combined_saliency(attention: torch.Tensor, norm: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The "attention_norm" metric: the mean of the two normalised score vectors (still sums to 1).

    The paper says only that it "combines the scores from the Norm and Attention methods"; an average of
    the two distributions keeps each one's ranking information at equal weight.
    """
    return normalise((attention + norm.to(attention.dtype)) / 2, candidates)


# ---- what a metric may read about one block -----------------------------------------------------------


class BlockView:
    """The inputs of one block during a training forward, computed lazily and without gradient.

    Metrics read what they need (the attention metric the normed hidden states and keys, the norm metric
    the raw input); the sparse block reuses the same keys for its no-gradient part, so the saliency costs
    one query projection at the output rows on top of the forward.
    """

    def __init__(
        self,
        layer: nn.Module,
        index: int,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        candidates: torch.Tensor,
        outputs: torch.Tensor,
    ) -> None:
        self.layer = layer  # the decoder layer
        self.index = index  # block index
        self.hidden = hidden  # (B, n, d) block input (may require grad; metrics never backprop)
        self.cos, self.sin = cos, sin  # (B, n, hd) rotary embedding passed by the decoder
        self.candidates = candidates  # (B, n) bool: tokens that may be kept (real / still passing through)
        self.outputs = outputs & candidates  # (B, n) bool: output tokens Y, always kept
        self._computed: dict[str, torch.Tensor] = {}  # "normed", "keys": shared with `restricted` views

    @property
    def attn(self) -> nn.Module:
        return self.layer.self_attn

    @property
    def normed(self) -> torch.Tensor:
        """What the attention reads (`attention_input`) without gradient, (B, n, d)."""
        if "normed" not in self._computed:
            with torch.no_grad():
                self._computed["normed"] = attention_input(self.layer, self.hidden)
        return self._computed["normed"]

    @property
    def keys(self) -> torch.Tensor:
        """Rotated keys of every position without gradient, (B, Hkv, n, hd)."""
        if "keys" not in self._computed:
            with torch.no_grad():
                self._computed["keys"] = project_keys(self.attn, self.normed, self.cos, self.sin)
        return self._computed["keys"]

    def attention_scores(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """SAGE's attention saliency of this block over the candidates, normalised, (B, n): the attention
        the output rows (or `rows`, a (B, n) subset of them) pay each candidate."""
        mass = output_attention_mass(
            self.attn,
            self.normed,
            self.cos,
            self.sin,
            self.keys,
            self.candidates,
            self.outputs if rows is None else rows,
        )
        return normalise(mass, self.candidates)

    def restricted(self, candidates: torch.Tensor) -> BlockView:
        """The same block inputs with fewer candidates (outputs among them only), sharing the normed input
        and keys with this view (either computes them once for both)."""
        view = BlockView(self.layer, self.index, self.hidden, self.cos, self.sin, candidates, self.outputs)
        view._computed = self._computed
        return view


OUTPUT_ROWS = ("all", "first", "last")


def pick_output_rows(outputs: torch.Tensor, which: str) -> torch.Tensor:
    """(B, n) bool: every output position ("all"), or each example's first or last one."""
    if which == "all":
        return outputs
    count = outputs.long().cumsum(-1)
    if which == "first":
        return outputs & (count == 1)
    if which == "last":
        return outputs & (count == outputs.sum(-1, keepdim=True))
    raise ValueError(f"unknown output rows {which!r}; accepted: {', '.join(OUTPUT_ROWS)}")


def after_first_output(outputs: torch.Tensor) -> torch.Tensor:
    """(B, n) bool: the positions after each example's first output position (none without outputs)."""
    return outputs.long().cumsum(-1) - outputs.long() > 0
