"""The SPSFT method on the tiny LLaMA: options, importance phase, training, saved tensors, state, export."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from workbench.config import RunConfig
from workbench.data.batch import IGNORE_INDEX, Batch
from workbench.data.example import Example
from workbench.data.tasks import TaskData
from workbench.errors import ConfigError
from workbench.lm import answer_logits, answer_loss
from workbench.memory.saved import track_saved_tensors
from workbench.methods import METHODS
from workbench.methods.base import PrepareContext, RowSelection, unswap_linears
from workbench.methods.spsft import SPSFT, RowSparseLinear, SPSFTOptions
from workbench.models.anatomy import LINEAR_NAMES, MLP_LINEARS, anatomy_of
from workbench.models.tiny import TINY_VOCAB, tiny_model

RANK = 5  # no dimension of the tiny model is 5, so a saved (..., 5) tensor could only be x W_f^T


def random_batches(seed: int = 0, size: int = 2, length: int = 10) -> Iterator[Batch]:
    """Endless random batches: token ids < 384, the answer on the last 2 positions."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        ids = torch.randint(3, TINY_VOCAB, (size, length), generator=generator)  # (B, n)
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[:, -2:] = ids[:, -2:]
        yield Batch(ids, torch.ones_like(ids), labels, tuple(range(size)))


def toy_task(classes: bool = True) -> TaskData:
    train = [Example(f"p{i}", (" no", " yes"), i % 2) for i in range(8)]
    return TaskData(name="toy", train=train, eval=[], classes=(" no", " yes") if classes else None)


def make_ctx(model, batches: Iterator[Batch] | None = None, task: TaskData | None = None, loss_fn=None):
    phases: list[str] = []

    @contextmanager
    def phase(name: str):
        phases.append(name)
        yield

    ctx = PrepareContext(
        model=model,
        anatomy=anatomy_of(model),
        task=task or toy_task(),
        batches=batches if batches is not None else random_batches(),
        loss_fn=loss_fn or (lambda b: answer_loss(model, b)),
        lr=1e-3,
        seed=0,
        phase=phase,
    )
    ctx.batches_for = lambda examples: random_batches(seed=100 + examples[0].label)  # per-class batches
    return ctx, phases


def prepared(dtype: torch.dtype = torch.float32, **options) -> tuple[SPSFT, PrepareContext, list[str]]:
    model = tiny_model("llama").to(dtype)
    method = SPSFT(SPSFTOptions(**{"rank": RANK, **options}))
    ctx, phases = make_ctx(model)
    method.check(ctx.anatomy)
    method.prepare(ctx)
    return method, ctx, phases


