"""LoRA training of a Stable Diffusion 1.x UNet with diffusers and peft.

The VAE and text encoder are frozen, so each image's latents (and its mirror
image's, with `random_flip`) and each caption's embedding are computed once
before the loop; a step then costs one UNet forward and backward per
micro-batch. LoRA adapters sit on the attention projections (to_q, to_k, to_v,
to_out.0) of every UNet attention block.

Learning rate: linear warmup over `warmup_steps`, then constant. Constant is
the usual choice for small LoRA datasets and keeps a longer re-run (more
`steps`) meaningful after a resume; cosine would tie the curve to the total.

Resume: when `<output_dir>/checkpoints` holds a complete checkpoint of the
same run (same base model, rank, alpha, resolution, dataset), training picks
up after its step with the LoRA weights, optimizer, LR schedule, RNG streams
and data order restored, and runs to `steps`. On the CPU a resumed run ends
with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.ml.base import hash_base_model, library_versions, load_pipeline
from training.ml.checkpoints import (
    Checkpoint,
    checkpoints_root,
    latest_checkpoint,
    list_checkpoints,
    load_training_state,
    remove_leftovers,
    save_checkpoint,
)
from training.ml.config import (
    InvalidTrainingInput,
    NonFiniteLoss,
    OutOfMemory,
    StepReport,
    TrainConfig,
    TrainResult,
    TrainSample,
)
from training.ml.device import pick_device, pick_dtype
from training.ml.images import check_readable, load_rgb, square_crop, to_tensor
from training.ml.kohya import kohya_metadata, kohya_name, peft_to_kohya, save_kohya_lora

if TYPE_CHECKING:
    import torch

__all__ = ["hash_base_model", "library_versions", "train_lora"]

logger = logging.getLogger(__name__)

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 1e-2
ENCODE_BATCH = 8  # images per VAE call while caching latents
LOG_EVERY = 50  # optimizer steps between progress lines in the log


def train_lora(
    config: TrainConfig,
    samples: Sequence[TrainSample],
    *,
    on_step: Callable[[StepReport], None] | None = None,
    on_checkpoint: Callable[[int, str], None] | None = None,
    log: Callable[[str], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train (or resume) a LoRA and save it to `<output_dir>/<output_name>.safetensors`.

    `on_step` runs after every optimizer step; whatever it raises (a cancel)
    propagates unchanged and ends the run there. `on_stage(text)` hears what
    happens outside the steps, for a person ("Loading the base model",
    "Encoding latents (8 of 40 images)", "Saving checkpoint at step 100",
    "Rendering samples (1 of 3), step 4 of 20"), often enough that what it
    raises stops a long phase as promptly. Checkpoints written so far stay, so
    calling again with the same config resumes. Raises InvalidTrainingInput,
    NonFiniteLoss or OutOfMemory (all TrainingError).
    """
    import torch

    say = log or logger.info
    problems = config.problems()
    if problems:
        raise InvalidTrainingInput("Invalid training config: " + "; ".join(problems))
    check_readable(list(samples))
    try:
        device = pick_device(config.device)
    except ValueError as exc:
        raise InvalidTrainingInput(str(exc)) from exc
    dtype, note = pick_dtype(device, config.mixed_precision)
    if note:
        say(note)
    detail = ""
    hooks = _Hooks(on_step, on_checkpoint, on_stage or (lambda text: None), say)
    try:
        return _train(config, list(samples), device, dtype, hooks)
    except torch.cuda.OutOfMemoryError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
    # Raised outside the except block so the failed frames (and their GPU
    # tensors) are released before anyone handles the error.
    _free_memory()
    raise OutOfMemory(device, detail)


@dataclass(frozen=True)
class _Hooks:
    """Who hears of the run: steps, checkpoints, stages, log lines."""

    on_step: Callable[[StepReport], None] | None
    on_checkpoint: Callable[[int, str], None] | None
    stage: Callable[[str], None]
    say: Callable[[str], None]


