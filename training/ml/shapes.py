"""Component shapes of Stable Diffusion 1.5, SDXL and of their tiny test models,
and the functions that assemble random-weight pipelines from them.

The tiny models (training.ml.tiny) and the benchmarks (bench/train.py,
bench/generate.py) build from these, so "the SD 1.5 shape" and "the SDXL
shape" mean one thing each.
"""

from __future__ import annotations

from typing import Any

SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
# Attention only at the low-resolution level, as in diffusers' own tests: the
# same code paths as SD 1.5 at a quarter of the step time.
TINY_UNET: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
}
TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "latent_channels": 4,
    "sample_size": 64,
}
# CLIP ViT-L/14's text tower, as in SD 1.5 (with the byte-level vocabulary the
# embedding table is the only difference).
SD15_TEXT: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
TINY_TEXT: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
    "projection_dim": 32,
}

# SDXL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0's configs). The UNet
# has no attention at the highest resolution, 1/2/10 transformer layers per
# level, 64-wide heads, and conditions on te1 (768) ++ te2 (1280) = 2048 wide
# states plus the "text_time" embedding: 6 size ids x 256 + 1280 pooled = 2816.
SDXL_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": (
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    ),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SDXL_TEXT: dict[str, Any] = {  # CLIP ViT-L/14, as SD 1.5's
    **SD15_TEXT,
}
SDXL_TEXT_2: dict[str, Any] = {  # OpenCLIP ViT-bigG/14, with its projection
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "max_position_embeddings": 77,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}
SDXL_VAE: dict[str, Any] = {
    **SD15_VAE,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
# The tiny SDXL: SDXL's structure (no attention at the top level, two
# transformer layers at the next, linear projections, text_time embedding)
# at test size. The two text encoders differ in width (32 and 64) so their
# order in the 96-wide context is visible; 6 x 8 time ids + the 32-wide pooled
# projection = 80.
TINY_TEXT_2: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "gelu",
}
TINY_SDXL_UNET: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2),
    "attention_head_dim": (2, 4),
    "cross_attention_dim": 32 + 64,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 6 * 8 + 32,
    "norm_num_groups": 32,
}
TINY_SDXL_VAE: dict[str, Any] = {
    **TINY_VAE,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}


def _text_config(tokenizer: Any, text: dict[str, Any]) -> Any:  # CLIPTextConfig
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **text,
    )


def _random_models(
    unet: dict[str, Any],
    vae: dict[str, Any],
    texts: list[tuple[Any, dict[str, Any]]],
    *,
    seed: int,
    device: str,
) -> tuple[Any, Any, Any, list[Any]]:
    """The byte-level tokenizer and random UNet, VAE and text encoders (each
    `(class, shape)` of `texts`), drawn in that order from `seed`."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from training.ml.tokenizer import byte_level_tokenizer

    tokenizer = byte_level_tokenizer()
    # fork_rng keeps the caller's global RNG stream untouched by our seeding.
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        unet_model = UNet2DConditionModel(**unet)
        vae_model = AutoencoderKL(**vae)
        encoders = [cls(_text_config(tokenizer, shape)) for cls, shape in texts]
    return tokenizer, unet_model, vae_model, encoders


def assemble_pipeline(
    unet: dict[str, Any],
    vae: dict[str, Any],
    text: dict[str, Any],
    *,
    seed: int = 0,
    device: str = "cpu",
) -> Any:  # StableDiffusionPipeline
    """A random-weight pipeline of these shapes, seeded, with the offline
    byte-level tokenizer and SD 1.5's DDIM schedule."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    tokenizer, unet_model, vae_model, (text_encoder,) = _random_models(
        unet, vae, [(CLIPTextModel, text)], seed=seed, device=device
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
        vae=vae_model,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet_model,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def assemble_sdxl_pipeline(
    unet: dict[str, Any],
    vae: dict[str, Any],
    text: dict[str, Any],
    text_2: dict[str, Any],
    *,
    seed: int = 0,
    device: str = "cpu",
) -> Any:  # StableDiffusionXLPipeline
    """A random-weight SDXL pipeline of these shapes, seeded, with the offline
    byte-level tokenizer for both encoders and SDXL base's Euler schedule."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from training.ml.tokenizer import byte_level_tokenizer

    tokenizer, unet_model, vae_model, (text_encoder, text_encoder_2) = _random_models(
        unet,
        vae,
        [(CLIPTextModel, text), (CLIPTextModelWithProjection, text_2)],
        seed=seed,
        device=device,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae_model,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=byte_level_tokenizer(),
        unet=unet_model,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
