"""What a trained LoRA file says about its training: sd-scripts' `ss_*` keys and ours.

Every value is a string (safetensors metadata). The `ss_*` names and value
shapes follow kohya sd-scripts, so A1111, ComfyUI and Civitai-style tools
show the base model version, resolution, tags and settings. Our own keys keep
the options sd-scripts has no name for (family, lora_targets, ...). Paths are
never written: the base model is named, not located.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from training.ml.base import library_versions
from training.ml.config import TrainConfig
from training.ml.kohya import kohya_metadata

# TrainConfig options recorded as they are, under their own names.
RECORDED_OPTIONS = (
    "rank",
    "alpha",
    "learning_rate",
    "warmup_steps",
    "batch_size",
    "gradient_accumulation",
    "resolution",
    "random_flip",
    "center_crop",
    "seed",
    "trigger_word",
    "dataset_hash",
    "lora_targets",
    "conv_rank",
    "conv_alpha",
    "train_text_encoder",
    "text_encoder_lr",
    "bucketing",
    "bucket_min_side",
    "bucket_max_side",
    "bucket_step",
    "shuffle_tags",
    "keep_tokens",
    "caption_dropout",
    "reg_weight",
    "optimizer",
    "lr_scheduler",
    "lr_cycles",
    "loss_type",
    "huber_c",
    "min_snr_gamma",
    "noise_offset",
    "gradient_checkpointing",
    "compile_unet",
)
OPTIMIZER_NAMES = {
    "adamw": "torch.optim.AdamW(weight_decay=0.01)",
    "adamw8bit": "bitsandbytes.optim.AdamW8bit(weight_decay=0.01)",
    "prodigy": (
        "prodigyopt.Prodigy(weight_decay=0.01,decouple=True,"
        "use_bias_correction=True,safeguard_warmup=True,d_coef=1.0)"
    ),
}


@dataclass(frozen=True)
class RunFacts:
    """What the metadata needs to know about a run beyond its config."""

    family: str
    prediction_type: str
    precision: str  # "bf16", "fp16", or "no" where fp32 ran
    base_hash: str
    image_count: int  # training images, repeats included
    reg_count: int
    tag_counts: dict[str, int]
    bucket_info: dict[str, Any]
    batches_per_epoch: int
    module_counts: dict[str, int]


def lora_metadata(
    config: TrainConfig, facts: RunFacts, steps_done: int
) -> dict[str, str]:
    """The LoRA file's metadata after `steps_done` optimizer steps."""
    base_model = config.base_model_name or config.base_model
    return kohya_metadata(
        output_name=config.output_name,
        base_model=base_model,
        rank=config.rank,
        alpha=config.alpha,
        steps=steps_done,
        family=facts.family,
        v_prediction=facts.prediction_type == "v_prediction",
        lora_targets=config.lora_targets,
        conv_rank=config.conv_rank if _locon(config) else None,
        conv_alpha=config.conv_alpha if _locon(config) else None,
        max_train_steps=config.steps,
        resolution=config.resolution,
        num_train_images=facts.image_count,
        # sd-scripts' {dataset folder: {tag: count}}; ours is one dataset.
        tag_frequency={"dataset": facts.tag_counts},
        learning_rate=config.learning_rate,
        unet_lr=config.learning_rate,
        text_encoder_lr=config.text_encoder_lr if config.train_text_encoder else 0.0,
        lr_scheduler=config.lr_scheduler,
        optimizer=OPTIMIZER_NAMES[config.optimizer],
        noise_offset=config.noise_offset or None,
        min_snr_gamma=config.min_snr_gamma or None,
        caption_dropout_rate=config.caption_dropout,
        shuffle_caption=config.shuffle_tags,
        keep_tokens=config.keep_tokens,
        enable_bucket=config.bucketing,
        min_bucket_reso=config.bucket_min_side or config.resolution // 2,
        max_bucket_reso=config.bucket_max_side or config.resolution * 2,
        bucket_info=facts.bucket_info if config.bucketing else None,
        mixed_precision=facts.precision,
        seed=config.seed,
        training_comment=(
            f"trigger word: {config.trigger_word}" if config.trigger_word else None
        ),
        extra=_ours(config, facts, steps_done) | _more_kohya(config, facts, steps_done),
    )


def _locon(config: TrainConfig) -> bool:
    return config.lora_targets == "transformer+conv"


def _ours(config: TrainConfig, facts: RunFacts, steps_done: int) -> dict[str, str]:
    """Our own keys: every option by its TrainConfig name, and run facts."""
    ours = {name: _text(getattr(config, name)) for name in RECORDED_OPTIONS}
    ours.update(
        base_model=config.base_model_name or config.base_model,
        base_model_hash=facts.base_hash,
        steps=str(steps_done),
        mixed_precision=facts.precision,
        num_train_images=str(facts.image_count),
        module_counts=json.dumps(facts.module_counts, sort_keys=True),
        library_versions=json.dumps(library_versions(), sort_keys=True),
    )
    return ours


def _more_kohya(
    config: TrainConfig, facts: RunFacts, steps_done: int
) -> dict[str, str]:
    """sd-scripts' ss_* keys that kohya_metadata has no argument for."""
    batches = steps_done * config.gradient_accumulation
    epochs = -(-batches // facts.batches_per_epoch)
    fields: dict[str, Any] = {
        "ss_network_train_unet_only": not config.train_text_encoder,
        "ss_num_reg_images": facts.reg_count,
        "ss_num_batches_per_epoch": facts.batches_per_epoch,
        "ss_epoch": epochs,
        "ss_lr_warmup_steps": config.warmup_steps,
        "ss_batch_size_per_device": config.batch_size,
        "ss_gradient_accumulation_steps": config.gradient_accumulation,
        "ss_total_batch_size": config.batch_size * config.gradient_accumulation,
        "ss_gradient_checkpointing": config.gradient_checkpointing,
        "ss_loss_type": config.loss_type,
        "ss_huber_c": float(config.huber_c),
        "ss_flip_aug": config.random_flip,
        "ss_bucket_no_upscale": False,
        "ss_sd_model_hash": facts.base_hash,
    }
    return {key: _text(value) for key, value in fields.items()}


def _text(value: Any) -> str:
    """kohya's spelling: floats by repr, booleans True/False, None as "None"."""
    if isinstance(value, float):
        return repr(value)
    return str(value)
