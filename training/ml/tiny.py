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
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _byte_level_tokenizer()
    # fork_rng keeps the caller's global RNG stream untouched by our seeding.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # Attention only at the low-resolution level, as in diffusers' own
        # tests: the same code paths as SD 1.5 at a quarter of the step time.
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            layers_per_block=1,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                max_position_embeddings=77,
                projection_dim=32,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # without it the pipeline warns about an outdated config
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _byte_level_tokenizer():  # -> CLIPTokenizer
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
