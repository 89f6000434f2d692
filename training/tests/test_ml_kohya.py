"""kohya-format LoRA files: key names, validation, metadata."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from training.ml.checkpoints import LORA_FILE
from training.ml.kohya import (
    kohya_key_problems,
    kohya_metadata,
    kohya_module_name,
    peft_to_kohya,
    read_lora_metadata,
    save_kohya_lora,
)

ATTN1 = "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
KOHYA_ATTN1 = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1"


def peft_state(rank: int = 4) -> dict[str, Any]:
    import torch

    return {
        f"{ATTN1}.to_k.lora_A.weight": torch.ones(rank, 32),
        f"{ATTN1}.to_k.lora_B.weight": torch.zeros(64, rank),
        f"{ATTN1}.to_out.0.lora_A.weight": torch.ones(rank, 64),
        f"{ATTN1}.to_out.0.lora_B.weight": torch.zeros(64, rank),
    }


def test_peft_keys_become_kohya_keys_with_an_alpha_per_module() -> None:
    converted = peft_to_kohya(peft_state(), alpha=8.0)
    assert sorted(converted) == [
        f"{KOHYA_ATTN1}_to_k.alpha",
        f"{KOHYA_ATTN1}_to_k.lora_down.weight",
        f"{KOHYA_ATTN1}_to_k.lora_up.weight",
        f"{KOHYA_ATTN1}_to_out_0.alpha",
        f"{KOHYA_ATTN1}_to_out_0.lora_down.weight",
        f"{KOHYA_ATTN1}_to_out_0.lora_up.weight",
    ]
    assert converted[f"{KOHYA_ATTN1}_to_k.alpha"].item() == 8.0
    assert converted[f"{KOHYA_ATTN1}_to_k.lora_down.weight"].shape == (4, 32)
    assert kohya_key_problems(converted) == []


def test_peft_to_kohya_refuses_keys_that_are_not_lora_weights() -> None:
    import torch

    with pytest.raises(ValueError, match="Not a peft LoRA weight"):
        peft_to_kohya({f"{ATTN1}.to_k.weight": torch.ones(1)}, alpha=1.0)


def test_the_validator_names_each_problem() -> None:
    import torch

    good = peft_to_kohya(peft_state(), alpha=4.0)
    bad = dict(good)
    del bad[f"{KOHYA_ATTN1}_to_k.lora_up.weight"]
    bad[f"{KOHYA_ATTN1}_to_out_0.lora_up.weight"] = torch.zeros(64, 3)
    bad["unet.something.lora.down.weight"] = torch.zeros(1)
    assert kohya_key_problems(bad) == [
        "unet.something.lora.down.weight: expected lora_unet_/lora_te_/lora_te1_/"
        "lora_te2_<module>.lora_down.weight|.lora_up.weight|.alpha",
        f"{KOHYA_ATTN1}_to_k: missing .lora_up.weight",
        f"{KOHYA_ATTN1}_to_out_0: lora_down (4, 64) and lora_up (64, 3) "
        "disagree on the rank",
    ]
    assert kohya_key_problems({}) == ["the file holds no tensors"]


def test_save_refuses_non_string_metadata_and_invalid_keys(tmp_path: Path) -> None:
    import torch

    state = peft_to_kohya(peft_state(), alpha=4.0)
    with pytest.raises(TypeError, match="must be strings"):
        save_kohya_lora(state, tmp_path / "a.safetensors", {"rank": 4})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="Not a valid kohya LoRA"):
        save_kohya_lora({"x.alpha": torch.ones(())}, tmp_path / "b.safetensors", {})
    assert list(tmp_path.iterdir()) == []


def test_the_same_lora_always_gives_the_same_bytes(tmp_path: Path) -> None:
    state = peft_to_kohya(peft_state(), alpha=4.0)
    meta = {f"key{i}": str(i) for i in range(20)}
    first = save_kohya_lora(state, tmp_path / "1.safetensors", meta)
    second = save_kohya_lora(
        state, tmp_path / "2.safetensors", dict(reversed(meta.items()))
    )
    assert first.read_bytes() == second.read_bytes()
    assert read_lora_metadata(first) == meta


def test_the_trained_file_is_valid_kohya_with_string_metadata(
    trained_lora: Any,
) -> None:
    path = Path(trained_lora.lora_path)
    assert kohya_key_problems(path) == []
    meta = read_lora_metadata(path)
    assert meta == trained_lora.metadata
    assert all(isinstance(v, str) for v in meta.values())
    expected = {
        "rank": "4",
        "alpha": "4.0",
        "steps": "6",
        "trigger_word": "zxq",
        "dataset_hash": "dataset-1",
        "base_model_hash": trained_lora.base_model_hash,
        "ss_network_dim": "4",
        "ss_network_alpha": "4.0",
        "ss_base_model_version": "sd_v1",
        "ss_output_name": "lora",
        # What ran, not what was asked: mixed precision falls back to fp32 on CPU.
        "mixed_precision": "no",
        "ss_mixed_precision": "no",
    }
    assert {k: meta[k] for k in expected} == expected
    assert len(trained_lora.base_model_hash) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_the_default_file_covers_every_linear_of_the_unets_transformers(
    trained_lora: Any, tiny_base: Path
) -> None:
    """kohya's default set: each Linear and 1x1 conv inside a Transformer2DModel."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    from safetensors.torch import load_file
    from torch import nn

    unet = UNet2DConditionModel.from_pretrained(tiny_base / "unet")
    expected = {
        kohya_module_name(f"{name}.{child_name}")
        for name, module in unet.named_modules()
        if isinstance(module, Transformer2DModel)
        for child_name, child in module.named_modules()
        if isinstance(child, (nn.Linear, nn.Conv2d))
    }
    keys = load_file(trained_lora.lora_path).keys()
    found = {k.split(".", 1)[0] for k in keys}
    assert found == expected
    assert len(found) == 48  # 4 transformers x (proj_in, proj_out, 8 attn, 2 ff)


