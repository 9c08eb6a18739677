"""Bridges to the tools people already use (TensorBoard; the Hugging Face Trainer to come)."""
