"""LoRA training of Stable Diffusion (SD 1.x, SD 2.x, SDXL) with diffusers and peft.

The run, in order:
  1. load the base pipeline and detect its family (training.ml.family);
  2. encode every image once with the VAE at its aspect-ratio bucket
     (training.ml.dataset.LatentCache; regularisation images join with their
     own loss weight), then the VAE goes back to the CPU;
  3. attach the LoRA (training.ml.network.LoraNetwork: the UNet's transformer
     blocks by default, optionally the 3x3 convs and the text encoders);
  4. optimizer steps (training.ml.step.TrainStep) over batches drawn from one
     bucket at a time (training.ml.dataset.BatchSampler);
  5. at every checkpoint and at the end: a resumable checkpoint
     (training.ml.checkpoints) and a lasting snapshot (training.ml.snapshots:
     the LoRA, sample images, training and validation loss).

Text conditioning: the frozen text encoders' output is cached per caption
when captions are the same at every draw; with tag shuffling, caption dropout
or a trained text encoder, each batch's captions are encoded as it is drawn.

Resume: when `<output_dir>/checkpoints` holds a complete checkpoint of the
same run (same base model, network, buckets, dataset), training picks up
after its step with the LoRA weights, optimizer, LR schedule, sampler (bucket
order, caption draws) and RNG streams restored, and runs to `steps`. On the
CPU a resumed run ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    OutOfMemory,
    StepReport,
    TrainConfig,
    TrainResult,
    TrainSample,
)
from training.ml.device import pick_device, pick_dtype
from training.ml.images import check_readable
from training.ml.metadata import RunFacts, lora_metadata
from training.ml.optim import prodigy_note
from training.ml.snapshots import (
    find_snapshot,
    finish_snapshot,
    sample_path,
    snapshot_folder,
)
from training.ml.step import TrainStep

if TYPE_CHECKING:
    import torch

__all__ = ["hash_base_model", "library_versions", "train_lora"]

logger = logging.getLogger(__name__)

LOG_EVERY = 50  # optimizer steps between progress lines in the log


def train_lora(
    config: TrainConfig,
    samples: Sequence[TrainSample],
    *,
    reg_samples: Sequence[TrainSample] = (),
    validation_samples: Sequence[TrainSample] = (),
    on_step: Callable[[StepReport], None] | None = None,
    on_checkpoint: Callable[[int, str], None] | None = None,
    log: Callable[[str], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train (or resume) a LoRA and save it to `<output_dir>/<output_name>.safetensors`.

    `reg_samples` are regularisation (class) images, trained with loss weight
    `config.reg_weight`; `validation_samples` are held out and only scored.
    `on_step` runs after every optimizer step; whatever it raises (a cancel)
    propagates unchanged and ends the run there. `on_checkpoint(step, folder)`
    hears of each finished snapshot (training.ml.snapshots). `on_stage(text)`
    hears what happens outside the steps, for a person ("Loading the base
    model", "Saving checkpoint at step 100", "Rendering samples (1 of 3), step
    4 of 20"), often enough that what it raises stops a long phase as promptly.
    Checkpoints written so far stay, so calling again with the same config
    resumes. Raises InvalidTrainingInput, NonFiniteLoss or OutOfMemory.
    """
    import torch

    say = log or logger.info
    problems = config.problems()
    if problems:
        raise InvalidTrainingInput("Invalid training config: " + "; ".join(problems))
    check_readable(list(samples))
    for extra in (reg_samples, validation_samples):
        if extra:
            check_readable(list(extra))
    try:
        device = pick_device(config.device)
    except ValueError as exc:
        raise InvalidTrainingInput(str(exc)) from exc
    dtype, note = pick_dtype(device, config.mixed_precision)
    for line in (note, prodigy_note(config)):
        if line:
            say(line)
    hooks = _Hooks(on_step, on_checkpoint, on_stage or (lambda text: None), say)
    data = _Data(list(samples), list(reg_samples), list(validation_samples))
    detail = ""
    try:
        return _train(config, data, device, dtype, hooks)
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


