"""kohya-format LoRA files: key names, validation, metadata."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from training.ml.checkpoints import LORA_FILE
from training.ml.kohya import (
    kohya_key_problems,
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


def test_every_attention_projection_of_the_unet_is_in_the_file(
    trained_lora: Any, tiny_base: Path
) -> None:
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    unet = UNet2DConditionModel.from_pretrained(tiny_base / "unet")
    projections = ("to_q", "to_k", "to_v", "to_out.0")
    expected = {
        "lora_unet_" + name.replace(".", "_")
        for name, _ in unet.named_modules()
        if name.endswith(projections)
    }
    keys = load_file(trained_lora.lora_path).keys()
    found = {k.split(".", 1)[0] for k in keys}
    assert found == expected
    assert len(found) == 32  # 4 transformer blocks x (self + cross) x 4


def test_checkpoint_loras_are_valid_kohya_files_too(trained_lora: Any) -> None:
    for folder in trained_lora.checkpoints:
        assert kohya_key_problems(Path(folder) / LORA_FILE) == []
