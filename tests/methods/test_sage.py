"""SAGE / TokenTune mechanism: exact gradients against a naive reference, causality, memory, merge.

The reference is written here, naively and densely: per block, for every unselected token i the block's
contribution F(h)_i and the key/value of i are detached (sparse backward); in aligned blocks each example's
selected sub-sequence runs through the block on its own and the other tokens are left as they are.
Everything runs in float64 on tiny random models with grouped K/V, so "equal" means atol 1e-10.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers.models.llama import modeling_llama
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from workbench.data.batch import IGNORE_INDEX, Batch
from workbench.lm import answer_logits, answer_loss, head_logits
from workbench.memory.saved import track_saved_tensors
from workbench.methods.base import PrepareContext, TokenSelection
from workbench.methods.sage import SAGE, SageOptions
from workbench.methods.tokentune import TokenTune, TokenTuneOptions
from workbench.models.anatomy import anatomy_of
from workbench.models.tiny import tiny_model

# ---- helpers ---------------------------------------------------------------------------------------


def make_batch(padding: str = "left", size: int = 3, n: int = 14, answer: int = 2, seed: int = 0) -> Batch:
    """Rows of different lengths (unless padding == "none"); the last `answer` real tokens are the answer."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 300, (size, n), generator=g)
    lengths = [n] * size if padding == "none" else [n - 3 * (b % 3) for b in range(size)]
    mask = torch.zeros(size, n, dtype=torch.long)
    labels = torch.full((size, n), IGNORE_INDEX)
    for b, length in enumerate(lengths):
        span = slice(n - length, n) if padding == "left" else slice(0, length)
        mask[b, span] = 1
        last = span.stop
        labels[b, last - answer : last] = ids[b, last - answer : last]
    ids = ids.masked_fill(mask == 0, 0)
    return Batch(ids, mask, labels)


def build(
    method_cls=SAGE, options=None, model_type: str = "llama", dtype=torch.float64, seed: int = 0, **model_kw
):
    """A tiny model prepared by the method, in `dtype`, with non-zero LoRA B (so LoRA A gets gradient)."""
    model = tiny_model(model_type, **model_kw)
    anatomy = anatomy_of(model)
    method = method_cls(options if options is not None else SageOptions(r=4))
    method.check(anatomy)
    method.prepare(
        PrepareContext(
            model,
            anatomy,
            task=None,
            batches=iter([]),
            loss_fn=lambda b: answer_loss(model, b),
            lr=1e-3,
            seed=seed,
        )
    )
    model.to(dtype)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in method.trainable_parameters().items():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.2)
    return model, anatomy, method


def gradients(method, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    params = method.trainable_parameters()
    for p in params.values():
        p.grad = None
    loss.backward()
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}


def exact_loss(model, batch: Batch) -> torch.Tensor:
    """answer_loss without its float32 cast of the logits (the tests compare in float64)."""
    return F.cross_entropy(answer_logits(model, batch), batch.targets)


def sparse_loss(model, method, batch: Batch) -> tuple[torch.Tensor, list[TokenSelection]]:
    with method.forward_context(batch):
        loss = exact_loss(model, batch)
    return loss, method.selection()


def _window(attn) -> int | None:
    if hasattr(attn, "sliding_window"):
        return attn.sliding_window
    return getattr(attn.config, "sliding_window", None)


def _naive_heads(attn, name, x):
    """{name}_proj then its norm as the model applies it: over all heads before the split (OLMo 2), over
    each head's features after it (Qwen3); (B, heads, n, hd)."""
    b, n, _ = x.shape
    y = getattr(attn, f"{name}_proj")(x)
    norm = getattr(attn, f"{name}_norm", None)
    if norm is not None and norm.weight.numel() == y.shape[-1]:
        y = norm(y)
    y = y.view(b, n, -1, attn.head_dim)
    if norm is not None and norm.weight.numel() == attn.head_dim:
        y = norm(y)
    return y.transpose(1, 2)


