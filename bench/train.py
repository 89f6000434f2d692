"""Benchmarks (run by hand): LoRA training step time, throughput and memory.

Prints figures; asserts nothing. Two modes:
  --tiny (the default): the whole `train_lora` on the tiny
      offline pipeline at 64 px, batch 1, no accumulation; seconds per
      optimizer step (median after warm-up), end-to-end wall time, peak RSS,
      and the tiny model's generation time per image.
  --gpu: one training step on randomly initialised UNets of SD 1.5's shape
      (860 M parameters, 512 px: 4x64x64 latents, 77x768 text states) and
      SDXL's (2.6 B, 1024 px: 4x128x128 latents, 77x2048 states, pooled
      embedding and size "time ids"), batch 4, bf16, three ways in turn on
      freshly built UNets: a reference step written in the style of
      diffusers' example LoRA scripts (attention projections, see
      `reference_step`), and the trainer's own step (`TrainStep` with the
      `LoraNetwork`) with lora_targets "attention" (like for like) and
      "transformer" (our default, the kohya set). Seconds per step (median
      after warm-up), images per second, peak GPU memory of the timed steps,
      model FLOPs utilisation (FLOPs counted by torch's FlopCounterMode over
      --peak-tflops, 989 for H100/H200 SXM), and ours over the reference.
      Latents and text states are random and already on the device: with
      cached latents the VAE and text encoders cost nothing per step.
      `--device cpu --tiny-shape` runs the same code on the tiny shapes, to
      check it without a GPU (its times mean nothing). `--json PATH` writes
      the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(name, "1")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_images(folder: Path, count: int, size: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    from training.ml.config import TrainSample

    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        path = folder / f"image-{i}.png"
        noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(noise).save(path)
        samples.append(TrainSample(str(path), f"a random picture number {i}"))
    return samples


def bench_tiny(args: argparse.Namespace) -> None:
    from training.ml.config import TrainConfig
    from training.ml.generate import GenerateSpec, PipelineHolder, generate_images
    from training.ml.tiny import build_tiny_pipeline
    from training.ml.trainer import train_lora

    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        work = Path(scratch)
        base = build_tiny_pipeline(work / "tiny-sd")
        samples = write_images(work, 8, args.resolution)
        config = TrainConfig(
            base_model=str(base),
            output_dir=str(work / "out"),
            steps=args.warmup + args.steps,
            rank=8,
            alpha=8.0,
            warmup_steps=0,
            gradient_accumulation=1,
            batch_size=1,
            resolution=args.resolution,
            checkpoint_every=0,
        )
        ends: list[float] = []
        started = time.perf_counter()
        train_lora(config, samples, on_step=lambda r: ends.append(r.elapsed_seconds))
        wall = time.perf_counter() - started
        # ends[i] is when step i + 1 finished; keep the steps after warm-up.
        durations = [b - a for a, b in zip(ends, ends[1:], strict=False)]
        per_step = durations[args.warmup - 1 :]
        print(f"== Tiny pipeline, {args.resolution} px, batch 1, accumulation 1 ==")
        print(
            f"  seconds per optimizer step: median {statistics.median(per_step):.4f}, "
            f"min {min(per_step):.4f}, max {max(per_step):.4f} "
            f"(over {len(per_step)} steps after {args.warmup} warm-up)"
        )
        print(
            f"  first step {ends[0]:.3f} s; train_lora end to end {wall:.2f} s "
            f"for {config.steps} steps (load, encode, train, save)"
        )
        holder = PipelineHolder(str(base), device="cpu")
        request = GenerateSpec(
            "a cat", steps=20, width=args.resolution, height=args.resolution
        )
        generate_images(holder, request)  # warm-up
        timings = []
        for seed in range(5):
            begun = time.perf_counter()
            generate_images(holder, replace(request, seed=seed))
            timings.append(time.perf_counter() - begun)
        print(
            f"  generation, 20 DDIM steps with CFG: "
            f"median {statistics.median(timings):.3f} s per image"
        )
    print(f"  peak RSS of the process: {peak_rss_mib():.0f} MiB")


# What the step sees once latents and text states are cached: the UNet's
# inputs at batch size b. SDXL's "time ids" are (original h, w, crop top,
# left, target h, w): a full 1024 px image, uncropped.
@dataclass
class RandomBatch:
    latents: Any  # (b, 4, s, s)
    text: Any  # (b, 77, cross_attention_dim)
    pooled: Any = None  # SDXL: (b, 1280) te2 pooled projection
    time_ids: Any = None  # SDXL: (b, 6)
    captions: list[str] = field(default_factory=list)
    sizes: list[Any] = field(default_factory=list)
    weights: Any = None  # (b,) per-sample loss weights: all 1

    def unet_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.text}
        if self.pooled is not None:
            kwargs["added_cond_kwargs"] = {
                "text_embeds": self.pooled,
                "time_ids": self.time_ids,
            }
        return kwargs


def random_batch(shape: dict[str, Any], batch_size: int, device: str) -> RandomBatch:
    import torch

    from training.ml.family import SizeCond

    side = shape["sample_size"]
    pixels = side * 8
    batch = RandomBatch(
        latents=torch.randn(batch_size, 4, side, side, device=device),
        text=torch.randn(batch_size, 77, shape["cross_attention_dim"], device=device),
        captions=["a random picture"] * batch_size,
        sizes=[SizeCond((pixels, pixels), (0, 0), (pixels, pixels))] * batch_size,
        weights=torch.ones(batch_size, device=device),
    )
    if shape.get("addition_embed_type") == "text_time":
        time_ids = shape["addition_time_embed_dim"] * 6
        pooled = shape["projection_class_embeddings_input_dim"] - time_ids
        batch.pooled = torch.randn(batch_size, pooled, device=device)
        ids = [pixels, pixels, 0, 0, pixels, pixels]
        batch.time_ids = torch.tensor([ids] * batch_size, device=device).float()
    return batch


def build_unet(shape: dict[str, Any], device: str, seed: int = 0) -> Any:
    """A random-weight UNet of `shape`, initialised on `device` (seconds on a
    GPU for SDXL's 2.6 B parameters; minutes on a CPU)."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        return UNet2DConditionModel(**shape)


def noise_scheduler() -> Any:
    from diffusers import DDPMScheduler

    # SD 1.5's and SDXL's training schedule (epsilon prediction).
    return DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
    )


