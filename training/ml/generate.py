"""Text-to-image with a warm base pipeline and a stack of LoRAs.

A `PipelineHolder` loads the base model once and keeps it on the device;
`generate_images` swaps in the job's scheduler and LoRA stack and renders one
image per seed (`seed`, `seed + 1`, ...), so image i of a job can be rendered
again alone, with the same result.

SD 1.x, SD 2.x and SDXL base models all go through here (`load_pipeline`
picks the pipeline class); a LoRA trained on another family is refused
before it is loaded (`lora_family`).

The LoRA stack is fused into the weights (`use_loras`): a denoising step then
costs what the base model's does. The next job with the same stack (same files
by sha256, same weights) finds it already fused; another stack first gets the
exact base weights back from a copy kept when fusing.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import re
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.ml.base import load_pipeline
from training.ml.config import GenerationStopped, InvalidGenerationInput
from training.ml.device import pick_device, pick_dtype
from training.ml.family import FAMILY_LABELS, SD1, SD2, SDXL, pipeline_family
from training.ml.kohya import lora_family_of

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

# name -> (diffusers scheduler class, options on top of the base model's config)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),  # as SD 1.5 ships it
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
}
MAX_SIDE = 2048
# SD 1.x latents (as the pipeline holds them, scaled) to RGB: the linear fit
# previewers use (ComfyUI's SD15 "latent rgb factors"). Rows are the four
# latent channels, columns R, G, B; the result lies roughly in -1..1.
LATENT_RGB_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
# SDXL's VAE has its own latent space: ComfyUI's SDXL fit.
SDXL_LATENT_RGB_FACTORS = (
    (0.3920, 0.4054, 0.4549),
    (-0.2634, -0.0196, 0.0653),
    (0.0568, 0.1687, -0.0755),
    (-0.3112, -0.2359, -0.2076),
)
# SD 2.x shares SD 1.x's VAE.
FAMILY_LATENT_RGB_FACTORS = {
    SD1: LATENT_RGB_FACTORS,
    SD2: LATENT_RGB_FACTORS,
    SDXL: SDXL_LATENT_RGB_FACTORS,
}
PREVIEW_MAX_SIDE = 256


@dataclass(frozen=True)
class LoraSpec:
    path: str
    weight: float = 1.0
    name: str = ""  # readable part of the adapter name; the file's identity is added


@dataclass(frozen=True)
class GenerateSpec:
    prompt: str
    negative_prompt: str = ""
    steps: int = 25
    guidance: float = 7.5
    seed: int = 0
    width: int = 512
    height: int = 512
    scheduler: str = "ddim"
    num_images: int = 1
    loras: tuple[LoraSpec, ...] = ()

    def problems(self) -> list[str]:
        found = []
        if self.steps < 1 or self.num_images < 1:
            found.append("steps and num_images must be at least 1")
        for side in ("width", "height"):
            value = getattr(self, side)
            if value < 8 or value % 8 or value > MAX_SIDE:
                found.append(f"{side} must be a multiple of 8 between 8 and {MAX_SIDE}")
        if self.scheduler not in SCHEDULERS:
            found.append(
                f"unknown scheduler {self.scheduler!r}; use one of {sorted(SCHEDULERS)}"
            )
        if not all(math.isfinite(lora.weight) for lora in self.loras):
            found.append("LoRA weights must be finite numbers")
        return found


class PipelineHolder:
    """One base pipeline, loaded on first use and kept on its device.

    A worker keeps one holder per base model (see `holder_for`) so consecutive
    jobs skip the multi-second load, and a LoRA stack stays fused between jobs
    that share it. The lock serialises jobs: a pipeline's scheduler, adapters
    and fused weights are shared state.
    """

    def __init__(
        self,
        base_model: str,
        *,
        device: str = "auto",
        mixed_precision: str = "fp16",
        fuse_loras: bool = True,
    ):
        self.base_model = base_model
        self.requested_device = device
        self.mixed_precision = mixed_precision
        self.fuse_loras = fuse_loras  # off: LoRAs run as adapters (the bench's "c")
        self.lock = threading.RLock()
        self.device = ""
        self._pipe: Any = None
        self._scheduler_config: dict[str, Any] = {}

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    @property
    def pipe(self) -> Any:  # StableDiffusionPipeline or StableDiffusionXLPipeline
        if self._pipe is None:
            self._pipe = self._load()
        return self._pipe

    def _load(self) -> Any:
        device = pick_device(self.requested_device)
        dtype, note = pick_dtype(device, self.mixed_precision)
        if note:
            logger.info(note)
        pipe = load_pipeline(self.base_model, torch_dtype=dtype).to(device)
        self.device = device
        # Kept so that every scheduler swap starts from the model's own settings.
        self._scheduler_config = dict(pipe.scheduler.config)
        return pipe

    def scheduler(self, name: str) -> Any:
        import diffusers

        class_name, options = SCHEDULERS[name]
        self.pipe  # noqa: B018 - loads the pipeline and its scheduler config
        return getattr(diffusers, class_name).from_config(
            self._scheduler_config, **options
        )

    def close(self) -> None:
        """Drop the pipeline and give its memory back."""
        self._pipe = None
        _free_memory()


_holder: PipelineHolder | None = None
_holder_lock = threading.Lock()


def holder_for(
    base_model: str, *, device: str = "auto", mixed_precision: str = "fp16"
) -> PipelineHolder:
    """The process's warm holder for `base_model`; a different base model replaces it.

    Only one is kept: two SD pipelines on a mid-range GPU do not fit together.
    """
    global _holder
    with _holder_lock:
        key = (base_model, device, mixed_precision)
        if (
            _holder is None
            or (_holder.base_model, _holder.requested_device, _holder.mixed_precision)
            != key
        ):
            if _holder is not None:
                _holder.close()
            _holder = PipelineHolder(
                base_model, device=device, mixed_precision=mixed_precision
            )
        return _holder


def adapter_name(spec: LoraSpec) -> str:
    """A peft-safe adapter name that changes when the file does (path, size, mtime)."""
    identity = ":".join(map(str, _file_identity(spec.path)))
    readable = re.sub(r"\W", "_", spec.name or Path(spec.path).stem)[:40] or "lora"
    return f"{readable}_{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def _file_identity(path: str) -> tuple[str, int, int]:
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise InvalidGenerationInput(f"LoRA file {path} cannot be read: {exc}") from exc
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


def file_sha256(path: str) -> str:
    """The file's content sha256, read once per (path, size, mtime)."""
    return _sha256_of(*_file_identity(path))


