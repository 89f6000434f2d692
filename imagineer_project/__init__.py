"""Imagineer: from a website, an upload or an old folder to a trained LoRA."""

__version__ = "0.1.0"