def naive_block(layer, h, cos, sin, real, keep_kv, window, positions=None):
    """Dense block with explicit masks; keys/values of tokens outside keep_kv (B, n) detached.

    `positions` (n,): the tokens' sequence indices (a sub-sequence keeps its original distances, which
    the sliding window measures); default 0..n-1. The block's style from its modules: pre-norm (LLaMA),
    sandwich norms and soft-capped scores (Gemma 2), post-norms without an input norm (OLMo 2).
    """
    attn = layer.self_attn
    b, n, _ = h.shape
    hn = layer.input_layernorm(h) if hasattr(layer, "input_layernorm") else h
    q, k, v = (_naive_heads(attn, name, hn) for name in "qkv")
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    keep = keep_kv[:, None, :, None]
    k, v = torch.where(keep, k, k.detach()), torch.where(keep, v, v.detach())
    k, v = repeat_kv(k, attn.num_key_value_groups), repeat_kv(v, attn.num_key_value_groups)
    scores = q @ k.transpose(-1, -2) * attn.scaling  # (B, H, n, n): fine in a test
    cap = getattr(attn, "attn_logit_softcapping", None)
    if cap is not None:
        scores = torch.tanh(scores / cap) * cap
    i = torch.arange(n) if positions is None else positions
    allowed = (i[None, :] <= i[:, None])[None] & real[:, None, :]  # (B, n, n)
    if window is not None:
        allowed = allowed & (i[None, :] > i[:, None] - window)[None]
    scores = scores.masked_fill(~allowed[:, None], torch.finfo(h.dtype).min)
    a = attn.o_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1))
    if not hasattr(layer, "post_feedforward_layernorm"):  # pre-norm
        mid = h + a
        return mid + layer.mlp(layer.post_attention_layernorm(mid))
    mid = h + layer.post_attention_layernorm(a)
    inner = layer.pre_feedforward_layernorm(mid) if hasattr(layer, "pre_feedforward_layernorm") else mid
    return mid + layer.post_feedforward_layernorm(layer.mlp(inner))


def reference_loss(model, batch: Batch, selections: list[TokenSelection]) -> torch.Tensor:
    """The naive reference forward given the method's per-block selections."""
    decoder = model.model
    real = batch.attention_mask.bool()
    h = decoder.embed_tokens(batch.input_ids)
    cos, sin = decoder.rotary_emb(h, batch.position_ids)
    for layer, chosen in zip(decoder.layers, selections, strict=True):
        sel, window = chosen.selected, _window(layer.self_attn)
        if chosen.sparse_forward:  # only the selected sub-sequence passes, one example at a time
            rows = []
            for b in range(h.shape[0]):
                pos = sel[b].nonzero().squeeze(-1)
                sub = naive_block(
                    layer,
                    h[b : b + 1, pos],
                    cos[b : b + 1, pos],
                    sin[b : b + 1, pos],
                    torch.ones(1, len(pos), dtype=torch.bool),
                    torch.ones(1, len(pos), dtype=torch.bool),
                    window,
                    positions=pos,
                )
                # positions index the sub-sequence; causal order is kept because pos ascends
                rows.append(h[b].index_copy(0, pos, sub[0]))
            h = torch.stack(rows)
        else:
            out = naive_block(layer, h, cos, sin, real, sel, window)
            h = h + torch.where(sel[..., None], out - h, (out - h).detach())
    h = decoder.norm(h)
    return F.cross_entropy(head_logits(model, h[batch.output_mask]), batch.targets)


def assert_same_gradients(got: dict, expected: dict, atol: float = 1e-10, rtol: float = 1e-8) -> None:
    assert got.keys() == expected.keys()
    for name in got:
        torch.testing.assert_close(got[name], expected[name], atol=atol, rtol=rtol, msg=name)