def lora_module_count(unet: Any) -> int:
    return sum(1 for name, _ in unet.named_modules() if name.endswith(".lora_A"))


def reference_step(
    unet: Any, batch: RandomBatch, *, rank: int, device: str, dtype: Any
) -> Callable[[int], float]:
    """One step the way diffusers' example LoRA scripts
    (examples/text_to_image/train_text_to_image_lora.py and _sdxl.py) take it
    with --mixed_precision bf16, written here from their description:

    - frozen UNet cast to the mixed-precision dtype, then peft LoRA
      (r = lora_alpha = rank, gaussian init) on to_k/to_q/to_v/to_out.0;
      the LoRA weights stay in that dtype too (the scripts upcast them to
      float32 only for fp16);
    - torch AdamW (lr 1e-4, betas 0.9/0.999, weight decay 1e-2, eps 1e-8),
      constant schedule; the forward under autocast (what accelerate's
      mixed precision wraps it in); noise and timesteps drawn on the device;
      MSE on epsilon in float32; gradients clipped to norm 1; the loss read
      back every step (the scripts log it).

    Left out, as from ours: the VAE encode and the text encoders, which the
    scripts run on every step and our trainer runs once (cached latents);
    so the real script's step costs more than this one.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.to(device, dtype=dtype)
    unet.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights="gaussian",
            target_modules=["to_k", "to_q", "to_v", "to_out.0"],
        )
    )
    if dtype == torch.float16:
        for param in unet.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
    )
    scheduler = noise_scheduler()
    autocast = (
        torch.autocast(device.split(":", 1)[0], dtype=dtype)
        if dtype != torch.float32
        else contextlib.nullcontext()
    )
    kwargs = batch.unet_kwargs()

    def step(_: int) -> float:
        latents = batch.latents
        noise = torch.randn_like(latents)
        timesteps = torch.randint(
            0,
            scheduler.config.num_train_timesteps,
            (latents.shape[0],),
            device=latents.device,
        ).long()
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with autocast:
            prediction = unet(noisy, timesteps, **kwargs, return_dict=False)[0]
        loss = F.mse_loss(prediction.float(), noise.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    return step


def our_step(
    unet: Any,
    batch: RandomBatch,
    *,
    config: Any,
    family: str,
    device: str,
    dtype: Any,
) -> Callable[[int], float]:
    """The trainer's own step: its LoRA network (`LoraNetwork.attach`, the
    `config.lora_targets` set) and `TrainStep` (its optimizer, schedule, loss
    and random stream), fed the same cached batch on every step."""
    from training.ml.network import LoraNetwork
    from training.ml.step import TrainStep
    from training.ml.trainer import _compiled

    network = LoraNetwork.attach(
        unet, [], config, family=family, device=device, dtype=dtype
    )
    _compiled(unet, config, device, print)  # config.compile_unet: as the trainer does
    unet.train()
    kwargs = batch.unet_kwargs()
    step = TrainStep.create(
        config,
        unet,
        network.param_groups(),
        noise_scheduler(),
        next_batch=lambda: batch,
        conditioning=lambda _: kwargs,
        device=device,
        dtype=dtype,
    )
    return lambda number: step.optimizer_step(number)[0]


def measure(
    step: Callable[[int], float],
    *,
    warmup: int,
    steps: int,
    device: str,
    count_flops: bool,
) -> dict[str, Any]:
    """Seconds per step (after `warmup` steps), peak memory of the timed steps,
    and the FLOPs of one step as torch's FlopCounterMode counts them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for number in range(1, warmup + 1):
        step(number)
    flops = 0
    if count_flops:
        with FlopCounterMode(display=False) as counter:
            step(warmup + 1)
        flops = counter.get_total_flops()
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats()
    timings, losses = [], []
    for number in range(warmup + 2, warmup + 2 + steps):
        sync()
        begun = time.perf_counter()
        losses.append(step(number))
        sync()
        timings.append(time.perf_counter() - begun)
    return {
        "seconds_per_step": statistics.median(timings),
        "seconds_min": min(timings),
        "seconds_max": max(timings),
        "timed_steps": steps,
        "warmup_steps": warmup,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "flops_per_step": flops,
        "last_loss": losses[-1],
    }


