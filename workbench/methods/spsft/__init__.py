"""SPSFT: structured-pruning sparse fine-tuning (released later as SPruFT).

Score every output row (neuron) of each target linear (l2, taylor, class-aware qm_taylor or the
forward-only zo_taylor), keep the top r rows per linear and train them as a small W_f (r, d_in)
added into those rows by index; the product x W_f^T is never kept for backward, only x.

- config.py: `SPSFTOptions`
- importance.py: the row scores and their data phases
- layer.py: `RowSparseLinear` and its autograd Function
- method.py: the `SPSFT` method (registered as "spsft")
- report.py: the paper's Table 7 memory rows from measured bytes
"""

from workbench.methods.spsft.config import DEFAULT_RANK, IMPORTANCES, INITS, SPSFT_TARGETS, SPSFTOptions
from workbench.methods.spsft.layer import RowScatterAdd, RowSparseLinear
from workbench.methods.spsft.method import SPSFT
from workbench.methods.spsft.report import table7_memory

__all__ = [
    "DEFAULT_RANK",
    "IMPORTANCES",
    "INITS",
    "SPSFT",
    "SPSFT_TARGETS",
    "RowScatterAdd",
    "RowSparseLinear",
    "SPSFTOptions",
    "table7_memory",
]
