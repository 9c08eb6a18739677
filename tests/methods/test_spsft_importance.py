"""SPSFT row importance on hand-made weights, inputs and gradients: l2, l1, random, wanda, taylor,
qm_taylor, zo_taylor."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from workbench.data.batch import Batch
from workbench.data.example import Example
from workbench.data.tasks import TaskData
from workbench.errors import ConfigError
from workbench.methods.base import PrepareContext
from workbench.methods.spsft.config import SPSFTOptions
from workbench.methods.spsft.importance import (
    compute_importance,
    gradient_taylor,
    l1_scores,
    l2_scores,
    quantile_mean,
    taylor_scores,
    top_rows,
    top_rows_global,
    wanda_scores,
    zo_gradients,
)


def _ranking(scores: torch.Tensor) -> list[int]:
    return torch.argsort(scores, descending=True, stable=True).tolist()


def _class_batch(label: int) -> Batch:
    """A one-token batch whose only content is its class (read by the toy losses below)."""
    ids = torch.tensor([[label]])
    return Batch(ids, torch.ones_like(ids), ids.clone())


def _ctx(model: nn.Module, loss_fn, batches: Iterator[Batch], task: TaskData | None = None) -> PrepareContext:
    """A context for a bare nn.Module (no anatomy: importance only needs the model, loss and data)."""
    return PrepareContext(
        model=model, anatomy=None, task=task, batches=batches, loss_fn=loss_fn, lr=1e-3, seed=0
    )


# ---- pure scores -----------------------------------------------------------------------------------


def test_l2_ranks_rows_by_norm() -> None:
    weight = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(l2_scores(weight), torch.tensor([5.0, 1.0, 2.0]))
    assert top_rows(l2_scores(weight), 2).tolist() == [0, 2]


def test_taylor_sums_abs_weight_times_gradient() -> None:
    weight = torch.tensor([[1.0, -1.0], [2.0, 0.0], [0.5, 0.5]])
    grad = torch.tensor([[1.0, 1.0], [0.0, 5.0], [4.0, -4.0]])
    scores = taylor_scores(weight, grad)  # |1|+|-1|, |0|+|0|, |2|+|-2|
    torch.testing.assert_close(scores, torch.tensor([2.0, 0.0, 4.0]))
    assert _ranking(scores) == [2, 0, 1]  # a large weight with no gradient (row 1) is unimportant


def test_top_rows_sorted_and_ties_to_lower_index() -> None:
    assert top_rows(torch.tensor([1.0, 3.0, 3.0, 0.0, 3.0]), 2).tolist() == [1, 2]


def test_quantile_mean_matches_numpy_definition() -> None:
    per_class = torch.tensor([[0.0, 1.0], [0.0, 2.0], [9.0, 3.0], [1.0, 4.0]])  # (C=4, d_out=2)
    expected = np.quantile(per_class.numpy(), np.linspace(0, 1, 11), axis=0).mean(0)
    torch.testing.assert_close(quantile_mean(per_class), torch.tensor(expected, dtype=torch.float32))
    two = torch.tensor([[1.0, 5.0], [3.0, 1.0]])  # with two classes it is their mean
    torch.testing.assert_close(quantile_mean(two), two.mean(0))


def test_taylor_phase_uses_mean_gradient_over_batches() -> None:
    lin = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.0], [0.5, 0.5]]))
    grad = torch.tensor([[1.0, 1.0], [0.0, 5.0], [4.0, -4.0]])
    ctx = _ctx(lin, lambda b: (grad * lin.weight).sum(), iter([]))  # d loss / dW = grad, every batch
    scores = gradient_taylor(ctx, {"w": lin}, [_class_batch(0)] * 3)["w"]
    torch.testing.assert_close(scores, torch.tensor([2.0, 0.0, 4.0]))
    assert lin.weight.grad is None and lin.weight.requires_grad  # flags restored, no update


# ---- class-aware Taylor ----------------------------------------------------------------------------

# Toy: y = W x with W = ones (4 x 4), x = ones. The loss of class c is sum_i A[c, i] * y_i, so
# dL/dW_ij = A[c, i] and a row's Taylor score for class c is 4 * A[c, i]. Neuron 0 matters to class 0
# only; neurons 1-3 matter (less) to class 1, which is 9 of every 10 training batches.
A = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.4, 0.3]])


def _toy() -> tuple[nn.Linear, Callable[[Batch], torch.Tensor]]:
    lin = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)

    def loss_fn(batch: Batch) -> torch.Tensor:
        label = int(batch.input_ids[0, 0])
        return (A[label] * lin(torch.ones(4))).sum()

    return lin, loss_fn


def _two_class_task() -> TaskData:
    train = [Example(f"p{i}", (" no", " yes"), 1 if i % 10 else 0) for i in range(20)]
    return TaskData(name="toy", train=train, eval=[], classes=(" no", " yes"))


def _imbalanced_batches() -> Iterator[Batch]:
    while True:
        yield _class_batch(0)
        for _ in range(9):
            yield _class_batch(1)


def _endless(label: int) -> Iterator[Batch]:
    while True:
        yield _class_batch(label)


def test_qm_taylor_ranks_single_class_neuron_above_plain_taylor() -> None:
    lin, loss_fn = _toy()
    opts = dict(importance_batches=10, rank=1)
    ctx = _ctx(lin, loss_fn, _imbalanced_batches(), task=_two_class_task())
    ctx.batches_for = lambda examples: _endless(examples[0].label)

    plain = compute_importance(ctx, {"w": lin}, SPSFTOptions(importance="taylor", **opts))["w"]
    qm = compute_importance(ctx, {"w": lin}, SPSFTOptions(importance="qm_taylor", **opts))["w"]

    # plain: mean gradient 0.1 * A[0] + 0.9 * A[1] -> row scores 4 * (0.1, 0.45, 0.36, 0.27): neuron 0 last
    torch.testing.assert_close(plain, torch.tensor([0.4, 1.8, 1.44, 1.08]))
    # qm: every class has the same say -> mean of (4, 0, 0, 0) and (0, 2, 1.6, 1.2): neuron 0 first
    torch.testing.assert_close(qm, torch.tensor([2.0, 1.0, 0.8, 0.6]))
    assert _ranking(plain).index(0) == 3 and _ranking(qm).index(0) == 0


def test_qm_taylor_uses_up_to_n_batches_per_class_and_finite_iterators() -> None:
    lin, loss_fn = _toy()
    seen: list[int] = []

    def batches_for(examples: list[Example]) -> Iterator[Batch]:
        label = examples[0].label
        assert all(e.label == label for e in examples)  # one class per call
        for _ in range(2):  # finite: fewer than importance_batches
            seen.append(label)
            yield _class_batch(label)

    ctx = _ctx(lin, loss_fn, iter([]), task=_two_class_task())
    ctx.batches_for = batches_for
    qm = compute_importance(ctx, {"w": lin}, SPSFTOptions(importance="qm_taylor", importance_batches=5))["w"]
    assert seen == [0, 0, 1, 1]
    torch.testing.assert_close(qm, torch.tensor([2.0, 1.0, 0.8, 0.6]))


@pytest.mark.parametrize(
    "task, message",
    [
        (TaskData("mc", [Example("p", (" a", " b"), 0)], [], classes=None), "classification task"),
        (TaskData("one", [Example("p", (" a", " b"), 1)] * 3, [], (" a", " b")), "at least 2 classes"),
        (None, "classification task"),
    ],
    ids=["multiple-choice", "one-class", "no-task"],
)
def test_qm_taylor_needs_labels(task: TaskData | None, message: str) -> None:
    lin, loss_fn = _toy()
    ctx = _ctx(lin, loss_fn, iter([]), task=task)
    ctx.batches_for = lambda examples: _endless(0)
    with pytest.raises(ConfigError, match=message):
        compute_importance(ctx, {"w": lin}, SPSFTOptions(importance="qm_taylor"))


def test_qm_taylor_without_batches_for_is_a_clear_error() -> None:
    lin, loss_fn = _toy()
    ctx = _ctx(lin, loss_fn, iter([]), task=_two_class_task())
    with pytest.raises(ConfigError, match="PrepareContext.batches_for"):
        compute_importance(ctx, {"w": lin}, SPSFTOptions(importance="qm_taylor"))


# ---- zeroth-order Taylor ---------------------------------------------------------------------------


def _quadratic() -> tuple[nn.Linear, Callable[[Batch], torch.Tensor], torch.Tensor]:
    """Loss sum((W x - t)^2): central differences are exact, so SPSA is unbiased with no eps error."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 3, bias=False, dtype=torch.float64)
    x, t = torch.randn(4, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    true_grad = (2 * (lin(x) - t)[:, None] * x[None, :]).detach()  # (3, 4)
    return lin, (lambda batch: ((lin(x) - t) ** 2).sum()), true_grad


def test_zo_gradient_estimate_converges_to_true_gradient() -> None:
    lin, loss_fn, true_grad = _quadratic()
    before = lin.weight.detach().clone()
    ctx = _ctx(lin, loss_fn, iter([]))
    est = zo_gradients(ctx, {"w": lin}, [_class_batch(0)] * 4, directions=500, eps=1e-3, seed=0)["w"]
    cosine = torch.nn.functional.cosine_similarity(est.flatten(), true_grad.float().flatten(), dim=0)
    assert cosine > 0.95
    assert torch.equal(lin.weight, before) and lin.weight.grad is None  # forward only, weights untouched
    assert not lin._forward_hooks  # perturbation hooks removed


def test_zo_estimate_is_seeded() -> None:
    lin, loss_fn, _ = _quadratic()
    ctx = _ctx(lin, loss_fn, iter([]))

    def run(seed: int) -> torch.Tensor:
        return zo_gradients(ctx, {"w": lin}, [_class_batch(0)], directions=3, eps=1e-3, seed=seed)["w"]

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


def test_zo_taylor_on_small_data_averages_over_batches_used() -> None:
    lin, loss_fn, _ = _quadratic()
    calls = SimpleNamespace(n=0)

    def counting_loss(batch: Batch) -> torch.Tensor:
        calls.n += 1
        return loss_fn(batch)

    # 2 batches where 8 were asked for (the authors' code divides by len(loader) // 256 = 0 here)
    ctx = _ctx(lin, counting_loss, iter([_class_batch(0), _class_batch(0)]))
    options = SPSFTOptions(importance="zo_taylor", importance_batches=8)
    scores = compute_importance(ctx, {"w": lin}, options)["w"]
    assert calls.n == 4  # 2 batches x 1 direction x 2 forwards
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    ctx = _ctx(lin, counting_loss, iter([]))
    with pytest.raises(ConfigError, match="no batches"):
        compute_importance(ctx, {"w": lin}, SPSFTOptions(importance="zo_taylor"))


# ---- l1, random, wanda -----------------------------------------------------------------------------


def test_l1_ranks_rows_by_their_absolute_sum() -> None:
    weight = torch.tensor([[3.0, -4.0], [1.0, 5.5], [0.0, 2.0]])
    torch.testing.assert_close(l1_scores(weight), torch.tensor([7.0, 6.5, 2.0]))  # l2 would rank row 1 first


def test_wanda_weighs_each_weight_by_its_input_channel_norm() -> None:
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-2.0, 0.1]])
    norms = torch.tensor([0.1, 10.0])  # channel 1 carries large inputs
    scores = wanda_scores(weight, norms)  # |w| . ||x||: 0.1, 10, 0.2 + 1
    torch.testing.assert_close(scores, torch.tensor([0.1, 10.0, 1.2]))
    assert _ranking(scores) == [1, 2, 0]  # l2 would put row 2 first


