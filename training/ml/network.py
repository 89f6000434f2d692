"""The LoRA network of one training run: peft adapters on the UNet and, when
asked, on the text encoder(s), saved and loaded as a kohya-format state dict.

Which modules get adapters is `training.ml.targets`' business; this module
puts peft `LoraConfig`s on them (by exact module path, so nothing else
matches), keeps the frozen base weights in the training dtype and the LoRA
weights in float32, and names every module the way kohya does:
`lora_unet_<path>` for the UNet, `lora_te_<path>` for the SD 1.x/2.x text
encoder, `lora_te1_<path>`/`lora_te2_<path>` for SDXL's two. The path is
diffusers' module path, except in the SDXL UNet: there sd-scripts writes the
original SGM names (`lora_unet_input_blocks_4_1_...`, see
`training.ml.sdxl_keys`), and so does this module. Files from before that
(`lora_unet_down_blocks_1_...` in an SDXL file) still load.

Initialisation: peft's "gaussian" (lora_A ~ N(0, 1/rank), lora_B = 0), drawn
from torch's global generator, which the caller seeds. kohya initialises
lora_down with Kaiming-uniform instead (peft's `init_lora_weights=True`);
both start with lora_up at zero, so a fresh network leaves the model's output
unchanged either way, and the difference is only the scale of the first
updates.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from training.ml.kohya import kohya_module_name
from training.ml.sdxl_keys import SgmNames
from training.ml.targets import Targets, text_encoder_targets, unet_targets

if TYPE_CHECKING:
    import torch
    from torch import nn

    from training.ml.config import TrainConfig

ADAPTER = "default"  # the adapter name peft's add_adapter gives
INIT = "gaussian"
SDXL = "sdxl"
TEXT_MODEL = "text_model."
WEIGHT_SUFFIXES = (".lora_down.weight", ".lora_up.weight")  # lora_A, lora_B


@dataclass(frozen=True)
class _Part:
    """One adapted model: the UNet or one text encoder."""

    key: str  # its name in module_counts(): "unet", "text_encoder", "text_encoder_1"
    prefix: str  # its kohya key prefix
    model: Any
    targets: Targets
    sgm: SgmNames | None = None  # the SDXL UNet's SGM names; None: diffusers'

    def kohya_name(self, path: str) -> str:
        """The kohya name of the module at `path` in this model, as sd-scripts
        writes it (SGM block names in the SDXL UNet)."""
        if self.sgm is not None:
            return kohya_module_name(self.sgm.to_sgm(path), self.prefix)
        return self.diffusers_name(path)

    def diffusers_name(self, path: str) -> str:
        """The kohya name spelled with diffusers' module path.

        kohya names text-encoder modules from the CLIPTextModel of
        transformers 4 (`text_model.encoder.layers.0...`), and every UI reads
        them so; transformers 5 dropped the `text_model` level, so it is put
        back here whichever version loaded the model.
        """
        if self.key != "unet" and not path.startswith(TEXT_MODEL):
            path = TEXT_MODEL + path
        return kohya_module_name(path, self.prefix)

    def names(self, path: str) -> list[str]:
        """The names a file may hold this module under, the current one first."""
        return list(dict.fromkeys([self.kohya_name(path), self.diffusers_name(path)]))


class LoraNetwork:
    """The trainable LoRA weights of a run and their kohya names."""

    def __init__(self, parts: list[_Part], config: TrainConfig, family: str) -> None:
        self.parts = parts
        self.config = config
        self.family = family

    @classmethod
    def attach(
        cls,
        unet: Any,
        text_encoders: Sequence[Any],
        config: TrainConfig,
        *,
        family: str,
        device: str,
        dtype: torch.dtype,
    ) -> LoraNetwork:
        """Freeze the models, move them to `device`/`dtype`, add the adapters.

        The text encoders get adapters (and are moved) only when
        `config.train_text_encoder`; pass them in kohya order (te1, te2).
        Otherwise they are only frozen, so nothing asks for their gradients.
        The caller seeds torch's global RNG first: the init draws from it.
        """
        unet_set = unet_targets(unet, config.lora_targets)
        sgm = SgmNames(unet.config) if family == SDXL else None
        parts = [_Part("unet", "lora_unet_", unet, unet_set, sgm)]
        if not config.train_text_encoder:
            for text_encoder in text_encoders:
                text_encoder.requires_grad_(False)
        else:
            if len(text_encoders) != (2 if family == SDXL else 1):
                raise ValueError(
                    f"A {family} model has {2 if family == SDXL else 1} text "
                    f"encoder(s); got {len(text_encoders)}"
                )
            parts += [
                _Part(key, prefix, te, Targets(text_encoder_targets(te), []))
                for (key, prefix), te in zip(
                    _text_encoder_names(family), text_encoders, strict=True
                )
            ]
        for part in parts:
            _add_adapter(part, config, device, dtype)
        return cls(parts, config, family)

    # --- training -----------------------------------------------------------

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups: the UNet's LoRA at `learning_rate`, the text
        encoders' (when trained) at `text_encoder_lr`."""
        unet, text = self.parts[0], self.parts[1:]
        groups = [{"params": _weights(unet), "lr": self.config.learning_rate}]
        if text:
            te_params = [p for part in text for p in _weights(part)]
            groups.append({"params": te_params, "lr": self.config.text_encoder_lr})
        return groups

    def parameters(self) -> list[torch.nn.Parameter]:
        """Every trainable weight, UNet first, in a fixed order."""
        return [p for part in self.parts for p in _weights(part)]

    # --- the file -----------------------------------------------------------

    def kohya_state(self) -> dict[str, torch.Tensor]:
        """The weights under kohya keys, on the CPU, with an alpha per module."""
        import torch

        state: dict[str, torch.Tensor] = {}
        for part in self.parts:
            for key, param in _kohya_weights(part):
                state[key] = param.detach().to("cpu").contiguous()
            for path, alpha in self._alphas(part).items():
                state[f"{part.kohya_name(path)}.alpha"] = torch.tensor(float(alpha))
        return state

    def load_kohya_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy weights saved by `kohya_state` back in (a resumed run).

        An SDXL UNet module is found under its SGM name or, in files written
        before those, its diffusers one. Raises ValueError naming the missing
        keys when the file holds another network's modules.
        """
        import torch

        found, missing = [], []
        for part in self.parts:
            part_found, part_missing = _stored_weights(part, state)
            found += part_found
            missing += part_missing
        if missing:
            raise ValueError(
                f"The LoRA lacks {len(missing)} of this network's weights, "
                f"e.g. {', '.join(missing[:3])}"
            )
        with torch.no_grad():
            for param, tensor in found:
                param.copy_(tensor)

    # --- what it is ---------------------------------------------------------

    def module_counts(self) -> dict[str, int]:
        """Adapted modules per model: {"unet": 192, "text_encoder": 72}."""
        return {part.key: len(part.targets) for part in self.parts}

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must share with this network to be resumed into it."""
        config = self.config
        conv = config.lora_targets == "transformer+conv"
        # diffusers' paths: an SDXL checkpoint saved before the SGM names
        # has the same modules, so it resumes.
        names = "\n".join(
            part.diffusers_name(path)
            for part in self.parts
            for path in part.targets.all
        )
        return {
            "family": self.family,
            "lora_targets": config.lora_targets,
            "rank": config.rank,
            "alpha": float(config.alpha),
            "conv_rank": config.conv_rank if conv else None,
            "conv_alpha": float(config.conv_alpha) if conv else None,
            "train_text_encoder": config.train_text_encoder,
            "module_counts": self.module_counts(),
            "modules_sha256": hashlib.sha256(names.encode()).hexdigest(),
        }

    def _alphas(self, part: _Part) -> dict[str, float]:
        """Each adapted module's alpha, in model order (conv modules: conv_alpha)."""
        alphas = dict.fromkeys(part.targets.linear, float(self.config.alpha))
        alphas.update(dict.fromkeys(part.targets.conv, float(self.config.conv_alpha)))
        return alphas