@dataclass(frozen=True)
class _Data:
    train: list[TrainSample]
    reg: list[TrainSample]
    validation: list[TrainSample]


def _train(
    config: TrainConfig,
    data: _Data,
    device: str,
    dtype: torch.dtype,
    hooks: _Hooks,
) -> TrainResult:
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    root = checkpoints_root(output)
    remove_leftovers(root)
    resume = latest_checkpoint(root)
    if resume is not None:  # fail before loading any model when we can
        _check_same_run(resume, _config_fingerprint(config, data), partial=True)
    base_hash = hash_base_model(config.base_model)
    run = _prepare(config, data, device, dtype, hooks)
    run.base_hash = base_hash
    if resume is not None:
        _check_same_run(resume, run.fingerprint)
    try:
        fitted = _fit(run, root, resume, hooks)
    finally:
        run.close()
    _free_memory()
    return TrainResult(
        lora_path=fitted.lora_path,
        steps_done=fitted.steps_done,
        final_loss=fitted.final_loss,
        resumed_from_step=fitted.resumed_from_step,
        checkpoints=[str(c.path) for c in list_checkpoints(root)],
        sample_paths=fitted.sample_paths,
        metadata=fitted.metadata,
        base_model_hash=base_hash,
        library_versions=library_versions(),
        family=run.family,
        module_counts=run.network.module_counts(),
    )


@dataclass
class _Run:
    """A prepared run: the model with its LoRA, the data, the step, the samples."""

    config: TrainConfig
    family: str
    network: Any  # training.ml.network.LoraNetwork
    sampler: Any  # training.ml.dataset.BatchSampler
    step: TrainStep
    validation: Any  # training.ml.dataset.LatentCache | None
    fingerprint: dict[str, Any]
    data: _Data
    device: str
    base_hash: str = ""
    holder: Any = None  # the sample pipeline, loaded at the first snapshot
    say: Callable[[str], None] = field(default=logger.info)

    def write_lora(self, path: Path, steps_done: int) -> dict[str, str]:
        from training.ml.kohya import save_kohya_lora

        meta = lora_metadata(self.config, self.facts(), steps_done)
        save_kohya_lora(self.network.kohya_state(), path, meta)
        return meta

    def facts(self) -> RunFacts:
        from training.ml.captions import tag_frequency

        return RunFacts(
            family=self.family,
            prediction_type=self.step.noise_scheduler.config.prediction_type,
            precision=_precision_name(self.step.dtype),
            base_hash=self.base_hash,
            image_count=sum(s.repeats for s in self.data.train),
            reg_count=sum(s.repeats for s in self.data.reg),
            tag_counts=tag_frequency(s.caption for s in self.data.train),
            bucket_info=self.sampler.bucket_info(),
            batches_per_epoch=self.sampler.batches_per_epoch,
            module_counts=self.network.module_counts(),
        )

    def close(self) -> None:
        if self.holder is not None:
            self.holder.close()
            self.holder = None


