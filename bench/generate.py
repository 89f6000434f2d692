"""Benchmarks: text-to-image speed with a LoRA stack, fused and not.

Prints figures; asserts nothing. Four ways to render the same images, timed
in turns in one invocation: diffusers' plain pipeline with the LoRAs loaded
as adapters (the baseline), and the generator the worker uses
(`training.ml.generate`: a warm PipelineHolder, `generate_images`) with the
stack fused (the default), with it as adapters (`fuse_loras=False`), and
with no LoRA; then ratios to the baseline. Two modes:
  --tiny (the default): the tiny offline pipeline on the CPU at 64 px.
  --gpu: a Stable Diffusion 1.5-shaped pipeline with random weights (UNet
      860 M, VAE and CLIP-L text encoder of SD 1.5's shape), saved and loaded
      the way a real base model is, fp16 on CUDA with PyTorch's SDPA
      attention; seconds per 512 px image at 25 steps (DDIM, guidance 7.5,
      VAE decode included), with two LoRAs (ranks 16 and 8,
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
import warnings
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


def plain_pipeline(base: Path, loras: Any, *, device: str, dtype: Any) -> Any:
    """The baseline: diffusers as its docs show it, the LoRAs loaded as
    adapters (not fused), DDIM from the model's own scheduler config."""
    from diffusers import DDIMScheduler

    from training.ml.base import load_pipeline  # from_pretrained, no safety checker

    pipe = load_pipeline(str(base), torch_dtype=dtype).to(device)
    with warnings.catch_warnings():  # peft's note on every adapter after the first
        warnings.filterwarnings("ignore", "Already found a `peft_config`")
        for index, lora in enumerate(loras):
            pipe.load_lora_weights(lora.path, adapter_name=f"lora{index}")
    pipe.set_adapters(
        [f"lora{i}" for i in range(len(loras))], [lora.weight for lora in loras]
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe


def plain_render(pipe: Any, spec: Any, seed: int, device: str) -> Any:
    import torch

    generator_device = device if device.startswith("cuda") else "cpu"
    return pipe(
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt or None,
        num_inference_steps=spec.steps,
        guidance_scale=spec.guidance,
        width=spec.width,
        height=spec.height,
        generator=torch.Generator(generator_device).manual_seed(seed),
    ).images[0]


def time_rounds(
    variants: dict[str, Any], *, images: int, warmup: int, sync: Any
) -> dict[str, list[float]]:
    """Seconds per image for each variant, one image of each per round, the
    order rotated every round: a load that comes and goes (this machine is
    shared) falls on all of them alike."""
    for render in variants.values():
        for seed in range(warmup):
            render(1000 + seed)
    timings: dict[str, list[float]] = {label: [] for label in variants}
    labels = list(variants)
    for seed in range(images):
        for label in labels[seed % len(labels) :] + labels[: seed % len(labels)]:
            sync()
            begun = time.perf_counter()
            variants[label](seed)
            sync()
            timings[label].append(time.perf_counter() - begun)
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


def stack_change_seconds(holder: Any, stacks: tuple[Any, Any], times: int) -> float:
    """Median seconds to swap one fused stack for another (unfuse, restore the
    base copy, load, fuse): paid once by the first job of a new stack."""
    from training.ml.generate import use_loras

    took = []
    for index in range(times):
        begun = time.perf_counter()
        use_loras(holder.pipe, stacks[index % 2])
        took.append(time.perf_counter() - begun)
    return statistics.median(took)


def max_pixel_difference(one: Any, other: Any) -> int:
    import numpy as np

    a, b = (np.asarray(image, dtype=np.int16) for image in (one, other))
    return int(abs(a - b).max())


def run(args: argparse.Namespace, *, device: str, tiny_shape: bool) -> None:
    import torch

    from training.ml.device import pick_dtype
    from training.ml.generate import (
        GenerateSpec,
        LoraSpec,
        PipelineHolder,
        generate_images,
    )

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

        def holder(fuse: bool) -> Any:
            return PipelineHolder(
                str(base),
                device=device,
                mixed_precision=args.precision,
                fuse_loras=fuse,
            )

        began = time.perf_counter()
        fused, unfused, bare = holder(True), holder(False), holder(True)
        pipe = fused.pipe
        sync()
        params = sum(p.numel() for p in pipe.unet.parameters())
        print(
            f"  loaded in {time.perf_counter() - began:.1f} s on {fused.device}: "
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
            loras=loras,
        )
        dtype, _ = pick_dtype(device, args.precision)
        plain = plain_pipeline(base, loras, device=device, dtype=dtype)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        size = f"{args.size} px, {args.steps} DDIM steps, guidance 7.5 (CFG)"
        print(f"== {size}; 2 LoRAs: rank 16 at 0.8, rank 8 at 0.5 ==")

        def ours(holder: Any, request: Any) -> Any:
            return lambda seed: generate_images(holder, replace(request, seed=seed))[0]

        variants = {
            "diffusers, LoRAs as adapters (baseline)": lambda seed: plain_render(
                plain, spec, seed, device
            ),
            "ours, LoRAs fused": ours(fused, spec),
            "ours, LoRAs as adapters (unfused)": ours(unfused, spec),
            "ours, no LoRA": ours(bare, replace(spec, loras=())),
        }
        timings = time_rounds(
            variants, images=args.images, warmup=args.warmup, sync=sync
        )
        medians = {label: report(label, t) for label, t in timings.items()}
        baseline = medians["diffusers, LoRAs as adapters (baseline)"]
        fastest = min(timings["diffusers, LoRAs as adapters (baseline)"])
        print("  ratios to the baseline, of medians and of minimums (lower is faster):")
        for label, median in list(medians.items())[1:]:
            print(
                f"    {label}: {median / baseline:.2f}x, "
                f"{min(timings[label]) / fastest:.2f}x"
            )
        gap = max_pixel_difference(
            variants["ours, LoRAs fused"](0), plain_render(plain, spec, 0, device)
        )
        print(f"  fused vs baseline image, seed 0: max pixel difference {gap}/255")
        other = (LoraSpec(loras[1].path, 0.7, "b"),)
        swap = stack_change_seconds(fused, (other, loras), times=4)
        print(f"  a stack change on the fused pipeline: {swap:.3f} s, once per change")
        if device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"  peak GPU memory (4 pipelines loaded): {peak:.2f} GiB")
        for made in (fused, unfused, bare):
            made.close()
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
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's)"
    )
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

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
