"""SAGE: saliency-guided sparse backward (Kim & Lee, ACL 2025).

config.py (SageOptions), selector.py (SaliencySelector: metric, then the budget rule), method.py (the
`sage` method: the shared token-sparse mechanism of workbench/methods/token_sparse with this selector).
"""

from workbench.methods.sage.config import SageOptions
from workbench.methods.sage.method import SAGE
from workbench.methods.sage.selector import SaliencySelector

__all__ = ["SAGE", "SageOptions", "SaliencySelector"]