# ---- exactness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["lora", "full"])
@pytest.mark.parametrize("padding", ["none", "left", "right"])
@pytest.mark.parametrize("align", [0, 2])
def test_gradients_equal_naive_reference(base, padding, align):
    model, _, method = build(options=SageOptions(r=4, base=base, tau=0.6, n_min=3, align_layers=align))
    batch = make_batch(padding)
    loss, selections = sparse_loss(model, method, batch)
    # the selection is really sparse and (with padding) uneven across rows: the filler-slot path runs
    counts = torch.stack([s.selected.sum(1) for s in selections])
    assert (counts < batch.attention_mask.sum(1)).any()
    assert [s.sparse_forward for s in selections] == [i >= 4 - align for i in range(4)]
    got = gradients(method, loss)
    expected = gradients(method, reference_loss(model, batch, selections))
    assert_same_gradients(got, expected)
    assert sum(g.abs().sum() for g in got.values()) > 0


@pytest.mark.parametrize("output_rows", ["all", "first", "last"])
@pytest.mark.parametrize("force_outputs", [True, False])
@pytest.mark.parametrize("align", [0, 2])
def test_gradients_equal_reference_with_multi_token_answers(output_rows, force_outputs, align):
    options = SageOptions(
        r=4, tau=0.4, n_min=2, align_layers=align, output_rows=output_rows, force_outputs=force_outputs
    )
    model, _, method = build(options=options)
    batch = make_batch("left", answer=4)
    loss, selections = sparse_loss(model, method, batch)
    outputs = batch.output_mask.bool()
    if force_outputs:
        assert all((s.selected >= outputs).all() for s in selections)
    else:  # some output token is left out somewhere: the option really acts
        assert any((outputs & ~s.selected).any() for s in selections if not s.sparse_forward)
    got = gradients(method, loss)
    assert_same_gradients(got, gradients(method, reference_loss(model, batch, selections)))


@pytest.mark.parametrize("model_type,kw", [("qwen2", {}), ("mistral", {"sliding_window": 4})])
def test_gradients_equal_reference_other_families(model_type, kw):
    """Qwen2 has q/k/v biases; Mistral here attends within a window of 4 tokens."""
    model, _, method = build(
        options=SageOptions(r=4, tau=0.6, n_min=3, align_layers=1), model_type=model_type, **kw
    )
    batch = make_batch("left", n=16)
    loss, selections = sparse_loss(model, method, batch)
    got = gradients(method, loss)
    assert_same_gradients(got, gradients(method, reference_loss(model, batch, selections)))


def sharpen(anatomy, factor: float = 8.0) -> None:
    """Scale the dense q/k weights: attention scores of order 1 rather than the init's near-zero ones, so
    that soft-capping and q/k norms matter."""
    with torch.no_grad():
        for block in anatomy.blocks:
            for name in ("q_proj", "k_proj"):
                linear = block.linear(name)
                getattr(linear, "base_layer", linear).weight.mul_(factor)


@pytest.mark.parametrize("base", ["lora", "full"])
@pytest.mark.parametrize(
    "model_type,kw",
    [
        ("qwen3", {}),  # q/k norms per head
        ("gemma2", {"attn_logit_softcapping": 1.0, "sliding_window": 4}),  # sandwich norms, soft-capping
        ("olmo2", {}),  # post-norms, no input norm, q/k norms over all heads
    ],
)
def test_gradients_equal_reference_other_block_styles(base, model_type, kw):
    """The sparse block in each block style the anatomy knows, both its forwards (align_layers=2).

    Gemma 2's norms compute in float32 whatever the dtype, so its gradients agree to float32 rounding."""
    model, anatomy, method = build(
        options=SageOptions(r=4, base=base, tau=0.6, n_min=3, align_layers=2), model_type=model_type, **kw
    )
    sharpen(anatomy)
    batch = make_batch("left", n=16)
    loss, selections = sparse_loss(model, method, batch)
    counts = torch.stack([s.selected.sum(1) for s in selections])
    assert (counts < batch.attention_mask.sum(1)).any()
    got = gradients(method, loss)
    expected = gradients(method, reference_loss(model, batch, selections))
    tolerance = dict(atol=1e-7, rtol=1e-5) if model_type == "gemma2" else {}
    assert_same_gradients(got, expected, **tolerance)
    assert sum(g.abs().sum() for g in got.values()) > 0


