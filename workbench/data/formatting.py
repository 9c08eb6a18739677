"""Prompt templates of the built-in tasks, kept as data.

A template is a `str.format` pattern over a record's fields that ends right before the answer; the
answer (a label word, a choice or free text) follows after one space, which belongs to the answer. A
free-text answer ends with ANSWER_STOP, a newline: trained on, it teaches generation where to stop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workbench.data.example import Example

ANSWER_STOP = "\n"  # what ends a free-text answer under a plain template (and where generation stops)


@dataclass(frozen=True)
class Template:
    """How a record becomes an Example."""

    prompt: str  # str.format pattern over the record's fields; ends right before the answer
    classes: tuple[str, ...] | None = None  # fixed label words (leading space included); None: choices vary

    def example(self, fields: Mapping[str, str], label: int, choices: Sequence[str] | None = None) -> Example:
        """Apply the template: `label` indexes `classes`, or `choices` when the template has no classes."""
        if self.classes is not None:
            candidates = self.classes
        elif choices is not None:
            candidates = tuple(answer_text(c) for c in choices)
        else:
            raise ValueError("a template without classes needs the record's choices")
        return Example(self.prompt.format(**fields), candidates, label)

    def free_text(self, fields: Mapping[str, str], answer: str) -> Example:
        """Apply the template to a generative record: `answer` is the one reference, ended by ANSWER_STOP."""
        return Example(self.prompt.format(**fields), (answer_text(answer),), 0, stop=ANSWER_STOP)


def answer_text(text: str) -> str:
    """A candidate as scored: stripped, with the one leading space that separates it from the prompt."""
    return " " + str(text).strip()


TEMPLATES: dict[str, Template] = {
    "polarity": Template("Review: {text}\nSentiment:", (" negative", " positive")),
    "strategyqa": Template("Question: {question}\nAnswer:", (" Yes", " No")),
    "social_iqa": Template("Context: {context}\nQuestion: {question}\nAnswer:"),
    "epistemic_reasoning": Template(
        "Premise: {premise}\nHypothesis: {hypothesis}\nRelation:", (" entailment", " non-entailment")
    ),
    # generative: free-text answers, scored by exact match of a greedy generation
    "spelling": Template("Misspelled word: {misspelling}\nCorrect spelling:"),
    "verb_forms": Template("Verb: {verb}\nThird person, present participle, past, past participle:"),
    "pos_tags": Template("Sentence: {sentence}\nPenn Treebank tags:"),
}