def _prepare(
    config: TrainConfig,
    data: _Data,
    device: str,
    dtype: torch.dtype,
    hooks: _Hooks,
) -> _Run:
    """Load the base model, cache the latents, attach the LoRA, build the step."""
    import torch
    from diffusers import DDPMScheduler

    from training.ml.dataset import BatchSampler
    from training.ml.family import Conditioner, pipeline_family
    from training.ml.network import LoraNetwork

    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 parts on tensor cores
    hooks.stage("Loading the base model")
    pipe = load_pipeline(config.base_model)
    family = pipeline_family(pipe)
    hooks.say(
        f"Encoding {len(data.train)} images ({family}) at {config.resolution}px "
        f"on {device}"
    )
    cache, validation = _encode(pipe, config, data, device, hooks.stage)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    conditioner = Conditioner(pipe, device)
    hooks.stage("Adding the LoRA layers")
    if not config.train_text_encoder:
        _frozen_text_encoders(conditioner, device, dtype)
    torch.manual_seed(config.seed)  # peft's gaussian init draws from it
    network = LoraNetwork.attach(
        pipe.unet,
        conditioner.text_encoders,
        config,
        family=family,
        device=device,
        dtype=dtype,
    )
    unet = _compiled(pipe.unet, config, device, hooks.say)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = BatchSampler(cache, config, generator, device)
    text = _TextSource(conditioner, config, dtype)
    step = TrainStep.create(
        config,
        unet,
        network.param_groups(),
        noise_scheduler,
        next_batch=sampler.next_batch,
        conditioning=text.unet_kwargs,
        device=device,
        dtype=dtype,
        generator=generator,
        sampler=sampler,
    )
    fingerprint = {
        **_config_fingerprint(config, data),
        "family": family,
        "network": network.fingerprint(),
        "buckets": sampler.fingerprint(),
    }
    return _Run(
        config=config,
        family=family,
        network=network,
        sampler=sampler,
        step=step,
        validation=validation,
        fingerprint=_plain(fingerprint),
        data=data,
        device=device,
        say=hooks.say,
    )


def _encode(
    pipe: Any,
    config: TrainConfig,
    data: _Data,
    device: str,
    stage: Callable[[str], None],
) -> tuple[Any, Any]:
    """Latents of the training (+ regularisation) and validation images.

    Each set gets its own generator seeded with `config.seed`, so adding
    validation images does not change the training latents.
    """
    import torch

    from training.ml.dataset import LatentCache

    vae = pipe.vae.to(device)

    def encode(samples: list[TrainSample], weight: float) -> Any:
        generator = torch.Generator().manual_seed(config.seed)
        return LatentCache.encode(
            vae, samples, config, device, stage, generator=generator, weight=weight
        )

    with torch.no_grad():
        cache = encode(data.train, 1.0)
        if data.reg:
            stage(f"Encoding {len(data.reg)} regularisation images")
            cache = cache.merged(encode(data.reg, config.reg_weight))
        validation = encode(data.validation, 1.0) if data.validation else None
    pipe.vae.to("cpu")  # not needed again during training
    return cache, validation


def _frozen_text_encoders(conditioner: Any, device: str, dtype: Any) -> None:
    """Untrained text encoders on the device, frozen, in the autocast dtype.

    (LoraNetwork.attach does this for the UNet and for trained encoders.)
    """
    for encoder in conditioner.text_encoders:
        encoder.requires_grad_(False)
        encoder.to(device, dtype=dtype)
        encoder.eval()


def _compiled(unet: Any, config: TrainConfig, device: str, say: Callable) -> Any:
    """The UNet, compiled with torch.compile when asked and on CUDA."""
    if not config.compile_unet:
        return unet
    if not device.startswith("cuda"):
        say(f"compile_unet is ignored on {device}: torch.compile needs CUDA here")
        return unet
    # In place: parameter names (and so the LoRA's keys) stay the same.
    unet.compile()
    say("Compiling the UNet with torch.compile (the first steps are slow)")
    return unet


class _TextSource:
    """The UNet's conditioning for a batch, with frozen-encoder outputs cached.

    When a caption is the same at every draw and the text encoders are
    frozen, its encoding never changes: it is computed once per caption.
    """

    def __init__(self, conditioner: Any, config: TrainConfig, dtype: Any) -> None:
        self.conditioner = conditioner
        self.dtype = dtype
        self.trained = config.train_text_encoder
        self.cache_captions = not (
            config.train_text_encoder or config.shuffle_tags or config.caption_dropout
        )
        self.cached: dict[str, Any] = {}

    def unet_kwargs(self, batch: Any) -> dict[str, Any]:
        return self.conditioner.unet_kwargs(
            self.encode(batch.captions), batch.sizes, self.dtype
        )

    def encode(self, captions: list[str]) -> Any:
        import torch

        if self.trained:
            return self.conditioner.encode(captions)
        if not self.cache_captions:
            with torch.no_grad():
                return self.conditioner.encode(captions)
        missing = sorted({c for c in captions if c not in self.cached})
        if missing:
            with torch.no_grad():
                encoded = self.conditioner.encode(missing)
            for i, caption in enumerate(missing):
                self.cached[caption] = encoded.rows([i])
        return _stack_text([self.cached[c] for c in captions])