def test_tokentune_gradients_equal_reference_other_block_styles():
    for model_type in ("qwen3", "olmo2"):
        model, _, method = build(TokenTune, TokenTuneOptions(r=4, fraction=0.4), model_type=model_type)
        batch = make_batch("right")
        loss, selections = sparse_loss(model, method, batch)
        got = gradients(method, loss)
        assert_same_gradients(got, gradients(method, reference_loss(model, batch, selections)))


def test_gradients_equal_reference_with_sdpa_attention():
    """A model loaded with sdpa keeps sdpa in the sparse blocks (same kernel family as its baseline)."""
    model, _, method = build(
        options=SageOptions(r=4, tau=0.6, n_min=3, align_layers=1), attn_implementation="sdpa"
    )
    batch = make_batch("left")
    loss, selections = sparse_loss(model, method, batch)
    got = gradients(method, loss)
    assert_same_gradients(got, gradients(method, reference_loss(model, batch, selections)))


def test_tokentune_gradients_equal_reference():
    model, _, method = build(TokenTune, TokenTuneOptions(r=4, fraction=0.4))
    batch = make_batch("right")
    loss, selections = sparse_loss(model, method, batch)
    assert not any(s.sparse_forward for s in selections)
    got = gradients(method, loss)
    assert_same_gradients(got, gradients(method, reference_loss(model, batch, selections)))


def test_sparse_backward_keeps_dense_forward_values():
    model, _, method = build(options=SageOptions(r=4, tau=0.5, n_min=2), dtype=torch.float32)
    batch = make_batch("left")
    dense = answer_loss(model, batch)
    loss, _ = sparse_loss(model, method, batch)
    torch.testing.assert_close(loss, dense)


def _eager_in_query_precision(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """transformers' eager attention with the softmax in the query's precision rather than float32."""
    k = repeat_kv(key, module.num_key_value_groups)
    v = repeat_kv(value, module.num_key_value_groups)
    weights = query @ k.transpose(2, 3) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = weights.softmax(-1)
    return (weights @ v).transpose(1, 2).contiguous(), weights


@pytest.mark.parametrize("padding", ["none", "left", "right"])
def test_full_budget_reproduces_plain_lora(padding, monkeypatch):
    """tau = 1, n_min = n, no alignment: every real token is kept, so the gradients are plain LoRA's.

    The plain side is the model's own forward outside the context, with its eager softmax kept in float64
    (transformers rounds it to float32, and its float64 mask minimum overflows to -inf there).
    """
    monkeypatch.setattr(modeling_llama, "eager_attention_forward", _eager_in_query_precision)
    batch = make_batch(padding)
    model, _, method = build(options=SageOptions(r=4, tau=1.0, n_min=batch.input_ids.shape[1]))
    loss, selections = sparse_loss(model, method, batch)
    assert all(torch.equal(s.selected, batch.attention_mask.bool()) for s in selections)
    got = gradients(method, loss)
    assert_same_gradients(got, gradients(method, exact_loss(model, batch)))


def test_query_and_key_lora_get_gradient_in_sparse_blocks():
    """The authors applied RoPE under no_grad, which zeroed q_proj / k_proj LoRA gradients."""
    model, anatomy, method = build(options=SageOptions(r=4, tau=0.5, n_min=2))
    loss, _ = sparse_loss(model, method, make_batch("left"))
    loss.backward()
    for block in anatomy.blocks:
        for name in ("q_proj", "k_proj"):
            layer = block.linear(name)
            for part in (layer.lora_A["default"], layer.lora_B["default"]):
                assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0, (block.index, name)


# ---- causality ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        SageOptions(r=4, tau=0.6, n_min=3),
        SageOptions(r=4, tau=0.6, n_min=3, align_layers=3, metric="random"),
    ],
)
def test_no_future_leak_without_padding(options):
    """Changing the last token never changes an earlier position's output (training forward).

    With the model's mask None (no padding) a block relying on it would leak the future. Alignment uses
    the random metric with the same seed so that both forwards keep the same tokens.
    """
    batch = make_batch("none", n=12)
    changed = Batch(batch.input_ids.clone(), batch.attention_mask, batch.labels)
    changed.input_ids[:, -1] = (changed.input_ids[:, -1] + 7) % 300 + 3
    model, _, method = build(options=options)
    outputs = []
    for b in (batch, changed):
        method.blocks.selector.generator.manual_seed(0)  # the same random tokens both times
        with method.forward_context(b):
            outputs.append(
                model.model(
                    input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids
                ).last_hidden_state
            )
    torch.testing.assert_close(outputs[0][:, :-1], outputs[1][:, :-1], atol=1e-12, rtol=0)
    assert not torch.allclose(outputs[0][:, -1], outputs[1][:, -1])