def test_wanda_phase_reads_the_inputs_of_real_tokens_only() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(3, 2, bias=False)
    x = torch.tensor([[[1.0, 0.0, 2.0], [3.0, 0.0, 4.0], [100.0, 100.0, 100.0]]])  # last token: padding
    batch = Batch(
        torch.zeros(1, 3, dtype=torch.long), torch.tensor([[1, 1, 0]]), torch.zeros(1, 3, dtype=torch.long)
    )
    ctx = _ctx(linear, lambda b: linear(x).sum(), itertools.repeat(batch))
    scores = compute_importance(ctx, {"lin": linear}, SPSFTOptions(importance="wanda", importance_batches=2))
    rms = torch.tensor([(1 + 9) / 2, 0.0, (4 + 16) / 2]).sqrt()  # over the two real tokens
    torch.testing.assert_close(scores["lin"], (linear.weight.detach().abs() * rms).sum(dim=1))


def test_random_importance_is_a_seeded_uniform_draw() -> None:
    linears = {"a": nn.Linear(4, 6), "b": nn.Linear(4, 5)}
    ctx = _ctx(nn.Sequential(), None, iter(()))
    first = compute_importance(ctx, linears, SPSFTOptions(importance="random"))
    again = compute_importance(ctx, linears, SPSFTOptions(importance="random"))
    assert all(torch.equal(first[k], again[k]) for k in linears) and first["a"].shape == (6,)
    other = compute_importance(dataclasses.replace(ctx, seed=1), linears, SPSFTOptions(importance="random"))
    assert (
        not torch.equal(first["a"], other["a"]) and 0 <= float(first["b"].min()) < float(first["b"].max()) < 1
    )


def test_global_ranking_takes_the_best_rows_over_every_linear() -> None:
    scores = {"a": torch.tensor([0.1, 0.9, 0.5]), "b": torch.tensor([0.7, 0.2]), "c": torch.tensor([0.05])}
    chosen = top_rows_global(scores, {"a": 1, "b": 1, "c": 1})  # 3 rows in all
    assert {k: v.tolist() for k, v in chosen.items()} == {"a": [1, 2], "b": [0]}  # c gets none
    tied = top_rows_global({"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([1.0])}, {"a": 1, "b": 1})
    assert {k: v.tolist() for k, v in tied.items()} == {"a": [0, 1]}  # ties: earlier linear, lower row
