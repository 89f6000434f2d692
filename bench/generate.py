"""Benchmarks (run by hand): text-to-image speed, with and without LoRAs.

Prints figures; asserts nothing. Two modes, both through the generator the
worker uses (`training.ml.generate`: a warm PipelineHolder, LoRAs as named
adapters, `generate_images`):
  --tiny (the default): the tiny offline pipeline on the CPU at 64 px;
      seconds per image and images per second, without LoRAs and with two.
  --gpu: a Stable Diffusion 1.5-shaped pipeline with random weights (UNet
      860 M, VAE and CLIP-L text encoder of SD 1.5's shape), saved and loaded
      the way a real base model is, fp16 on CUDA with PyTorch's SDPA
      attention; seconds per 512 px image at 25 steps (DDIM, guidance 7.5,
      VAE decode included), without LoRAs and with two (ranks 16 and 8,
      weights 0.8 and 0.5). The target is 0.4 s per image on an H200-class
      card. `--device cpu --tiny-shape` runs the same code on the tiny
      shapes, to check it without a GPU.
"""

from __future__ import annotations

import argparse
import os
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

from bench.train import peak_rss_mib  # noqa: E402


def random_kohya_lora(unet: Any, path: Path, rank: int, seed: int) -> Path:
    """A kohya LoRA with random weights on every attention projection of `unet`
    (what the trainer targets), big enough to move the output."""
    import torch

    from training.ml.kohya import save_kohya_lora

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in unet.named_modules():
        if not name.endswith(("to_q", "to_k", "to_v", "to_out.0")):
            continue
        key = "lora_unet_" + name.replace(".", "_")
        down = torch.randn(rank, module.in_features, generator=generator)
        up = torch.randn(module.out_features, rank, generator=generator)
        state[f"{key}.lora_down.weight"] = down / module.in_features**0.5
        state[f"{key}.lora_up.weight"] = up * 0.05
        state[f"{key}.alpha"] = torch.tensor(float(rank))
    return save_kohya_lora(state, path, {"ss_network_dim": str(rank)})


def build_pipeline(folder: Path, *, tiny_shape: bool, device: str) -> Path:
    """Write a random-weight SD 1.5-shaped (or tiny) pipeline to `folder`."""
    import torch

    from training.ml import shapes

    parts = (
        (shapes.TINY_UNET, shapes.TINY_VAE, shapes.TINY_TEXT)
        if tiny_shape
        else (shapes.SD15_UNET, shapes.SD15_VAE, shapes.SD15_TEXT)
    )
    # Weights initialised where they are used: fast on a GPU.
    pipe = shapes.assemble_pipeline(*parts, device=device)
    if device.startswith("cuda"):
        pipe = pipe.to(torch.float16)  # what a real fp16 checkpoint holds
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def time_images(
    holder: Any, spec: Any, *, images: int, warmup: int, sync: Any
) -> list[float]:
    from training.ml.generate import generate_images

    for seed in range(warmup):
        generate_images(holder, replace(spec, seed=1000 + seed))
    timings = []
    for seed in range(images):
        sync()
        begun = time.perf_counter()
        generate_images(holder, replace(spec, seed=seed))
        sync()
        timings.append(time.perf_counter() - begun)
    return timings


def report(label: str, timings: list[float]) -> float:
    median = statistics.median(timings)
    print(
        f"  {label}: median {median:.3f} s per image ({1 / median:.2f} images/s), "
        f"min {min(timings):.3f}, max {max(timings):.3f} over {len(timings)}"
    )
    return median


def attention_kind(pipe: Any) -> str:
    names = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
    return ", ".join(sorted(names))


def run(args: argparse.Namespace, *, device: str, tiny_shape: bool) -> None:
    import torch

    from training.ml.generate import GenerateSpec, LoraSpec, PipelineHolder

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory(prefix="bench-generate-") as scratch:
        work = Path(scratch)
        if tiny_shape and not args.gpu:
            from training.ml.tiny import build_tiny_pipeline

            base = build_tiny_pipeline(work / "tiny-sd")
        else:
            began = time.perf_counter()
            base = build_pipeline(work / "sd15", tiny_shape=tiny_shape, device=device)
            took = time.perf_counter() - began
            print(f"  built and saved the random pipeline in {took:.1f} s")
        began = time.perf_counter()
        holder = PipelineHolder(
            str(base), device=device, mixed_precision=args.precision
        )
        pipe = holder.pipe
        sync()
        params = sum(p.numel() for p in pipe.unet.parameters())
        print(
            f"  loaded in {time.perf_counter() - began:.1f} s on {holder.device}: "
            f"UNet {params / 1e6:.0f} M params, {pipe.unet.dtype}, "
            f"attention {attention_kind(pipe)}"
        )
        loras = (
            LoraSpec(
                str(random_kohya_lora(pipe.unet, work / "a.safetensors", 16, 1)),
                0.8,
                "a",
            ),
            LoraSpec(
                str(random_kohya_lora(pipe.unet, work / "b.safetensors", 8, 2)),
                0.5,
                "b",
            ),
        )
        spec = GenerateSpec(
            "a red circle on a speckled background",
            negative_prompt="blurry",
            steps=args.steps,
            guidance=7.5,
            width=args.size,
            height=args.size,
            scheduler="ddim",
        )
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        size = f"{args.size} px, {args.steps} DDIM steps, guidance 7.5 (CFG)"
        print(f"== {size} ==")
        plain = time_images(
            holder, spec, images=args.images, warmup=args.warmup, sync=sync
        )
        base_time = report("no LoRA", plain)
        stacked = time_images(
            holder,
            replace(spec, loras=loras),
            images=args.images,
            warmup=args.warmup,
            sync=sync,
        )
        lora_time = report("2 LoRAs (rank 16 at 0.8, rank 8 at 0.5)", stacked)
        print(f"  LoRA overhead: {100 * (lora_time / base_time - 1):+.0f}%")
        if device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"  peak GPU memory: {peak:.2f} GiB")
        holder.close()
    print(f"  peak RSS of the process: {peak_rss_mib():.0f} MiB")


def quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--tiny", action="store_true", help="tiny pipeline, CPU (default)"
    )
    mode.add_argument("--gpu", action="store_true", help="SD 1.5 shape, fp16, CUDA")
    parser.add_argument(
        "--device", default=None, help="default: cpu, or cuda with --gpu"
    )
    parser.add_argument(
        "--tiny-shape", action="store_true", help="--gpu on tiny shapes"
    )
    parser.add_argument("--size", type=int, default=None, help="default 64, or 512")
    parser.add_argument("--steps", type=int, default=None, help="default 20, or 25")
    parser.add_argument("--images", type=int, default=10, help="timed images")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="fp16", choices=("fp16", "bf16", "no"))
    args = parser.parse_args()
    import torch

    quiet_libraries()

    device = args.device or ("cuda" if args.gpu else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(
            "--gpu needs CUDA, and torch sees no CUDA device here "
            f"(torch {torch.__version__}). On a CPU-only machine use "
            "`--gpu --device cpu --tiny-shape` to check the code path, or --tiny."
        )
    tiny_shape = not args.gpu or args.tiny_shape
    args.size = args.size or (64 if tiny_shape else 512)
    args.steps = args.steps or (20 if not args.gpu else 25)
    card = (
        f", {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""
    )
    print(
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPU(s), {torch.get_num_threads()} torch threads{card}"
    )
    run(args, device=device, tiny_shape=tiny_shape)


if __name__ == "__main__":
    main()
