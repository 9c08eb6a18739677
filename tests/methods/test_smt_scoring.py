"""SMT block scores, budget arithmetic, top-k scopes, options validation and check() against models."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from workbench.errors import ConfigError
from workbench.methods.smt import SMT, SMTOptions
from workbench.methods.smt.scoring import (
    allocate_per_matrix,
    block_scores,
    blocks_for_fraction,
    column_block_scores,
    default_block_size,
    magnitude_stats,
    select_top_blocks,
    select_top_columns,
)
from workbench.models.anatomy import anatomy_of
from workbench.models.tiny import tiny_config, tiny_model

TINY_PARAMS = 172_608  # tiny_model("llama"): 384 x 64 tied embedding + 4 blocks + final norm


def _hand_made_gradient() -> torch.Tensor:
    """(4, 4) gradient of 2 x 2 blocks built so that the four rules disagree on the best block.

    block (0, 0) "A": +1/-1 alternating -> mean_abs 0,    abs_mean 1,    l1 4,   l2 2
    block (0, 1) "B": all 0.5           -> mean_abs 0.5,  abs_mean 0.5,  l1 2,   l2 1
    block (1, 0) "C": a single 3        -> mean_abs 0.75, abs_mean 0.75, l1 3,   l2 3
    block (1, 1) "D": all -0.9          -> mean_abs 0.9,  abs_mean 0.9,  l1 3.6, l2 1.8
    """
    g = torch.zeros(4, 4)
    g[0:2, 0:2] = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    g[0:2, 2:4] = 0.5
    g[2, 0] = 3.0
    g[2:4, 2:4] = -0.9
    return g


@pytest.mark.parametrize(
    ("rule", "expected", "best"),
    [
        ("mean_abs", [[0.0, 0.5], [0.75, 0.9]], (1, 1)),
        ("abs_mean", [[1.0, 0.5], [0.75, 0.9]], (0, 0)),
        ("l1", [[4.0, 2.0], [3.0, 3.6]], (0, 0)),
        ("l2", [[2.0, 1.0], [3.0, 1.8]], (1, 0)),
    ],
)
def test_each_score_rule_picks_the_expected_block(rule: str, expected: list, best: tuple[int, int]) -> None:
    scores = block_scores(_hand_made_gradient(), 2, rule)
    torch.testing.assert_close(scores, torch.tensor(expected))
    (mask,) = select_top_blocks([scores], 1, "global")
    assert mask.nonzero().tolist() == [list(best)]


def test_block_scores_match_a_loop_on_a_rectangular_matrix() -> None:
    torch.manual_seed(0)
    g = torch.randn(12, 8)  # (out, in): a (3, 2) grid of 4 x 4 blocks
    scores = block_scores(g, 4, "mean_abs")
    assert scores.shape == (3, 2)
    for r in range(3):
        for c in range(2):
            assert scores[r, c] == pytest.approx(g[4 * r : 4 * r + 4, 4 * c : 4 * c + 4].mean().abs().item())


def test_activation_scores_are_per_input_column_block() -> None:
    norms = torch.tensor([1.0, 3.0, 10.0, 0.0, 2.0, 2.0])  # (in,) = 3 column blocks of 2
    torch.testing.assert_close(column_block_scores(norms, block_size=2), torch.tensor([2.0, 5.0, 2.0]))


def test_activation_selection_takes_whole_columns_and_breaks_ties_as_the_authors() -> None:
    shared = torch.tensor([1.0, 3.0])  # q, k and v read the same input: the same channel scores
    names = [("q_proj", 0), ("k_proj", 0), ("v_proj", 0)]
    rows = [2, 1, 1]  # a column of q costs 2 blocks, of k or v 1
    q, k, v = select_top_columns([shared, shared, shared], rows, names, 3, "global")
    # best column (1) first, ties to the larger name: v, then q; k's would exceed the budget of 3
    assert v.tolist() == [[False, True]] and q.tolist() == [[False, True], [False, True]]
    assert not k.any()
    # a deeper layer wins a tie within one projection, then the higher channel
    first, second = select_top_columns([shared, shared], [1, 1], [("v_proj", 0), ("v_proj", 1)], 1, "global")
    assert not first.any() and second.tolist() == [[False, True]]
    (flat,) = select_top_columns([torch.tensor([2.0, 2.0])], [1], [("v_proj", 0)], 1, "global")
    assert flat.tolist() == [[False, True]]


def test_activation_selection_per_matrix_spends_each_share_on_whole_columns() -> None:
    q, v = select_top_columns(
        [torch.tensor([0.5, 0.9]), torch.tensor([4.0, 1.0, 2.0])],
        [2, 1],
        [("q_proj", 0), ("v_proj", 0)],
        5,
        "per_matrix_equal",
    )
    assert q.tolist() == [[False, True], [False, True]]  # 3 blocks: one column of 2 (1 left unspent)
    assert v.tolist() == [[True, False, True]]  # 2 blocks: its two best columns


def test_global_scope_takes_the_best_blocks_anywhere() -> None:
    q = torch.full((2, 2), 0.1)
    v = torch.tensor([[5.0, 4.0], [3.0, 2.0]])
    q_mask, v_mask = select_top_blocks([q, v], 3, "global")
    assert not q_mask.any()
    assert v_mask.tolist() == [[True, True], [True, False]]


def test_per_matrix_scope_shares_the_budget_by_size() -> None:
    q = torch.tensor([[0.1, 0.4], [0.3, 0.2]])  # 4 blocks
    v = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1]])  # 8 blocks
    q_mask, v_mask = select_top_blocks([q, v], 6, "per_matrix")
    assert q_mask.tolist() == [[False, True], [True, False]]  # 6 * 4/12 = 2: its best two
    assert v_mask.sum() == 4 and v_mask[0, :4].all()


def test_per_matrix_allocation_is_exact() -> None:
    assert allocate_per_matrix([16, 8, 8], 16) == [8, 4, 4]
    assert allocate_per_matrix([3, 3, 3], 2) == [1, 1, 0]  # equal remainders: earlier matrices first
    assert allocate_per_matrix([10, 1], 5) == [5, 0]
    counts = allocate_per_matrix([81, 27, 27] * 30, 164)  # SmolLM2 q/k/v with b = 64
    assert sum(counts) == 164


def test_ties_go_to_the_lower_index() -> None:
    (mask,) = select_top_blocks([torch.ones(2, 3)], 2, "global")
    assert mask.tolist() == [[True, True, False], [False, False, False]]


def test_too_many_blocks_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot select 5 blocks out of 4"):
        select_top_blocks([torch.ones(2, 2)], 5, "global")


def test_budget_arithmetic_is_exact() -> None:
    assert blocks_for_fraction(0.01, TINY_PARAMS, 8) == 26  # floor(1726.08 / 64)
    assert blocks_for_fraction(0.005, 134_515_008, 64) == 164  # SmolLM2-135M: floor(672,575 / 4,096)
    # 0.29 * 6400 is 1855.9999999999998 in binary floats; as a decimal fraction it is 1856 = 29 blocks
    assert blocks_for_fraction(0.29, 6400, 8) == 29
    assert blocks_for_fraction(1e-6, TINY_PARAMS, 32) == 1  # at least one block


def test_default_block_size() -> None:
    assert default_block_size([576, 192]) == 64  # SmolLM2 q/k/v
    assert default_block_size([576, 192, 1536]) == 64
    assert default_block_size([4096, 11008]) == 256  # LLaMA-7B, the paper's choice
    assert default_block_size([64, 32]) == 32  # tiny llama
    assert default_block_size([48, 24]) is None


def test_magnitude_stats() -> None:
    stats = magnitude_stats(torch.tensor([-4.0, 1.0, -2.0]))
    assert stats == {"median": 2.0, "mean": pytest.approx(7 / 3), "max": 4.0}


# ---- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("score", "max", "unknown SMT score 'max'; accepted: mean_abs, abs_mean, l1, l2"),
        ("targets", "qk", "unknown SMT targets 'qk'; accepted: qkv, q, k, v, qkvo, qkv_mlp, mlp, all"),
        ("scope", "layer", "unknown SMT scope 'layer'; accepted: global, per_matrix, per_matrix_equal"),
        ("selection", "magic", "unknown SMT selection 'magic'; accepted: gradient, activation, random"),
        ("budget", 0.0, "method.budget must be a fraction of the model's parameters in (0, 1], got 0.0"),
        ("budget", -0.1, "method.budget must be a fraction"),
        ("budget", 1.5, "method.budget must be a fraction"),
        ("mlp_budget", 0.0, "method.mlp_budget must be in (0, 1] or None"),
        ("budget_blocks", 0, "method.budget_blocks must be >= 1"),
        ("block_size", 0, "method.block_size must be >= 1"),
        ("warmup_steps", 0, "method.warmup_steps must be >= 1 (gradient selection sums"),
        ("warmup_lr", 0.0, "method.warmup_lr must be > 0"),
    ],
)
def test_bad_options_are_config_errors(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        SMTOptions(**{field: value})
    assert message in str(info.value)


def test_wrong_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="budget_blocks"):
        SMTOptions(budget_blocks=2.5)


def test_defaults() -> None:
    options = SMTOptions()
    assert (options.targets, options.score, options.selection, options.scope) == (
        "qkv",
        "mean_abs",
        "gradient",
        "global",
    )
    assert options.budget == 0.005 and options.warmup_steps == 100 and options.update_during_warmup
    assert SMT.default_lr == 1e-4


# ---- check() against a model ---------------------------------------------------------------------


def smollm_like_anatomy():
    """SmolLM2-135M's shapes (hidden 576, 9 heads / 3 kv heads of 64, MLP 1536), 2 blocks, on meta."""
    config = tiny_config(
        "llama",
        hidden_size=576,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        intermediate_size=1536,
        num_hidden_layers=2,
    )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return anatomy_of(model)