def _train(
    config: TrainConfig,
    samples: list[TrainSample],
    device: str,
    dtype: torch.dtype,
    hooks: _Hooks,
) -> TrainResult:
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    root = checkpoints_root(output)
    remove_leftovers(root)
    fingerprint = _fingerprint(config, len(samples))
    resume = latest_checkpoint(root)
    if resume is not None:
        _check_same_run(resume, fingerprint)
    base_hash = hash_base_model(config.base_model)
    run = _Session(config, root, fingerprint, base_hash, len(samples), hooks.say)
    # Everything the training step holds on the device is local to `_fit`, so
    # it is freed when `_fit` returns, before the sample pipeline loads.
    fitted = _fit(run, samples, device, dtype, resume, hooks)
    _free_memory()
    sample_paths = _render_samples(config, Path(fitted.lora_path), device, hooks)
    return TrainResult(
        lora_path=fitted.lora_path,
        steps_done=fitted.steps_done,
        final_loss=fitted.final_loss,
        resumed_from_step=fitted.resumed_from_step,
        checkpoints=[str(c.path) for c in list_checkpoints(root)],
        sample_paths=[str(p) for p in sample_paths],
        metadata=fitted.metadata,
        base_model_hash=base_hash,
        library_versions=library_versions(),
    )


@dataclass(frozen=True)
class _Session:
    """What `_fit` needs besides the model: where to write and what to record."""

    config: TrainConfig
    root: Path
    fingerprint: dict[str, Any]
    base_hash: str
    sample_count: int
    say: Callable[[str], None]

    def write_lora(
        self, lora_run: _LoraRun, path: Path, steps_done: int
    ) -> dict[str, str]:
        meta = _metadata(
            self.config,
            steps_done,
            self.base_hash,
            self.sample_count,
            _precision_name(lora_run.dtype),
        )
        save_kohya_lora(lora_run.kohya_state(), path, meta)
        return meta


@dataclass(frozen=True)
class _Fitted:
    lora_path: str
    steps_done: int
    final_loss: float
    resumed_from_step: int
    metadata: dict[str, str]


def _fit(
    run: _Session,
    samples: list[TrainSample],
    device: str,
    dtype: torch.dtype,
    resume: Checkpoint | None,
    hooks: _Hooks,
) -> _Fitted:
    config = run.config
    on_step, on_checkpoint = hooks.on_step, hooks.on_checkpoint
    lora_run = _prepare(config, samples, device, dtype, hooks)
    start, last_loss = 0, math.nan
    if resume is not None:
        hooks.stage(f"Resuming from the checkpoint at step {resume.step}")
        start, last_loss = _restore(lora_run, resume)
        run.say(f"Resumed from checkpoint at step {start} ({resume.path})")
    if start < config.steps:
        hooks.stage(f"Step {start + 1} of {config.steps} under way")
    started = time.perf_counter()
    for step in range(start + 1, config.steps + 1):
        last_loss, lr = lora_run.optimizer_step(step)
        if step % LOG_EVERY == 0 or step == config.steps:
            run.say(f"step {step}/{config.steps} loss {last_loss:.4f} lr {lr:.2e}")
        if on_step is not None:  # a cancel raised here ends the run at this step
            on_step(_report(config, step, start, started, last_loss, lr))
        if config.checkpoint_every and (
            step % config.checkpoint_every == 0 or step == config.steps
        ):
            hooks.stage(f"Saving checkpoint at step {step}")
            path = save_checkpoint(
                run.root,
                step,
                write_lora=lambda p, s=step: run.write_lora(lora_run, p, s),
                training_state=lora_run.state_dict(),
                info={"fingerprint": run.fingerprint, "loss": last_loss},
            )
            if on_checkpoint is not None:
                on_checkpoint(step, str(path))
    steps_done = max(start, config.steps)
    lora_path = Path(config.output_dir) / f"{config.output_name}.safetensors"
    hooks.stage("Saving the LoRA")
    metadata = run.write_lora(lora_run, lora_path, steps_done)
    run.say(f"Saved LoRA to {lora_path}")
    return _Fitted(str(lora_path), steps_done, last_loss, start, metadata)


def _prepare(
    config: TrainConfig,
    samples: list[TrainSample],
    device: str,
    dtype: torch.dtype,
    hooks: _Hooks,
) -> _LoraRun:
    """Load the base model, cache the inputs, and set up the LoRA and optimizer."""
    import torch
    from diffusers import DDPMScheduler

    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 parts on tensor cores
    torch.manual_seed(config.seed)  # peft's gaussian init draws from it
    hooks.stage("Loading the base model")
    pipe = load_pipeline(config.base_model)
    hooks.say(f"Encoding {len(samples)} images at {config.resolution}px on {device}")
    encoded = _encode_samples(pipe, samples, config, device, hooks.stage)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    hooks.stage("Adding the LoRA layers to the UNet")
    # Only the UNet is kept: the VAE and text encoder go with `pipe`.
    unet = _add_lora(pipe.unet, config, device, dtype)
    return _LoraRun(config, unet, noise_scheduler, encoded, device, dtype)


