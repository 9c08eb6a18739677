"""Fixtures for the data tests: an offline byte-level tokenizer and a tiny model.

`byte_tokenizer` is built without training or downloads: ids 0-2 are <pad>, <s>, </s> (matching
workbench.models.tiny), ids 3-258 the 256 bytes; the vocabulary (259) fits the tiny models' 384.
"""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<s>", "</s>")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters, the alphabet of the ByteLevel pre-tokenizer."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def make_byte_tokenizer(add_bos: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (one token per byte); `add_bos` makes it prepend <s> like Llama-2's."""
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for byte, char in _bytes_to_unicode().items():
        vocab[char] = len(SPECIALS) + byte
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))  # no merges: every byte stays one token
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="session")
def byte_tokenizer() -> PreTrainedTokenizerFast:
    return make_byte_tokenizer()


@pytest.fixture(scope="session")
def bos_tokenizer() -> PreTrainedTokenizerFast:
    return make_byte_tokenizer(add_bos=True)


@pytest.fixture
def tiny_lm():
    from workbench.models.tiny import tiny_model

    return tiny_model("llama")
