"""The SMT method on the tiny grouped-K/V llama: warm-up, selection, exact gradients, save/restore/merge."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from workbench.data.batch import IGNORE_INDEX, Batch
from workbench.errors import ConfigError
from workbench.lm import answer_logits, answer_loss
from workbench.methods import METHODS
from workbench.methods.base import BlockGridSelection, PhaseTraining, PrepareContext, unswap_linears
from workbench.methods.smt import SMT, SMTOptions, SparseBlockLinear
from workbench.models.anatomy import anatomy_of
from workbench.models.tiny import TINY_VOCAB, tiny_model

QKV = ("q_proj", "k_proj", "v_proj")


def random_batches(seed: int = 0, size: int = 2, length: int = 12, pad: int = 3) -> Iterator[Batch]:
    """Endless random batches: answer (loss) on the last 2 tokens, `pad` tokens of left padding on one."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        ids = torch.randint(3, TINY_VOCAB, (size, length), generator=generator)
        mask = torch.ones(size, length, dtype=torch.long)
        mask[0, :pad] = 0
        ids[mask == 0] = 0
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[:, -2:] = ids[:, -2:]
        yield Batch(ids, mask, labels)


def make_context(model: nn.Module, seed: int = 0, lr: float = 1e-3) -> PrepareContext:
    return PrepareContext(
        model=model,
        anatomy=anatomy_of(model),
        task=None,
        batches=random_batches(seed),
        loss_fn=lambda batch: answer_loss(model, batch),
        lr=lr,
        seed=seed,
    )


def prepared(dtype: torch.dtype = torch.float32, **options) -> tuple[SMT, nn.Module, dict[str, torch.Tensor]]:
    """A tiny llama after SMT.prepare, plus its weights from before prepare."""
    model = tiny_model("llama").to(dtype)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = {"block_size": 8, "budget_blocks": 10, "warmup_steps": 3, **options}
    method = SMT(SMTOptions(**options))
    method.prepare(make_context(model))
    return method, model, before


def train(method: SMT, model: nn.Module, steps: int = 3, lr: float = 1e-2) -> None:
    optimizer = torch.optim.AdamW(method.trainable_parameters().values(), lr=lr)
    for batch in itertools.islice(random_batches(seed=7), steps):
        answer_loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()


def target_weight(model: nn.Module, index: int, name: str) -> torch.Tensor:
    """The base weight of a target projection, swapped or not."""
    return anatomy_of(model).blocks[index].linear(name).weight


def test_registered() -> None:
    assert METHODS.get("smt") is SMT


def test_prepare_swaps_the_chosen_targets_and_freezes_the_rest() -> None:
    method, model, _ = prepared()
    trainable = method.trainable_parameters()
    assert sum(p.numel() for p in trainable.values()) == 10 * 8 * 8
    assert all(name.endswith(".blocks") for name in trainable)
    named = dict(model.named_parameters())
    for name, p in trainable.items():
        assert named[name] is p  # names are the model's own parameter names
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(trainable)

    grids = method.selection()
    assert len(grids) == 4 * 3 and all(isinstance(g, BlockGridSelection) for g in grids)
    assert sum(int(g.selected.sum()) for g in grids) == 10
    assert {(g.block, g.module) for g in grids} == {(i, n) for i in range(4) for n in QKV}
    for g in grids:
        assert g.block_size == 8 and g.scores.shape == g.selected.shape
        module = anatomy_of(model).blocks[g.block].linear(g.module)
        assert isinstance(module, SparseBlockLinear) == bool(g.selected.any())
        if isinstance(module, SparseBlockLinear):
            assert module.block_index.tolist() == g.selected.nonzero().tolist()
            # the chosen blocks are the best-scored ones
            assert g.selected.all() or g.scores[g.selected].min() >= g.scores[~g.selected].max()
    assert method.targets == [f"model.layers.{i}.self_attn.{n}" for i in range(4) for n in QKV]
    assert sum(method.allocation().values()) == 10

    assert len(method.selection()) == 12
    for grid in method.selection():
        stats = grid.phase_grad_stats
        assert set(stats) == {"median", "mean", "max"}
        assert 0 < stats["median"] and 0 < stats["mean"] <= stats["max"]