@pytest.mark.parametrize("targets", ["qkv", "all"])
def test_check_resolves_the_default_block_size(targets: str) -> None:
    method = SMT(SMTOptions(targets=targets))
    method.check(smollm_like_anatomy())
    assert method.block_size == 64


def test_check_names_the_weight_a_block_size_does_not_divide() -> None:
    anatomy = smollm_like_anatomy()
    with pytest.raises(ConfigError) as info:
        SMT(SMTOptions(block_size=72)).check(anatomy)
    assert str(info.value) == "block_size 72 does not divide k_proj weight (192, 576) of block 0"
    with pytest.raises(ConfigError) as info:
        SMT(SMTOptions(block_size=128)).check(anatomy)
    assert str(info.value) == "block_size 128 does not divide q_proj weight (576, 576) of block 0"


def test_check_without_a_default_block_size() -> None:
    model = tiny_model("llama", hidden_size=48, num_attention_heads=4, num_key_value_heads=2)
    with pytest.raises(ConfigError, match=r"no default SMT block size.*\(24, 48\); set method.block_size"):
        SMT(SMTOptions()).check(anatomy_of(model))


def test_check_budget_above_the_targets() -> None:
    anatomy = anatomy_of(tiny_model("llama"))
    # q (64, 64) + k, v (32, 64) per block = 8192 parameters = 128 blocks of 8 x 8; x 4 blocks = 512
    with pytest.raises(ConfigError) as info:
        SMT(SMTOptions(block_size=8, budget=0.5)).check(anatomy)
    assert str(info.value) == (
        "SMT method.budget asks for 1348 blocks of 8x8 (86,272 parameters; the model has 172,608) "
        "but q_proj, k_proj, v_proj hold only 512 blocks (32,768 parameters)"
    )
    with pytest.raises(ConfigError, match="method.budget_blocks asks for 33 blocks of 32x32"):
        SMT(SMTOptions(budget_blocks=33)).check(anatomy)  # b = 32: 4 + 2 + 2 blocks x 4 = 32
    SMT(SMTOptions(budget_blocks=32)).check(anatomy)
    with pytest.raises(ConfigError, match="method.mlp_budget asks for"):
        SMT(SMTOptions(targets="all", block_size=8, budget=0.01, mlp_budget=1.0)).check(anatomy)


def test_per_matrix_equal_gives_every_matrix_the_same_count_of_its_best_blocks():
    grids = [
        torch.tensor([[9.0, 1.0], [8.0, 7.0]]),  # best: 9, 8 (then 7)
        torch.tensor([[0.1, 0.5, 0.4]]),  # best: 0.5, 0.4
        torch.tensor([[3.0], [2.0], [5.0], [4.0]]),  # best: 5, 4
    ]
    masks = select_top_blocks(grids, 7, "per_matrix_equal")  # 7 = 3 + 2 + 2: the first matrix one more
    assert [int(m.sum()) for m in masks] == [3, 2, 2]
    assert masks[0].tolist() == [[True, False], [True, True]]
    assert masks[1].tolist() == [[False, True, True]]
    assert masks[2].reshape(-1).tolist() == [False, False, True, True]
    # global would have spent them all on the first and third matrices
    assert int(select_top_blocks(grids, 7, "global")[1].sum()) == 0
    with pytest.raises(ValueError, match="4 blocks per matrix, but matrix 1 holds 3"):
        select_top_blocks(grids, 11, "per_matrix_equal")  # 4 + 4 + 3