TRAIN_VARIANTS = ("reference", "ours-attention", "ours-transformer")
# Also known: "ours-transformer-compiled" (compile_unet, CUDA only; its first
# steps compile for a minute or more, so give it --warmup 3 or so).


def train_shapes(tiny: bool) -> dict[str, dict[str, Any]]:
    from training.ml import shapes

    if tiny:
        return {"sd1": shapes.TINY_UNET, "sdxl": shapes.TINY_SDXL_UNET}
    return {"sd1": shapes.SD15_UNET, "sdxl": shapes.SDXL_UNET}


def bench_one(
    args: argparse.Namespace, family: str, shape: dict[str, Any], variant: str
) -> dict[str, Any]:

    from training.ml.config import TrainConfig
    from training.ml.device import pick_dtype

    device = args.device
    dtype, note = pick_dtype(device, args.precision)
    if note:
        print(f"  note: {note}")
    unet = build_unet(shape, device)
    batch = random_batch(shape, args.batch_size, device)
    if variant == "reference":
        step = reference_step(unet, batch, rank=args.rank, device=device, dtype=dtype)
    else:
        config = TrainConfig(
            base_model="random-weights",
            output_dir="unused",
            rank=args.rank,
            batch_size=args.batch_size,
            gradient_accumulation=1,  # one batch of `batch_size` per step, as there
            mixed_precision=args.precision,
            gradient_checkpointing=args.gradient_checkpointing,
            lora_targets=variant.removeprefix("ours-").removesuffix("-compiled"),
            compile_unet=variant.endswith("-compiled"),
        )
        step = our_step(
            unet, batch, config=config, family=family, device=device, dtype=dtype
        )
    figures = measure(
        step,
        warmup=args.warmup,
        steps=args.steps,
        device=device,
        # torch's FlopCounterMode and a compiled module do not mix: the
        # uncompiled variant's count stands for both.
        count_flops=args.count_flops and not variant.endswith("-compiled"),
    )
    side = shape["sample_size"]
    figures.update(
        family=family,
        variant=variant,
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        batch_size=args.batch_size,
        latents=f"4x{side}x{side}",
        pixels=side * 8,
        rank=args.rank,
        gradient_checkpointing=args.gradient_checkpointing,
        unet_params=sum(p.numel() for p in unet.parameters() if not p.requires_grad),
        trainable_params=sum(p.numel() for p in unet.parameters() if p.requires_grad),
        lora_modules=lora_module_count(unet),
        images_per_second=args.batch_size / figures["seconds_per_step"],
    )
    if figures["flops_per_step"] and device.startswith("cuda"):
        achieved = figures["flops_per_step"] / figures["seconds_per_step"]
        figures["mfu"] = achieved / (args.peak_tflops * 1e12)
    del step, unet, batch
    free_memory(device)
    return figures


