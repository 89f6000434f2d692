"""The tiny offline SD pipeline the ML tests and benchmarks run on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from training.ml.tiny import build_tiny_pipeline


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_building_twice_gives_identical_files(tiny_base: Path, tmp_path: Path) -> None:
    other = build_tiny_pipeline(tmp_path / "again")
    assert digest(other) == digest(tiny_base)
    assert "unet/diffusion_pytorch_model.safetensors" in digest(other)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temp folder left


def test_a_complete_pipeline_is_returned_as_is(tiny_base: Path) -> None:
    weights = tiny_base / "unet" / "diffusion_pytorch_model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_pipeline(tiny_base) == tiny_base
    assert weights.stat().st_mtime_ns == before


def test_another_seed_gives_other_weights(tiny_base: Path, tmp_path: Path) -> None:
    other = digest(build_tiny_pipeline(tmp_path / "seed1", seed=1))
    ours = digest(tiny_base)
    assert other["unet/config.json"] == ours["unet/config.json"]
    assert (
        other["unet/diffusion_pytorch_model.safetensors"]
        != (ours["unet/diffusion_pytorch_model.safetensors"])
    )


def test_it_refuses_to_overwrite_an_unrelated_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_tiny_pipeline(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_it_loads_as_an_sd_pipeline_with_a_working_tokenizer(tiny_base: Path) -> None:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_base, safety_checker=None, requires_safety_checker=False
    )
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.scheduler.config.steps_offset == 1
    assert pipe.unet.config.cross_attention_dim == 32
    assert pipe.safety_checker is None
    tokenizer = pipe.tokenizer
    assert len(tokenizer) == 514
    assert tokenizer.model_max_length == 77
    ids = tokenizer("A cat!").input_ids
    # One token per byte, lower-cased; words and punctuation split as in CLIP.
    assert len(ids) == 2 + len("acat!")
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a cat !"


def test_the_tiny_sdxl_builds_deterministically_offline(
    tiny_sdxl_base: Path, tmp_path: Path
) -> None:
    files = digest(tiny_sdxl_base)
    assert "text_encoder_2/model.safetensors" in files
    assert "tokenizer_2/tokenizer_config.json" in files
    assert digest(build_tiny_pipeline(tmp_path / "again", family="sdxl")) == files
    assert build_tiny_pipeline(tiny_sdxl_base, family="sdxl") == tiny_sdxl_base


def test_the_tiny_sdxl_loads_as_an_sdxl_pipeline(tiny_sdxl_base: Path) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModelWithProjection

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_base)
    assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
    assert isinstance(pipe.text_encoder_2, CLIPTextModelWithProjection)
    unet = pipe.unet.config
    assert unet.addition_embed_type == "text_time"
    # Its context is both encoders' states side by side; its added embedding
    # takes six size ids and the second encoder's pooled projection.
    hidden = pipe.text_encoder.config.hidden_size
    assert unet.cross_attention_dim == hidden + pipe.text_encoder_2.config.hidden_size
    projection = pipe.text_encoder_2.config.projection_dim
    assert pipe.unet.add_embedding.linear_1.in_features == (
        6 * unet.addition_time_embed_dim + projection
    )
    assert pipe.vae.config.scaling_factor == 0.13025


def test_an_unknown_family_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="No tiny 'flux' pipeline"):
        build_tiny_pipeline(tmp_path / "x", family="flux")
    assert not (tmp_path / "x").exists()


def test_make_tiny_model_builds_the_sdxl_one(tmp_path: Path) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(
        "make_tiny_model", str(tmp_path / "xl"), "--family", "sdxl", stdout=out
    )
    folder = Path(out.getvalue().strip())
    assert folder == (tmp_path / "xl").resolve()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
