"""TokenTune (Simoulin et al., EMNLP 2024): backward through k random tokens per example (+ the output
tokens), the token-sparse mechanism with a random selector and the sparse backward in every block.

One random subset per example serves every block (per_block=False); the draw comes from the method's
generator, seeded by the run's seed.
"""

from __future__ import annotations

from workbench.methods.registry import register_method
from workbench.methods.token_sparse.method import TokenSparseMethod
from workbench.methods.tokentune.config import TokenTuneOptions
from workbench.methods.tokentune.selector import RandomCountSelector


@register_method
class TokenTune(TokenSparseMethod):
    """TokenTune (Simoulin et al., 2024): backward through k random tokens per example (+ output tokens)."""

    name = "tokentune"
    options_class = TokenTuneOptions
    table_options = ("fraction", "count")
    color = "#E69F00"
    tiny_options = {"r": 4, "fraction": 0.3}  # random selection: recorders must not disturb its generator
    options: TokenTuneOptions

    def __init__(self, options: TokenTuneOptions) -> None:
        super().__init__(
            options,
            lambda generator: RandomCountSelector(
                generator, fraction=options.fraction, count=options.count, per_block=options.per_block
            ),
        )