@pytest.mark.parametrize("metric", ["attention", "norm", "attention_norm"])
@pytest.mark.parametrize("output_rows", ["all", "first", "last"])
@pytest.mark.parametrize("align", [0, 3])
def test_no_future_leak_with_multi_token_answers(metric, output_rows, align):
    """With answers of several tokens, an aligned block's selection reads no position after the first
    output position: changing a later answer token never changes an earlier position's output. The token
    changed is the input of the last output row (the last real token is no one's input); with the paper's
    rule (every output row's attention drives the selection) earlier positions moved by up to 4.6."""
    batch = make_batch("left", n=14, answer=5)
    changed = Batch(batch.input_ids.clone(), batch.attention_mask, batch.labels)
    changed.input_ids[:, -2] = (changed.input_ids[:, -2] + 7) % 300 + 3
    options = SageOptions(r=4, tau=0.5, n_min=2, align_layers=align, metric=metric, output_rows=output_rows)
    model, _, method = build(options=options)
    outputs = []
    for b in (batch, changed):
        with method.forward_context(b):
            outputs.append(
                model.model(
                    input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids
                ).last_hidden_state
            )
    real = batch.attention_mask[:, :-2].bool()  # padding positions compute nothing anyone reads
    torch.testing.assert_close(outputs[0][:, :-2][real], outputs[1][:, :-2][real], atol=1e-12, rtol=0)
    assert not torch.allclose(outputs[0][:, -2], outputs[1][:, -2])  # the changed position itself moves


def test_decoder_called_without_position_ids():
    """The decoder then builds (1, n) positions, so cos / sin come without the batch dimension."""
    batch = make_batch("none", n=10)
    model, _, method = build(options=SageOptions(r=4, tau=0.6, n_min=3, align_layers=2, metric="random"))
    hidden = []
    for positions in (batch.position_ids, None):
        method.blocks.selector.generator.manual_seed(0)
        with method.forward_context(batch):
            hidden.append(model.model(input_ids=batch.input_ids, position_ids=positions).last_hidden_state)
    torch.testing.assert_close(hidden[0], hidden[1], atol=1e-12, rtol=0)


# ---- memory ------------------------------------------------------------------------------------------


def test_saved_activations_well_below_lora():
    batch = make_batch("none", size=2, n=64, answer=1)
    model, _, method = build(options=SageOptions(r=4, tau=0.05, n_min=4), dtype=torch.float32)
    with track_saved_tensors(model) as lora:
        answer_loss(model, batch)
    with track_saved_tensors(model) as sage, method.forward_context(batch):
        answer_loss(model, batch)
    p = max(s.selected.sum(1).max().item() for s in method.selection())
    assert p <= 8
    assert sage.total_bytes < 0.5 * lora.total_bytes, (sage.total_bytes, lora.total_bytes)


# ---- selection, state, merge -------------------------------------------------------------------------


