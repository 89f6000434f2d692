"""Inputs, reports and errors of the training package: plain frozen dataclasses.

Nothing here imports torch, so the Django side can build a `TrainConfig` and
catch these errors without paying for the ML imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")


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
        return found


@dataclass(frozen=True)
class TrainSample:
    image_path: str
    caption: str


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
