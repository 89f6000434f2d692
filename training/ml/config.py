"""Inputs, reports and errors of the training package: plain frozen dataclasses.

Nothing here imports torch, so the Django side can build a `TrainConfig` and
catch these errors without paying for the ML imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")
# transformer: every Linear and 1x1 conv inside the UNet's transformer blocks
# (kohya sd-scripts' default set); attention: the attention projections only;
# transformer+conv: the transformer set plus the 3x3 convs of the resnets and
# down/upsamplers as LoCon, at `conv_rank`.
LORA_TARGET_CHOICES = ("transformer", "attention", "transformer+conv")
OPTIMIZER_CHOICES = ("adamw", "adamw8bit", "prodigy")
SCHEDULER_CHOICES = (
    "constant",
    "constant_with_warmup",
    "cosine",
    "cosine_with_restarts",
    "linear",
)
LOSS_CHOICES = ("l2", "huber")
# Model families, detected from the base model's config (training.ml.family).
FAMILY_CHOICES = ("sd1", "sd2", "sdxl")


@dataclass(frozen=True)
class TrainConfig:
    """One LoRA training run.

    `steps` counts optimizer steps. Each is made of `gradient_accumulation`
    micro-batches of `batch_size` images, so a run sees
    `steps * gradient_accumulation * batch_size` images. Counting optimizer
    steps keeps the learning-rate schedule, checkpoints and progress reports
    on one clock, whatever the accumulation.

    `base_model` is a local diffusers Stable Diffusion folder or a hub id that
    is already in the local cache. `checkpoint_every=0` turns checkpoints off.
    A non-empty `trigger_word` is put in front of every caption that does not
    already contain it.
    """

    base_model: str
    output_dir: str
    steps: int = 1500
    rank: int = 8
    alpha: float = 32.0
    learning_rate: float = 1e-4
    warmup_steps: int = 100
    gradient_accumulation: int = 4
    batch_size: int = 1
    resolution: int = 512
    random_flip: bool = True
    center_crop: bool = True
    mixed_precision: str = "no"
    seed: int = 0
    checkpoint_every: int = 500
    gradient_checkpointing: bool = False
    device: str = "auto"
    trigger_word: str = ""
    dataset_hash: str = ""
    sample_prompts: tuple[str, ...] = ()
    sample_seed: int = 0
    sample_steps: int = 20
    output_name: str = "lora"
    # How the LoRA's metadata names the base model (a local folder's name, not
    # its path); `base_model` when empty.
    base_model_name: str = ""
    # --- network (training.ml.network) ---
    lora_targets: str = "transformer"
    conv_rank: int = 4  # LoCon rank of the 3x3 convs (transformer+conv only)
    conv_alpha: float = 1.0
    train_text_encoder: bool = False  # LoRA on the text encoder(s) too
    text_encoder_lr: float = 5e-5
    # --- data (training.ml.buckets, captions, dataset) ---
    bucketing: bool = True  # aspect-ratio buckets; off: square crops
    bucket_min_side: int = 0  # 0: resolution // 2
    bucket_max_side: int = 0  # 0: resolution * 2
    bucket_step: int = 64
    shuffle_tags: bool = False  # shuffle comma-separated tags after keep_tokens
    keep_tokens: int = 0  # leading tags that stay in place (the trigger always does)
    caption_dropout: float = 0.0  # chance a caption is replaced by ""
    reg_weight: float = 1.0  # loss weight of regularisation images
    # --- optimisation (training.ml.optim, loss) ---
    optimizer: str = "adamw"
    lr_scheduler: str = "constant_with_warmup"
    lr_cycles: int = 1  # cosine_with_restarts: number of cycles
    loss_type: str = "l2"
    huber_c: float = 0.1
    min_snr_gamma: float = 0.0  # 0: off; 5 is the paper's value
    noise_offset: float = 0.0
    compile_unet: bool = False  # torch.compile the UNet (CUDA only)

    def problems(self) -> list[str]:
        """Human-readable reasons this config cannot run; empty when it can."""
        found = []
        positive = {
            "steps": self.steps,
            "rank": self.rank,
            "gradient_accumulation": self.gradient_accumulation,
            "batch_size": self.batch_size,
            "sample_steps": self.sample_steps,
        }
        found += [f"{name} must be at least 1" for name, v in positive.items() if v < 1]
        if self.alpha <= 0:
            found.append("alpha must be positive")
        if self.learning_rate <= 0:
            found.append("learning_rate must be positive")
        if self.warmup_steps < 0 or self.checkpoint_every < 0:
            found.append("warmup_steps and checkpoint_every cannot be negative")
        if self.resolution < 8 or self.resolution % 8:
            found.append("resolution must be a positive multiple of 8")
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            found.append(f"mixed_precision must be one of {MIXED_PRECISION_CHOICES}")
        if not self.output_name or "/" in self.output_name or "\\" in self.output_name:
            found.append("output_name must be a plain file name without extension")
        choices = {
            "lora_targets": (self.lora_targets, LORA_TARGET_CHOICES),
            "optimizer": (self.optimizer, OPTIMIZER_CHOICES),
            "lr_scheduler": (self.lr_scheduler, SCHEDULER_CHOICES),
            "loss_type": (self.loss_type, LOSS_CHOICES),
        }
        found += [
            f"{name} must be one of {allowed}"
            for name, (value, allowed) in choices.items()
            if value not in allowed
        ]
        if self.conv_rank < 1 or self.lr_cycles < 1 or self.bucket_step < 8:
            found.append("conv_rank and lr_cycles must be at least 1, bucket_step 8")
        if not 0 <= self.caption_dropout < 1:
            found.append("caption_dropout must be at least 0 and below 1")
        if min(self.keep_tokens, self.bucket_min_side, self.bucket_max_side) < 0:
            found.append("keep_tokens and bucket sides cannot be negative")
        if min(self.min_snr_gamma, self.noise_offset, self.reg_weight) < 0:
            found.append("min_snr_gamma, noise_offset, reg_weight cannot be negative")
        if self.text_encoder_lr <= 0 or self.conv_alpha <= 0 or self.huber_c <= 0:
            found.append("text_encoder_lr, conv_alpha and huber_c must be positive")
        return found


@dataclass(frozen=True)
class TrainSample:
    image_path: str
    caption: str
    # Times the image counts per epoch (kohya's `N_concept` folder count).
    repeats: int = 1


@dataclass(frozen=True)
class StepReport:
    """Sent to `on_step` after every optimizer step (`step` counts from 1)."""

    step: int
    total_steps: int
    loss: float  # mean over the step's micro-batches
    lr: float  # the learning rate this step used
    images_per_second: float  # over this process's steps so far
    eta_seconds: float
    elapsed_seconds: float  # since this call started training (resume restarts it)


@dataclass(frozen=True)
class TrainResult:
    lora_path: str
    steps_done: int
    final_loss: float  # nan when a resumed run had no step left to do
    resumed_from_step: int  # 0 for a fresh run
    checkpoints: list[str] = field(default_factory=list)
    sample_paths: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    base_model_hash: str = ""
    library_versions: dict[str, str] = field(default_factory=dict)
    family: str = "sd1"  # of the base model: one of FAMILY_CHOICES
    # LoRA modules per part: {"unet": 192, "text_encoder": 72} (SDXL:
    # "text_encoder_1", "text_encoder_2").
    module_counts: dict[str, int] = field(default_factory=dict)


class TrainingError(Exception):
    """Base of every error this package raises (generation errors too)."""


class InvalidTrainingInput(TrainingError):
    """The config, samples or base model cannot be used; retrying will not help."""


class InvalidGenerationInput(TrainingError):
    """A generation request cannot be run as given (size, scheduler, LoRA file)."""


class NonFiniteLoss(TrainingError):
    def __init__(self, step: int, loss: float) -> None:
        self.step = step
        self.loss = loss
        super().__init__(
            f"The loss became {loss} at step {step}. Training diverged: lower the "
            "learning rate, or train in full precision (mixed_precision='no')."
        )


class OutOfMemory(TrainingError):
    def __init__(self, device: str, detail: str = "") -> None:
        self.device = device
        hint = (
            f"Out of memory on {device}. Lower the batch size or the resolution, "
            "or enable gradient checkpointing (and bf16/fp16 mixed precision on CUDA)."
        )
        super().__init__(f"{hint} ({detail})" if detail else hint)


class GenerationStopped(TrainingError):
    """Raised by `generate_images` when `should_stop()` returned True."""
