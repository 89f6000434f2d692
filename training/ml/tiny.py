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
    from training.ml.shapes import TINY_TEXT, TINY_UNET, TINY_VAE, assemble_pipeline

    return assemble_pipeline(TINY_UNET, TINY_VAE, TINY_TEXT, seed=seed)


def byte_level_tokenizer():  # -> CLIPTokenizer
    """A CLIP tokenizer with one token per byte (and per word-final byte), no merges.

    CLIP's real vocabulary is a 49k-line download; this one is built in code,
    tokenizes any text, and keeps the same special tokens and 77-token limit.
    """
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _byte_symbols() -> list[str]:
    """The printable stand-in that byte-level BPE (GPT-2, CLIP) uses for each byte.

    Printable Latin-1 bytes stand for themselves; the rest (controls, space,
    soft hyphen...) are shifted to code points from 256 up, in byte order.
    """
    printable = {
        *range(ord("!"), ord("~") + 1),
        *range(0xA1, 0xAD),
        *range(0xAE, 0x100),
    }
    symbols, shifted = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols
