"""TokenTune's options (they extend the token-sparse options: LoRA's adapter settings and the base)."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.methods.token_sparse.options import TokenSparseOptions
from workbench.validation import require


@dataclass
class TokenTuneOptions(TokenSparseOptions):
    """TokenTune (Simoulin et al., EMNLP 2024): backward through k random tokens per example.

    Set exactly one of `fraction` and `count`. Output tokens are always kept, on top of the k.
    """

    # Share of each example's real (non-padding) tokens kept for backward, k = ceil(fraction * length).
    fraction: float | None = 0.3
    # Or a fixed number k of kept tokens per example (capped at the example's length); set fraction = None.
    count: int | None = None
    # False (TokenTune): one random subset per example, used by every block. True: a fresh draw per block
    # (SAGE's "random" ablation draws per block; use `sage` with metric = "random" for its budget rule).
    per_block: bool = False

    def validate(self) -> None:
        super().validate()
        require(
            (self.fraction is None) != (self.count is None),
            "set exactly one of method.fraction and method.count "
            f"(got fraction={self.fraction}, count={self.count})",
        )
        if self.fraction is not None:
            require(0.0 < self.fraction <= 1.0, f"method.fraction must be in (0, 1], got {self.fraction}")
        if self.count is not None:
            require(self.count >= 1, f"method.count must be >= 1, got {self.count}")