def _stack_text(rows: list[Any]) -> Any:
    import torch

    from training.ml.family import TextCond

    pooled = [r.pooled for r in rows]
    return TextCond(
        hidden=torch.cat([r.hidden for r in rows]),
        pooled=None if pooled[0] is None else torch.cat(pooled),
    )


@dataclass(frozen=True)
class _Fitted:
    lora_path: str
    steps_done: int
    final_loss: float
    resumed_from_step: int
    metadata: dict[str, str]
    sample_paths: list[str]


def _fit(run: _Run, root: Path, resume: Checkpoint | None, hooks: _Hooks) -> _Fitted:
    config = run.config
    start, last_loss = 0, math.nan
    if resume is not None:
        hooks.stage(f"Resuming from the checkpoint at step {resume.step}")
        start, last_loss = _restore(run, resume)
        run.say(f"Resumed from checkpoint at step {start} ({resume.path})")
        # A crash between the checkpoint and its snapshot left the latter undone.
        _snapshot(run, start, last_loss, hooks)
    if start < config.steps:
        hooks.stage(f"Step {start + 1} of {config.steps} under way")
    started = time.perf_counter()
    for step in range(start + 1, config.steps + 1):
        last_loss, lr = run.step.optimizer_step(step)
        if step % LOG_EVERY == 0 or step == config.steps:
            run.say(f"step {step}/{config.steps} loss {last_loss:.4f} lr {lr:.2e}")
        if hooks.on_step is not None:  # a cancel raised here ends the run
            hooks.on_step(_report(config, step, start, started, last_loss, lr))
        if config.checkpoint_every and (
            step % config.checkpoint_every == 0 or step == config.steps
        ):
            hooks.stage(f"Saving checkpoint at step {step}")
            save_checkpoint(
                root,
                step,
                write_lora=lambda p, s=step: run.write_lora(p, s),
                training_state=run.step.state_dict(),
                info={"fingerprint": run.fingerprint, "loss": last_loss},
            )
            _snapshot(run, step, last_loss, hooks)
    steps_done = max(start, config.steps)
    final = _snapshot(run, steps_done, last_loss, hooks)
    lora_path = Path(config.output_dir) / f"{config.output_name}.safetensors"
    hooks.stage("Saving the LoRA")
    metadata = run.write_lora(lora_path, steps_done)
    run.say(f"Saved LoRA to {lora_path}")
    return _Fitted(
        str(lora_path),
        steps_done,
        last_loss,
        start,
        metadata,
        [str(p) for p in final.sample_paths],
    )


def _snapshot(run: _Run, step: int, loss: float, hooks: _Hooks) -> Any:
    """The lasting record of step `step` (LoRA, samples, losses), made once.

    A finished snapshot of the step is reused: the final call after a
    checkpoint at the last step, and a finished run started again, find it.
    """
    from training.ml.snapshots import LORA_FILE

    existing = find_snapshot(run.config.output_dir, step)
    if existing is not None:
        return existing
    folder = snapshot_folder(run.config.output_dir, step)
    run.write_lora(folder / LORA_FILE, step)
    _render_samples(run, folder / LORA_FILE, folder, hooks)
    validation_loss = _validation_loss(run, hooks) if run.validation else None
    if validation_loss is not None:
        run.say(f"step {step} validation loss {validation_loss:.4f}")
    snapshot = finish_snapshot(
        folder,
        {
            "loss": loss,
            "validation_loss": validation_loss,
            "prompts": list(run.config.sample_prompts),
            "seeds": [
                run.config.sample_seed + i
                for i in range(len(run.config.sample_prompts))
            ],
        },
    )
    if hooks.on_checkpoint is not None:
        hooks.on_checkpoint(step, str(folder))
    return snapshot


