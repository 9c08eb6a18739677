"""SMT: sparse sub-matrix tuning (He et al., ICLR 2025).

config.py (SMTOptions), scoring.py (block scores, budget, top-k), layer.py (SparseBlockLinear),
method.py (the SMT method, registered as "smt").
"""

from workbench.methods.smt.config import SMTOptions
from workbench.methods.smt.layer import SparseBlockLinear
from workbench.methods.smt.method import SMT

__all__ = ["SMT", "SMTOptions", "SparseBlockLinear"]
