"""How a generative task is scored: greedy generation, then exact match after one normalisation.

Generation reads the same prompt tokens as training and teacher-forced scoring (BOS, the prompt cut
from the left to leave room for the reference answer) and stops at the end-of-sequence token, at any
token holding a newline (a free-text answer ends with one in training), or after `max_new_tokens`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from workbench import lm  # module import: workbench.lm imports workbench.data while it loads
from workbench.data.batch import IGNORE_INDEX
from workbench.data.encoding import answer_token_ids, prompt_token_ids
from workbench.data.example import Example
from workbench.data.loader import collate, pad_token_id

_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_EDGE_PUNCTUATION = " \t.,;:!?\"'`"


def normalize_answer(text: str) -> str:
    """The text exact match compares (lm-evaluation-harness style, documented in docs/GENERATIVE.md):

    cut at the first newline; case folded; runs of whitespace made one space; surrounding whitespace,
    quotes and end punctuation (. , ; : ! ?) stripped; numbers written one way ("5,576", "+5576" and
    "5576.0" -> "5576"; "3.50" -> "3.5").
    """
    text = " ".join(text.split("\n", 1)[0].casefold().split()).strip(_EDGE_PUNCTUATION)
    return " ".join(_canonical_number(word) for word in text.split(" "))


def _canonical_number(word: str) -> str:
    if not _NUMBER.match(word):
        return word
    sign = "-" if word.startswith("-") else ""
    whole, _, fraction = word.lstrip("+-").replace(",", "").partition(".")
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
    number = f"{whole}.{fraction}" if fraction else whole
    return sign + number if number != "0" else number


def exact_match(generated: str, reference: str) -> bool:
    """True when the two answers are equal after `normalize_answer`."""
    return normalize_answer(generated) == normalize_answer(reference)


@functools.lru_cache(maxsize=4)
def stop_token_ids(tokenizer) -> frozenset[int]:
    """The end-of-sequence id and every id whose text holds a newline: generation stops after them."""
    vocab = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(vocab)])
    stops = {i for i, text in enumerate(texts) if "\n" in text}
    eos = getattr(tokenizer, "eos_token_id", None)
    return frozenset(stops | ({int(eos)} if eos is not None else set()))


@torch.no_grad()
def greedy_generate(
    model: nn.Module,
    prompts: Sequence[list[int]],
    *,
    max_new_tokens: int,
    stop_ids: frozenset[int],
    pad_id: int,
    device: torch.device | str,
) -> list[list[int]]:
    """Greedy continuations of token-id `prompts` (left-padded into one batch), with the key/value cache.

    Each continuation ends with its first stop id, or has `max_new_tokens` ids. The logits come from
    the decoder + `lm.head_logits`, as in training and scoring. The caller sets eval mode.
    """
    batch = collate([(p, [IGNORE_INDEX] * len(p)) for p in prompts], pad_id, "left").to(device)
    ids, mask, positions = batch.input_ids, batch.attention_mask, batch.position_ids
    stops = torch.tensor(sorted(stop_ids), device=device, dtype=torch.long)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    out: list[list[int]] = [[] for _ in prompts]
    cache = None
    for _ in range(max_new_tokens):
        result = model.base_model(
            input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
        )
        cache = result.cache
        next_ids = lm.head_logits(model, result.last_hidden_state[:, -1]).argmax(-1)  # (B,)
        for row, token in enumerate(next_ids.tolist()):
            if not done[row]:
                out[row].append(token)
        done |= torch.isin(next_ids, stops)
        if bool(done.all()):
            break
        ids = next_ids[:, None]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
    return out


def generate_answers(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    max_length: int,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device | str,
    progress: bool = True,
) -> list[str]:
    """The greedy answer to each example's prompt, decoded (special tokens dropped, cut at a newline)."""
    prompts = [
        prompt_token_ids(tokenizer, e, max_length, len(answer_token_ids(tokenizer, e))) for e in examples
    ]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths pad little
    answers = [""] * len(prompts)
    stops, pad_id = stop_token_ids(tokenizer), pad_token_id(tokenizer)
    with tqdm(total=len(order), desc="generate", leave=False, disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            generated = greedy_generate(
                model,
                [prompts[i] for i in chunk],
                max_new_tokens=max_new_tokens,
                stop_ids=stops,
                pad_id=pad_id,
                device=device,
            )
            for i, ids in zip(chunk, generated, strict=True):
                answers[i] = tokenizer.decode(ids, skip_special_tokens=True).split("\n", 1)[0]
            bar.update(len(chunk))
    return answers