def test_global_choice_is_the_top_k_over_all_targets() -> None:
    method, _, _ = prepared(budget_blocks=7)
    scores = torch.cat([g.scores.flatten() for g in method.selection()])
    chosen = torch.cat([g.selected.flatten() for g in method.selection()])
    assert set(torch.topk(scores, 7).indices.tolist()) == set(chosen.nonzero().flatten().tolist())


def test_per_matrix_scope_gives_every_matrix_its_share() -> None:
    # 12 matrices, q = 64 blocks of 8 x 8, k and v = 32 each: 16 blocks -> q 2, k 1, v 1 in every block
    method, _, _ = prepared(budget_blocks=16, scope="per_matrix")
    for g in method.selection():
        assert int(g.selected.sum()) == (2 if g.module == "q_proj" else 1)


def test_budget_fraction_sets_the_block_count() -> None:
    method, _, _ = prepared(budget_blocks=None, budget=0.01)  # floor(0.01 * 172,608 / 64) = 26
    assert sum(int(g.selected.sum()) for g in method.selection()) == 26


def test_separate_mlp_budget() -> None:
    method, _, _ = prepared(targets="all", budget_blocks=5, mlp_budget=0.005)  # MLP: floor(863.04/64) = 13
    allocation = method.allocation()
    assert allocation["gate_proj"] + allocation["up_proj"] + allocation["down_proj"] == 13
    assert allocation["q_proj"] + allocation["k_proj"] + allocation["v_proj"] + allocation["o_proj"] == 5


def test_chosen_block_and_input_gradients_equal_dense_autograd() -> None:
    method, model, _ = prepared(torch.float64, update_during_warmup=False, budget_blocks=12)
    torch.manual_seed(0)
    with torch.no_grad():  # non-zero deltas, so W_eff != W is exercised
        for p in method.trainable_parameters().values():
            p.normal_(std=0.02)
    # reference: a plain dense model with the same effective weights, every target weight trainable
    reference = copy.deepcopy(model)
    ref_anatomy = anatomy_of(reference)
    swapped = {(i, n): ref_anatomy.blocks[i].linear(n) for (i, n) in method.swapped}
    unswap_linears(ref_anatomy, swapped)
    for i in range(4):
        for n in QKV:
            ref_anatomy.blocks[i].linear(n).weight.requires_grad_(True)
    # the embedding's gradient checks grad_input through every swapped layer
    model.model.embed_tokens.weight.requires_grad_(True)
    reference.model.embed_tokens.weight.requires_grad_(True)

    # no padding: in float64, transformers' eager mask turns fully masked (padding) rows into NaN
    batch = next(random_batches(seed=3, pad=0))
    loss = answer_loss(model, batch)
    ref_loss = answer_loss(reference, batch)
    loss.backward()
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        model.model.embed_tokens.weight.grad, reference.model.embed_tokens.weight.grad, rtol=0, atol=1e-12
    )
    b = method.block_size
    for (i, n), module in method.swapped.items():
        dense = ref_anatomy.blocks[i].linear(n).weight.grad
        for k, (r, c) in enumerate(module.block_index.tolist()):
            torch.testing.assert_close(
                module.blocks.grad[k], dense[r * b : (r + 1) * b, c * b : (c + 1) * b], rtol=0, atol=1e-12
            )


def test_unchosen_weights_never_change() -> None:
    method, model, _ = prepared()
    after_warmup = {k: v.clone() for k, v in model.state_dict().items()}
    train(method, model)
    grids = {(g.block, g.module): g.selected for g in method.selection()}
    merged = method.merge().state_dict()
    changed = 0
    for name, before in after_warmup.items():
        if ".base_layer.weight" in name:
            name = name.replace(".base_layer.weight", ".weight")
        elif name.endswith((".blocks", ".block_index")):
            continue
        diff = merged[name] != before
        parts = name.split(".")
        key = (int(parts[2]), parts[4]) if parts[-1] == "weight" and len(parts) == 6 else None
        if key in grids:
            chosen = grids[key].repeat_interleave(8, 0).repeat_interleave(8, 1)
            assert not diff[~chosen].any(), name
            changed += int(diff[chosen].sum())
        else:
            assert not diff.any(), name
    assert changed == 10 * 64  # every entry of every chosen block moved


@pytest.mark.parametrize("update", [True, False])
def test_warmup_updates_the_targets_only_when_asked(update: bool) -> None:
    method, model, before = prepared(update_during_warmup=update)
    for i in range(4):
        for n in QKV:
            w = target_weight(model, i, n)
            assert torch.equal(w, before[f"model.layers.{i}.self_attn.{n}.weight"]) != update
            assert not w.requires_grad
    for name, p in model.named_parameters():
        if not any(n in name for n in QKV) and not name.endswith(".blocks"):
            assert torch.equal(p, before[name]), name


