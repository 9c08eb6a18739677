"""SAGE / TokenTune selection: budget rules, saliency metrics, options and model checks."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from workbench.data.batch import IGNORE_INDEX, Batch
from workbench.errors import ConfigError
from workbench.lm import answer_loss
from workbench.methods import build_method
from workbench.methods.base import PrepareContext
from workbench.methods.sage import SAGE, SageOptions, SaliencySelector
from workbench.methods.sage.selector import auto_n_min
from workbench.methods.token_sparse import saliency as saliency_module
from workbench.methods.token_sparse.budget import authors_budget, paper_budget, top_selection
from workbench.methods.token_sparse.saliency import (
    BlockView,
    after_first_output,
    attention_saliency,
    norm_saliency,
    pick_output_rows,
    random_saliency,
)
from workbench.methods.tokentune import TokenTune, TokenTuneOptions
from workbench.models.anatomy import anatomy_of
from workbench.models.tiny import tiny_model

# ---- budget rules on hand-made scores ------------------------------------------------------------------


def _row(*values: float) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.tensor([values], dtype=torch.float64)
    return scores, torch.ones_like(scores, dtype=torch.bool)


@pytest.mark.parametrize(
    "tau,n_min,expected",
    [
        (0.8, 1, 2),  # 0.5 + 0.3 reaches 0.8 exactly (up to rounding)
        (0.85, 1, 3),
        (0.5, 1, 1),
        (0.0, 1, 1),
        (1.0, 1, 4),
        (0.8, 3, 3),  # n_min wins over tau
        (0.8, 9, 4),  # n_min capped at the length
    ],
)
def test_paper_budget(tau, n_min, expected):
    scores, real = _row(0.1, 0.5, 0.1, 0.3)  # sorted: 0.5, 0.3, 0.1, 0.1
    assert paper_budget(scores, real, tau, n_min).tolist() == [expected]


@pytest.mark.parametrize(
    "tau,n_min,expected",
    [
        (0.8, 1, 1),  # closest cumulative sum is 0.8 at index 1: the count is the index, one short
        (0.85, 1, 1),  # 0.8 and 0.9 tie at distance 0.05: the first wins
        (0.95, 1, 2),
        (0.8, 2, 2),
        (1.0, 1, 3),
    ],
)
def test_authors_budget_reproduces_their_off_by_one(tau, n_min, expected):
    scores, real = _row(0.1, 0.5, 0.1, 0.3)
    assert authors_budget(scores, real, tau, n_min).tolist() == [expected]


def test_budget_per_example_ignores_padding_and_caps_at_length():
    scores = torch.tensor([[0.0, 0.0, 0.9, 0.1], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    real = torch.tensor([[False, False, True, True], [True, True, True, True]])
    assert paper_budget(scores, real, 0.9, 1).tolist() == [1, 4]
    assert paper_budget(scores, real, 0.5, 3).tolist() == [2, 3]  # n_min 3 capped at the first row's 2


def test_top_selection_breaks_ties_by_lowest_position_and_keeps_outputs():
    scores = torch.tensor([[0.2, 0.2, 0.2, 0.2, 0.2, 0.0]], dtype=torch.float64)
    real = torch.ones(1, 6, dtype=torch.bool)
    outputs = torch.tensor([[False, False, False, False, False, True]])
    kept = top_selection(scores, real, outputs, 2)
    assert kept.tolist() == [[True, True, False, False, False, True]]  # never "whatever argsort gives"


def _norm_view(norms: list[list[float]], real: torch.Tensor, outputs: torch.Tensor) -> BlockView:
    hidden = torch.tensor(norms, dtype=torch.float64)[..., None] * torch.tensor(
        [0.6, 0.8], dtype=torch.float64
    )
    return BlockView(None, 0, hidden, None, None, real, outputs)


def test_selector_batch_takes_max_budget_capped_per_example():
    # normalised norms: row 0 -> (.5, .3, .1, .1); row 1 (3 real tokens) -> (.8, .1, .1)
    real = torch.tensor([[True, True, True, True], [False, True, True, True]])
    outputs = torch.tensor([[False, False, False, True], [False, False, False, True]])
    view = _norm_view([[5, 3, 1, 1], [0, 8, 1, 1]], real, outputs)
    choice = SaliencySelector("norm", tau=0.8, n_min=1).select(view, {})
    assert choice.budget == 2  # row 0 needs 2 tokens, row 1 one: the batch keeps 2 per example
    assert choice.selected.tolist() == [[True, True, False, True], [False, True, True, True]]
    torch.testing.assert_close(choice.scores.sum(1), torch.ones(2, dtype=torch.float64))
    assert choice.scores[1, 0] == 0  # padding has no saliency


def test_selector_n_min_counts_on_top_of_outputs():
    real = torch.ones(1, 6, dtype=torch.bool)
    outputs = torch.tensor([[False, False, False, False, False, True]])
    view = _norm_view([[9, 1, 1, 1, 1, 1]], real, outputs)
    choice = SaliencySelector("norm", tau=0.1, n_min=3).select(view, {})
    assert choice.budget == 3
    assert choice.selected.tolist() == [[True, True, True, False, False, True]]


def test_n_min_auto_is_a_fifth_of_the_mean_real_length():
    real = torch.zeros(2, 20, dtype=torch.bool)
    real[0, :10], real[1, 5:] = True, True  # 10 and 15 real tokens: mean 12.5 -> 2.5 -> 2
    assert auto_n_min(real) == 2
    assert auto_n_min(torch.ones(1, 2, dtype=torch.bool)) == 1  # at least one
    outputs = torch.zeros(2, 20, dtype=torch.bool)
    outputs[:, -1] = True
    view = _norm_view([list(range(20, 0, -1))] * 2, real, outputs)
    choice = SaliencySelector("norm", tau=0.01, n_min="auto").select(view, {})
    assert choice.budget == 2  # tau alone asks for one token; auto n_min for two


def test_fixed_budget_keeps_exactly_p_whatever_the_metric_says():
    real = torch.ones(1, 6, dtype=torch.bool)
    outputs = torch.tensor([[False, False, False, False, False, True]])
    view = _norm_view([[9, 1, 1, 1, 1, 1]], real, outputs)  # tau 0.5 would keep one token
    choice = SaliencySelector("norm", tau=0.5, n_min=1, budget="fixed", p=3).select(view, {})
    assert choice.budget == 3
    assert choice.selected.tolist() == [[True, True, True, False, False, True]]  # p = 3, outputs on top


def test_keep_first_forces_the_first_real_tokens():
    real = torch.tensor([[False, True, True, True, True, True]])  # one pad token first
    outputs = torch.tensor([[False, False, False, False, False, True]])
    view = _norm_view([[0, 1, 1, 1, 9, 1]], real, outputs)
    choice = SaliencySelector("norm", tau=0.1, n_min=1, keep_first=2).select(view, {})
    assert choice.budget == 1  # the forced tokens come on top, like the outputs
    assert choice.selected.tolist() == [[False, True, True, False, True, True]]


@pytest.mark.parametrize("metric", ["attention", "random", "norm", "attention_norm"])
def test_fixed_budget_keeps_p_tokens_in_every_block(metric):
    """The matched-memory metric ablation (the paper's Table 4): every metric keeps the same p."""
    method = build_method(
        "sage", SageOptions(r=4, metric=metric, budget="fixed", p=5, n_min=2, align_layers=1)
    )
    model = _prepared(method)
    batch = _batch()
    with method.forward_context(batch):
        answer_loss(model, batch).backward()
    outputs = batch.output_mask.bool()
    later = after_first_output(outputs) & batch.attention_mask.bool()  # aligned blocks pass them all on
    for s in method.selection():
        assert s.budget == 5  # S = Top-5(u) | Y in every block, every metric
        top = top_selection(s.scores, s.scores > 0, torch.zeros_like(outputs), 5)
        expected = top | outputs | (later if s.sparse_forward else torch.zeros_like(later))
        assert top.sum(1).tolist() == [5, 5] and torch.equal(s.selected, expected)


# ---- saliency metrics --------------------------------------------------------------------------------


def _block_inputs(model_type: str, n: int, padding_row: int = 3, dtype=torch.float64):
    model = tiny_model(model_type).to(dtype)
    layer = model.model.layers[1]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 300, (2, n), generator=g)
    mask = torch.ones(2, n, dtype=torch.long)
    mask[1, :padding_row] = 0  # left padding in row 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        h = model.model.embed_tokens(ids)
        cos, sin = model.model.rotary_emb(h, positions)
        normed = layer.input_layernorm(h)
    outputs = torch.zeros(2, n, dtype=torch.bool)
    outputs[:, -3:] = True
    outputs[0, n // 2] = True
    return layer, h, normed, cos, sin, mask, outputs


def _naive_saliency(attn, normed, cos, sin, mask, outputs):
    """Materialises the full (B, H, n, n) attention: fine in a test, never in the method."""
    b, n, _ = normed.shape
    q = attn.q_proj(normed).view(b, n, -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(normed).view(b, n, -1, attn.head_dim).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    scores = q @ repeat_kv(k, attn.num_key_value_groups).transpose(-1, -2) * attn.scaling
    i = torch.arange(n)
    allowed = (i[None, :] <= i[:, None])[None, None] & mask.bool()[:, None, None, :]
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)  # (B, H, n, n)
    u = probs.nan_to_num().mul(outputs[:, None, :, None]).sum((1, 2))  # over heads and rows j in Y
    u = u * mask
    return u / u.sum(-1, keepdim=True)


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_attention_saliency_matches_naive_full_attention(model_type, monkeypatch):
    layer, h, normed, cos, sin, mask, outputs = _block_inputs(model_type, n=20)
    attn = layer.self_attn
    expected = _naive_saliency(attn, normed, cos, sin, mask, outputs)
    got = attention_saliency(attn, normed, cos, sin, mask, outputs, attn.num_key_value_groups)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)
    assert (got[1, :3] == 0).all()
    monkeypatch.setattr(saliency_module, "QUERY_CHUNK", 2)  # output rows in several chunks: same scores
    torch.testing.assert_close(
        attention_saliency(attn, normed, cos, sin, mask, outputs), expected, atol=1e-12, rtol=1e-10
    )
    view = BlockView(layer, 1, h, cos, sin, mask.bool(), outputs)
    torch.testing.assert_close(view.attention_scores(), expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize(
    "model_type,kw",
    [("llama", {}), ("qwen3", {}), ("gemma2", {"attn_logit_softcapping": 0.5}), ("olmo2", {})],
)
def test_block_saliency_is_the_attention_the_models_own_forward_pays(model_type, kw):
    """The scores from a block's own modules equal the attention the model's eager forward returns:
    q/k norms (Qwen3 per head, OLMo 2 over all heads), OLMo 2's un-normed attention input, Gemma 2's
    soft-capped scores (a low cap here, so that it bites). In float32: the model's eager softmax runs in
    float32 whatever the dtype."""
    model = tiny_model(model_type, **kw).eval()
    with torch.no_grad():  # sharper attention than the init's near-uniform one (scores of order 1)
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    n = 16
    ids = torch.randint(3, 300, (2, n), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, n, dtype=torch.long)
    mask[1, :3] = 0  # left padding in row 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    outputs = torch.zeros(2, n, dtype=torch.bool)
    outputs[:, -3:] = True
    with torch.no_grad():
        out = model.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            output_attentions=True,
            output_hidden_states=True,
        )
        h = out.hidden_states[1]  # the input of layer 1
        cos, sin = model.model.rotary_emb(h, positions)
        got = BlockView(model.model.layers[1], 1, h, cos, sin, mask.bool(), outputs).attention_scores()
    u = (out.attentions[1] * outputs[:, None, :, None]).sum((1, 2)) * mask  # (B, n): over heads, rows in Y
    torch.testing.assert_close(got, u / u.sum(-1, keepdim=True), atol=1e-6, rtol=1e-4)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_attention_saliency_never_builds_the_full_attention_matrix():
    n = 1024
    layer, _, normed, cos, sin, mask, outputs = _block_inputs("llama", n=n, dtype=torch.float32)
    attn = layer.self_attn
    with _LargestTensor() as probe:
        attention_saliency(attn, normed, cos, sin, mask, outputs)
    assert probe.largest < n * n, probe.largest  # a (B, H, n, n) tensor would be 2 * 4 * n * n
    assert probe.largest <= normed.numel()  # nothing bigger than the block input itself