def logits(model, batch: Batch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


# ---- options --------------------------------------------------------------------------------------


def test_registered_with_defaults() -> None:
    assert METHODS.get("spsft") is SPSFT
    assert SPSFT.default_lr == 2e-5
    options = SPSFTOptions()
    assert (options.rank, options.ratio, options.importance, options.init) == (32, None, "l2", "zeros")
    assert SPSFTOptions(ratio=0.25).rank is None  # a ratio replaces the default rank


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rank=0), "method.rank must be >= 1, got 0"),
        (dict(ratio=0.0), r"method.ratio must be in \(0, 1\], got 0.0"),
        (dict(ratio=1.5), r"method.ratio must be in \(0, 1\], got 1.5"),
        (dict(rank=4, ratio=0.1), "set only one of method.rank"),
        (dict(importance_batches=0), "method.importance_batches must be >= 1, got 0"),
        (
            dict(importance="fisher"),
            "importance 'fisher'; accepted: l2, l1, random, wanda, taylor, qm_taylor, zo_taylor",
        ),
        (dict(targets="qv"), "unknown SPSFT targets 'qv'; accepted: all, mlp"),
        (dict(ranking="layer"), "unknown SPSFT ranking .layer.; accepted: per_linear, global"),
        (dict(init="normal"), "unknown SPSFT init 'normal'; accepted: zeros, kaiming"),
        (dict(zo_eps=0.0), "method.zo_eps must be > 0"),
        (dict(zo_directions=0), "method.zo_directions must be >= 1"),
        (dict(rank="4"), "SPSFTOptions.rank must be int"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SPSFTOptions(**kwargs)


def test_bad_options_through_run_config() -> None:
    with pytest.raises(ConfigError, match="accepted: all, mlp"):
        RunConfig.from_dict({"method": "spsft", "method_options": {"targets": "attention"}})
    config = RunConfig.from_dict({"method": "spsft", "method_options": {"ratio": 0.1}})
    assert RunConfig.from_dict(config.to_dict()).method_options == config.method_options


@pytest.mark.parametrize(
    "targets, rank, message",
    [
        ("all", 33, r"method.rank=33 exceeds the output width of k_proj \(32 rows"),
        ("mlp", 65, r"method.rank=65 exceeds the output width of down_proj \(64 rows"),
    ],
)
def test_rank_above_layer_width(targets: str, rank: int, message: str) -> None:
    anatomy = anatomy_of(tiny_model("llama"))
    SPSFT(SPSFTOptions(rank=rank - 1, targets=targets)).check(anatomy)  # the width itself is fine
    with pytest.raises(ConfigError, match=message):
        SPSFT(SPSFTOptions(rank=rank, targets=targets)).check(anatomy)


# ---- prepare ----------------------------------------------------------------------------------------


def test_prepare_swaps_targets_and_trains_only_w_f() -> None:
    method, ctx, phases = prepared()
    assert phases == ["importance"]
    trainable = method.trainable_parameters()
    assert len(trainable) == 4 * len(LINEAR_NAMES)
    assert {id(p) for p in ctx.model.parameters() if p.requires_grad} == {id(p) for p in trainable.values()}
    assert set(trainable) <= {n for n, _ in ctx.model.named_parameters()}  # names as in the model
    for block in ctx.anatomy.blocks:
        for name in LINEAR_NAMES:
            module = block.linear(name)
            assert isinstance(module, RowSparseLinear) and module.weight_f.shape == (RANK, module.in_features)


def test_fa_targets_and_ratio() -> None:
    method, ctx, _ = prepared(targets="mlp", rank=None, ratio=0.1)
    selection = method.selection()
    assert {s.module for s in selection} == set(MLP_LINEARS)
    widths = {"gate_proj": 13, "up_proj": 13, "down_proj": 6}  # round(0.1 * 128), round(0.1 * 64)
    assert all(int(s.selected.sum()) == widths[s.module] for s in selection)
    assert not isinstance(ctx.anatomy.blocks[0].linear("q_proj"), RowSparseLinear)  # attention frozen


def test_selection_is_top_r_of_l2_scores() -> None:
    method, ctx, _ = prepared()
    selection = method.selection()
    assert len(selection) == 4 * len(LINEAR_NAMES) and all(isinstance(s, RowSelection) for s in selection)
    for s in selection:
        weight = ctx.anatomy.blocks[s.block].linear(s.module).base_layer.weight
        torch.testing.assert_close(s.scores, weight.norm(dim=1))
        assert s.selected.shape == s.scores.shape and int(s.selected.sum()) == RANK
        assert s.scores[s.selected].min() >= s.scores[~s.selected].max()


def test_taylor_scores_equal_dense_gradient_reference() -> None:
    reference = tiny_model("llama")
    batches = list(islice(random_batches(seed=7), 3))
    for p in reference.parameters():
        p.requires_grad_(False)
    anatomy = anatomy_of(reference)
    weights = {(i, n): anatomy.blocks[i].linear(n).weight for i in range(4) for n in LINEAR_NAMES}
    for w in weights.values():
        w.requires_grad_(True)
    for batch in batches:
        answer_loss(reference, batch).backward()

    model = tiny_model("llama")
    method = SPSFT(SPSFTOptions(rank=RANK, importance="taylor", importance_batches=3))
    ctx, _ = make_ctx(model, batches=random_batches(seed=7))
    method.prepare(ctx)
    for s in method.selection():
        w = weights[(s.block, s.module)]
        expected = (w.detach() * w.grad / 3).abs().sum(1)
        torch.testing.assert_close(s.scores, expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("importance", ["qm_taylor", "zo_taylor", "l1", "random", "wanda"])
def test_other_importances_run_on_the_tiny_model(importance: str) -> None:
    method, ctx, _ = prepared(importance=importance, importance_batches=2)
    assert all(torch.isfinite(s.scores).all() and int(s.selected.sum()) == RANK for s in method.selection())
    assert all(not p.requires_grad for n, p in ctx.model.named_parameters() if "weight_f" not in n)


def test_zo_taylor_on_two_batches_of_data() -> None:
    model = tiny_model("llama")
    method = SPSFT(SPSFTOptions(rank=RANK, importance="zo_taylor", importance_batches=16))
    ctx, _ = make_ctx(model, batches=iter(list(islice(random_batches(), 2))))
    method.prepare(ctx)
    assert all(torch.isfinite(s.scores).all() for s in method.selection())


def test_qm_taylor_on_multiple_choice_task_is_config_error() -> None:
    model = tiny_model("llama")
    ctx, _ = make_ctx(model, task=toy_task(classes=False))
    with pytest.raises(ConfigError, match="needs a classification task"):
        SPSFT(SPSFTOptions(rank=RANK, importance="qm_taylor")).prepare(ctx)


# ---- training ---------------------------------------------------------------------------------------


def test_zero_init_step0_outputs_equal_base_model() -> None:
    base = tiny_model("llama")
    method, ctx, _ = prepared()
    batch = next(random_batches(seed=3))
    assert torch.equal(logits(ctx.model, batch), logits(base, batch))


def test_w_f_gradients_equal_selected_rows_of_dense_gradient() -> None:
    # kaiming init so W_f != 0: the reference is the merged dense model, every target weight trainable
    method, ctx, _ = prepared(dtype=torch.float64, init="kaiming")
    model = ctx.model
    reference = copy.deepcopy(model)
    ref_anatomy = anatomy_of(reference)
    unswap_linears(ref_anatomy, {key: ref_anatomy.blocks[key[0]].linear(key[1]) for key in method.swapped})
    for p in reference.parameters():
        p.requires_grad_(False)
    for block in ref_anatomy.blocks:
        for name in LINEAR_NAMES:
            block.linear(name).weight.requires_grad_(True)

    batch = next(random_batches(seed=5))
    loss64 = lambda m: F.cross_entropy(answer_logits(m, batch), batch.targets)  # noqa: E731 (stays fp64)
    loss, ref_loss = loss64(model), loss64(reference)
    torch.testing.assert_close(loss, ref_loss)
    loss.backward()
    ref_loss.backward()
    for (i, name), module in method.swapped.items():
        dense = ref_anatomy.blocks[i].linear(name).weight.grad
        torch.testing.assert_close(module.weight_f.grad, dense[module.rows])
        assert module.base_layer.weight.grad is None


def train_steps(method: SPSFT, ctx: PrepareContext, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW(method.trainable_parameters().values(), lr=1e-2, weight_decay=0.1)
    for _ in range(steps):
        loss = ctx.loss_fn(next(ctx.batches))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_unselected_rows_never_change() -> None:
    original = tiny_model("llama")
    method, ctx, _ = prepared()
    train_steps(method, ctx)
    rows = {key: module.rows.clone() for key, module in method.swapped.items()}
    for (i, name), module in method.swapped.items():
        assert torch.equal(module.base_layer.weight, anatomy_of(original).blocks[i].linear(name).weight)
    merged = anatomy_of(method.merge())
    changed_rows = 0
    for (i, name), selected in rows.items():
        before = anatomy_of(original).blocks[i].linear(name).weight
        after = merged.blocks[i].linear(name).weight
        unselected = torch.ones(before.shape[0], dtype=torch.bool)
        unselected[selected] = False
        assert torch.equal(after[unselected], before[unselected])
        changed_rows += int((after[selected] != before[selected]).any(dim=1).sum())
    assert changed_rows > 0.9 * RANK * len(rows)  # the selected rows did train


def test_saved_tensors_hold_no_rank_r_product() -> None:
    method, ctx, _ = prepared()
    batch = next(random_batches(seed=2))
    with track_saved_tensors(ctx.model) as tracker:
        loss = answer_loss(ctx.model, batch)
    loss.backward()  # the graph is complete and usable
    assert all(m.weight_f.grad is not None for m in method.swapped.values())
    rank_wide = [r for r in tracker.records if r.shape and r.shape[-1] == RANK]
    assert rank_wide == [], rank_wide  # x W_f^T (B, n, r) is never kept; LoRA keeps A x
    q_path = ctx.anatomy.blocks[0].linear_path("q_proj")
    o_path = ctx.anatomy.blocks[0].linear_path("o_proj")
    hidden = (batch.size, batch.input_ids.shape[1], 64)
    # q/k/v share one input (saved once, by q_proj); o_proj saves its own input x, and only that
    assert [r.shape for r in tracker.records if r.module == q_path] == [hidden]
    assert [r.shape for r in tracker.records if r.module == o_path] == [hidden]


# ---- state and export -------------------------------------------------------------------------------


def test_adapter_state_restore_round_trip() -> None:
    method, ctx, _ = prepared(init="kaiming")
    train_steps(method, ctx, steps=2)
    state = method.adapter_state()
    path = ctx.anatomy.blocks[2].linear_path("down_proj")
    assert state[f"{path}.rows"].dtype == torch.long and state[f"{path}.weight_f"].shape == (RANK, 128)
    assert state[f"{path}.scores"].shape == (64,)

    fresh = tiny_model("llama")
    restored = SPSFT(SPSFTOptions(rank=RANK))
    restored.restore(fresh, anatomy_of(fresh), {k: v.clone() for k, v in state.items()})
    batch = next(random_batches(seed=4))
    torch.testing.assert_close(logits(fresh, batch), logits(ctx.model, batch))
    for a, b in zip(method.selection(), restored.selection(), strict=True):
        assert (a.block, a.module) == (b.block, b.module)
        assert torch.equal(a.selected, b.selected) and torch.equal(a.scores, b.scores)
    assert set(restored.trainable_parameters()) == set(method.trainable_parameters())


def test_restore_rejects_bad_state() -> None:
    method, ctx, _ = prepared()
    state = method.adapter_state()
    path = ctx.anatomy.blocks[0].linear_path("q_proj")
    fresh = tiny_model("llama")
    with pytest.raises(ValueError, match="lacks"):
        SPSFT(SPSFTOptions(rank=RANK)).restore(
            fresh, anatomy_of(fresh), {k: v for k, v in state.items() if k != f"{path}.rows"}
        )
    with pytest.raises(ValueError, match="unexpected"):
        SPSFT(SPSFTOptions(rank=RANK)).restore(
            fresh, anatomy_of(fresh), {**state, "x.weight_f": state[f"{path}.weight_f"]}
        )


def test_merge_export_round_trip(tmp_path) -> None:
    method, ctx, _ = prepared()
    train_steps(method, ctx)
    batch = next(random_batches(seed=9))
    expected = logits(ctx.model, batch)
    merged = method.merge()
    assert not any(isinstance(m, RowSparseLinear) for m in merged.modules())
    torch.testing.assert_close(logits(merged, batch), expected)
    merged.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(logits(loaded, batch), expected)


def test_global_ranking_spends_the_same_rows_where_scores_are_highest() -> None:
    method, ctx, _ = prepared(ranking="global")
    per_linear, _, _ = prepared()
    rows = {key: m.rank for key, m in method.swapped.items()}
    assert sum(rows.values()) == sum(m.rank for m in per_linear.swapped.values())  # rank x linears
    assert len(set(rows.values())) > 1  # linears get different counts (l2 norms differ in scale)
    chosen = torch.cat([method.scores[key][m.rows] for key, m in method.swapped.items()])
    skipped = [method.scores[key] for key in method.scores if key not in method.swapped]
    skipped += [
        method.scores[key][~torch.isin(torch.arange(method.scores[key].numel()), m.rows)]
        for key, m in method.swapped.items()
    ]
    assert chosen.min() >= torch.cat(skipped).max()  # every chosen row outranks every other row
    assert sum(int(s.selected.sum()) for s in method.selection()) == sum(rows.values())
    assert method.resolved_options()["rows"]  # the per-linear counts are recorded


def test_global_ranking_state_restores_with_skipped_linears() -> None:
    method, ctx, _ = prepared(ranking="global", importance="random")
    skipped = len(method._targets(ctx.anatomy)) - len(method.swapped)
    assert skipped > 0  # a random global draw of 5 x 28 rows over 28 linears leaves some without rows
    train_steps(method, ctx)
    batch = next(random_batches(seed=9))
    state = method.adapter_state()
    fresh = tiny_model("llama")
    restored = SPSFT(method.options)
    restored.restore(fresh, anatomy_of(fresh), state)
    torch.testing.assert_close(logits(fresh, batch), logits(ctx.model, batch), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="lacks the rows"):  # per_linear ranking needs every linear
        other = tiny_model("llama")
        SPSFT(SPSFTOptions(rank=RANK)).restore(other, anatomy_of(other), state)


def test_selected_rows_bias_trains_where_the_linear_has_one() -> None:
    """Qwen2's q/k/v have a bias: the selected rows' bias update b_f trains with W_f, its gradient is
    the dense bias gradient at those rows, it merges and it round-trips through the state."""
    model = tiny_model("qwen2")
    method = SPSFT(SPSFTOptions(rank=RANK))
    ctx, _ = make_ctx(model)
    method.prepare(ctx)
    params = method.trainable_parameters()
    biased = {k for k in params if k.endswith(".bias_f")}
    assert biased == {
        f"model.layers.{i}.self_attn.{n}.bias_f" for i in range(4) for n in ("q_proj", "k_proj", "v_proj")
    }
    with torch.no_grad():
        for p in params.values():
            p.normal_(std=0.02)
    batch = next(random_batches(seed=3))
    reference = copy.deepcopy(ctx.model)
    anatomy = anatomy_of(reference)
    unswap_linears(anatomy, {key: anatomy.blocks[key[0]].linear(key[1]) for key in method.swapped})
    for key in method.swapped:  # dense W + M W_f, b + M b_f, every weight trains: the naive reference
        anatomy.blocks[key[0]].linear(key[1]).requires_grad_(True)
    answer_loss(ctx.model, batch).backward()
    answer_loss(reference, batch).backward()
    for key, module in method.swapped.items():
        dense = anatomy_of(reference).blocks[key[0]].linear(key[1])
        torch.testing.assert_close(module.weight_f.grad, dense.weight.grad[module.rows])
        if module.bias_f is not None:
            torch.testing.assert_close(module.bias_f.grad, dense.bias.grad[module.rows])
    state = method.adapter_state()
    assert {k for k in state if k.endswith(".bias_f")} == biased
    fresh = tiny_model("qwen2")
    SPSFT(method.options).restore(fresh, anatomy_of(fresh), state)
    torch.testing.assert_close(logits(fresh, batch), logits(ctx.model, batch), rtol=0, atol=1e-6)
    other = tiny_model("qwen2")
    with pytest.raises(ValueError, match="lacks bias_f"):
        SPSFT(method.options).restore(
            other, anatomy_of(other), {k: v for k, v in state.items() if not k.endswith(".bias_f")}
        )
    torch.testing.assert_close(logits(method.merge(), batch), logits(fresh, batch), rtol=0, atol=1e-5)