def test_warmup_runs_in_its_own_phase() -> None:
    model = tiny_model("llama")
    phases: list[str] = []

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        phases.append(name)
        yield

    ctx = make_context(model)
    ctx.phase = phase
    SMT(SMTOptions(block_size=8, budget_blocks=3, warmup_steps=2)).prepare(ctx)
    assert phases == ["warmup"]


def test_activation_selection() -> None:
    method, model, before = prepared(selection="activation", budget_blocks=6)
    grids = method.selection()
    # q/k/v of a block read one input, so their channel scores tie; the authors' order gives the tie to
    # v. A column of v costs 4 blocks of 8 (k/v have 32 rows), so 6 blocks buy one whole column.
    chosen = [g for g in grids if g.selected.any()]
    assert [g.module for g in chosen] == ["v_proj"] and int(chosen[0].selected.sum()) == 4
    assert chosen[0].selected.all(dim=0).sum() == 1  # one whole column, every row block
    for g in grids:
        assert (g.scores == g.scores[:1]).all()  # one score per input column block
    assert all(g.phase_grad_stats == {} for g in grids)
    for name, p in model.named_parameters():  # forward only: no weight moved
        name = name.replace(".base_layer.weight", ".weight")
        if not name.endswith(".blocks"):
            assert torch.equal(p, before[name]), name


def test_activation_selection_scores_channels_by_mean_abs_input() -> None:
    model = tiny_model("llama")
    inputs: dict[int, list[torch.Tensor]] = {}
    hooks = [
        block.self_attn.v_proj.register_forward_pre_hook(
            lambda m, args, i=i: inputs.setdefault(i, []).append(args[0].detach())
        )
        for i, block in enumerate(model.model.layers)
    ]
    method = SMT(SMTOptions(block_size=8, budget_blocks=4, warmup_steps=2, selection="activation"))
    ctx = make_context(model)
    batches = list(itertools.islice(random_batches(0), 2))
    ctx.batches = iter(batches)
    method.prepare(ctx)
    for hook in hooks:
        hook.remove()
    for grid in method.selection():
        if grid.module != "v_proj":
            continue
        per_batch = []
        for x, batch in zip(inputs[grid.block], batches, strict=True):
            per_batch.append(x[batch.attention_mask.bool()].abs().mean(dim=0))  # mean |x| of real tokens
        channel = torch.stack(per_batch).mean(dim=0)
        torch.testing.assert_close(grid.scores[0], channel.reshape(-1, 8).mean(dim=1))


def test_activation_selection_needs_a_budget_for_one_column() -> None:
    with pytest.raises(ConfigError, match="whole input channels"):
        SMT(SMTOptions(block_size=8, budget_blocks=3, selection="activation")).check(anatomy_of(tiny_model()))


