"""TokenTune (Simoulin et al., EMNLP 2024): k random tokens per example get gradient.

config.py (TokenTuneOptions), selector.py (RandomCountSelector), method.py (the `tokentune` method: the
shared token-sparse mechanism of workbench/methods/token_sparse with this selector).
"""

from workbench.methods.tokentune.config import TokenTuneOptions
from workbench.methods.tokentune.method import TokenTune
from workbench.methods.tokentune.selector import RandomCountSelector

__all__ = ["RandomCountSelector", "TokenTune", "TokenTuneOptions"]
