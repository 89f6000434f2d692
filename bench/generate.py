"""Benchmarks: text-to-image speed with a LoRA stack, fused and not.

Prints figures; asserts nothing. Up to five ways to render the same images,
timed in turns in one invocation: diffusers' plain pipeline with the LoRAs
loaded as adapters (the baseline) and without them, and the generator the
worker uses (`training.ml.generate`: a warm PipelineHolder,
`generate_images`) with the stack fused (the default), with it as adapters
(`fuse_loras=False`), and with no LoRA; then ratios to the baseline. The
LoRAs are random kohya files on every attention projection (ranks 16 and 8,
weights 0.8 and 0.5; `--loras 1` keeps the first). Two modes:
  --tiny (the default): the tiny offline pipeline on the CPU at 64 px.
  --gpu: a pipeline of Stable Diffusion 1.5's shape (`--family sd1`: UNet
      860 M, VAE, CLIP-L; 512 px) or SDXL's (`--family sdxl`: UNet 2.6 B,
      CLIP-L and OpenCLIP-bigG; 1024 px) with random weights, saved and
      loaded the way a real base model is, fp16 on CUDA with PyTorch's SDPA
      attention; seconds per image at 25 steps (DDIM for SD 1.5, Euler for
      SDXL, guidance 7.5, VAE decode included). The target is 0.4 s per
      SD 1.5 image on an H200-class card. `--device cpu --tiny-shape` runs
      the same code on the tiny shapes, to check it without a GPU.
      `--variants` picks some of plain-lora (always run: the baseline),
      plain, fused, unfused, bare; `--json PATH` writes the figures.
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

from bench.train import peak_rss_mib, write_json  # noqa: E402

VARIANTS = {
    "plain-lora": "diffusers, LoRAs as adapters (baseline)",
    "plain": "diffusers, no LoRA",
    "fused": "ours, LoRAs fused",
    "unfused": "ours, LoRAs as adapters (unfused)",
    "bare": "ours, no LoRA",
}
BASELINE = VARIANTS["plain-lora"]


def random_kohya_lora(
    unet: Any, path: Path, rank: int, seed: int, family: str = "sd1"
) -> Path:
    """A kohya LoRA with random weights on every attention projection of `unet`,
    big enough to move the output, marked with its model family; SDXL modules
    under sd-scripts' (SGM) names, as our trainer writes them."""
    import torch

    from training.ml.family import KOHYA_BASE_VERSION
    from training.ml.kohya import save_kohya_lora
    from training.ml.sdxl_keys import SgmNames

    rename = SgmNames(unet.config).to_sgm if family == "sdxl" else (lambda n: n)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in unet.named_modules():
        if not name.endswith(("to_q", "to_k", "to_v", "to_out.0")):
            continue
        key = "lora_unet_" + rename(name).replace(".", "_")
        down = torch.randn(rank, module.in_features, generator=generator)
        up = torch.randn(module.out_features, rank, generator=generator)
        state[f"{key}.lora_down.weight"] = down / module.in_features**0.5
        state[f"{key}.lora_up.weight"] = up * 0.05
        state[f"{key}.alpha"] = torch.tensor(float(rank))
    metadata = {
        "ss_network_dim": str(rank),
        "ss_base_model_version": KOHYA_BASE_VERSION[family],
        "family": family,
    }
    return save_kohya_lora(state, path, metadata)


def build_pipeline(folder: Path, *, family: str, tiny_shape: bool, device: str) -> Path:
    """Write a random-weight SD 1.5- or SDXL-shaped (or tiny) pipeline to `folder`."""
    import torch

    from training.ml import shapes

    if family == "sdxl":
        parts = (
            (shapes.TINY_SDXL_UNET, shapes.TINY_SDXL_VAE, shapes.TINY_TEXT)
            + (shapes.TINY_TEXT_2,)
            if tiny_shape
            else (shapes.SDXL_UNET, shapes.SDXL_VAE, shapes.SDXL_TEXT)
            + (shapes.SDXL_TEXT_2,)
        )
        pipe = shapes.assemble_sdxl_pipeline(*parts, device=device)
    else:
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


