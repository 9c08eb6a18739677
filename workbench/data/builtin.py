"""The built-in tasks: real data from pinned registry archives, formatted by TEMPLATES."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from workbench.data import sources
from workbench.data.example import Corpus
from workbench.data.formatting import TEMPLATES, answer_text
from workbench.data.tasks import TASKS
from workbench.errors import WorkbenchError


@TASKS.register("polarity")
def polarity(cache_dir: Path | None = None) -> Corpus:
    """Pang & Lee sentence polarity (4,000 balanced movie-review sentences): negative / positive."""
    raw = sources.polarity(cache_dir)
    template = TEMPLATES["polarity"]
    examples = [template.example({"text": r["text"]}, r["label"]) for r in raw.records]
    return Corpus(examples, template.classes, raw.source, raw.sha256, template.prompt)


@TASKS.register("strategyqa")
def strategyqa(cache_dir: Path | None = None) -> Corpus:
    """BIG-bench StrategyQA (2,290 yes/no questions needing implicit multi-step reasoning)."""
    return _bigbench_classes("strategyqa", cache_dir, lambda text: {"question": text})


@TASKS.register("epistemic_reasoning")
def epistemic_reasoning(cache_dir: Path | None = None) -> Corpus:
    """BIG-bench epistemic reasoning (2,000 premise/hypothesis pairs): entailment / non-entailment."""
    return _bigbench_classes("epistemic_reasoning", cache_dir, _premise_hypothesis)


@TASKS.register("social_iqa")
def social_iqa(cache_dir: Path | None = None) -> Corpus:
    """BIG-bench Social IQa (1,954 questions about social situations, 3 choices; 4 have 2)."""
    raw = sources.bigbench("social_iqa", cache_dir)
    template = TEMPLATES["social_iqa"]
    examples = []
    for record in raw.records:
        choices = list(record["target_scores"])
        label = choices.index(sources.gold_answer(record["target_scores"]))
        examples.append(template.example(_context_question(record["input"]), label, choices))
    return Corpus(examples, None, raw.source, raw.sha256, template.prompt)


def _bigbench_classes(task: str, cache_dir: Path | None, fields: Callable[[str], dict[str, str]]) -> Corpus:
    """A BIG-bench task whose target_scores keys are the same label words in every example."""
    raw = sources.bigbench(task, cache_dir)
    template = TEMPLATES[task]
    classes = template.classes or ()
    examples = []
    for record in raw.records:
        gold = answer_text(sources.gold_answer(record["target_scores"]))
        if gold not in classes:
            raise WorkbenchError(f"{task}: answer {gold!r} is not one of {template.classes}")
        examples.append(template.example(fields(record["input"].strip()), classes.index(gold)))
    return Corpus(examples, template.classes, raw.source, raw.sha256, template.prompt)


_PREMISE = re.compile(r"^Premise: (.*) Hypothesis: (.*)$", re.S)
# The context is everything up to the last sentence end; the question is the final sentence, ending in "?".
_QUESTION = re.compile(r"^(.*[.!?\"'])\s+([^.!?]*\?)$", re.S)


def _premise_hypothesis(text: str) -> dict[str, str]:
    match = _PREMISE.match(text)
    if match is None:
        raise WorkbenchError(f"epistemic_reasoning: no 'Premise: ... Hypothesis: ...' in {text!r}")
    return {"premise": match.group(1).strip(), "hypothesis": match.group(2).strip()}


def _context_question(text: str) -> dict[str, str]:
    match = _QUESTION.match(text.strip())
    if match is None:
        raise WorkbenchError(f"social_iqa: no context followed by a question in {text!r}")
    return {"context": match.group(1), "question": match.group(2)}


@TASKS.register("spelling")
def spelling(cache_dir: Path | None = None) -> Corpus:
    """Birkbeck spelling errors (500 words): a misspelling (the corpus's first for the word) -> the word."""
    raw = sources.spelling(cache_dir)
    template = TEMPLATES["spelling"]
    examples = [template.free_text({"misspelling": r["misspellings"][0]}, r["word"]) for r in raw.records]
    return _generative(examples, raw, template)


@TASKS.register("verb_forms")
def verb_forms(cache_dir: Path | None = None) -> Corpus:
    """English verb conjugation (8,425 verbs): a verb -> its four inflected forms ("swims, swimming, swam,
    swum"), regular and irregular; answers of about ten tokens."""
    raw = sources.verbs(cache_dir)
    template = TEMPLATES["verb_forms"]
    forms = ("third_person", "present_participle", "past", "past_participle")
    examples = [
        template.free_text({"verb": r["verb"]}, ", ".join(r[name] for name in forms)) for r in raw.records
    ]
    return _generative(examples, raw, template)


POS_MAX_WORDS = 25  # sentences up to this long (593 of 1,001): prompt and answer fit max_length 128


@TASKS.register("pos_tags")
def pos_tags(cache_dir: Path | None = None) -> Corpus:
    """Part-of-speech tagging as generation (593 WSJ sentences of <= 25 words): a sentence -> its Penn
    Treebank tags, one per word; answers of 20 to 50 tokens, the long-answer regime of instruction data."""
    raw = sources.tagged_sentences(cache_dir)
    template = TEMPLATES["pos_tags"]
    examples = [
        template.free_text({"sentence": " ".join(r["words"])}, " ".join(r["tags"]))
        for r in raw.records
        if len(r["words"]) <= POS_MAX_WORDS
    ]
    return _generative(examples, raw, template, {"max_words": POS_MAX_WORDS})


def _generative(examples: list, raw: sources.Raw, template, meta: dict | None = None) -> Corpus:
    return Corpus(examples, None, raw.source, raw.sha256, template.prompt, meta or {}, generative=True)