@dataclass
class _Encoded:
    """Per-sample model inputs, computed once: row i belongs to samples[i]."""

    latents: torch.Tensor  # (n, 4, h, w), already scaled by the VAE's factor
    flipped: torch.Tensor | None  # latents of the mirrored images, for random_flip
    text: torch.Tensor  # (n, 77, hidden) text encoder states


def _encode_samples(
    pipe: Any,
    samples: list[TrainSample],
    config: TrainConfig,
    device: str,
    stage: Callable[[str], None],
) -> _Encoded:
    import torch

    vae, text_encoder = pipe.vae.to(device), pipe.text_encoder.to(device)
    crop_rng = random.Random(config.seed)  # random_crop: one fixed crop per image
    # A CPU generator gives the same latents on every device.
    generator = torch.Generator().manual_seed(config.seed)
    latents, flipped = [], []
    with torch.no_grad():
        for first in range(0, len(samples), ENCODE_BATCH):
            stage(f"Encoding latents ({first} of {len(samples)} images)")
            chunk = samples[first : first + ENCODE_BATCH]
            pixels = torch.stack(
                [
                    to_tensor(
                        square_crop(
                            load_rgb(s.image_path, config.resolution),
                            config.resolution,
                            center=config.center_crop,
                            rng=crop_rng,
                        )
                    )
                    for s in chunk
                ]
            ).to(device)
            latents.append(_vae_encode(vae, pixels, generator))
            if config.random_flip:
                flipped.append(_vae_encode(vae, pixels.flip(-1), generator))
        stage("Encoding the captions")
        text = _encode_captions(pipe.tokenizer, text_encoder, samples, config, device)
    return _Encoded(
        latents=torch.cat(latents),
        flipped=torch.cat(flipped) if flipped else None,
        text=text,
    )


