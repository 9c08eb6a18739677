"""SAGE (saliency-guided sparse backward) and TokenTune, sharing one sparse-block mechanism.

Files: config.py (options), saliency.py (pure per-block saliency metrics), budget.py (how many tokens,
which ones: the selectors), block.py (the sparse block forwards and the layer wrapper), method.py (the
registered methods `sage` and `tokentune`).
"""

from workbench.methods.sage.config import SageOptions, TokenTuneOptions
from workbench.methods.sage.method import SAGE, TokenTune
from workbench.methods.sage.saliency import attention_saliency

__all__ = ["SAGE", "SageOptions", "TokenTune", "TokenTuneOptions", "attention_saliency"]
