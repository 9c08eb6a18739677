"""Causal-LM forward that computes the LM head only at the answer positions.

Every method runs through `answer_logits`, so no method carries the (B, n, vocab) logits in its saved
activations (49,152 wide for SmolLM2): that would hide the differences the workbench measures.

The decoder is the model's base model (LLaMA's `model.model`, GPT-2's `model.transformer`) and the head
its output embedding, with what the model's own forward does after it (Granite's and Cohere's logit
scaling, Gemma 2's logit soft-capping). `head_mismatch` checks on a probe that this equals the model's own
logits and that the model is causal (the loader refuses a model that fails it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.data.batch import Batch


def answer_logits(model: nn.Module, batch: Batch) -> torch.Tensor:
    """(N, vocab) logits at the N output positions of the batch (row-major order of `batch.output_mask`)."""
    hidden = model.base_model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    ).last_hidden_state  # (B, n, d)
    return head_logits(model, hidden[batch.output_mask])  # (N, vocab)


def head_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head on final hidden states (..., d) -> (..., vocab), as the model's own forward applies it."""
    logits = model.get_output_embeddings()(hidden)
    config = model.config
    scaling = getattr(config, "logits_scaling", None)  # Granite divides its logits
    if scaling is not None and scaling != 1:
        logits = logits / scaling
    scale = getattr(config, "logit_scale", None)  # Cohere multiplies them
    if scale is not None and scale != 1:
        logits = logits * scale
    cap = getattr(config, "final_logit_softcapping", None)  # Gemma 2 soft-caps them
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.no_grad()
def head_mismatch(model: nn.Module, length: int = 8) -> str | None:
    """Why `answer_logits` would not give `model`'s own next-token logits, or None when it does.

    One probe sequence of `length` tokens through the model's forward and through the decoder + head;
    and the same with its last token changed, which must leave the earlier positions unchanged (causal).
    `model` in eval mode (no dropout). Tolerances: 1e-4 relative in float32, 2e-2 in half precision.
    """
    embeddings = model.get_input_embeddings()
    vocab, device = embeddings.num_embeddings, embeddings.weight.device
    ids = ((torch.arange(length, device=device) * 37 + 5) % vocab)[None]  # (1, n)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % vocab
    own = model(input_ids=ids, use_cache=False).logits.float()  # (1, n, vocab)
    ours, again = (
        head_logits(model, model.base_model(input_ids=x, use_cache=False).last_hidden_state).float()
        for x in (ids, changed)
    )
    tol = 1e-4 if embeddings.weight.dtype in (torch.float32, torch.float64) else 2e-2
    scale = own.abs().max().item()
    if not torch.allclose(ours, own, rtol=tol, atol=tol * scale):
        gap = (ours - own).abs().max().item()
        return (
            f"its LM head does more than the workbench reproduces (output embedding, logit scaling, "
            f"soft-capping): the logits differ by up to {gap:.3g} (largest logit {scale:.3g})"
        )
    if not torch.allclose(again[:, :-1], ours[:, :-1], rtol=tol, atol=tol * scale):
        return "it is not causal: changing the last token changes the logits of earlier positions"
    return None


def answer_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens of the batch."""
    return F.cross_entropy(answer_logits(model, batch).float(), batch.targets)


def sequence_logprobs(model: nn.Module, batch: Batch) -> torch.Tensor:
    """(B,) summed log-probability of each example's answer tokens (for scoring candidates)."""
    logprobs = answer_logits(model, batch).float().log_softmax(-1)  # (N, vocab)
    token_lp = logprobs.gather(-1, batch.targets[:, None]).squeeze(-1)  # (N,)
    rows = batch.output_mask.nonzero()[:, 0]  # (N,) example index of each output position
    return torch.zeros(batch.size, device=token_lp.device).index_add_(0, rows, token_lp)
