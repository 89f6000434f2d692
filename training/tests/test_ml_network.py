"""The LoRA network on the tiny pipelines: what it adapts and trains, and the
kohya file it saves, loaded back by diffusers as a user's pipeline loads it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from training.ml.kohya import kohya_key_problems, kohya_module_name, save_kohya_lora
from training.ml.network import LoraNetwork
from training.ml.sdxl_keys import SgmNames
from training.ml.targets import unet_targets
from training.tests.conftest import make_train_config


def load_pipe(base: Path) -> Any:
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(base)


def attach(pipe: Any, config: Any, family: str = "sd1", dtype: Any = None) -> Any:
    import torch

    encoders = [pipe.text_encoder]
    if family == "sdxl":
        encoders.append(pipe.text_encoder_2)
    torch.manual_seed(0)
    return LoraNetwork.attach(
        pipe.unet,
        encoders,
        config,
        family=family,
        device="cpu",
        dtype=dtype or torch.float32,
    )


def randomize(network: Any) -> None:
    """Non-zero lora_up weights, so the LoRA changes the output (a fresh one
    does not: lora_up starts at zero)."""
    import torch

    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in network.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def image(pipe: Any) -> Any:
    import torch

    return pipe(
        "zxq a cat",
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images[0]


@contextmanager
def library_warnings() -> Iterator[list[str]]:
    """Warnings diffusers and peft log (diffusers' logger does not propagate)."""
    import warnings

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(logging.WARNING)
    loggers = [logging.getLogger(n) for n in ("diffusers", "peft", "transformers")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages += [str(w.message) for w in caught]
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def adapter_of(module: Any) -> tuple[Any, Any, float]:
    """(lora_A weight, lora_B weight, scaling) of a peft-wrapped module."""
    (name,) = module.lora_A.keys()
    return module.lora_A[name].weight, module.lora_B[name].weight, module.scaling[name]


def save(network: Any, path: Path) -> Path:
    return save_kohya_lora(network.kohya_state(), path, {"family": network.family})


def test_only_the_lora_weights_train_and_a_fresh_network_changes_nothing(
    tiny_base: Path, tmp_path: Path
) -> None:
    import torch

    pipe = load_pipe(tiny_base)
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    text = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = pipe.unet(sample, 10, text).sample
    config = make_train_config(tiny_base, tmp_path, train_text_encoder=True)
    network = attach(pipe, config)
    trainable = [
        p
        for model in (pipe.unet, pipe.text_encoder)
        for p in model.parameters()
        if p.requires_grad
    ]
    assert {id(p) for p in trainable} == {id(p) for p in network.parameters()}
    assert network.module_counts() == {"unet": 48, "text_encoder": 12}
    assert len(network.parameters()) == 2 * (48 + 12)
    with torch.no_grad():
        after = pipe.unet(sample, 10, text).sample
    assert torch.equal(before, after)  # lora_up starts at zero, as in kohya


def test_frozen_weights_take_the_training_dtype_and_lora_weights_stay_float32(
    tiny_base: Path, tmp_path: Path
) -> None:
    import torch

    pipe = load_pipe(tiny_base)
    config = make_train_config(tiny_base, tmp_path, train_text_encoder=True)
    network = attach(pipe, config, dtype=torch.bfloat16)
    proj_in = pipe.unet.get_submodule("mid_block.attentions.0.proj_in")
    assert proj_in.base_layer.weight.dtype == torch.bfloat16
    q_proj = pipe.text_encoder.get_submodule("encoder.layers.0.self_attn.q_proj")
    assert q_proj.base_layer.weight.dtype == torch.bfloat16
    assert {p.dtype for p in network.parameters()} == {torch.float32}


def test_the_text_encoder_is_left_alone_unless_trained(
    tiny_base: Path, tmp_path: Path
) -> None:
    pipe = load_pipe(tiny_base)
    network = attach(pipe, make_train_config(tiny_base, tmp_path))
    assert network.module_counts() == {"unet": 48}
    assert not any(p.requires_grad for p in pipe.text_encoder.parameters())
    assert not any("lora" in name for name, _ in pipe.text_encoder.named_modules())
    assert all(k.startswith("lora_unet_") for k in network.kohya_state())
    (group,) = network.param_groups()
    assert group["lr"] == 1e-3


def test_the_text_encoder_has_its_own_learning_rate(
    tiny_base: Path, tmp_path: Path
) -> None:
    pipe = load_pipe(tiny_base)
    config = make_train_config(
        tiny_base, tmp_path, train_text_encoder=True, text_encoder_lr=2e-5
    )
    network = attach(pipe, config)
    unet_group, te_group = network.param_groups()
    assert (unet_group["lr"], te_group["lr"]) == (1e-3, 2e-5)
    assert (len(unet_group["params"]), len(te_group["params"])) == (96, 24)
    te_weights = {id(p) for p in te_group["params"]}
    assert te_weights == {
        id(p) for p in pipe.text_encoder.parameters() if p.requires_grad
    }


def test_the_file_loads_in_diffusers_unet_and_text_encoder_alike(
    tiny_base: Path, tmp_path: Path
) -> None:
    config = make_train_config(tiny_base, tmp_path, train_text_encoder=True)
    network = attach(load_pipe(tiny_base), config)
    randomize(network)
    path = save(network, tmp_path / "lora.safetensors")
    state = network.kohya_state()
    assert kohya_key_problems(path) == []
    te_key = "lora_te_text_model_encoder_layers_1_mlp_fc2"
    unet_key = "lora_unet_up_blocks_0_attentions_1_proj_in"
    assert {f"{te_key}.alpha", f"{unet_key}.lora_up.weight"} <= state.keys()

    pipe = load_pipe(tiny_base)
    plain = image(pipe)
    with library_warnings() as warned:
        pipe.load_lora_weights(str(path))
    assert not [m for m in warned if "LoRA" in m or "keys" in m], warned
    # The weights diffusers loaded are the ones saved, with kohya's scale.
    for model, module_path, key in (
        (pipe.text_encoder, "encoder.layers.1.mlp.fc2", te_key),
        (pipe.unet, "up_blocks.0.attentions.1.proj_in", unet_key),
    ):
        down, up, scaling = adapter_of(model.get_submodule(module_path))
        assert down.detach().equal(state[f"{key}.lora_down.weight"])
        assert up.detach().equal(state[f"{key}.lora_up.weight"])
        assert scaling == config.alpha / config.rank
    assert abs(image(pipe) - plain).mean() > 1e-3


def test_a_locon_file_saves_4d_conv_weights_that_diffusers_loads(
    tiny_base: Path, tmp_path: Path
) -> None:
    config = make_train_config(
        tiny_base,
        tmp_path,
        lora_targets="transformer+conv",
        rank=4,
        alpha=4.0,
        conv_rank=2,
        conv_alpha=1.0,
        train_text_encoder=True,  # a UNet-only file draws diffusers' "No LoRA keys"
    )
    network = attach(load_pipe(tiny_base), config)
    assert network.module_counts() == {"unet": 79, "text_encoder": 12}
    randomize(network)
    state = network.kohya_state()
    conv = "lora_unet_down_blocks_0_resnets_0_conv1"
    assert state[f"{conv}.lora_down.weight"].shape == (2, 32, 3, 3)
    assert state[f"{conv}.lora_up.weight"].shape == (32, 2, 1, 1)
    assert state[f"{conv}.alpha"].item() == 1.0
    shortcut = "lora_unet_up_blocks_1_resnets_0_conv_shortcut"  # 1x1: network rank
    assert state[f"{shortcut}.lora_down.weight"].shape[:1] == (4,)
    assert state[f"{shortcut}.alpha"].item() == 4.0
    path = save(network, tmp_path / "locon.safetensors")
    assert kohya_key_problems(path) == []

    pipe = load_pipe(tiny_base)
    plain = image(pipe)
    with library_warnings() as warned:
        pipe.load_lora_weights(str(path))
    assert not [m for m in warned if "LoRA" in m or "keys" in m], warned
    down, _, scaling = adapter_of(
        pipe.unet.get_submodule("down_blocks.0.resnets.0.conv1")
    )
    assert down.detach().equal(state[f"{conv}.lora_down.weight"])
    assert scaling == 1.0 / 2
    assert abs(image(pipe) - plain).mean() > 1e-3


def test_sdxl_saves_both_text_encoders_under_te1_and_te2(
    tiny_sdxl_base: Path, tmp_path: Path
) -> None:
    config = make_train_config(tiny_sdxl_base, tmp_path, train_text_encoder=True)
    network = attach(load_pipe(tiny_sdxl_base), config, family="sdxl")
    # 4 transformers (proj_in, proj_out) holding 8 blocks of 10 Linear each.
    assert network.module_counts() == {
        "unet": 4 * 2 + 8 * 10,
        "text_encoder_1": 12,
        "text_encoder_2": 12,
    }
    randomize(network)
    state = network.kohya_state()
    assert {k.split("_text_model_")[0] for k in state if k.startswith("lora_te")} == {
        "lora_te1",
        "lora_te2",
    }
    path = save(network, tmp_path / "xl.safetensors")
    assert kohya_key_problems(path) == []

    pipe = load_pipe(tiny_sdxl_base)
    plain = image(pipe)
    with library_warnings() as warned:
        pipe.load_lora_weights(str(path))
    assert not [m for m in warned if "LoRA" in m or "keys" in m], warned
    v_proj = "encoder.layers.0.self_attn.v_proj"
    for model, prefix in (
        (pipe.text_encoder, "lora_te1_"),
        (pipe.text_encoder_2, "lora_te2_"),
    ):
        (module,) = [m for n, m in model.named_modules() if n.endswith(v_proj)]
        down, _, _ = adapter_of(module)
        key = f"{prefix}text_model_{v_proj.replace('.', '_')}.lora_down.weight"
        assert down.detach().equal(state[key])
    assert abs(image(pipe) - plain).mean() > 1e-3


def diffusers_named(state: dict[str, Any], unet: Any) -> dict[str, Any]:
    """An SDXL kohya state with the UNet keys spelled with diffusers' paths,
    as this project wrote SDXL files before the SGM names."""
    names = SgmNames(unet.config)
    paths = unet_targets(unet, "transformer+conv").all
    rename = {kohya_module_name(names.to_sgm(p)): kohya_module_name(p) for p in paths}
    renamed = {}
    for key, tensor in state.items():
        module, suffix = key.split(".", 1)
        renamed[f"{rename.get(module, module)}.{suffix}"] = tensor
    return renamed


def test_sdxl_unet_keys_take_sd_scripts_sgm_names_and_generate_the_same_image(
    tiny_sdxl_base: Path, tmp_path: Path
) -> None:
    """sd-scripts (and A1111/ComfyUI) name SDXL UNet modules by the original
    UNet's blocks; diffusers maps them back, so the SGM-named file gives the
    image the diffusers-named one (this project's old form) gives."""
    config = make_train_config(tiny_sdxl_base, tmp_path, train_text_encoder=True)
    network = attach(load_pipe(tiny_sdxl_base), config, family="sdxl")
    randomize(network)
    state = network.kohya_state()
    unet_modules = {k.split(".")[0] for k in state if k.startswith("lora_unet_")}
    assert len(unet_modules) == network.module_counts()["unet"]
    assert {
        "lora_unet_input_blocks_3_1_proj_in",
        "lora_unet_input_blocks_3_1_transformer_blocks_1_attn2_to_k",
        "lora_unet_middle_block_1_transformer_blocks_0_ff_net_0_proj",
        "lora_unet_output_blocks_1_1_transformer_blocks_1_attn1_to_out_0",
    } <= unet_modules
    assert not [m for m in unet_modules if "down_blocks" in m or "up_blocks" in m]
    sgm_file = save(network, tmp_path / "sgm.safetensors")
    pipe = load_pipe(tiny_sdxl_base)
    old = diffusers_named(state, pipe.unet)
    assert "lora_unet_down_blocks_1_attentions_0_proj_in.alpha" in old
    old_file = save_kohya_lora(old, tmp_path / "old.safetensors", {})

    plain = image(pipe)
    with library_warnings() as warned:
        pipe.load_lora_weights(str(sgm_file))
    assert not [m for m in warned if "LoRA" in m or "keys" in m], warned
    with_sgm = image(pipe)
    pipe = load_pipe(tiny_sdxl_base)
    pipe.load_lora_weights(str(old_file))
    with_old = image(pipe)
    assert abs(with_sgm - plain).mean() > 1e-3
    assert (with_sgm == with_old).all()


def test_an_sdxl_unet_only_file_loads_with_no_unet_warning(
    tiny_sdxl_base: Path, tmp_path: Path
) -> None:
    config = make_train_config(
        tiny_sdxl_base, tmp_path, lora_targets="transformer+conv"
    )
    network = attach(load_pipe(tiny_sdxl_base), config, family="sdxl")
    randomize(network)
    path = save(network, tmp_path / "unet.safetensors")
    pipe = load_pipe(tiny_sdxl_base)
    with library_warnings() as warned:
        pipe.load_lora_weights(str(path))
    # Only the text encoders, which the file leaves alone, are named.
    assert warned and all("CLIPTextModel" in m for m in warned), warned
    adapted = [n for n, m in pipe.unet.named_modules() if hasattr(m, "lora_A")]
    assert len(adapted) == network.module_counts()["unet"]


def test_an_sdxl_state_loads_back_from_sgm_and_from_old_diffusers_names(
    tiny_sdxl_base: Path, tmp_path: Path
) -> None:
    config = make_train_config(
        tiny_sdxl_base, tmp_path, lora_targets="transformer+conv"
    )
    pipe = load_pipe(tiny_sdxl_base)
    trained = attach(pipe, config, family="sdxl")
    randomize(trained)
    state = trained.kohya_state()
    for saved in (state, diffusers_named(state, pipe.unet)):
        fresh = attach(load_pipe(tiny_sdxl_base), config, family="sdxl")
        assert fresh.fingerprint() == trained.fingerprint()
        fresh.load_kohya_state(saved)
        restored = fresh.kohya_state()
        assert restored.keys() == state.keys()
        assert all(restored[k].equal(state[k]) for k in state)


def test_a_saved_state_loads_back_into_a_fresh_network(
    tiny_base: Path, tmp_path: Path
) -> None:
    config = make_train_config(
        tiny_base, tmp_path, train_text_encoder=True, lora_targets="transformer+conv"
    )
    trained = attach(load_pipe(tiny_base), config)
    randomize(trained)
    state = trained.kohya_state()
    fresh = attach(load_pipe(tiny_base), config)
    assert fresh.fingerprint() == trained.fingerprint()
    fresh.load_kohya_state(state)
    restored = fresh.kohya_state()
    assert restored.keys() == state.keys()
    assert all(restored[k].equal(state[k]) for k in state)
    other = attach(load_pipe(tiny_base), make_train_config(tiny_base, tmp_path))
    assert other.fingerprint() != trained.fingerprint()
    with pytest.raises(ValueError, match="lacks 24 of this network's weights"):
        other_state = {k: v for k, v in state.items() if "lora_te_" not in k}
        fresh.load_kohya_state(other_state)


def test_the_fingerprint_names_what_a_resume_must_match(
    tiny_base: Path, tmp_path: Path
) -> None:
    config = make_train_config(tiny_base, tmp_path, lora_targets="attention")
    fingerprint = attach(load_pipe(tiny_base), config).fingerprint()
    assert {k: v for k, v in fingerprint.items() if k != "modules_sha256"} == {
        "family": "sd1",
        "lora_targets": "attention",
        "rank": 4,
        "alpha": 4.0,
        "conv_rank": None,
        "conv_alpha": None,
        "train_text_encoder": False,
        "module_counts": {"unet": 32},
    }
    assert len(fingerprint["modules_sha256"]) == 64


def test_full_size_sd15_gets_192_unet_and_72_text_encoder_modules() -> None:
    """The issue's count, on SD 1.5's real shapes (built on the meta device)."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from training.ml.config import TrainConfig
    from training.ml.shapes import SD15_TEXT, SD15_UNET

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, **SD15_TEXT))
    config = TrainConfig(base_model="sd15", output_dir="-", train_text_encoder=True)
    network = LoraNetwork.attach(
        unet, [text_encoder], config, family="sd1", device="meta", dtype=torch.float32
    )
    assert network.module_counts() == {"unet": 192, "text_encoder": 72}


def test_both_models_lora_weights_get_gradients_with_gradient_checkpointing(
    tiny_base: Path, tmp_path: Path
) -> None:
    import torch

    pipe = load_pipe(tiny_base)
    config = make_train_config(
        tiny_base, tmp_path, train_text_encoder=True, gradient_checkpointing=True
    )
    network = attach(pipe, config)
    ids = pipe.tokenizer(
        ["zxq a cat"], padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    text = pipe.text_encoder(ids)[0]
    pipe.unet(sample, 10, text).sample.square().mean().backward()
    # lora_up starts at zero, so only it gets a gradient on the first step.
    ups = [p for i, p in enumerate(network.parameters()) if i % 2]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ups)
