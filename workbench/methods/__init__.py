"""Fine-tuning methods: one folder per method, discovered (workbench/methods/registry.py).

Each subpackage (`full/`, `lora/`, `sage/`, `tokentune/`, `smt/`, `spsft/`) registers one class that
implements the Method contract of `base.py` and declares its metadata; shared mechanisms live beside
them (`token_sparse/`: the sparse-block token selection SAGE and TokenTune compose; `gradient_phase.py`;
`base.swap_linears`). docs/ADDING_A_METHOD.md walks through adding one.
"""

from workbench.methods.registry import (
    METHODS,
    build_method,
    method_class,
    method_options_class,
    register_method,
)

__all__ = ["METHODS", "build_method", "method_class", "method_options_class", "register_method"]
