"""Causal-LM forward that computes the LM head only at the answer positions.

Every method runs through `answer_logits`, so no method carries the (B, n, vocab) logits in its saved
activations (49,152 wide for SmolLM2): that would hide the differences the workbench measures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.data.batch import Batch


def answer_logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    """(N, vocab) logits at the N output positions of the batch (row-major order of `batch.output_mask`)."""
    hidden = model.model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    ).last_hidden_state  # (B, n, d)
    return model.lm_head(hidden[batch.output_mask])  # (N, vocab)


def answer_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens of the batch."""
    return F.cross_entropy(answer_logits(model, batch).float(), batch.targets)


def sequence_logprobs(model: nn.Module, batch: Batch) -> torch.Tensor:
    """(B,) summed log-probability of each example's answer tokens (for scoring candidates)."""
    logprobs = answer_logits(model, batch).float().log_softmax(-1)  # (N, vocab)
    token_lp = logprobs.gather(-1, batch.targets[:, None]).squeeze(-1)  # (N,)
    rows = batch.output_mask.nonzero()[:, 0]  # (N,) example index of each output position
    return torch.zeros(batch.size, device=token_lp.device).index_add_(0, rows, token_lp)
