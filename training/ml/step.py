"""One optimizer step of a LoRA run, and everything it carries between steps.

`TrainStep` holds the optimizer, learning-rate schedule, fp16 grad scaler and
the run's CPU generator; it draws batches from a `next_batch` callable and
turns each into the UNet's keyword arguments with a `conditioning` callable.
The trainer passes the BatchSampler and the text Conditioner; a benchmark can
pass random latents and text states instead (see `TrainStep.create`):

    step = TrainStep.create(
        config, unet, [{"params": lora_params, "lr": 1e-4}], noise_scheduler,
        next_batch=lambda: batch,  # .latents (b,4,h,w), .captions, .sizes, .weights
        conditioning=lambda batch: {"encoder_hidden_states": text},
        device="cuda", dtype=torch.bfloat16,
    )
    loss, lr = step.optimizer_step(1)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from training.ml.config import InvalidTrainingInput, NonFiniteLoss, TrainConfig
from training.ml.loss import (
    PREDICTION_TYPES,
    LossOptions,
    diffusion_loss,
    draw_noise,
    training_target,
)
from training.ml.optim import build_optimizer, build_scheduler

if TYPE_CHECKING:
    import torch

MAX_GRAD_NORM = 1.0


class TrainStep:
    """The optimizer, schedule, scaler and random stream of one training run."""

    def __init__(
        self,
        config: TrainConfig,
        unet: Any,
        params: list[torch.nn.Parameter],
        optimizer: torch.optim.Optimizer,
        noise_scheduler: Any,
        *,
        next_batch: Callable[[], Any],
        conditioning: Callable[[Any], dict[str, Any]],
        device: str,
        dtype: torch.dtype,
        generator: torch.Generator,
        sampler: Any = None,
    ) -> None:
        import torch

        prediction = noise_scheduler.config.prediction_type
        if prediction not in PREDICTION_TYPES:
            raise InvalidTrainingInput(f"Unsupported prediction_type {prediction!r}.")
        self.config, self.unet, self.params = config, unet, params
        self.optimizer = optimizer
        self.schedule = build_scheduler(optimizer, config)
        self.noise_scheduler = noise_scheduler
        self.next_batch, self.conditioning = next_batch, conditioning
        self.device, self.dtype = device, dtype
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range.
        self.scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        # One CPU generator drives batches, flips, captions, timesteps and
        # noise, so a run is reproducible and its stream can be checkpointed.
        self.generator = generator
        self.sampler = sampler  # its state_dict travels with ours when given
        self.loss_options = LossOptions.of(config)

    @classmethod
    def create(
        cls,
        config: TrainConfig,
        unet: Any,
        param_groups: Sequence[dict[str, Any]],
        noise_scheduler: Any,
        *,
        next_batch: Callable[[], Any],
        conditioning: Callable[[Any], dict[str, Any]],
        device: str,
        dtype: torch.dtype,
        generator: torch.Generator | None = None,
        sampler: Any = None,
    ) -> TrainStep:
        """A step over `param_groups` with the optimizer `config.optimizer` names."""
        import torch

        params = [p for group in param_groups for p in group["params"]]
        return cls(
            config,
            unet,
            params,
            build_optimizer(param_groups, config, device),
            noise_scheduler,
            next_batch=next_batch,
            conditioning=conditioning,
            device=device,
            dtype=dtype,
            generator=generator or torch.Generator().manual_seed(config.seed),
            sampler=sampler,
        )

    def optimizer_step(self, step: int) -> tuple[float, float]:
        """One step over `gradient_accumulation` batches: (mean loss, UNet lr)."""
        import torch

        lr = self.schedule.get_last_lr()[0]
        accumulation = self.config.gradient_accumulation
        total = torch.zeros((), device=self.device)
        for _ in range(accumulation):
            loss = self.batch_loss(self.next_batch())
            scaled = loss / accumulation
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += loss.detach()
        mean = (total / accumulation).item()
        if not math.isfinite(mean):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(step, mean)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips the step if gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean, lr

    def batch_loss(
        self, batch: Any, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The loss of one batch, with noise and timesteps drawn from `generator`."""
        import torch

        gen = generator or self.generator
        latents = batch.latents
        size = latents.shape[0]
        noise = draw_noise(latents.shape, self.loss_options.noise_offset, gen)
        noise = noise.to(self.device)
        count = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, count, (size,), generator=gen).to(self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        target = training_target(self.noise_scheduler, latents, noise, timesteps)
        with self.autocast():
            kwargs = self.conditioning(batch)
            prediction = self.unet(noisy, timesteps, **kwargs).sample
        return diffusion_loss(
            prediction,
            target,
            scheduler=self.noise_scheduler,
            timesteps=timesteps,
            weights=batch.weights,
            options=self.loss_options,
        )

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.split(":", 1)[0], dtype=self.dtype)

    def state_dict(self) -> dict[str, Any]:
        """All a resumed run needs besides the LoRA weights (weights_only-safe)."""
        import torch

        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "generator": self.generator.get_state(),
            "sampler": self.sampler.state_dict() if self.sampler is not None else {},
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all()
            if torch.cuda.is_available()
            else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        if self.sampler is not None:
            self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