def test_export_round_trip(tmp_path) -> None:
    method, model, _ = prepared()
    train(method, model)
    batch = next(random_batches(seed=11))
    with torch.no_grad():
        expected = answer_logits(model, batch)
    merged = method.merge()
    assert not any(isinstance(m, SparseBlockLinear) for m in merged.modules())
    merged.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
    with torch.no_grad():
        torch.testing.assert_close(answer_logits(reloaded, batch), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("update", [True, False])
def test_adapter_state_restores_the_trained_model(update: bool) -> None:
    method, model, _ = prepared(update_during_warmup=update)
    train(method, model)
    state = method.adapter_state()
    paths = [f"model.layers.{i}.self_attn.{n}" for (i, n) in method.swapped]
    expected_keys = {f"{p}.blocks" for p in paths} | {f"{p}.block_index" for p in paths}
    if update:  # the warm-up moved every target weight: the state must carry them
        expected_keys |= {f"{t}.weight" for t in method.targets}
    assert set(state) == expected_keys
    batch = next(random_batches(seed=11))
    with torch.no_grad():
        expected = answer_logits(model, batch)

    fresh = tiny_model("llama")
    restored = SMT(method.options)
    restored.restore(fresh, anatomy_of(fresh), {k: v.clone() for k, v in state.items()})
    with torch.no_grad():
        torch.testing.assert_close(answer_logits(fresh, batch), expected, rtol=0, atol=1e-6)
    assert set(restored.trainable_parameters()) == set(method.trainable_parameters())
    for mine, theirs in zip(restored.selection(), method.selection(), strict=True):
        assert torch.equal(mine.selected, theirs.selected)
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == set(restored.trainable_parameters())


def test_restore_rejects_unknown_keys() -> None:
    fresh = tiny_model("llama")
    with pytest.raises(ValueError, match="unexpected key"):
        state = {"model.layers.0.foo.blocks": torch.zeros(1)}
        SMT(SMTOptions(block_size=8)).restore(fresh, anatomy_of(fresh), state)


def test_qkv_share_their_input_copies_at_a_high_budget() -> None:
    """Through the memory accounting on the whole model: at a budget that touches every column block,
    what q, k and v save per layer is at most their shared input's bytes (unshared: up to 3x)."""
    from workbench.memory.saved import track_saved_tensors

    method, model, _ = prepared(budget_blocks=200)  # of the 512 q/k/v blocks of 8 x 8
    batch = next(random_batches(5))
    with track_saved_tensors(model) as tracker, method.forward_context(batch):
        loss = answer_loss(model, batch)
    loss.backward()
    hidden = model.config.hidden_size
    input_bytes = batch.input_ids.numel() * hidden * 4  # one (B, n, d) float32 hidden state per block
    saved = tracker.by_location()
    per_layer = {layer: sum(saved.get((layer, m), 0) for m in QKV) for layer in range(4)}
    columns = [
        {c for m in QKV for c in getattr(model.model.layers[i].self_attn, m).layout.cols} for i in range(4)
    ]
    for layer, used in enumerate(columns):
        assert per_layer[layer] == len(used) * batch.input_ids.numel() * 8 * 4  # one copy per column block
        assert per_layer[layer] <= input_bytes
    assert sum(len(c) for c in columns) > 4 * 2  # the budget reaches most column blocks


@pytest.mark.parametrize(
    "targets, names",
    [
        ("v", {"v_proj"}),
        ("q", {"q_proj"}),
        ("k", {"k_proj"}),
        ("qkv_mlp", {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj"}),
    ],
)
def test_the_papers_target_ablations(targets, names) -> None:
    method, _, _ = prepared(targets=targets, budget_blocks=6)
    assert {g.module for g in method.selection()} == names  # the grids that competed (no o_proj)
    assert {name for _, name in method.swapped} <= names and sum(method.allocation().values()) == 6


def test_random_selection_is_a_seeded_draw_without_warm_up() -> None:
    method, model, before = prepared(selection="random", budget_blocks=9)
    after = {k: v for k, v in model.state_dict().items() if k in before}
    assert all(torch.equal(before[k], after[k]) for k in after)  # no warm-up update
    assert not method.warmup_updated and sum(method.allocation().values()) == 9
    again, _, _ = prepared(selection="random", budget_blocks=9)
    chosen = [g.selected for g in method.selection()]
    assert all(torch.equal(a, g.selected) for a, g in zip(chosen, again.selection(), strict=True))
    other = SMT(SMTOptions(block_size=8, budget_blocks=9, warmup_steps=3, selection="random"))
    other.prepare(make_context(tiny_model("llama"), seed=1))
    assert any(not torch.equal(a, g.selected) for a, g in zip(chosen, other.selection(), strict=True))
    scores = torch.cat([g.scores.reshape(-1) for g in method.selection()])
    assert 0 <= scores.min() and scores.max() < 1


def test_per_matrix_equal_gives_each_matrix_the_same_count() -> None:
    method, _, _ = prepared(scope="per_matrix_equal", budget_blocks=24)  # 12 matrices: 2 each
    assert {int(g.selected.sum()) for g in method.selection()} == {2}
    with pytest.raises(ConfigError, match="per_matrix_equal gives up to 34 of the 400 blocks.*holds 32"):
        prepared(scope="per_matrix_equal", budget_blocks=400)  # k/v matrices hold 32 blocks of 8 x 8


def test_warmup_is_a_training_run_with_accumulation_clipping_and_the_schedule() -> None:
    """Each warm-up step takes grad_accum micro-batches, clips, and steps AdamW on the run's schedule:
    the same weights as that loop written out by hand on a copy of the model."""
    model = tiny_model("llama")
    reference = copy.deepcopy(model)
    training = PhaseTraining(grad_accum=2, max_grad_norm=0.05, warmup_ratio=0.5, weight_decay=0.1)
    ctx = dataclasses.replace(make_context(model), training=training)
    method = SMT(SMTOptions(block_size=8, budget_blocks=4, warmup_steps=4, warmup_lr=1e-3))
    method.prepare(ctx)

    targets = [anatomy_of(reference).blocks[i].linear(n).weight for i in range(4) for n in QKV]
    reference.requires_grad_(False)
    for w in targets:
        w.requires_grad_(True)
    optimizer = torch.optim.AdamW(targets, lr=1e-3, weight_decay=0.1)
    lrs = [1e-3 * f for f in (1 / 3, 2 / 3, 1.0, 0.5)]  # 2 warm-up steps of 4, then linear decay
    batches = random_batches(0)
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = lr
        for _ in range(2):
            (answer_loss(reference, next(batches)) / 2).backward()
        torch.nn.utils.clip_grad_norm_(targets, 0.05)
        optimizer.step()
        optimizer.zero_grad()
    for i in range(4):
        for n in QKV:
            torch.testing.assert_close(
                target_weight(model, i, n),
                anatomy_of(reference).blocks[i].linear(n).weight,
                rtol=0,
                atol=1e-6,
            )


def test_warmup_scope_model_tunes_every_weight_and_the_state_carries_them() -> None:
    method, model, before = prepared(warmup_scope="model")
    changed = {
        name.replace(".base_layer.", "."): not torch.equal(p, before[name.replace(".base_layer.", ".")])
        for name, p in model.named_parameters()
        if not name.endswith(".blocks")
    }
    assert all(changed.values()), [n for n, c in changed.items() if not c]
    train(method, model)
    state = method.adapter_state()
    assert {k for k in state if k.startswith("warmup.")} == {
        f"warmup.{n}" for n in changed if not any(f".{q}." in n for q in QKV)
    }
    batch = next(random_batches(seed=11))
    with torch.no_grad():
        expected = answer_logits(model, batch)
    fresh = tiny_model("llama")
    SMT(method.options).restore(fresh, anatomy_of(fresh), state)
    with torch.no_grad():
        torch.testing.assert_close(answer_logits(fresh, batch), expected, rtol=0, atol=1e-6)


def test_warmup_scope_model_needs_an_updating_gradient_warmup() -> None:
    with pytest.raises(ConfigError, match="warmup_scope='model'"):
        SMTOptions(warmup_scope="model", selection="activation")
    with pytest.raises(ConfigError, match="unknown SMT warmup_scope"):
        SMTOptions(warmup_scope="layers")


def test_warmup_reports_each_step_with_what_it_holds() -> None:
    model = tiny_model("llama")
    reported: list[set[str]] = []
    ctx = dataclasses.replace(
        make_context(model), phase_step=lambda held: reported.append({c for c, *_ in held})
    )
    SMT(SMTOptions(block_size=8, budget_blocks=4, warmup_steps=3)).prepare(ctx)
    assert reported == [{"accumulators", "optimizer_state"}] * 3


def test_bf16_warmup_changes_as_many_entries_as_fp32() -> None:
    """Warm-up updates below half a bf16 ulp per step are kept in fp32 master copies, so they add up
    instead of being rounded away at every step: once the accumulated change is representable (here 20
    steps of lr 5e-5 on weights of std 0.02; a step alone is below half an ulp for |w| > 2^-6), a bf16
    warm-up changes as many q/k/v entries as the same warm-up in fp32. Without masters, only entries
    with |w| < ~2^-6 could move (about 60% of them)."""
    batch = next(random_batches(seed=5))
    start = tiny_model("llama").to(torch.bfloat16)  # the same starting weights in both precisions
    changed = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = copy.deepcopy(start).to(dtype)
        before = {(i, n): target_weight(model, i, n).detach().clone() for i in range(4) for n in QKV}
        ctx = dataclasses.replace(make_context(model), batches=itertools.repeat(batch))
        options = SMTOptions(block_size=8, budget_blocks=4, warmup_steps=20, warmup_lr=5e-5)
        SMT(options).prepare(ctx)
        moved = sum(int((target_weight(model, *key) != w).sum()) for key, w in before.items())
        changed[dtype] = moved / sum(w.numel() for w in before.values())
    assert changed[torch.float32] > 0.99
    assert changed[torch.bfloat16] >= 0.95 * changed[torch.float32], changed