def test_norm_and_random_metrics():
    mask = torch.tensor([[0, 1, 1, 1]])
    hidden = torch.tensor([[[9.0, 0.0], [3.0, 4.0], [0.0, 5.0], [0.0, 10.0]]])
    torch.testing.assert_close(norm_saliency(hidden, mask), torch.tensor([[0.0, 0.25, 0.25, 0.5]]))
    draws = [random_saliency(mask, torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    assert draws[0][0, 0] == 0 and torch.isclose(draws[0].sum(), torch.tensor(1.0, dtype=torch.float64))


# ---- the methods end to end (selection side) ----------------------------------------------------------


def _prepared(method, model_type: str = "llama"):
    model = tiny_model(model_type)
    anatomy = anatomy_of(model)
    method.check(anatomy)
    method.prepare(
        PrepareContext(
            model,
            anatomy,
            task=None,
            batches=iter([]),
            loss_fn=lambda b: answer_loss(model, b),
            lr=1e-3,
            seed=0,
        )
    )
    return model


def _batch():
    ids = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, :5] = 0
    labels = torch.full((2, 16), IGNORE_INDEX)
    labels[:, -2:] = ids[:, -2:]
    return Batch(ids, mask, labels)


@pytest.mark.parametrize("metric", ["attention", "random", "norm", "attention_norm"])
@pytest.mark.parametrize("rule", ["paper", "authors"])
def test_every_metric_and_rule_trains(metric, rule):
    method = build_method(
        "sage", SageOptions(r=4, metric=metric, budget_rule=rule, tau=0.7, n_min=2, align_layers=1)
    )
    model = _prepared(method)
    batch = _batch()
    with method.forward_context(batch):
        loss = answer_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    for s in method.selection():
        assert (s.selected >= batch.output_mask).all()
        assert not (s.selected & ~batch.attention_mask.bool()).any()
        assert (s.selected.sum(1) >= torch.minimum(torch.tensor(2), batch.attention_mask.sum(1))).all()
    assert all(p.grad is not None for n, p in method.trainable_parameters().items() if "lora_A" in n)


# ---- options and model checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        dict(tau=-0.1),
        dict(tau=1.5),
        dict(n_min=0),
        dict(n_min="half"),
        dict(budget="mass"),
        dict(budget="fixed"),
        dict(p=0),
        dict(keep_first=-1),
        dict(metric="entropy"),
        dict(budget_rule="closest"),
        dict(base="qlora"),
        dict(align_layers=-1),
        dict(r=0),
    ],
)
def test_bad_sage_options(bad):
    with pytest.raises(ConfigError):
        SageOptions(**bad)


