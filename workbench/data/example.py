"""One scored example: a prompt and the candidate answers it is scored on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """A prompt (template applied, ending right before the answer) and its candidate answers.

    Each candidate carries its leading space (" positive"), so `prompt + candidate` is the text the
    model reads. Training uses the gold candidate; accuracy is the argmax over all candidates of the
    answer's summed log-likelihood.
    """

    prompt: str
    candidates: tuple[str, ...]  # e.g. (" negative", " positive"), or the choices of one question
    label: int  # index of the gold candidate

    def __post_init__(self) -> None:
        if not self.candidates or not all(c.strip() for c in self.candidates):
            raise ValueError(f"an example needs non-empty candidates, got {self.candidates!r}")
        if not 0 <= self.label < len(self.candidates):
            raise ValueError(f"label {self.label} out of range for {len(self.candidates)} candidates")

    @property
    def answer(self) -> str:
        """The gold candidate."""
        return self.candidates[self.label]
