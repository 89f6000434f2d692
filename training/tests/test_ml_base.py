"""Finding, checking and fingerprinting base models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from training.ml.base import hash_base_model, is_local, library_versions, load_pipeline
from training.ml.config import InvalidTrainingInput


def test_paths_and_hub_ids_are_told_apart(tmp_path: Path) -> None:
    assert is_local(str(tmp_path))
    assert is_local("/models/sd15")
    assert is_local("./sd15")
    assert is_local("~/models/sd15")
    assert is_local("models/sd/v15")
    assert not is_local("runwayml/stable-diffusion-v1-5")
    assert not is_local("sd15")


def test_the_hash_covers_weights_only_and_is_stable(
    tiny_base: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_base, tmp_path / "copy"))
    first = hash_base_model(copy)
    assert len(first) == 64
    assert hash_base_model(str(copy)) == first == hash_base_model(tiny_base)
    (copy / "unet" / "config.json").write_text("{}")  # configs are not weights
    assert hash_base_model(copy) == first
    weights = copy / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    assert hash_base_model(copy) != first


def test_an_uncached_hub_model_has_no_hash_and_does_not_load() -> None:
    assert hash_base_model("nobody/not-cached-anywhere") == ""
    with pytest.raises(InvalidTrainingInput, match="Could not load base model"):
        load_pipeline("nobody/not-cached-anywhere")


def test_other_pipelines_are_refused_by_name(tiny_base: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_base, tmp_path / "odd"))
    index = copy / "model_index.json"
    index.write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(InvalidTrainingInput, match="is a KandinskyPipeline"):
        load_pipeline(str(copy))
    index.write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    shutil.rmtree(copy / "unet")
    with pytest.raises(InvalidTrainingInput, match="lacks the component folders: unet"):
        load_pipeline(str(copy))


def test_an_sdxl_folder_needs_its_second_text_encoder(
    tiny_base: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_base, tmp_path / "xl"))
    (copy / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLPipeline"})
    )
    with pytest.raises(
        InvalidTrainingInput,
        match="lacks the component folders: text_encoder_2, tokenizer_2",
    ):
        load_pipeline(str(copy))


def test_sdxl_and_sd_folders_load_as_their_own_pipelines(
    tiny_base: Path, tiny_sdxl_base: Path
) -> None:
    sdxl = load_pipeline(str(tiny_sdxl_base))
    assert type(sdxl).__name__ == "StableDiffusionXLPipeline"
    assert sdxl.text_encoder_2 is not None and sdxl.tokenizer_2 is not None
    assert type(load_pipeline(str(tiny_base))).__name__ == "StableDiffusionPipeline"


def test_loading_a_pipeline_draws_no_progress_bars(tiny_base: Path, capfd: Any) -> None:
    # tqdm's bars were carriage-return noise in the worker's log on every load.
    load_pipeline(str(tiny_base))
    drawn = capfd.readouterr().err
    assert "Loading pipeline components" not in drawn and "it/s]" not in drawn


def test_library_versions_name_the_ml_stack() -> None:
    versions = library_versions()
    assert set(versions) == {
        "torch",
        "diffusers",
        "peft",
        "transformers",
        "safetensors",
        "accelerate",
    }
    assert versions["torch"].startswith("2.")