@lru_cache(maxsize=256)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    try:
        with Path(path).open("rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as exc:
        raise InvalidGenerationInput(f"LoRA file {path} cannot be read: {exc}") from exc


def stack_key(loras: Sequence[LoraSpec]) -> tuple[tuple[str, float], ...]:
    """What a stack does, whatever its order or paths: (sha256, summed weight)."""
    weights: dict[str, float] = {}
    for spec in loras:
        digest = file_sha256(spec.path)
        weights[digest] = weights.get(digest, 0.0) + spec.weight
    return tuple(sorted(weights.items()))


def loaded_adapters(pipe: Any) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def apply_loras(pipe: Any, loras: Sequence[LoraSpec]) -> list[str]:
    """Make `loras`, at their weights, the active adapters; return their names.

    Adapters of the previous job that this one does not use are deleted, ones
    it shares are kept loaded. An empty stack unloads every LoRA layer, so the
    output equals the base model's exactly. The same file listed twice counts
    once, with the weights added (the same thing, mathematically). A fused
    stack is unfused first (the base weights restored exactly).
    """
    unfuse_loras(pipe)
    wanted: dict[str, float] = {}
    specs: dict[str, LoraSpec] = {}
    for spec in loras:
        name = adapter_name(spec)
        wanted[name] = wanted.get(name, 0.0) + spec.weight
        specs.setdefault(name, spec)
    loaded = loaded_adapters(pipe)
    if not wanted:
        if loaded:
            pipe.unload_lora_weights()
        return []
    stale = sorted(loaded - wanted.keys())
    if stale:
        pipe.delete_adapters(stale)
    for name in wanted.keys() - loaded:
        _load_lora(pipe, specs[name], name)
    pipe.set_adapters(list(wanted), adapter_weights=list(wanted.values()))
    return list(wanted)


@dataclass(frozen=True)
class _Fused:
    key: tuple[tuple[str, float], ...]
    names: list[str]
    originals: list[tuple[Any, Any]]  # (parameter, its base value, on the CPU)


# pipeline -> the stack fused into it. Weak, so a closed holder's pipeline and
# the base copies go together.
_FUSED: weakref.WeakKeyDictionary[Any, _Fused] = weakref.WeakKeyDictionary()


def use_loras(pipe: Any, loras: Sequence[LoraSpec], *, fuse: bool = True) -> list[str]:
    """Make `loras` the pipeline's stack (as `apply_loras`); with `fuse`, merged
    into the weights, so each step skips the LoRA matmuls. When the stack
    already fused is the same (`stack_key`) nothing is done at all."""
    key = stack_key(loras) if fuse else None
    fused = _FUSED.get(pipe)
    if fused is not None and fused.key == key:
        return fused.names
    names = apply_loras(pipe, loras)
    if fuse and names:
        _fuse(pipe, names, key)
    return names


def fused_stack(pipe: Any) -> tuple[tuple[str, float], ...] | None:
    """The `stack_key` of the stack fused into `pipe`, or None."""
    fused = _FUSED.get(pipe)
    return None if fused is None else fused.key


def _fuse(pipe: Any, names: list[str], key: Any) -> None:
    components = _lora_components(pipe)
    # Copies of what fusing overwrites: peft's unmerge subtracts the delta
    # again, which leaves rounding error (fp16 especially); these put the base
    # back bit for bit. On the CPU, so fusing costs no GPU memory.
    originals = [
        (param, param.detach().to("cpu", copy=True))
        for param in _tuned_parameters(pipe, components, names)
    ]
    pipe.fuse_lora(components=components, adapter_names=names)
    _FUSED[pipe] = _Fused(key, names, originals)


def unfuse_loras(pipe: Any) -> None:
    """Take a fused stack out of the weights: the base model's exact weights
    again, with the adapters still loaded (unmerged)."""
    import torch

    fused = _FUSED.pop(pipe, None)
    if fused is None:
        return
    pipe.unfuse_lora(components=_lora_components(pipe))
    with torch.no_grad():
        for param, original in fused.originals:
            param.copy_(original)


def _lora_components(pipe: Any) -> list[str]:
    import torch

    names = getattr(pipe, "_lora_loadable_modules", ("unet", "text_encoder"))
    return [n for n in names if isinstance(getattr(pipe, n, None), torch.nn.Module)]


def _tuned_parameters(pipe: Any, components: list[str], names: list[str]) -> list:
    """The base-layer parameters under the LoRA layers of adapters `names`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    found: dict[int, Any] = {}
    for component in components:
        for module in getattr(pipe, component).modules():
            adapters = getattr(module, "lora_A", {})
            if isinstance(module, BaseTunerLayer) and any(n in adapters for n in names):
                for param in module.get_base_layer().parameters(recurse=False):
                    found[id(param)] = param
    return list(found.values())


class _NoTextEncoderKeys(logging.Filter):
    """diffusers warns, per text encoder, when a LoRA has no weights for it: so
    on every load of a UNet-only LoRA, what training makes by default. Not a
    problem; a LoRA with no weights for anything is refused in _load_lora."""

    LOGGERS = ("diffusers.loaders.lora_base", "diffusers.loaders.peft")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No LoRA keys associated to")


_QUIET_NO_KEYS = _NoTextEncoderKeys()


def _load_lora(pipe: Any, spec: LoraSpec, name: str) -> None:
    # diffusers recognises kohya keys (lora_unet_*/lora_te_*) and converts them.
    loggers = [logging.getLogger(n) for n in _NoTextEncoderKeys.LOGGERS]
    for each in loggers:
        each.addFilter(_QUIET_NO_KEYS)
    try:
        with warnings.catch_warnings():
            # peft warns on every adapter after the first; stacking is the point.
            warnings.filterwarnings("ignore", "Already found a `peft_config`")
            pipe.load_lora_weights(spec.path, adapter_name=name)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InvalidGenerationInput(
            f"LoRA {spec.path} could not be loaded: {exc}"
        ) from exc
    finally:
        for each in loggers:
            each.removeFilter(_QUIET_NO_KEYS)
    if name not in loaded_adapters(pipe):
        pipe.delete_adapters([name])  # a no-op on most diffusers versions; just tidy
        raise InvalidGenerationInput(
            f"LoRA {spec.path} holds no weights for this model's UNet or text encoder."
        )


def lora_family(path: str | Path) -> str | None:
    """The family ("sd1", "sd2", "sdxl") a LoRA file was trained for, None when
    it does not tell. Read from our `family` metadata, sd-scripts'
    `ss_base_model_version` (or `ss_v2`), the modelspec architecture, then
    its keys: SDXL's two text encoders (lora_te1_/lora_te2_), else the width of
    a text-encoder or cross-attention weight."""
    return _lora_family_of(*_file_identity(str(path)))


@lru_cache(maxsize=256)
def _lora_family_of(path: str, size: int, mtime_ns: int) -> str | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            names = handle.keys()
            shapes = {key: handle.get_slice(key).get_shape() for key in names}
    except OSError as exc:
        raise InvalidGenerationInput(f"LoRA file {path} cannot be read: {exc}") from exc
    except SafetensorError as exc:  # not a safetensors file
        raise InvalidGenerationInput(f"LoRA {path} could not be loaded: {exc}") from exc
    return lora_family_of(metadata, shapes)


def check_lora_families(pipe: Any, loras: Sequence[LoraSpec]) -> None:
    """Refuse a LoRA made for another model family than `pipe`'s, by name."""
    if not loras:
        return
    base = pipeline_family(pipe)
    for spec in loras:
        family = lora_family(spec.path)
        if family is not None and family != base:
            name = spec.name or Path(spec.path).name
            raise InvalidGenerationInput(
                f"LoRA {name} is an {FAMILY_LABELS[family]} LoRA; the base model "
                f"is {FAMILY_LABELS[base]}."
            )


def generate_images(
    holder: PipelineHolder,
    spec: GenerateSpec,
    *,
    on_image: Callable[[int, Image.Image], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_preview: Callable[[Image.Image], None] | None = None,
    preview_every: int = 5,
) -> list[Image.Image]:
    """Render `spec.num_images` images with seeds `spec.seed + i`.

    `on_image(i, image)` is called as each image is done. `should_stop()` is
    polled before each image and after every denoising step: returning True
    raises GenerationStopped; an exception it raises itself (a cancel) comes
    through unchanged. Either way the images already made were given to
    `on_image`. `on_step(step, steps)` hears of each denoising step done, and
    `on_preview(picture)` gets a rough picture of the image in the making
    (`latent_preview`) every `preview_every` steps but the last.
    """
    import torch

    problems = spec.problems()
    if problems:
        raise InvalidGenerationInput("; ".join(problems))
    with holder.lock:
        pipe = holder.pipe
        check_lora_families(pipe, spec.loras)
        use_loras(pipe, spec.loras, fuse=holder.fuse_loras)
        pipe.scheduler = holder.scheduler(spec.scheduler)
        # CUDA draws noise on the GPU; elsewhere (MPS included) a CPU generator
        # is the one that is reproducible.
        generator_device = holder.device if holder.device.startswith("cuda") else "cpu"
        images = []
        for index in range(spec.num_images):
            _check_stop(should_stop)
            generator = torch.Generator(generator_device).manual_seed(spec.seed + index)
            output = pipe(
                prompt=spec.prompt,
                negative_prompt=spec.negative_prompt or None,
                num_inference_steps=spec.steps,
                guidance_scale=spec.guidance,
                width=spec.width,
                height=spec.height,
                generator=generator,
                callback_on_step_end=_step_callback(
                    should_stop,
                    on_step,
                    spec,
                    _Previews(on_preview, preview_every, pipeline_family(pipe)),
                ),
            )
            image = output.images[0]
            images.append(image)
            if on_image is not None:
                on_image(index, image)
        return images


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise GenerationStopped("Generation was stopped.")


@dataclass(frozen=True)
class _Previews:
    send: Callable[[Image.Image], None] | None
    every: int
    family: str = SD1

    def due(self, step: int, steps: int) -> bool:
        return self.send is not None and step < steps and step % self.every == 0


def _step_callback(
    should_stop: Callable[[], bool] | None,
    on_step: Callable[[int, int], None] | None,
    spec: GenerateSpec,
    previews: _Previews,
) -> Callable[..., dict] | None:
    if should_stop is None and on_step is None and previews.send is None:
        return None
    steps = spec.steps

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
        if on_step is not None:
            on_step(step + 1, steps)
        if previews.due(step + 1, steps) and "latents" in kwargs:
            previews.send(
                latent_preview(
                    kwargs["latents"], spec.width, spec.height, family=previews.family
                )
            )
        _check_stop(should_stop)
        return kwargs

    return callback


def latent_preview(
    latents: Any, width: int, height: int, *, family: str = SD1
) -> Image.Image:
    """A rough RGB picture of the first image in `latents` (batch, 4, h, w),
    by the linear latent-to-RGB fit of the model family's VAE: no VAE run, so
    it costs next to nothing. Sized to the image's aspect ratio, at most
    PREVIEW_MAX_SIDE a side."""
    import torch
    from PIL import Image as PILImage

    latent = latents[0].detach().float().cpu()
    factors = FAMILY_LATENT_RGB_FACTORS.get(family, LATENT_RGB_FACTORS)
    if latent.shape[0] == len(factors):
        rgb = torch.einsum("chw,cr->hwr", latent, torch.tensor(factors))
    else:  # not an SD 1.x latent space: show its first channels, normalised
        channels = latent[:3] if latent.shape[0] >= 3 else latent[:1].repeat(3, 1, 1)
        rgb = channels.permute(1, 2, 0) / channels.abs().amax().clamp(min=1e-6)
    pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).numpy()
    scale = min(1.0, PREVIEW_MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return PILImage.fromarray(pixels, "RGB").resize(size, PILImage.Resampling.BILINEAR)


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def prompt_overflow(holder: PipelineHolder, prompt: str) -> int:
    """How many of the prompt's tokens the text encoder never sees (it reads
    `model_max_length`, 77 for CLIP, start and end tokens included)."""
    tokenizer = holder.pipe.tokenizer
    count = len(tokenizer(prompt, truncation=False).input_ids)
    return max(0, count - tokenizer.model_max_length)
