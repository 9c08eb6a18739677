"""An offline byte-level tokenizer for the tiny test models: no training, no download.

Every UTF-8 byte is one token (a byte-level BPE with an empty merge list), so any text round-trips
exactly and the vocabulary is fixed: 3 specials + 256 bytes = 259 ids, inside `tiny.TINY_VOCAB`.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

# Ids match the tiny configs (pad_token_id=0, bos_token_id=1, eos_token_id=2).
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
BYTE_VOCAB_SIZE = len(SPECIAL_TOKENS) + 256


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: <pad>=0, <bos>=1, <eos>=2, then the 256 bytes at ids 3..258.

    Like SmolLM2's tokenizer it adds no BOS/EOS when encoding; prompt formatting decides that.
    Padding is on the right, as the workbench's batches expect.
    """
    # The byte-level alphabet maps each of the 256 bytes to one printable character; the
    # pre-tokenizer and decoder below use the same mapping, so encode/decode are exact inverses.
    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet(), key=_byte_of)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({char: len(SPECIAL_TOKENS) + i for i, char in enumerate(byte_chars)})

    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # use_regex=False: with no merges the word split changes nothing, so skip it.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        padding_side="right",
    )


def _byte_of(char: str) -> int:
    """The byte a byte-level alphabet character stands for (GPT-2's bytes_to_unicode, inverted)."""
    code = ord(char)
    # Printable Latin-1 bytes map to themselves; the other 68 bytes were shifted to 256 + k in byte order.
    return code if code < 256 else _SHIFTED_BYTES[code - 256]


# The bytes GPT-2's mapping shifts above 255, in order: everything outside the printable ranges.
_PRINTABLE = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)}
_SHIFTED_BYTES = [b for b in range(256) if b not in _PRINTABLE]