def _vae_encode(
    vae: Any, pixels: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    latents = vae.encode(pixels.to(vae.dtype)).latent_dist.sample(generator=generator)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((latents - shift) * vae.config.scaling_factor).float()


def _encode_captions(
    tokenizer: Any,
    text_encoder: Any,
    samples: list[TrainSample],
    config: TrainConfig,
    device: str,
) -> torch.Tensor:
    import torch

    captions = [_with_trigger(s.caption, config.trigger_word) for s in samples]
    unique = sorted(set(captions))
    ids = tokenizer(
        unique,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    states = torch.cat(
        [text_encoder(ids[i : i + 32].to(device))[0] for i in range(0, len(unique), 32)]
    )
    row = {caption: i for i, caption in enumerate(unique)}
    return states[[row[c] for c in captions]].float()


def _with_trigger(caption: str, trigger: str) -> str:
    caption = caption.strip()
    if not trigger or trigger.lower() in caption.lower():
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def _add_lora(unet: Any, config: TrainConfig, device: str, dtype: torch.dtype) -> Any:
    import torch
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.to(device)
    if dtype != torch.float32:
        # Frozen weights in the autocast dtype halve their memory; the LoRA
        # weights (the only ones the optimizer sees) stay float32.
        unet.to(dtype=dtype)
    unet.add_adapter(
        LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            init_lora_weights="gaussian",
            target_modules=list(TARGET_MODULES),
        )
    )
    for param in unet.parameters():
        if param.requires_grad:
            param.data = param.data.to(torch.float32)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    return unet


class _Sampler:
    """Which samples each micro-batch uses: a fresh shuffle each epoch.

    Its queue is checkpointed, so a resumed run sees the same data order.
    """

    def __init__(self, count: int, generator: torch.Generator) -> None:
        self.count = count
        self.generator = generator
        self.queue: list[int] = []

    def take(self, size: int) -> list[int]:
        import torch

        picked = []
        while len(picked) < size:
            if not self.queue:
                self.queue = torch.randperm(
                    self.count, generator=self.generator
                ).tolist()
            picked.append(self.queue.pop())
        return picked


class _LoraRun:
    """The optimizer, schedule, scaler and random streams of one training run."""

    def __init__(
        self,
        config: TrainConfig,
        unet: Any,
        noise_scheduler: Any,
        encoded: _Encoded,
        device: str,
        dtype: torch.dtype,
    ) -> None:
        import torch

        self.config, self.unet, self.encoded = config, unet, encoded
        self.noise_scheduler = noise_scheduler
        self.device, self.dtype = device, dtype
        self.autocast = dtype != torch.float32
        # "default" is the adapter name peft gives; dropping it yields peft's
        # state-dict keys (`<module>.lora_A.weight`).
        self.params = {
            name.replace(".default.", "."): p
            for name, p in unet.named_parameters()
            if p.requires_grad
        }
        self.optimizer = torch.optim.AdamW(
            self.params.values(), lr=config.learning_rate, weight_decay=WEIGHT_DECAY
        )
        warmup = config.warmup_steps
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range.
        self.scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        # One CPU generator drives batches, flips, timesteps and noise, so a
        # run is reproducible and its stream can be checkpointed.
        self.generator = torch.Generator().manual_seed(config.seed)
        self.sampler = _Sampler(len(encoded.latents), self.generator)
        prediction = noise_scheduler.config.prediction_type
        if prediction not in ("epsilon", "v_prediction", "sample"):
            raise InvalidTrainingInput(f"Unsupported prediction_type {prediction!r}.")
        self.prediction = prediction

    def optimizer_step(self, step: int) -> tuple[float, float]:
        """One step over `gradient_accumulation` micro-batches: (mean loss, lr)."""
        import torch

        lr = self.schedule.get_last_lr()[0]
        accumulation = self.config.gradient_accumulation
        total = torch.zeros((), device=self.device)
        for _ in range(accumulation):
            loss = self._micro_batch_loss()
            scaled = loss / accumulation
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += loss.detach()
        mean = (total / accumulation).item()
        if not math.isfinite(mean):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(step, mean)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params.values(), MAX_GRAD_NORM)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips the step if gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean, lr

    def _micro_batch_loss(self) -> torch.Tensor:
        import torch
        import torch.nn.functional as F  # noqa: N812

        size, gen = self.config.batch_size, self.generator
        rows = torch.tensor(self.sampler.take(size), device=self.device)
        latents = self.encoded.latents[rows]
        if self.encoded.flipped is not None:
            flip = (torch.rand(size, generator=gen) < 0.5).to(self.device)
            latents = torch.where(
                flip[:, None, None, None], self.encoded.flipped[rows], latents
            )
        noise = torch.randn(latents.shape, generator=gen).to(self.device)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (size,), generator=gen).to(self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.prediction == "epsilon":
            target = noise
        elif self.prediction == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = latents
        with self._autocast():
            prediction = self.unet(noisy, timesteps, self.encoded.text[rows]).sample
        return F.mse_loss(prediction.float(), target.float())

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.split(":", 1)[0], dtype=self.dtype)

    def kohya_state(self) -> dict[str, torch.Tensor]:
        weights = {key: p.detach() for key, p in self.params.items()}
        return peft_to_kohya(weights, self.config.alpha)

    def load_kohya_state(self, state: dict[str, torch.Tensor]) -> None:
        import torch

        with torch.no_grad():
            for key, param in self.params.items():
                param.copy_(state[kohya_name(key)])

    def state_dict(self) -> dict[str, Any]:
        import torch

        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "generator": self.generator.get_state(),
            "sampler_queue": list(self.sampler.queue),
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
        self.sampler.queue = list(state["sampler_queue"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def _restore(run: _LoraRun, checkpoint: Checkpoint) -> tuple[int, float]:
    """Load a checkpoint into `run`; return its step and loss."""
    from safetensors.torch import load_file

    from training.ml.checkpoints import LORA_FILE

    run.load_kohya_state(load_file(str(checkpoint.path / LORA_FILE)))
    run.load_state_dict(load_training_state(checkpoint))
    info = checkpoint.info()
    return checkpoint.step, float(info.get("loss", math.nan))


def _fingerprint(config: TrainConfig, sample_count: int) -> dict[str, Any]:
    """What a checkpoint must share with this run to be resumed by it."""
    return {
        "base_model": config.base_model,
        "rank": config.rank,
        "alpha": config.alpha,
        "resolution": config.resolution,
        "dataset_hash": config.dataset_hash,
        "samples": sample_count,
        "target_modules": list(TARGET_MODULES),
    }


def _check_same_run(checkpoint: Checkpoint, fingerprint: dict[str, Any]) -> None:
    saved = checkpoint.info().get("fingerprint")
    if saved != fingerprint:
        changed = sorted(
            k for k in fingerprint if (saved or {}).get(k) != fingerprint[k]
        )
        raise InvalidTrainingInput(
            f"{checkpoint.path.parent} holds checkpoints of a different run "
            f"(differs in: {', '.join(changed)}). Use a new output_dir, or delete "
            "its checkpoints folder to start over."
        )


def _report(
    config: TrainConfig, step: int, start: int, started: float, loss: float, lr: float
) -> StepReport:
    elapsed = time.perf_counter() - started
    done = step - start
    per_step = elapsed / done
    images = done * config.batch_size * config.gradient_accumulation
    return StepReport(
        step=step,
        total_steps=config.steps,
        loss=loss,
        lr=lr,
        images_per_second=images / elapsed if elapsed > 0 else 0.0,
        eta_seconds=per_step * (config.steps - step),
        elapsed_seconds=elapsed,
    )


def _precision_name(dtype: Any) -> str:
    """What actually ran: "bf16"/"fp16" on CUDA, "no" where it fell back to fp32."""
    import torch

    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "no")


def _metadata(
    config: TrainConfig,
    steps_done: int,
    base_hash: str,
    sample_count: int,
    precision: str,
) -> dict[str, str]:
    # Written into the file: the model's name, never where it lies on disk.
    base_model = config.base_model_name or config.base_model
    ours = {
        "base_model": base_model,
        "base_model_hash": base_hash,
        "rank": str(config.rank),
        "alpha": repr(float(config.alpha)),
        "steps": str(steps_done),
        "trigger_word": config.trigger_word,
        "dataset_hash": config.dataset_hash,
        "resolution": str(config.resolution),
        "learning_rate": repr(float(config.learning_rate)),
        "batch_size": str(config.batch_size),
        "gradient_accumulation": str(config.gradient_accumulation),
        "seed": str(config.seed),
        "mixed_precision": precision,
        "num_train_images": str(sample_count),
        "library_versions": json.dumps(library_versions(), sort_keys=True),
        "ss_resolution": f"({config.resolution}, {config.resolution})",
        "ss_learning_rate": repr(float(config.learning_rate)),
        "ss_unet_lr": repr(float(config.learning_rate)),
        "ss_text_encoder_lr": "0.0",
        "ss_seed": str(config.seed),
        "ss_num_train_images": str(sample_count),
        "ss_mixed_precision": precision,
        "ss_sd_model_hash": base_hash,
    }
    return kohya_metadata(
        output_name=config.output_name,
        base_model=base_model,
        rank=config.rank,
        alpha=config.alpha,
        steps=steps_done,
        extra=ours,
    )


def _render_samples(
    config: TrainConfig, lora_path: Path, device: str, hooks: _Hooks
) -> list[Path]:
    """Sample images from the saved file, loaded as the generation feature loads it."""
    if not config.sample_prompts:
        return []
    from training.ml.generate import (
        GenerateSpec,
        LoraSpec,
        PipelineHolder,
        generate_images,
    )

    folder = Path(config.output_dir) / "samples"
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("sample-*.png"):
        stale.unlink()
    precision = "fp16" if config.mixed_precision != "no" else "no"
    holder = PipelineHolder(config.base_model, device=device, mixed_precision=precision)
    lora = LoraSpec(str(lora_path), 1.0, config.output_name)
    paths: list[Path] = []
    count = len(config.sample_prompts)

    def on_step(step: int, steps: int) -> None:
        sample = f"Rendering samples ({len(paths) + 1} of {count})"
        hooks.stage(f"{sample}, step {step} of {steps}")

    try:
        for i, prompt in enumerate(config.sample_prompts):
            hooks.stage(f"Rendering samples ({i + 1} of {count})")
            spec = GenerateSpec(
                prompt=prompt,
                steps=config.sample_steps,
                seed=config.sample_seed + i,
                width=config.resolution,
                height=config.resolution,
                loras=(lora,),
            )
            image = generate_images(holder, spec, on_step=on_step)[0]
            path = folder / f"sample-{i:02d}.png"
            image.save(path)
            paths.append(path)
    finally:
        holder.close()
    hooks.say(f"Rendered {len(paths)} sample images")
    return paths


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