def test_checkpoint_loras_are_valid_kohya_files_too(trained_lora: Any) -> None:
    for folder in trained_lora.checkpoints:
        assert kohya_key_problems(Path(folder) / LORA_FILE) == []


def lora_module(rank: int, down_shape: tuple, up_shape: tuple) -> dict[str, Any]:
    import torch

    return {
        ".lora_down.weight": torch.zeros(rank, *down_shape),
        ".lora_up.weight": torch.zeros(*up_shape),
        ".alpha": torch.tensor(1.0),
    }


def state_of(modules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        name + part: t for name, parts in modules.items() for part, t in parts.items()
    }


def test_sdxl_text_encoder_and_conv_keys_pass_the_rules() -> None:
    te = "text_model_encoder_layers_0_self_attn_q_proj"
    state = state_of(
        {
            f"lora_te1_{te}": lora_module(4, (768,), (768, 4)),
            f"lora_te2_{te}": lora_module(4, (1280,), (1280, 4)),
            "lora_unet_down_blocks_0_resnets_0_conv1": lora_module(
                2, (320, 3, 3), (320, 2, 1, 1)
            ),
            "lora_unet_up_blocks_1_resnets_0_conv_shortcut": lora_module(
                4, (640, 1, 1), (320, 4, 1, 1)
            ),
        }
    )
    assert kohya_key_problems(state) == []


def test_the_rules_refuse_bad_conv_shapes_and_mixed_text_encoder_prefixes() -> None:
    te = "text_model_encoder_layers_0_mlp_fc1"
    state = state_of(
        {
            f"lora_te_{te}": lora_module(4, (768,), (3072, 4)),
            f"lora_te2_{te}": lora_module(4, (1280,), (5120, 4)),
            "lora_unet_a_conv1": lora_module(2, (320, 3, 3), (320, 2, 3, 3)),
            "lora_unet_b_conv2": lora_module(2, (320, 3, 3), (320, 2)),
        }
    )
    assert kohya_key_problems(state) == [
        "mixes lora_te_ (SD 1.x/2.x) and lora_te1_/lora_te2_ (SDXL) keys",
        "lora_unet_a_conv1: a conv lora_up should be 1x1, is (320, 2, 3, 3)",
        "lora_unet_b_conv2: lora_down (2, 320, 3, 3) and lora_up (320, 2) should "
        "both be 2-D (Linear) or 4-D (conv)",
    ]


