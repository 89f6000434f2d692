"""Stable Diffusion model families (SD 1.x, SD 2.x, SDXL) and their text conditioning.

The family decides the text encoders, the UNet's extra inputs (SDXL's pooled
text embedding and size/crop "time ids"), the kohya key prefixes and the
default resolution. It is read from the base model's config, never guessed
from its name.

The `Conditioner` turns captions into the UNet's keyword arguments the way
diffusers' pipelines do at inference (StableDiffusionPipeline.encode_prompt,
StableDiffusionXLPipeline.encode_prompt and _get_add_time_ids), so a LoRA is
trained on the same conditioning it is later used with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.ml.config import InvalidTrainingInput
from training.ml.kohya import BASE_MODEL_VERSIONS

if TYPE_CHECKING:
    import torch

SD1, SD2, SDXL = "sd1", "sd2", "sdxl"
FAMILY_LABELS = {SD1: "SD 1.5", SD2: "SD 2.x", SDXL: "SDXL"}
DEFAULT_RESOLUTION = {SD1: 512, SD2: 768, SDXL: 1024}
# sd-scripts' ss_base_model_version strings (training.ml.kohya has the rule).
KOHYA_BASE_VERSION = BASE_MODEL_VERSIONS

SD_PIPELINE = "StableDiffusionPipeline"
SDXL_PIPELINE = "StableDiffusionXLPipeline"
# SD 2.x conditions on OpenCLIP ViT-H's 1024-wide hidden states; SD 1.x on
# CLIP ViT-L's 768 (and the tiny test model on something smaller still).
SD2_CONTEXT_WIDTH = 1024


@dataclass(frozen=True)
class SizeCond:
    """One training image's SDXL micro-conditioning, in pixels.

    SD 1.x/2.x ignore it; the data pipeline fills it for every family.
    """

    original: tuple[int, int]  # (height, width) of the source image
    crop_top_left: tuple[int, int]  # (top, left) of the crop in the resized image
    target: tuple[int, int]  # (height, width) trained at: the bucket

    def time_ids(self) -> tuple[int, int, int, int, int, int]:
        """SDXL's six "time ids", in the order diffusers' _get_add_time_ids uses."""
        return (*self.original, *self.crop_top_left, *self.target)


def detect_family(base_model: str) -> str:
    """The family of a local pipeline folder or a cached hub model, from its configs.

    Reads model_index.json's `_class_name` and, for a StableDiffusionPipeline,
    the UNet's cross-attention width (the text encoder's when the UNet's config
    does not say). Raises InvalidTrainingInput naming what it found otherwise.
    """
    from training.ml.base import resolve_model_folder

    folder = resolve_model_folder(base_model)
    if folder is None or not (folder / "model_index.json").is_file():
        raise InvalidTrainingInput(
            f"Base model {base_model!r} has no model_index.json here (not a "
            "diffusers pipeline folder, or a hub model that is not downloaded)."
        )
    index = _read_json(folder / "model_index.json")
    return family_of(
        index.get("_class_name"),
        unet_config=_read_json(folder / "unet" / "config.json", missing_ok=True),
        text_config=_read_json(
            folder / "text_encoder" / "config.json", missing_ok=True
        ),
        name=base_model,
    )


def family_of(
    class_name: Any,
    *,
    unet_config: dict[str, Any],
    text_config: dict[str, Any],
    name: str = "",
) -> str:
    """The family from a pipeline class name and its UNet and text encoder configs."""
    if class_name == SDXL_PIPELINE:
        return SDXL
    if class_name == SD_PIPELINE:
        width = unet_config.get("cross_attention_dim") or text_config.get("hidden_size")
        return SD2 if width == SD2_CONTEXT_WIDTH else SD1
    raise InvalidTrainingInput(
        f"Base model {name!r} is a {class_name}; only {SD_PIPELINE} (SD 1.x, "
        f"SD 2.x) and {SDXL_PIPELINE} (SDXL) models are supported."
    )


def pipeline_family(pipe: Any) -> str:
    """The family of a loaded pipeline."""
    if getattr(pipe, "text_encoder_2", None) is not None:
        return SDXL
    text_encoder = getattr(pipe, "text_encoder", None)
    return family_of(
        SD_PIPELINE,
        unet_config=dict(pipe.unet.config),
        text_config={"hidden_size": getattr(text_encoder.config, "hidden_size", None)}
        if text_encoder is not None
        else {},
    )


def _read_json(path: Path, *, missing_ok: bool = False) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise InvalidTrainingInput(f"{path} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise InvalidTrainingInput(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidTrainingInput(f"{path} does not hold a JSON object.")
    return data


@dataclass
class TextCond:
    """Encoded captions: what the UNet cross-attends to, and SDXL's pooled vector."""

    hidden: torch.Tensor  # (b, 77, dim) encoder_hidden_states
    pooled: torch.Tensor | None = None  # (b, projection_dim) SDXL only

    def rows(self, index: Any) -> TextCond:
        """The rows `index` (int list, slice or tensor) selects, e.g. from a cache."""
        return TextCond(
            self.hidden[index], None if self.pooled is None else self.pooled[index]
        )

    def __len__(self) -> int:
        return int(self.hidden.shape[0])


