"""Stable Diffusion LoRA training and generation: torch, diffusers and peft live here.

Nothing in this package imports Django, and importing it does not import
torch: the heavy libraries load inside the functions that use them. Callers
pass plain dataclasses and paths (see `config.py`) and get metrics and paths
back. See docs/training-ml.md.
"""
