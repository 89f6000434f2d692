"""Tiny Stable-Diffusion-1.5- and SDXL-shaped pipelines, built offline, for tests
and benchmarks.

Same component classes and folder layout as SD 1.5 (or SDXL), a few million
parameters in all: training and generation code runs on them unchanged, in
seconds on a CPU.
Its weights are random, so its images are noise; only their determinism and
their response to a LoRA mean anything.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from training.ml.family import SD1, SDXL
from training.ml.shapes import (
    TINY_SDXL_UNET,
    TINY_SDXL_VAE,
    TINY_TEXT,
    TINY_TEXT_2,
    TINY_UNET,
    TINY_VAE,
    assemble_pipeline,
    assemble_sdxl_pipeline,
)

# Files whose presence marks a finished build; the folder appears by rename,
# so a half-written one is never seen under the final name.
_REQUIRED = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
)


_REQUIRED_SDXL = (
    *_REQUIRED,
    "text_encoder_2/config.json",
    "tokenizer_2/tokenizer_config.json",
)
FAMILIES = (SD1, SDXL)


def is_complete(folder: Path, family: str = SD1) -> bool:
    required = _REQUIRED_SDXL if family == SDXL else _REQUIRED
    return all((folder / name).is_file() for name in required)


def build_tiny_pipeline(dest: Path, seed: int = 0, family: str = SD1) -> Path:
    """Write the tiny pipeline of `family` ("sd1" or "sdxl") to `dest` (unless it
    is already there) and return `dest`.

    Deterministic for a given seed and library versions. Safe to call from two
    processes at once: each builds in its own temporary folder and the first
    rename wins.
    """
    if family not in FAMILIES:
        raise ValueError(f"No tiny {family!r} pipeline; use one of {FAMILIES}.")
    dest = Path(dest)
    if is_complete(dest, family):
        return dest
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(
            f"{dest} exists and is not a tiny pipeline; not overwriting."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        _tiny_pipeline(seed, family).save_pretrained(scratch, safe_serialization=True)
        try:
            scratch.replace(dest)  # replaces an empty `dest` too
        except OSError:
            if not is_complete(
                dest, family
            ):  # lost the race to a build that is not done
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def _tiny_pipeline(seed: int, family: str):  # -> a diffusers pipeline
    if family == SDXL:
        return assemble_sdxl_pipeline(
            TINY_SDXL_UNET, TINY_SDXL_VAE, TINY_TEXT, TINY_TEXT_2, seed=seed
        )
    return assemble_pipeline(TINY_UNET, TINY_VAE, TINY_TEXT, seed=seed)