def _validation_loss(run: _Run, hooks: _Hooks) -> float:
    """Mean loss over the validation images at fixed timesteps and noise.

    The generator is seeded with `config.seed` each time, so every checkpoint
    scores the same noisy inputs and the numbers compare across steps.
    """
    import torch

    from training.ml.dataset import validation_batches

    hooks.stage("Scoring the validation images")
    generator = torch.Generator().manual_seed(run.config.seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in validation_batches(run.validation, run.config.batch_size):
            size = batch.latents.shape[0]
            loss = run.step.batch_loss(batch, generator)
            total += loss.item() * size
            count += size
    return total / count if count else math.nan


def _render_samples(run: _Run, lora_path: Path, folder: Path, hooks: _Hooks) -> None:
    """Sample images from the saved file, loaded as the generation feature loads it.

    The sample pipeline sits next to the training models while it renders (a
    second copy of the frozen weights, fp16 on CUDA), which fits wherever the
    training fits with room for its activations. On CUDA it is dropped again
    afterwards, so the training steps keep that memory; elsewhere (the CPU,
    tiny test models) it is kept for the run's next snapshot.
    """
    config = run.config
    if not config.sample_prompts:
        return
    from training.ml.generate import (
        GenerateSpec,
        LoraSpec,
        PipelineHolder,
        generate_images,
    )

    if run.holder is None:
        precision = "fp16" if config.mixed_precision != "no" else "no"
        run.holder = PipelineHolder(
            config.base_model,
            device=run.device,
            mixed_precision=precision,
            fuse_loras=False,
        )
    lora = LoraSpec(str(lora_path), 1.0, config.output_name)
    count = len(config.sample_prompts)
    for i, prompt in enumerate(config.sample_prompts):
        label = f"Rendering samples ({i + 1} of {count})"
        hooks.stage(label)
        spec = GenerateSpec(
            prompt=prompt,
            steps=config.sample_steps,
            seed=config.sample_seed + i,
            width=config.resolution,
            height=config.resolution,
            loras=(lora,),
        )
        image = generate_images(
            run.holder,
            spec,
            on_step=lambda step, steps, label=label: hooks.stage(
                f"{label}, step {step} of {steps}"
            ),
        )[0]
        image.save(sample_path(folder, i))
    if run.device.startswith("cuda"):
        run.close()


def _restore(run: _Run, checkpoint: Checkpoint) -> tuple[int, float]:
    """Load a checkpoint into `run`; return its step and loss."""
    from safetensors.torch import load_file

    from training.ml.checkpoints import LORA_FILE

    run.network.load_kohya_state(load_file(str(checkpoint.path / LORA_FILE)))
    run.step.load_state_dict(load_training_state(checkpoint))
    info = checkpoint.info()
    return checkpoint.step, float(info.get("loss", math.nan))


def _config_fingerprint(config: TrainConfig, data: _Data) -> dict[str, Any]:
    """What a checkpoint must share with this run to be resumed by it (config part)."""
    return {
        "base_model": config.base_model,
        "rank": config.rank,
        "alpha": config.alpha,
        "resolution": config.resolution,
        "dataset_hash": config.dataset_hash,
        "samples": len(data.train),
        "reg_samples": len(data.reg),
        "batch_size": config.batch_size,
        "lora_targets": config.lora_targets,
        "train_text_encoder": config.train_text_encoder,
    }


def _plain(value: Any) -> Any:
    """As it reads back from checkpoint.json (tuples become lists)."""
    return json.loads(json.dumps(value))


def _check_same_run(
    checkpoint: Checkpoint, fingerprint: dict[str, Any], *, partial: bool = False
) -> None:
    """Refuse a checkpoint of another run; `partial` compares only the given keys."""
    saved = checkpoint.info().get("fingerprint") or {}
    fingerprint = _plain(fingerprint)
    keys = fingerprint.keys() if partial else fingerprint.keys() | saved.keys()
    changed = sorted(k for k in keys if saved.get(k) != fingerprint.get(k))
    if changed:
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


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