def test_kohya_metadata_writes_sd_scripts_keys_as_strings() -> None:
    meta = kohya_metadata(
        output_name="tarot",
        base_model="stabilityai/stable-diffusion-xl-base-1.0",
        rank=16,
        alpha=8,
        steps=1200,
        family="sdxl",
        lora_targets="transformer+conv",
        conv_rank=4,
        conv_alpha=1,
        max_train_steps=2000,
        resolution=(832, 1216),
        num_train_images=40,
        tag_frequency={"10_zxq": {"zxq": 40, "card": 12}},
        learning_rate=1e-4,
        unet_lr=1e-4,
        text_encoder_lr=5e-5,
        lr_scheduler="cosine",
        optimizer="prodigyopt.Prodigy",
        noise_offset=0.05,
        min_snr_gamma=5,
        caption_dropout_rate=0.1,
        shuffle_caption=True,
        keep_tokens=1,
        enable_bucket=True,
        min_bucket_reso=512,
        max_bucket_reso=2048,
        bucket_info={"buckets": {"0": {"resolution": [832, 1216], "count": 40}}},
        mixed_precision="bf16",
        seed=7,
        training_comment="trigger word: zxq",
        extra={"trigger_word": "zxq"},
    )
    assert all(isinstance(v, str) for v in meta.values())
    assert meta == {
        "ss_network_module": "networks.lora",
        "ss_network_dim": "16",
        "ss_network_alpha": "8.0",
        "ss_network_args": '{"conv_dim": "4", "conv_alpha": "1.0"}',
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_v2": "False",
        "ss_sd_model_name": "stabilityai/stable-diffusion-xl-base-1.0",
        "ss_output_name": "tarot",
        "ss_steps": "1200",
        "ss_max_train_steps": "2000",
        "family": "sdxl",
        "lora_targets": "transformer+conv",
        "ss_resolution": "(832, 1216)",
        "ss_num_train_images": "40",
        "ss_tag_frequency": '{"10_zxq": {"card": 12, "zxq": 40}}',
        "ss_learning_rate": "0.0001",
        "ss_unet_lr": "0.0001",
        "ss_text_encoder_lr": "5e-05",
        "ss_lr_scheduler": "cosine",
        "ss_optimizer": "prodigyopt.Prodigy",
        "ss_noise_offset": "0.05",
        "ss_min_snr_gamma": "5",
        "ss_caption_dropout_rate": "0.1",
        "ss_shuffle_caption": "True",
        "ss_keep_tokens": "1",
        "ss_enable_bucket": "True",
        "ss_min_bucket_reso": "512",
        "ss_max_bucket_reso": "2048",
        "ss_bucket_info": '{"buckets": {"0": {"count": 40, '
        '"resolution": [832, 1216]}}}',
        "ss_mixed_precision": "bf16",
        "ss_seed": "7",
        "ss_training_comment": "trigger word: zxq",
        "trigger_word": "zxq",
    }


@pytest.mark.parametrize(
    ("family", "v_prediction", "version", "v2"),
    [
        ("sd1", False, "sd_v1", "False"),
        ("sd2", False, "sd_v2", "True"),
        ("sd2", True, "sd_v2_v", "True"),
        ("sdxl", False, "sdxl_base_v1-0", "False"),
    ],
)
def test_the_base_model_version_follows_sd_scripts(
    family: str, v_prediction: bool, version: str, v2: str
) -> None:
    meta = kohya_metadata(
        output_name="x",
        base_model="m",
        rank=4,
        alpha=4.0,
        steps=1,
        family=family,
        v_prediction=v_prediction,
    )
    assert (meta["ss_base_model_version"], meta["ss_v2"]) == (version, v2)
    # Without LoCon, sd-scripts writes no network args; unset options stay out.
    assert "ss_network_args" not in meta
    assert "ss_resolution" not in meta
