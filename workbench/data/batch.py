"""The batch every method, recorder and the loop agree on."""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100  # label value of positions that carry no loss (prompt and padding)


@dataclass
class Batch:
    """A padded batch of causal-LM examples.

    `labels[b, t]` is the token at t when t belongs to the answer, else IGNORE_INDEX; the loss at t is
    predicted from position t - 1 (the usual causal shift). Padding may be on either side.
    """

    input_ids: torch.Tensor  # (B, n) long
    attention_mask: torch.Tensor  # (B, n) long, 1 = real token, 0 = padding
    labels: torch.Tensor  # (B, n) long, IGNORE_INDEX outside the answer
    example_ids: tuple[int, ...] = ()  # indices of the examples in their split (for probes and recorders)

    @property
    def position_ids(self) -> torch.Tensor:
        """(B, n) positions counted over real tokens only, so left padding keeps RoPE positions right."""
        return (self.attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    @property
    def output_mask(self) -> torch.Tensor:
        """(B, n) bool: positions whose next-token prediction is in the loss (SAGE's output tokens Y)."""
        mask = torch.zeros_like(self.labels, dtype=torch.bool)
        mask[:, :-1] = self.labels[:, 1:] != IGNORE_INDEX
        return mask

    @property
    def targets(self) -> torch.Tensor:
        """(N,) the tokens predicted at the output positions, in row-major order of `output_mask`."""
        return self.labels[:, 1:][self.labels[:, 1:] != IGNORE_INDEX]

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            self.example_ids,
        )
