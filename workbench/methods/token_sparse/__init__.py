"""Token-sparse training, the mechanism SAGE and TokenTune compose (not a method of its own).

saliency.py (pure per-block saliency metrics), budget.py (budget rules, top-p selection, the selector
contract), block.py (the sparse block forwards and the layer wrapper), options.py (LoRA's options plus
the base), method.py (`TokenSparseMethod`: the Method contract once, given a selector).
"""
