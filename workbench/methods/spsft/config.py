"""SPSFT options: how many rows per linear, how they are scored, which linears, how W_f starts."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.models.anatomy import LINEAR_NAMES, MLP_LINEARS, ModelAnatomy
from workbench.validation import Validated, require

SPSFT_TARGETS = {
    "all": LINEAR_NAMES,  # q, k, v, o, gate, up, down of every block (the paper's "SPSFT")
    "mlp": MLP_LINEARS,  # the paper's "FA-SPSFT": freeze attention, tune gate/up/down only
}
# l2 / l1: row norms of W (no data); random: a uniform draw with the run's seed (the control); wanda:
# sum_j |W_ij| ||X_j|| (Wanda's weight metric summed over the row, input norms from a few batches);
# taylor, qm_taylor, zo_taylor: the paper's gradient-based scores
IMPORTANCES = ("l2", "l1", "random", "wanda", "taylor", "qm_taylor", "zo_taylor")
INITS = ("zeros", "kaiming")
# per_linear: each target linear its top r rows (the paper's); global: the same total number of rows, the
# best over every target linear together (a linear may get none; scores must then be comparable across
# linears, which weight norms roughly are and gradient scores are)
RANKINGS = ("per_linear", "global")

# W_f has r x d_in entries per linear where LoRA has r x (d_in + d_out), so the paper pairs SPSFT r = 2k
# with LoRA r = k (Table 8: LoRA r=16 40.0M params vs SPSFT r=32 36.4M on Llama-2-7B). On SmolLM2-135M,
# r=32 on all linears gives 32 x 4,992 = 160k params per block against LoRA r=16's 163k.
DEFAULT_RANK = 32


@dataclass
class SPSFTOptions(Validated):
    """Structured-pruning sparse fine-tuning: train r selected output rows (neurons) of each target linear."""

    rank: int | None = None  # rows tuned per linear; rank and ratio both unset -> DEFAULT_RANK (32)
    ratio: float | None = None  # alternative to rank: fraction of each linear's rows, in (0, 1]
    importance: str = (
        "l2"  # l2 | l1 | random | wanda | taylor | qm_taylor | zo_taylor; l2: the paper's LLM choice
    )
    importance_batches: int = 8  # batches scored by taylor / zo_taylor / wanda; per class for qm_taylor
    ranking: str = "per_linear"  # per_linear | global: rows ranked within each linear or over all of them
    targets: str = "all"  # all | mlp ("FA": freeze attention)
    init: str = "zeros"  # zeros (the paper: step-0 model = base) | kaiming (the authors' code)
    zo_eps: float = 1e-3  # zo_taylor: perturbation size of the weights (the authors' value)
    zo_directions: int = 1  # zo_taylor: random directions per batch (2 forwards each)

    def validate(self) -> None:
        require(
            self.rank is None or self.ratio is None,
            f"set only one of method.rank ({self.rank}) and method.ratio ({self.ratio})",
        )
        if self.rank is None and self.ratio is None:
            self.rank = DEFAULT_RANK  # resolved here so the run's saved config states the rank used
        require(self.rank is None or self.rank >= 1, f"method.rank must be >= 1, got {self.rank}")
        require(
            self.ratio is None or 0 < self.ratio <= 1, f"method.ratio must be in (0, 1], got {self.ratio}"
        )
        require(
            self.importance in IMPORTANCES,
            f"unknown SPSFT importance {self.importance!r}; accepted: {', '.join(IMPORTANCES)}",
        )
        require(
            self.importance_batches >= 1,
            f"method.importance_batches must be >= 1, got {self.importance_batches}",
        )
        require(
            self.targets in SPSFT_TARGETS,
            f"unknown SPSFT targets {self.targets!r}; accepted: {', '.join(SPSFT_TARGETS)}",
        )
        require(
            self.ranking in RANKINGS,
            f"unknown SPSFT ranking {self.ranking!r}; accepted: {', '.join(RANKINGS)}",
        )
        require(self.init in INITS, f"unknown SPSFT init {self.init!r}; accepted: {', '.join(INITS)}")
        require(self.zo_eps > 0, f"method.zo_eps must be > 0, got {self.zo_eps}")
        require(self.zo_directions >= 1, f"method.zo_directions must be >= 1, got {self.zo_directions}")

    @property
    def target_names(self) -> tuple[str, ...]:
        """Projection names tuned in every block."""
        return SPSFT_TARGETS[self.targets]

    def rows_for(self, out_features: int) -> int:
        """Rows r tuned in a linear with `out_features` output rows (ratio: rounded, at least 1)."""
        if self.ratio is not None:
            return min(out_features, max(1, round(self.ratio * out_features)))
        return self.rank

    def check(self, anatomy: ModelAnatomy) -> None:
        """A rank above a target's output width is a ConfigError naming the layer and its width."""
        if self.rank is None or self.ranking == "global":
            return  # a ratio always fits; a global ranking asks only for a total (rank x linears) of rows
        shapes = anatomy.linear_shapes()
        for name in self.target_names:
            out_features = shapes[name][0]
            require(
                self.rank <= out_features,
                f"method.rank={self.rank} exceeds the output width of {name} ({out_features} rows, "
                f"{anatomy.blocks[0].linear_path(name) if anatomy.blocks else name}); use rank <= "
                f"{min(shapes[n][0] for n in self.target_names)} or a ratio",
            )
