"""Benchmarks (run by hand): LoRA training step time, throughput and memory.

Prints figures; asserts nothing. Two modes:
  --tiny (the default): the whole `train_lora` on the tiny
      offline pipeline at 64 px, batch 1, no accumulation; seconds per
      optimizer step (median after warm-up), end-to-end wall time, peak RSS,
      and the tiny model's generation time per image.
  --gpu: the trainer's own step (`_LoraRun.optimizer_step`) on a randomly
      initialised UNet of SD 1.5's shape (860 M parameters), random 4x64x64
      latents and 77x768 text states, bf16 autocast, LoRA rank 8. Seconds per
      step, images per second, peak GPU memory, and model FLOPs utilisation:
      the FLOPs of one step counted by torch's FlopCounterMode, per second,
      over the card's dense bf16 peak (--peak-tflops; 989 for H100/H200 SXM).
      `--device cpu --tiny-shape` runs the same code on the CPU with the tiny
      UNet, to check it without a GPU (its MFU means nothing).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
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


def bench_gpu(args: argparse.Namespace) -> None:
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from training.ml import shapes
    from training.ml.config import TrainConfig
    from training.ml.device import pick_dtype
    from training.ml.trainer import _add_lora, _Encoded, _LoraRun

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(
            "--gpu needs CUDA, and torch sees no CUDA device here "
            f"(torch {torch.__version__}). On a CPU-only machine use "
            "`--gpu --device cpu --tiny-shape` to check the code path, or --tiny."
        )
    shape = shapes.TINY_UNET if args.tiny_shape else shapes.SD15_UNET
    config = TrainConfig(
        base_model="random-weights",
        output_dir="unused",
        rank=args.rank,
        alpha=float(args.rank),
        warmup_steps=0,
        gradient_accumulation=1,
        batch_size=args.batch_size,
        mixed_precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    dtype, note = pick_dtype(device, config.mixed_precision)
    if note:
        print(f"  note: {note}")
    torch.manual_seed(0)
    with torch.device(device):  # initialise the weights where they will live
        unet = UNet2DConditionModel(**shape)
    unet = _add_lora(unet, config, device, dtype)
    side, width = shape["sample_size"], shape["cross_attention_dim"]
    rows = 4 * args.batch_size
    encoded = _Encoded(
        latents=torch.randn(rows, 4, side, side, device=device),
        flipped=torch.randn(rows, 4, side, side, device=device),
        text=torch.randn(rows, 77, width, device=device),
    )
    scheduler = DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    run = _LoraRun(config, unet, scheduler, encoded, device, dtype)
    trainable = sum(p.numel() for p in run.params.values())
    total = sum(p.numel() for p in unet.parameters())

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for step in range(args.warmup):
        run.optimizer_step(step + 1)
    with FlopCounterMode(display=False) as counter:
        run.optimizer_step(args.warmup + 1)
    flops = counter.get_total_flops()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    timings = []
    for step in range(args.steps):
        sync()
        begun = time.perf_counter()
        run.optimizer_step(args.warmup + 2 + step)
        sync()
        timings.append(time.perf_counter() - begun)
    per_step = statistics.median(timings)
    name = "tiny UNet" if args.tiny_shape else "SD 1.5 UNet"
    print(f"== {name} ({total / 1e6:.0f} M params), LoRA rank {args.rank} ==")
    card = f" ({torch.cuda.get_device_name(device)})" if device != "cpu" else ""
    precision = "float32" if dtype == torch.float32 else f"{dtype} autocast"
    print(
        f"  device {device}{card}, {precision}, batch {args.batch_size}, "
        f"latents 4x{side}x{side}, gradient checkpointing "
        f"{'on' if args.gradient_checkpointing else 'off'}"
    )
    print(f"  trainable LoRA parameters: {trainable:,}")
    print(
        f"  seconds per step: median {per_step:.4f}, min {min(timings):.4f}, "
        f"max {max(timings):.4f} (over {args.steps} steps after {args.warmup} warm-up)"
    )
    print(f"  images per second: {args.batch_size / per_step:.2f}")
    if device.startswith("cuda"):
        print(f"  peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    achieved = flops / per_step
    print(
        f"  counted FLOPs per step: {flops / 1e12:.3f} TFLOP; "
        f"achieved {achieved / 1e12:.1f} TFLOP/s; MFU "
        f"{100 * achieved / (args.peak_tflops * 1e12):.1f}% "
        f"of {args.peak_tflops:g} TFLOP/s"
    )
    if not device.startswith("cuda"):
        print("  (CPU: attention FLOPs are not counted and MFU is not meaningful)")
    print(f"  peak RSS of the process: {peak_rss_mib():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--tiny", action="store_true", help="the tiny pipeline (default)")
    mode.add_argument("--gpu", action="store_true", help="SD 1.5-shaped UNet step")
    parser.add_argument("--steps", type=int, default=None, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=64, help="--tiny only")
    parser.add_argument("--batch-size", type=int, default=8, help="--gpu only")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "no"))
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny-shape", action="store_true", help="--gpu on tiny UNet")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    import torch

    print(
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPU(s), {torch.get_num_threads()} torch threads"
    )
    if args.gpu:
        args.steps = args.steps or 20
        bench_gpu(args)
    else:
        args.steps = args.steps or 30
        args.warmup = max(args.warmup, 1)
        bench_tiny(args)


if __name__ == "__main__":
    main()