def _text_encoder_names(family: str) -> list[tuple[str, str]]:
    """(module_counts key, kohya prefix) of each text encoder, in order."""
    if family == SDXL:
        return [("text_encoder_1", "lora_te1_"), ("text_encoder_2", "lora_te2_")]
    return [("text_encoder", "lora_te_")]


def _add_adapter(
    part: _Part, config: TrainConfig, device: str, dtype: torch.dtype
) -> None:
    import torch

    model = part.model
    model.requires_grad_(False)
    model.to(device)
    if dtype != torch.float32:
        # Frozen weights in the autocast dtype halve their memory; the LoRA
        # weights (the only ones the optimizer sees) stay float32.
        model.to(dtype=dtype)
    lora_config = _lora_config(part.targets, config)
    if hasattr(model, "set_adapters"):  # diffusers: keeps its adapter bookkeeping
        model.add_adapter(lora_config)
    else:
        # transformers' add_adapter asks for a newer peft than the one the
        # UNet path needs; peft's own injection does the same to the model.
        from peft import inject_adapter_in_model

        inject_adapter_in_model(lora_config, model, adapter_name=ADAPTER)
    for param in _weights(part):
        param.data = param.data.to(torch.float32)
    if config.gradient_checkpointing:
        _enable_gradient_checkpointing(model)
    model.train()


