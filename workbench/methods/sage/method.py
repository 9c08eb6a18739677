"""SAGE (Kim & Lee, ACL 2025): saliency-guided sparse backward, the token-sparse mechanism with SAGE's
selector (attention saliency from the output tokens, the tau / n_min budget) and, optionally, the sparse
forward in the deepest `align_layers` blocks.

Decisions (where the paper leaves room, or where we depart from the authors' code):
- The budget p of Eq. 4 counts only by saliency; the output tokens Y come on top (S = Top-p(u) | Y).
  Their own scores stay in u (they attend to themselves).
- Budget: p_b per example (paper: smallest p >= n_min reaching tau; `budget_rule="authors"` reproduces the
  released off-by-one rule), the batch keeps p = max_b p_b per example, capped at each example's length.
  Ties go to the lowest position (no argsort-tie "first four tokens").
- Aligned blocks (the deepest `align_layers`) run the same selection per block, but among the tokens that
  passed the previous aligned block (Sec. 3.3: "the same procedures compose another S" in every block;
  Sec. 3.4: only salient tokens "proceed through the blocks"), so the sets nest and the bypassed tokens
  are neither updated nor attended to further on. Scores there are normalised over those tokens.
- Defaults: tau 0.9 and the LoRA baseline's adapter settings; n_min 8; align_layers 0 (see SageOptions).
"""

from __future__ import annotations

from workbench.methods.registry import register_method
from workbench.methods.sage.config import SageOptions
from workbench.methods.sage.selector import SaliencySelector
from workbench.methods.token_sparse.method import TokenSparseMethod


@register_method
class SAGE(TokenSparseMethod):
    """Saliency-guided sparse backward (Kim & Lee, ACL 2025) on LoRA (default) or full weights."""

    name = "sage"
    options_class = SageOptions
    table_options = ("metric", "tau", "n_min", "align_layers")
    color = "#D55E00"
    tiny_options = {"r": 4, "n_min": 2, "tau": 0.5, "align_layers": 1}
    options: SageOptions

    def __init__(self, options: SageOptions) -> None:
        super().__init__(
            options,
            lambda generator: SaliencySelector(
                options.metric,
                options.tau,
                options.n_min,
                options.budget_rule,
                generator,
                budget=options.budget,
                p=options.p,
                keep_first=options.keep_first,
                output_rows=options.output_rows,
                force_outputs=options.force_outputs,
            ),
            align_layers=options.align_layers,
        )
