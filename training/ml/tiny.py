"""A tiny Stable-Diffusion-1.5-shaped pipeline, built offline, for tests and benchmarks.

Same component classes and folder layout as SD 1.5, about 2 M parameters in
all: training and generation code runs on it unchanged, in seconds on a CPU.
Its weights are random, so its images are noise; only their determinism and
their response to a LoRA mean anything.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from training.ml.shapes import TINY_TEXT, TINY_UNET, TINY_VAE, assemble_pipeline

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


def is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED)


def build_tiny_pipeline(dest: Path, seed: int = 0) -> Path:
    """Write the tiny pipeline to `dest` (unless it is already there) and return `dest`.

    Deterministic for a given seed and library versions. Safe to call from two
    processes at once: each builds in its own temporary folder and the first
    rename wins.
    """
    dest = Path(dest)
    if is_complete(dest):
        return dest
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(
            f"{dest} exists and is not a tiny pipeline; not overwriting."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        _tiny_pipeline(seed).save_pretrained(scratch, safe_serialization=True)
        try:
            scratch.replace(dest)  # replaces an empty `dest` too
        except OSError:
            if not is_complete(dest):  # lost the race to a build that is not done
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def _tiny_pipeline(seed: int):  # -> StableDiffusionPipeline
    return assemble_pipeline(TINY_UNET, TINY_VAE, TINY_TEXT, seed=seed)