def test_unknown_metric_names_the_accepted_ones():
    with pytest.raises(ConfigError, match="attention, random, norm, attention_norm"):
        SageOptions(metric="entropy")


@pytest.mark.parametrize(
    "bad",
    [
        dict(fraction=0.0),
        dict(fraction=1.5),
        dict(fraction=None, count=0),
        dict(fraction=None),
        dict(fraction=0.5, count=3),
        dict(base="x"),
    ],
)
def test_bad_tokentune_options(bad):
    with pytest.raises(ConfigError):
        TokenTuneOptions(**bad)


def test_check_rejects_too_many_aligned_blocks():
    anatomy = anatomy_of(tiny_model("llama"))
    SAGE(SageOptions(align_layers=4)).check(anatomy)
    with pytest.raises(ConfigError, match="align_layers=5 exceeds the model's 4 blocks"):
        SAGE(SageOptions(align_layers=5)).check(anatomy)


def test_check_rejects_models_without_the_attention_layout():
    with pytest.raises(ConfigError, match="sage needs the LLaMA-family layout, which this gpt2 model lacks"):
        SAGE(SageOptions()).check(anatomy_of(tiny_model("gpt2")))
    model = tiny_model("llama")
    delattr(model.model.layers[2].self_attn, "k_proj")
    with pytest.raises(ConfigError, match="layer model.layers.2 lacks self_attn.k_proj"):
        TokenTune(TokenTuneOptions()).check(anatomy_of(model))