def free_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def print_train_row(row: dict[str, Any]) -> None:
    peak = row["peak_gpu_gib"]
    ratio = row.get("ratio_to_reference")
    print(
        f"  {row['variant']:<17} {row['lora_modules']:>4} LoRA modules, "
        f"{row['trainable_params'] / 1e6:6.2f} M trained: "
        f"median {row['seconds_per_step']:.4f} s/step "
        f"(min {row['seconds_min']:.4f}, max {row['seconds_max']:.4f}), "
        f"{row['images_per_second']:.2f} images/s"
        + (f", peak {peak:.2f} GiB" if peak is not None else "")
        + (f", MFU {100 * row['mfu']:.1f}%" if "mfu" in row else "")
        + (f", {ratio:.2f}x the reference" if ratio else "")
    )


def bench_gpu(args: argparse.Namespace) -> None:
    import torch

    quiet_libraries()
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(
            "--gpu needs CUDA, and torch sees no CUDA device here "
            f"(torch {torch.__version__}). On a CPU-only machine use "
            "`--gpu --device cpu --tiny-shape` to check the code path, or --tiny."
        )
    card = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    shapes_by_family = train_shapes(args.tiny_shape)
    rows: list[dict[str, Any]] = []
    for family in args.families.split(","):
        shape = shapes_by_family[family]
        side = shape["sample_size"]
        print(
            f"== {family}{' (tiny shape)' if args.tiny_shape else ''}: "
            f"{side * 8} px (latents 4x{side}x{side}), batch {args.batch_size}, "
            f"rank {args.rank}, {args.precision}, gradient checkpointing "
            f"{'on' if args.gradient_checkpointing else 'off'}, {card} =="
        )
        reference = None
        for variant in args.variants.split(","):
            try:
                row = bench_one(args, family, shape, variant)
            except Exception as error:  # noqa: BLE001 - the other figures still count
                # One failure (out of memory, say) must not cost the GPU call
                # the figures of the other steps.
                print(f"  {variant}: FAILED: {type(error).__name__}: {error}")
                rows.append(
                    {"family": family, "variant": variant, "error": repr(error)}
                )
                free_memory(device)
                continue
            if variant == "reference":
                reference = row["seconds_per_step"]
            elif reference:
                row["ratio_to_reference"] = row["seconds_per_step"] / reference
            rows.append(row)
            print_train_row(row)
    if not device.startswith("cuda"):
        print("  (CPU: a check of the code path; its times mean nothing for a GPU)")
    print(f"  peak RSS of the process: {peak_rss_mib():.0f} MiB")
    if args.json:
        write_json(args.json, {"bench": "train", "device": card, "rows": rows})
    failed = [f"{r['family']} {r['variant']}" for r in rows if "error" in r]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


def write_json(path: str, body: dict[str, Any]) -> None:
    import json

    body["versions"] = library_versions()
    body["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    Path(path).write_text(json.dumps(body, indent=2, default=str) + "\n")
    print(f"  figures written to {path}")


def library_versions() -> dict[str, str]:
    import importlib.metadata as metadata

    found = {"python": sys.version.split()[0]}
    for name in ("torch", "diffusers", "transformers", "peft", "accelerate"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--tiny", action="store_true", help="the tiny pipeline (default)")
    mode.add_argument("--gpu", action="store_true", help="SD 1.5 and SDXL UNet steps")
    parser.add_argument("--steps", type=int, default=None, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=64, help="--tiny only")
    parser.add_argument("--batch-size", type=int, default=4, help="--gpu only")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "no"))
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny-shape", action="store_true", help="--gpu on tiny UNets")
    parser.add_argument("--families", default="sd1,sdxl", help="--gpu: sd1, sdxl")
    parser.add_argument(
        "--variants", default=",".join(TRAIN_VARIANTS), help="--gpu: which steps"
    )
    parser.add_argument(
        "--no-flops", dest="count_flops", action="store_false", help="skip MFU"
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--json", default="", help="--gpu: write figures here")
    args = parser.parse_args()
    import torch

    print(
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPU(s), {torch.get_num_threads()} torch threads"
    )
    if args.gpu:
        args.steps = args.steps or 10
        bench_gpu(args)
    else:
        args.steps = args.steps or 30
        args.warmup = max(args.warmup, 1)
        bench_tiny(args)


if __name__ == "__main__":
    main()