def plain_pipeline(
    base: Path, loras: Any, *, device: str, dtype: Any, scheduler: str
) -> Any:
    """The baseline: diffusers as its docs show it, the LoRAs (if any) loaded
    as adapters (not fused), the sampler built from the model's own scheduler
    config as ours is."""
    import diffusers

    from training.ml.base import load_pipeline  # from_pretrained, no safety checker
    from training.ml.generate import SCHEDULERS

    pipe = load_pipeline(str(base), torch_dtype=dtype).to(device)
    with warnings.catch_warnings():  # peft's note on every adapter after the first
        warnings.filterwarnings("ignore", "Already found a `peft_config`")
        for index, lora in enumerate(loras):
            pipe.load_lora_weights(lora.path, adapter_name=f"lora{index}")
    if loras:
        pipe.set_adapters(
            [f"lora{i}" for i in range(len(loras))], [lora.weight for lora in loras]
        )
    class_name, options = SCHEDULERS[scheduler]
    pipe.scheduler = getattr(diffusers, class_name).from_config(
        pipe.scheduler.config, **options
    )
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


def run(args: argparse.Namespace, *, device: str, tiny_shape: bool) -> dict:
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

    family = args.family
    wanted = ["plain-lora"] + [
        v for v in args.variants.split(",") if v and v != "plain-lora"
    ]
    unknown = set(wanted) - set(VARIANTS)
    if unknown:
        sys.exit(f"unknown --variants {sorted(unknown)}; use some of {list(VARIANTS)}")
    figures: dict[str, Any] = {"family": family, "device": device}
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as scratch:
        work = Path(scratch)
        began = time.perf_counter()
        if tiny_shape and not args.gpu:
            from training.ml.tiny import build_tiny_pipeline

            base = build_tiny_pipeline(work / "tiny", family=family)
        else:
            base = build_pipeline(
                work / family, family=family, tiny_shape=tiny_shape, device=device
            )
        figures["build_seconds"] = time.perf_counter() - began
        print(
            f"  built and saved the random pipeline in {figures['build_seconds']:.1f} s"
        )

        def holder(fuse: bool) -> Any:
            return PipelineHolder(
                str(base),
                device=device,
                mixed_precision=args.precision,
                fuse_loras=fuse,
            )

        began = time.perf_counter()
        holders = {
            name: holder(name != "unfused")
            for name in ("fused", "unfused", "bare")
            if name in wanted
        }
        first = next(iter(holders.values()), None) or holder(True)
        pipe = first.pipe
        for made in holders.values():
            made.pipe  # noqa: B018 - load now, not inside the timed rounds
        sync()
        params = sum(p.numel() for p in pipe.unet.parameters())
        figures["load_seconds"] = time.perf_counter() - began
        figures["unet_params"] = params
        print(
            f"  loaded in {figures['load_seconds']:.1f} s on {first.device}: "
            f"UNet {params / 1e6:.0f} M params, {pipe.unet.dtype}, "
            f"attention {attention_kind(pipe)}"
        )
        made_loras = [
            LoraSpec(
                str(
                    random_kohya_lora(
                        pipe.unet, work / f"{name}.safetensors", rank, seed, family
                    )
                ),
                weight,
                name,
            )
            for name, rank, seed, weight in (("a", 16, 1, 0.8), ("b", 8, 2, 0.5))
        ]
        loras = tuple(made_loras[: args.loras])
        scheduler = "euler" if family == "sdxl" else "ddim"
        spec = GenerateSpec(
            "a red circle on a speckled background",
            negative_prompt="blurry",
            steps=args.steps,
            guidance=7.5,
            width=args.size,
            height=args.size,
            scheduler=scheduler,
            loras=loras,
        )
        dtype, _ = pick_dtype(device, args.precision)
        plains = {
            name: plain_pipeline(
                base,
                loras if name == "plain-lora" else (),
                device=device,
                dtype=dtype,
                scheduler=scheduler,
            )
            for name in ("plain-lora", "plain")
            if name in wanted
        }
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        stack = ", ".join(
            f"rank {r} at {w}" for r, w in ((16, 0.8), (8, 0.5))[: len(loras)]
        )
        size = f"{args.size} px, {args.steps} {scheduler} steps, guidance 7.5 (CFG)"
        print(f"== {family}: {size}; {len(loras)} LoRA(s): {stack} ==")

        def ours(holder: Any, request: Any) -> Any:
            return lambda seed: generate_images(holder, replace(request, seed=seed))[0]

        def plain(name: str) -> Any:
            return lambda seed: plain_render(plains[name], spec, seed, device)

        renders = {
            "plain-lora": lambda: plain("plain-lora"),
            "plain": lambda: plain("plain"),
            "fused": lambda: ours(holders["fused"], spec),
            "unfused": lambda: ours(holders["unfused"], spec),
            "bare": lambda: ours(holders["bare"], replace(spec, loras=())),
        }
        variants = {VARIANTS[name]: renders[name]() for name in wanted}
        timings = time_rounds(
            variants, images=args.images, warmup=args.warmup, sync=sync
        )
        medians = {label: report(label, t) for label, t in timings.items()}
        baseline = medians[BASELINE]
        fastest = min(timings[BASELINE])
        print("  ratios to the baseline, of medians and of minimums (lower is faster):")
        rows = []
        for label, median in medians.items():
            row = {
                "variant": label,
                "seconds_per_image": median,
                "seconds_min": min(timings[label]),
                "seconds_max": max(timings[label]),
                "images": len(timings[label]),
                "ratio_to_baseline": median / baseline,
                "ratio_of_minimums": min(timings[label]) / fastest,
            }
            rows.append(row)
            if label != BASELINE:
                print(
                    f"    {label}: {row['ratio_to_baseline']:.2f}x, "
                    f"{row['ratio_of_minimums']:.2f}x"
                )
        figures.update(
            rows=rows,
            size=args.size,
            steps=args.steps,
            scheduler=scheduler,
            loras=len(loras),
            precision=str(dtype).removeprefix("torch."),
        )
        if "fused" in wanted:
            gap = max_pixel_difference(
                variants[VARIANTS["fused"]](0),
                plain_render(plains["plain-lora"], spec, 0, device),
            )
            figures["fused_vs_baseline_max_pixel_difference"] = gap
            print(f"  fused vs baseline image, seed 0: max pixel difference {gap}/255")
            if "plain" in wanted:  # the LoRA did load: it moves the image
                moved = max_pixel_difference(
                    plain_render(plains["plain"], spec, 0, device),
                    plain_render(plains["plain-lora"], spec, 0, device),
                )
                figures["lora_vs_no_lora_max_pixel_difference"] = moved
                print(f"  with vs without the LoRA, seed 0: max difference {moved}/255")
            other = (LoraSpec(loras[-1].path, 0.7, "b"),)
            swap = stack_change_seconds(holders["fused"], (other, loras), times=4)
            figures["stack_change_seconds"] = swap
            print(
                f"  a stack change on the fused pipeline: {swap:.3f} s, once per change"
            )
        if device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated() / 2**30
            figures["peak_gpu_gib"] = peak
            loaded = len(holders) + len(plains)
            print(f"  peak GPU memory ({loaded} pipelines loaded): {peak:.2f} GiB")
        for made in holders.values():
            made.close()
        first.close()
        plains.clear()
    print(f"  peak RSS of the process: {peak_rss_mib():.0f} MiB")
    return figures


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
    mode.add_argument(
        "--gpu", action="store_true", help="SD 1.5 or SDXL shape, fp16, CUDA"
    )
    parser.add_argument(
        "--device", default=None, help="default: cpu, or cuda with --gpu"
    )
    parser.add_argument(
        "--tiny-shape", action="store_true", help="--gpu on tiny shapes"
    )
    parser.add_argument(
        "--size", type=int, default=None, help="default 64, or the family's resolution"
    )
    parser.add_argument("--steps", type=int, default=None, help="default 20, or 25")
    parser.add_argument("--images", type=int, default=10, help="timed images")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="fp16", choices=("fp16", "bf16", "no"))
    parser.add_argument("--family", default="sd1", choices=("sd1", "sdxl"))
    parser.add_argument("--loras", type=int, default=2, choices=(0, 1, 2))
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"some of {list(VARIANTS)}"
    )
    parser.add_argument("--json", default="", help="write the figures here")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's)"
    )
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    quiet_libraries()
    from training.ml.family import DEFAULT_RESOLUTION

    device = args.device or ("cuda" if args.gpu else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(
            "--gpu needs CUDA, and torch sees no CUDA device here "
            f"(torch {torch.__version__}). On a CPU-only machine use "
            "`--gpu --device cpu --tiny-shape` to check the code path, or --tiny."
        )
    tiny_shape = not args.gpu or args.tiny_shape
    args.size = args.size or (64 if tiny_shape else DEFAULT_RESOLUTION[args.family])
    args.steps = args.steps or (20 if not args.gpu else 25)
    card = (
        f", {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""
    )
    print(
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPU(s), {torch.get_num_threads()} torch threads{card}"
    )
    figures = run(args, device=device, tiny_shape=tiny_shape)
    if args.json:
        write_json(
            args.json, {"bench": "generate", "card": card.lstrip(", "), **figures}
        )


if __name__ == "__main__":
    main()
