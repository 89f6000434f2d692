"""The tiny offline SD pipeline the ML tests and benchmarks run on."""

from __future__ import annotations

import hashlib
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