def test_selection_reports_every_block_with_outputs_kept():
    model, anatomy, method = build(options=SageOptions(r=4, tau=0.5, n_min=2, align_layers=2))
    batch = make_batch("left")
    assert method.selection() == []
    sparse_loss(model, method, batch)
    selections = method.selection()
    assert [s.block for s in selections] == list(range(anatomy.num_blocks))
    alive = batch.attention_mask.bool()
    for s in selections:
        assert s.selected.shape == s.scores.shape == batch.input_ids.shape
        assert (s.selected <= alive).all()  # aligned sets nest; plain blocks within the real tokens
        assert (s.selected >= batch.output_mask).all()
        torch.testing.assert_close(s.scores.sum(1), torch.ones(batch.size, dtype=s.scores.dtype))
        if s.sparse_forward:
            alive = s.selected


def test_outside_the_context_layers_run_dense():
    model, anatomy, method = build(
        options=SageOptions(r=4, tau=0.5, n_min=2, align_layers=4), dtype=torch.float32
    )
    batch = make_batch("right")
    before = answer_loss(model, batch)
    sparse, _ = sparse_loss(model, method, batch)
    assert not torch.allclose(before, sparse)  # alignment changes the training forward...
    torch.testing.assert_close(answer_loss(model, batch), before)  # ...and nothing else


@pytest.mark.parametrize("base", ["lora", "full"])
def test_merge_gives_plain_model_with_same_outputs(base):
    model, anatomy, method = build(
        options=SageOptions(r=4, base=base, tau=0.5, n_min=2, align_layers=1), dtype=torch.float32
    )
    batch = make_batch("right")
    loss, _ = sparse_loss(model, method, batch)
    loss.backward()
    with torch.no_grad():
        for p in method.trainable_parameters().values():
            p -= 1e-2 * p.grad
    expected = answer_loss(model, batch).detach()
    state = method.adapter_state()
    merged = method.merge()
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert all("forward" not in vars(layer) for layer in merged.model.layers)
    torch.testing.assert_close(answer_loss(merged, batch), expected, atol=1e-5, rtol=1e-5)

    fresh = tiny_model("llama")  # restore onto a fresh base model, then merge again
    again = SAGE(SageOptions(r=4, base=base))
    again.restore(fresh, anatomy_of(fresh), state)
    torch.testing.assert_close(answer_loss(again.merge(), batch), expected, atol=1e-5, rtol=1e-5)


def test_tokentune_keeps_k_random_tokens_plus_outputs_seeded():
    options = TokenTuneOptions(r=4, fraction=0.3)
    batch = make_batch("left", n=20)
    runs = []
    for seed in (3, 3, 4):
        model, _, method = build(TokenTune, options, seed=seed)
        sparse_loss(model, method, batch)
        runs.append(method.selection())
    lengths, outputs = batch.attention_mask.sum(1), batch.output_mask.sum(1)
    k = torch.tensor([math.ceil(0.3 * int(n) - 1e-9) for n in lengths])
    for s in runs[0]:
        assert torch.equal(s.selected.sum(1), k + outputs)
        assert (s.selected >= batch.output_mask).all()
        assert torch.equal(s.selected, runs[0][0].selected)  # one draw shared by every block
        assert s.budget == int(k.max()) and not s.sparse_forward
    assert torch.equal(runs[0][0].selected, runs[1][0].selected)  # same seed, same tokens
    assert not torch.equal(runs[0][0].selected, runs[2][0].selected)


def test_tokentune_count_and_per_block_draws():
    batch = make_batch("right", n=20)
    model, _, method = build(TokenTune, TokenTuneOptions(r=4, fraction=None, count=5, per_block=True))
    sparse_loss(model, method, batch)
    selections = method.selection()
    for s in selections:
        assert torch.equal(s.selected.sum(1), 5 + batch.output_mask.sum(1))
    assert not all(torch.equal(s.selected, selections[0].selected) for s in selections)
