"""Generative scoring: the normalisation, greedy generation with the cache, exact match, the plan."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from workbench.data import EvalPlan, Example, evaluate, exact_match, normalize_answer, plan_evaluation
from workbench.data.encoding import answer_token_ids, prompt_token_ids
from workbench.data.generation import greedy_generate, stop_token_ids
from workbench.data.tasks import TaskData
from workbench.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("  Paris.\nThe capital", "paris"),  # cut at the newline, end punctuation and case gone
        ("5,576", "5576"),
        ("+5576.0", "5576"),
        ("3.50", "3.5"),
        ("-0.0", "0"),
        ("007", "7"),
        ("The answer is  42!", "the answer is 42"),
        ('"swims, swimming, swam, swum"', "swims, swimming, swam, swum"),  # inner commas stay
        ("1,23", "1,23"),  # not a thousands separator: not a number, left as written
        ("", ""),
    ],
)
def test_normalize_answer(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_on_hand_made_generations():
    assert exact_match(" 5,576", " 5576") and exact_match("Accommodation.", " accommodation")
    assert exact_match("NNP NNP , CD\nDT", " NNP NNP , CD")  # what follows the newline does not count
    assert not exact_match("5577", " 5576") and not exact_match("swims swimming", " swims, swimming")
    assert not exact_match("", " a")


def _naive_greedy(model, prompt: list[int], steps: int, stops: frozenset[int]) -> list[int]:
    """Greedy decoding without a cache: the whole sequence through the model's own forward each step."""
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].argmax())
            out.append(token)
            ids.append(token)
            if token in stops:
                break
    return out


def test_greedy_generate_with_cache_equals_naive_decoding(tiny_lm):
    tiny_lm.eval()
    prompts = [[5, 9, 14, 3, 77, 41, 8], [12, 19], [200, 3, 4, 5]]  # left padding of different widths
    stops = frozenset({int(t) for t in range(40, 60)})  # some runs stop early, others run to the bound
    got = greedy_generate(tiny_lm, prompts, max_new_tokens=12, stop_ids=stops, pad_id=0, device="cpu")
    for prompt, tokens in zip(prompts, got, strict=True):
        assert tokens == _naive_greedy(tiny_lm, prompt, 12, stops)
        assert len(tokens) == 12 or tokens[-1] in stops


def test_stop_ids_hold_eos_and_every_newline_token(byte_tokenizer):
    stops = stop_token_ids(byte_tokenizer)
    assert byte_tokenizer.eos_token_id in stops
    assert byte_tokenizer("\n", add_special_tokens=False)["input_ids"][0] in stops
    assert byte_tokenizer("a", add_special_tokens=False)["input_ids"][0] not in stops


GENERATIVE = [Example(f"Q{i}:", (f" {a}",), 0, stop="\n") for i, a in enumerate(("5576", "swam", "b c"))]


def test_exact_match_evaluation_scores_the_generations(byte_tokenizer, tiny_lm, monkeypatch):
    made = ["5,576", "swum", "B c."]  # hand-made generations: right after normalising, wrong, right
    seen = {}

    def fake_generate(model, tokenizer, examples, **kwargs):
        seen.update(kwargs)
        return made

    monkeypatch.setattr("workbench.data.scoring.generate_answers", fake_generate)
    result = evaluate(
        tiny_lm,
        byte_tokenizer,
        GENERATIVE,
        max_length=32,
        batch_size=2,
        device="cpu",
        metric="exact_match",
        max_new_tokens=5,
        progress=False,
    )
    assert result["metric"] == "exact_match" and result["generations"] == made
    assert result["correct_mask"] == [True, False, True] and result["correct"] == 2
    assert result["score"] == pytest.approx(2 / 3) and seen["max_new_tokens"] == 5
    assert result["answer_loglik_per_token"] < 0  # the references, teacher-forced


def test_exact_match_evaluation_end_to_end(byte_tokenizer, tiny_lm):
    result = evaluate(
        tiny_lm,
        byte_tokenizer,
        GENERATIVE,
        max_length=32,
        batch_size=2,
        device="cpu",
        metric="exact_match",
        max_new_tokens=4,
        progress=False,
    )
    stops = stop_token_ids(byte_tokenizer)
    tiny_lm.eval()
    for example, text in zip(GENERATIVE, result["generations"], strict=True):
        prompt = prompt_token_ids(byte_tokenizer, example, 32, len(answer_token_ids(byte_tokenizer, example)))
        expected = byte_tokenizer.decode(_naive_greedy(tiny_lm, prompt, 4, stops), skip_special_tokens=True)
        assert text == expected.split("\n", 1)[0]
    assert result["score"] == sum(result["correct_mask"]) / 3


def _task(examples, generative: bool) -> TaskData:
    return TaskData("t", list(examples), list(examples), None, generative=generative)


def test_plan_evaluation(byte_tokenizer):
    generative = _task(GENERATIVE, True)
    longest = max(len(answer_token_ids(byte_tokenizer, e)) for e in GENERATIVE)  # "b c" + newline: 5
    assert plan_evaluation(generative, byte_tokenizer) == EvalPlan("exact_match", longest + 8)
    assert plan_evaluation(generative, byte_tokenizer, "exact_match", 3).max_new_tokens == 3
    ranked = _task([Example("Q", (" a", " b"), 1)], False)
    assert plan_evaluation(ranked, byte_tokenizer).metric == "loglik"
    assert plan_evaluation(ranked, byte_tokenizer).score_name == "accuracy"
    assert plan_evaluation(ranked, byte_tokenizer, "exact_match").score_name == "exact_match"
    with pytest.raises(ConfigError, match="no candidates to rank.*'exact_match'"):
        plan_evaluation(generative, byte_tokenizer, "loglik")


def test_generation_stops_are_trained_on(byte_tokenizer):
    ids = answer_token_ids(byte_tokenizer, GENERATIVE[0])
    assert byte_tokenizer.decode(ids) == " 5576\n"
    plain = dataclasses.replace(GENERATIVE[0], stop="")
    assert byte_tokenizer.decode(answer_token_ids(byte_tokenizer, plain)) == " 5576"