class Conditioner:
    """The pipeline's tokenizer(s) and text encoder(s), used as its inference does.

    SD 1.x/2.x: the text encoder's last hidden state. SDXL: the penultimate
    hidden states of both encoders side by side (te1 then te2), and
    text_encoder_2's projected pooled output as `text_embeds`. The encoders
    stay on whatever device and dtype the caller put them; outputs go to
    `device`.
    """

    def __init__(self, pipe: Any, device: str):
        self.family = pipeline_family(pipe)
        self.device = device
        if self.family == SDXL:
            self.tokenizers = [pipe.tokenizer, pipe.tokenizer_2]
            self.text_encoders = [pipe.text_encoder, pipe.text_encoder_2]
        else:
            self.tokenizers = [pipe.tokenizer]
            self.text_encoders = [pipe.text_encoder]

    @property
    def trainable(self) -> bool:
        params = (p for encoder in self.text_encoders for p in encoder.parameters())
        return any(p.requires_grad for p in params)

    def encode(self, captions: Sequence[str]) -> TextCond:
        """Encode `captions`; with gradients only when an encoder has trainable
        parameters (and grad mode is on), so a frozen encoder keeps no graph."""
        import torch

        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable):
            if self.family == SDXL:
                return self._encode_sdxl(list(captions))
            output = self._run(0, list(captions), hidden_states=False)
            return TextCond(output[0].to(self.device))

    def _encode_sdxl(self, captions: list[str]) -> TextCond:
        import torch

        hidden, pooled = [], None
        for index in range(len(self.text_encoders)):
            output = self._run(index, captions, hidden_states=True)
            hidden.append(output.hidden_states[-2].to(self.device))
            if output[0].ndim == 2:  # CLIPTextModelWithProjection: text_embeds
                pooled = output[0].to(self.device)
        if pooled is None:
            raise InvalidTrainingInput(
                "This SDXL model's second text encoder has no projection "
                "(CLIPTextModelWithProjection expected)."
            )
        # Both encoders' states in one dtype (they may have been cast apart).
        dtype = hidden[-1].dtype
        return TextCond(torch.cat([h.to(dtype) for h in hidden], dim=-1), pooled)

    def _run(self, index: int, captions: list[str], *, hidden_states: bool) -> Any:
        tokenizer = self.tokenizers[index]
        encoder = self.text_encoders[index]
        tokens = tokenizer(
            captions,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = next(encoder.parameters()).device
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(device)
        return encoder(
            tokens.input_ids.to(device),
            attention_mask=mask,
            output_hidden_states=hidden_states,
        )

    def unet_kwargs(
        self, text: TextCond, sizes: Sequence[SizeCond], dtype: Any
    ) -> dict[str, Any]:
        """The UNet's keyword arguments besides the sample and the timestep."""
        import torch

        kwargs: dict[str, Any] = {"encoder_hidden_states": text.hidden.to(dtype)}
        if self.family != SDXL:
            return kwargs
        if text.pooled is None:
            raise ValueError("SDXL needs the pooled text embedding; encode() gives it.")
        if len(sizes) != len(text):
            raise ValueError(f"{len(sizes)} sizes for a batch of {len(text)} captions")
        time_ids = torch.tensor(
            [size.time_ids() for size in sizes], dtype=dtype, device=text.hidden.device
        )
        kwargs["added_cond_kwargs"] = {
            "text_embeds": text.pooled.to(dtype),
            "time_ids": time_ids,
        }
        return kwargs
