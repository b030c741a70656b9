"""transmiter: adapt CLIP-style models and transfer the adaptation from a weak model to a strong one."""

__version__ = "0.1.0"
