"""Model families and text conditioning: detection from configs, and the
Conditioner giving the UNet what diffusers' own pipelines give it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from training.ml.config import InvalidTrainingInput
from training.ml.family import (
    SD1,
    SD2,
    SDXL,
    Conditioner,
    SizeCond,
    detect_family,
    pipeline_family,
)


@pytest.fixture(scope="module")
def sd1_pipe(tiny_base: Path) -> Any:
    from training.ml.base import load_pipeline

    return load_pipeline(str(tiny_base))


@pytest.fixture(scope="module")
def sdxl_pipe(tiny_sdxl_base: Path) -> Any:
    from training.ml.base import load_pipeline

    return load_pipeline(str(tiny_sdxl_base))


def test_families_are_read_from_the_folders(
    tiny_base: Path, tiny_sdxl_base: Path
) -> None:
    assert detect_family(str(tiny_base)) == SD1
    assert detect_family(str(tiny_sdxl_base)) == SDXL


def test_sd2_is_told_from_sd1_by_its_context_width(
    tiny_base: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_base, tmp_path / "sd2"))
    config_path = copy / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["cross_attention_dim"] = 1024  # OpenCLIP ViT-H's width
    config_path.write_text(json.dumps(config))
    assert detect_family(str(copy)) == SD2
    config["cross_attention_dim"] = 768  # CLIP ViT-L's
    config_path.write_text(json.dumps(config))
    assert detect_family(str(copy)) == SD1


def test_an_unknown_pipeline_class_is_named_in_the_error(
    tiny_base: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_base, tmp_path / "odd"))
    (copy / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(InvalidTrainingInput, match="is a FluxPipeline; only"):
        detect_family(str(copy))
    with pytest.raises(InvalidTrainingInput, match="no model_index.json"):
        detect_family(str(tmp_path / "nowhere"))
    with pytest.raises(InvalidTrainingInput, match="no model_index.json"):
        detect_family("nobody/not-cached-anywhere")


def test_loaded_pipelines_know_their_family(sd1_pipe: Any, sdxl_pipe: Any) -> None:
    assert type(sdxl_pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipeline_family(sd1_pipe) == SD1
    assert pipeline_family(sdxl_pipe) == SDXL


def test_sd1_conditioning_is_the_pipelines_prompt_embedding(sd1_pipe: Any) -> None:
    import torch

    conditioner = Conditioner(sd1_pipe, "cpu")
    assert conditioner.text_encoders == [sd1_pipe.text_encoder]
    with torch.no_grad():
        text = conditioner.encode(["a cat", "zxq a dog"])
        expected, _ = sd1_pipe.encode_prompt(["a cat", "zxq a dog"], "cpu", 1, False)
    assert text.pooled is None
    assert text.hidden.shape == (2, 77, 32)
    torch.testing.assert_close(text.hidden, expected)
    kwargs = conditioner.unet_kwargs(text, [], torch.float32)
    assert set(kwargs) == {"encoder_hidden_states"}
    assert torch.equal(text.rows([1]).hidden, text.hidden[1:])


def test_sdxl_conditioning_matches_the_sdxl_pipeline(sdxl_pipe: Any) -> None:
    import torch

    conditioner = Conditioner(sdxl_pipe, "cpu")
    assert conditioner.family == SDXL
    assert conditioner.text_encoders == [
        sdxl_pipe.text_encoder,
        sdxl_pipe.text_encoder_2,
    ]
    captions = ["a cat", "zxq a dog on a hill"]
    with torch.no_grad():
        text = conditioner.encode(captions)
        hidden, _, pooled, _ = sdxl_pipe.encode_prompt(
            captions, device="cpu", do_classifier_free_guidance=False
        )
    # te1's 32 wide states, then te2's 64: 96, the UNet's cross-attention width.
    assert text.hidden.shape == (2, 77, 96)
    assert sdxl_pipe.unet.config.cross_attention_dim == 96
    assert text.pooled is not None and text.pooled.shape == (2, 32)
    torch.testing.assert_close(text.hidden, hidden)
    torch.testing.assert_close(text.pooled, pooled)

    sizes = [
        SizeCond(original=(300, 200), crop_top_left=(0, 4), target=(96, 64)),
        SizeCond(original=(64, 64), crop_top_left=(0, 0), target=(64, 64)),
    ]
    kwargs = conditioner.unet_kwargs(text, sizes, torch.float32)
    added = kwargs["added_cond_kwargs"]
    for row, size in enumerate(sizes):
        expected = sdxl_pipe._get_add_time_ids(
            size.original,
            size.crop_top_left,
            size.target,
            dtype=torch.float32,
            text_encoder_projection_dim=sdxl_pipe.text_encoder_2.config.projection_dim,
        )
        assert torch.equal(added["time_ids"][row : row + 1], expected)
    assert torch.equal(added["text_embeds"], text.pooled)
    assert torch.equal(kwargs["encoder_hidden_states"], text.hidden)

    # The UNet takes exactly these: one noise prediction per image.
    latents = torch.zeros(2, 4, 8, 8)
    with torch.no_grad():
        out = sdxl_pipe.unet(latents, torch.tensor([10, 500]), **kwargs).sample
    assert out.shape == latents.shape


def test_sdxl_size_conditioning_changes_the_prediction(sdxl_pipe: Any) -> None:
    import torch

    conditioner = Conditioner(sdxl_pipe, "cpu")
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    outputs = []
    with torch.no_grad():
        text = conditioner.encode(["a cat"])
        for original in ((64, 64), (1024, 512)):
            size = SizeCond(original=original, crop_top_left=(0, 0), target=(64, 64))
            kwargs = conditioner.unet_kwargs(text, [size], torch.float32)
            outputs.append(sdxl_pipe.unet(latents, 500, **kwargs).sample)
    assert not torch.allclose(outputs[0], outputs[1])
    with pytest.raises(ValueError, match="1 sizes for a batch of 2"):
        conditioner.unet_kwargs(conditioner.encode(["a", "b"]), [size], torch.float32)


def test_encoding_keeps_a_graph_only_for_trainable_encoders(sdxl_pipe: Any) -> None:
    conditioner = Conditioner(sdxl_pipe, "cpu")
    encoders = conditioner.text_encoders
    try:
        for encoder in encoders:
            encoder.requires_grad_(False)
        assert not conditioner.encode(["a cat"]).hidden.requires_grad
        first_layer = encoders[1].text_model.encoder.layers[0].self_attn.q_proj
        first_layer.requires_grad_(True)  # as a text-encoder LoRA would be
        text = conditioner.encode(["a cat"])
        assert text.hidden.requires_grad and text.pooled.requires_grad
        text.hidden.sum().backward()
        assert first_layer.weight.grad is not None
    finally:
        for encoder in encoders:
            encoder.requires_grad_(False)
            encoder.zero_grad(set_to_none=True)


def test_a_cached_hub_model_is_read_from_its_snapshot(
    tiny_sdxl_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # The hub cache's layout: refs/main names the snapshot folder.
    repo = tmp_path / "hub" / "models--someone--tiny-xl"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copytree(tiny_sdxl_base, repo / "snapshots" / ("0" * 40))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert detect_family("someone/tiny-xl") == SDXL
