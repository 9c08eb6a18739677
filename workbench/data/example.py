"""One scored example (a prompt and the candidate answers it is scored on), and a task's `Corpus` of them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """A prompt (template applied, ending right before the answer) and its candidate answers.

    Each candidate carries its leading space (" positive"), so `prompt + candidate` is the text the
    model reads. Training uses the gold candidate; accuracy is the argmax over all candidates of the
    answer's summed log-likelihood. A generative example has one candidate, its reference answer, and a
    `stop`: the text that ends the answer (a newline, or the end-of-turn token under a chat template),
    trained on after the answer so that greedy generation learns where to stop.
    """

    prompt: str
    candidates: tuple[str, ...]  # e.g. (" negative", " positive"), or the choices of one question
    label: int  # index of the gold candidate
    stop: str = ""  # generative examples: what follows the answer in training ("\n" or an end-of-turn token)

    def __post_init__(self) -> None:
        if not self.candidates or not all(c.strip() for c in self.candidates):
            raise ValueError(f"an example needs non-empty candidates, got {self.candidates!r}")
        if not 0 <= self.label < len(self.candidates):
            raise ValueError(f"label {self.label} out of range for {len(self.candidates)} candidates")

    @property
    def answer(self) -> str:
        """The gold candidate."""
        return self.candidates[self.label]


@dataclass(frozen=True)
class Corpus:
    """All examples of a task before the split, and where they came from."""

    examples: list[Example]
    classes: tuple[str, ...] | None  # fixed label words (leading space included); None: per-example choices
    source: str  # provenance: "package==version:member" or a local file path
    sha256: str  # of the file the examples were read from
    template: str | None = None  # the prompt template (None for local files, whose prompts come ready)
    meta: dict[str, object] = field(default_factory=dict)  # how candidates were built, layout, ...
    generative: bool = False  # free-text answers: scored by generation and exact match, nothing to rank