def _lora_config(targets: Targets, config: TrainConfig) -> Any:  # peft LoraConfig
    """Adapters on exactly these modules; LoCon modules at their own rank/alpha.

    peft matches a target name against the end of each module path and a
    pattern key as a regex, so full paths (escaped) select one module each.
    """
    from peft import LoraConfig

    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        init_lora_weights=INIT,
        target_modules=targets.all,
        rank_pattern={re.escape(n): config.conv_rank for n in targets.conv},
        alpha_pattern={re.escape(n): config.conv_alpha for n in targets.conv},
    )


def _weights(part: _Part) -> list[torch.nn.Parameter]:
    """lora_A, lora_B of each adapted module, in target order."""
    return [param for _, param in _kohya_weights(part)]


def _kohya_weights(part: _Part) -> list[tuple[str, torch.nn.Parameter]]:
    """(kohya key, weight) of each module's lora_down (peft's lora_A) and
    lora_up (lora_B), in target order."""
    weights = []
    for path in part.targets.all:
        name = part.kohya_name(path)
        params = _adapter(part.model.get_submodule(path))
        weights += [(name + s, p) for s, p in zip(WEIGHT_SUFFIXES, params, strict=True)]
    return weights


def _adapter(module: nn.Module) -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
    """A peft-wrapped module's lora_A (kohya's lora_down) and lora_B (lora_up)."""
    return module.lora_A[ADAPTER].weight, module.lora_B[ADAPTER].weight


def _stored_weights(
    part: _Part, state: Mapping[str, torch.Tensor]
) -> tuple[list[tuple[torch.nn.Parameter, torch.Tensor]], list[str]]:
    """(weight, saved tensor) of each of the part's modules found in `state`
    under any of its names, and the keys of those not found."""
    found, missing = [], []
    for path in part.targets.all:
        params = _adapter(part.model.get_submodule(path))
        names = part.names(path)
        name = next(
            (n for n in names if all(n + s in state for s in WEIGHT_SUFFIXES)), None
        )
        if name is None:
            missing += [names[0] + suffix for suffix in WEIGHT_SUFFIXES]
        else:
            found += [
                (p, state[name + s])
                for s, p in zip(WEIGHT_SUFFIXES, params, strict=True)
            ]
    return found, missing


def _enable_gradient_checkpointing(model: nn.Module) -> None:
    if hasattr(model, "enable_gradient_checkpointing"):  # diffusers
        model.enable_gradient_checkpointing()
    else:
        # transformers. Non-reentrant: the reentrant kind needs an input that
        # requires grad, and the frozen embeddings' output does not.
        # transformers 5 renamed the method; 4.x has only the old name.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs=kwargs
            )
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
