"""evaluate with metric loglik: argmax over candidates of the summed answer log-likelihood."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from workbench.data import Example, encode_example, evaluate

EXAMPLES = [
    Example("Review: good\nSentiment:", (" negative", " positive"), 1),
    Example("Label: x =", ("A", "B"), 1),  # single-token candidates: scored from one shared forward
    Example("Review: bad\nSentiment:", (" negative", " positive"), 0),
    Example("Context: x.\nQuestion: y?\nAnswer:", (" one", " two", " three"), 2),
]


def _manual_logprob(model, tokenizer, example, candidate):
    """Full-vocabulary forward of one unpadded sequence: sum of log p(answer token | prefix)."""
    ids, labels = encode_example(tokenizer, example, 64, candidate)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()  # (n, vocab)
    logprobs = logits.log_softmax(-1)
    return sum(logprobs[t - 1, labels[t]].item() for t in range(1, len(ids)) if labels[t] != -100)


def test_evaluate_matches_a_manual_computation(byte_tokenizer, tiny_lm):
    result = evaluate(
        tiny_lm, byte_tokenizer, EXAMPLES, max_length=64, batch_size=3, device="cpu", progress=False
    )
    tiny_lm.eval()
    for example, scores, prediction in zip(EXAMPLES, result["scores"], result["predictions"], strict=True):
        manual = [
            _manual_logprob(tiny_lm, byte_tokenizer, example, c) for c in range(len(example.candidates))
        ]
        assert scores == pytest.approx(manual, abs=1e-4)
        assert prediction == max(range(len(manual)), key=manual.__getitem__)
    assert result["n"] == 4
    assert result["score"] == pytest.approx(
        sum(p == e.label for p, e in zip(result["predictions"], EXAMPLES, strict=True)) / 4
    )


class _Prefers(nn.Module):
    """A stand-in causal LM whose next-token distribution always favours one token id; shaped as
    workbench.lm reads a causal LM (a base model, an output embedding, a config)."""

    config = SimpleNamespace()  # no logit scaling, no soft-capping

    def __init__(self, token_id: int, vocab: int = 384) -> None:
        super().__init__()
        self.model = _OneHot(vocab)
        self.lm_head = nn.Linear(vocab, vocab)
        with torch.no_grad():
            self.lm_head.weight.copy_(
                0.1 * torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0))
            )
            self.lm_head.bias.zero_()
            self.lm_head.bias[token_id] = 5.0  # dominates the small random weights

    @property
    def base_model(self) -> nn.Module:
        return self.model

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head


class _OneHot(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.dropout = nn.Dropout(0.1)

    def forward(self, input_ids, **kwargs):
        hidden = self.dropout(nn.functional.one_hot(input_ids, self.vocab).float())  # (B, n, vocab)
        return type("Out", (), {"last_hidden_state": hidden})()


def test_evaluate_picks_the_preferred_candidate(byte_tokenizer):
    b = byte_tokenizer(" b", add_special_tokens=False)["input_ids"][-1]
    model = _Prefers(b)
    examples = [
        Example("Q1", (" a", " b"), 1),
        Example("Q2", (" b", " a"), 1),
        Example("Q3", (" c", " a", " b"), 0),
    ]
    result = evaluate(
        model, byte_tokenizer, examples, max_length=16, batch_size=2, device="cpu", progress=False
    )
    assert result["predictions"] == [1, 0, 2]
    assert result["score"] == pytest.approx(1 / 3) == pytest.approx(result["accuracy_norm"])
    assert result["correct"] == 1


def test_accuracy_norm_divides_by_answer_tokens(byte_tokenizer):
    # every " b" token is likely, yet the 9-token answer loses on the summed log-likelihood to the
    # 2-token one; per answer token it wins
    b = byte_tokenizer(" b", add_special_tokens=False)["input_ids"][-1]
    model = _Prefers(b)
    examples = [Example("Q", (" a", " bbbbbbbb"), 1)]
    result = evaluate(
        model, byte_tokenizer, examples, max_length=32, batch_size=2, device="cpu", progress=False
    )
    (short, long_), tokens = result["scores"][0], (2, 9)
    assert long_ < short and result["score"] == 0.0
    assert result["accuracy_norm"] == float(long_ / tokens[1] > short / tokens[0]) == 1.0


def test_evaluate_restores_modes_and_keeps_no_grad(byte_tokenizer, tiny_lm):
    tiny_lm.train()
    tiny_lm.model.layers[0].eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in tiny_lm.named_modules()}
    evaluate(tiny_lm, byte_tokenizer, EXAMPLES[:1], max_length=64, batch_size=4, device="cpu", progress=False)
    assert {name: m.training for name, m in tiny_lm.named_modules()} == before
    assert all(p.grad is None for p in tiny_lm.parameters())


def test_evaluate_uses_eval_mode(byte_tokenizer):
    # with dropout active the scores would differ between runs; eval mode makes them identical
    b = byte_tokenizer(" b", add_special_tokens=False)["input_ids"][-1]
    model = _Prefers(b).train()
    one = evaluate(model, byte_tokenizer, EXAMPLES, max_length=64, batch_size=2, device="cpu", progress=False)
    two = evaluate(model, byte_tokenizer, EXAMPLES, max_length=64, batch_size=5, device="cpu", progress=False)
    flat = [[v for scores in run["scores"] for v in scores] for run in (one, two)]
    assert flat[0] == pytest.approx(flat[1], abs=1e-5)
    assert model.training


def test_evaluate_no_examples(byte_tokenizer, tiny_lm):
    result = evaluate(tiny_lm, byte_tokenizer, [], max_length=64, batch_size=4, device="cpu", progress=False)
    assert result["n"] == 0 and math.isnan(result["score"]) and result["predictions"] == []
