"""SMT options: which projections compete for blocks, how many blocks, and how they are chosen."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.models.anatomy import ATTENTION_LINEARS, LINEAR_NAMES, MLP_LINEARS
from workbench.validation import Validated, require

SMT_TARGETS = {
    "qkv": ("q_proj", "k_proj", "v_proj"),  # the paper's choice (Sec. 5.1: attention beats MLP, V wins)
    "q": ("q_proj",),  # one projection alone: the paper's Table 6
    "k": ("k_proj",),
    "v": ("v_proj",),
    "qkvo": ATTENTION_LINEARS,
    "qkv_mlp": ("q_proj", "k_proj", "v_proj", *MLP_LINEARS),  # everything but o: the paper's Table 4
    "mlp": MLP_LINEARS,  # MLP only: the paper's attention-vs-MLP ablation
    "all": LINEAR_NAMES,  # q, k, v, o, gate, up, down
}
SCORES = ("mean_abs", "abs_mean", "l1", "l2")
# gradient (GW, the paper's), activation (AW: input norms, no backward), random (Table 9's control: blocks
# drawn uniformly with the run's seed, no warm-up)
SELECTIONS = ("gradient", "activation", "random")
# global: one top-k over every target (the paper's); per_matrix: each matrix its share of k by size;
# per_matrix_equal: the same number of blocks in every matrix (the authors' n blocks per matrix)
SCOPES = ("global", "per_matrix", "per_matrix_equal")
# targets: the warm-up tunes only the target matrices (cheaper); model: it tunes the whole model, as the
# authors' code does (the warm-up then costs what full fine-tuning costs)
WARMUP_SCOPES = ("targets", "model")
BLOCK_SIZE_CANDIDATES = (256, 128, 64, 32)  # default block size: the largest dividing every target dim


def _accepted(values: object) -> str:
    return ", ".join(values)


@dataclass
class SMTOptions(Validated):
    """Sparse sub-matrix tuning (He et al., ICLR 2025): train the top-scoring b x b blocks of the targets."""

    targets: str = "qkv"  # qkv | q | k | v | qkvo | qkv_mlp | mlp | all: the projections whose blocks compete
    # Trainable parameters as a fraction of ALL the model's parameters (the paper's "#Params%"): blocks =
    # floor(budget * total / b^2), at least 1. 0.005 is the paper's z = 0.5%; its LoRA-matched runs use
    # 0.84% (LLaMA-7B). To match a LoRA run, set budget = lora_trainable / total (or budget_blocks).
    budget: float = 0.005
    budget_blocks: int | None = None  # exact block count; overrides `budget` when set
    # Separate fraction for gate/up/down when the targets include them (their own top-k pool, as in the
    # authors' num_submatrix_mlp). None: MLP blocks compete with attention blocks in the one `budget` pool.
    mlp_budget: float | None = None
    block_size: int | None = None  # b; None: the largest of 256, 128, 64, 32 dividing every target dim
    # warm-up steps (paper: 100 on Commonsense, 25-30 on Math10K); each a training step as the run takes
    # them: train.grad_accum micro-batches, clipping, the run's schedule over the warm-up's steps
    warmup_steps: int = 100
    update_during_warmup: bool = True  # warm-up steps update weights (AdamW), as the authors' code does
    warmup_scope: str = "targets"  # targets | model: what the warm-up updates (the authors: the whole model)
    # AdamW lr of the warm-up updates. The authors' script fine-tunes at 9.65e-6 during the warm-up and
    # trains the blocks at 1e-4; a full-matrix update at the blocks' lr would wreck a small model.
    # None: the run's learning rate.
    warmup_lr: float | None = 1e-5
    score: str = "mean_abs"  # mean_abs = |mean(G_block)| (paper's best, "SMT-2") | abs_mean | l1 | l2
    # gradient (GW, the paper's) | activation (AW: whole input channels by mean |x|, as the authors' code;
    # trained at the block size as column blocks of every row) | random (Table 9's control)
    selection: str = "gradient"
    scope: str = "global"  # global top-k (paper) | per_matrix (share by size) | per_matrix_equal (n each)

    def validate(self) -> None:
        require(
            self.targets in SMT_TARGETS,
            f"unknown SMT targets {self.targets!r}; accepted: {_accepted(SMT_TARGETS)}",
        )
        require(self.score in SCORES, f"unknown SMT score {self.score!r}; accepted: {_accepted(SCORES)}")
        require(
            self.selection in SELECTIONS,
            f"unknown SMT selection {self.selection!r}; accepted: {_accepted(SELECTIONS)}",
        )
        require(self.scope in SCOPES, f"unknown SMT scope {self.scope!r}; accepted: {_accepted(SCOPES)}")
        require(
            0 < self.budget <= 1,
            f"method.budget must be a fraction of the model's parameters in (0, 1], got {self.budget}",
        )
        require(
            self.mlp_budget is None or 0 < self.mlp_budget <= 1,
            f"method.mlp_budget must be in (0, 1] or None, got {self.mlp_budget}",
        )
        require(
            self.budget_blocks is None or self.budget_blocks >= 1,
            f"method.budget_blocks must be >= 1 or None, got {self.budget_blocks}",
        )
        require(
            self.block_size is None or self.block_size >= 1,
            f"method.block_size must be >= 1 or None, got {self.block_size}",
        )
        require(
            self.warmup_lr is None or self.warmup_lr > 0,
            f"method.warmup_lr must be > 0 or None, got {self.warmup_lr}",
        )
        require(
            self.warmup_scope in WARMUP_SCOPES,
            f"unknown SMT warmup_scope {self.warmup_scope!r}; accepted: {_accepted(WARMUP_SCOPES)}",
        )
        require(
            self.warmup_scope == "targets" or (self.selection == "gradient" and self.update_during_warmup),
            "method.warmup_scope='model' tunes the whole model during a gradient warm-up; it needs "
            f"selection='gradient' and update_during_warmup=true (got selection={self.selection!r}, "
            f"update_during_warmup={self.update_during_warmup})",
        )
        why = {
            "gradient": "gradient selection sums the gradients of that many warm-up steps",
            "activation": "activation selection averages the input norms of that many batches",
            "random": "random selection runs no warm-up but keeps the option's meaning",
        }[self.selection]
        require(self.warmup_steps >= 1, f"method.warmup_steps must be >= 1 ({why}), got {self.warmup_steps}")

    @property
    def target_names(self) -> tuple[str, ...]:
        """Projection names the options target, in the order blocks are listed."""
        return SMT_TARGETS[self.targets]