def test_check_rejects_a_layer_the_sparse_block_does_not_reproduce():
    """Granite has the LLaMA layout and names, but scales each residual branch (residual_multiplier):
    the sparse block, which re-runs a plain pre-norm block, would compute another model; its check runs
    the block against each layer's own output and refuses."""
    anatomy = anatomy_of(tiny_model("granite", head_dim=16, residual_multiplier=0.5))
    assert anatomy.family == "llama"
    with pytest.raises(
        ConfigError, match="sparse block does not reproduce the decoder layers of this granite"
    ):
        SAGE(SageOptions()).check(anatomy)
    SAGE(SageOptions()).check(anatomy_of(tiny_model("granite", head_dim=16)))  # multiplier 1: plain LLaMA


def test_check_rejects_attention_dropout():
    anatomy = anatomy_of(tiny_model("llama", attention_dropout=0.1))
    with pytest.raises(ConfigError, match="attention dropout"):
        SAGE(SageOptions()).check(anatomy)


def test_union_typed_options_name_what_they_accept():
    with pytest.raises(ConfigError, match=r"SageOptions.n_min must be int or one of 'auto', got 'half'"):
        SageOptions(n_min="half")
    assert SageOptions(n_min="auto").n_min == "auto"


def test_output_rows_and_the_positions_after_the_first_output():
    outputs = torch.tensor([[False, True, True, False, True], [False, False, False, False, False]])
    assert pick_output_rows(outputs, "all").tolist() == outputs.tolist()
    assert pick_output_rows(outputs, "first").tolist()[0] == [False, True, False, False, False]
    assert pick_output_rows(outputs, "last").tolist()[0] == [False, False, False, False, True]
    assert not pick_output_rows(outputs, "last")[1].any()  # no outputs, no rows
    assert after_first_output(outputs).tolist() == [[False, False, True, True, True], [False] * 5]
    with pytest.raises(ConfigError, match="output_rows 'middle'; accepted: all, first, last"):
        SageOptions(output_rows="middle")
