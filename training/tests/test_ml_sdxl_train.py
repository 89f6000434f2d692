"""SDXL through train_lora on the tiny SDXL pipeline: both text encoders trained,
size/crop conditioning, kohya te1/te2 keys, diffusers loads the file, samples."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from training.ml.trainer import train_lora
from training.tests.conftest import make_train_config
from training.tests.test_ml_network import image, library_warnings, load_pipe


@pytest.fixture(scope="module")
def sdxl_run(tiny_sdxl_base: Path, train_samples: list, tmp_path_factory: Any) -> Any:
    """3 steps with the text encoders trained, at a learning rate that shows."""
    config = make_train_config(
        tiny_sdxl_base,
        tmp_path_factory.mktemp("ml-xl-run"),
        steps=3,
        learning_rate=5e-2,
        text_encoder_lr=5e-2,
        train_text_encoder=True,
        checkpoint_every=0,
        sample_prompts=("zxq a cat",),
        sample_steps=1,
    )
    return config, train_lora(config, train_samples[:4])


def test_sdxl_trains_the_unet_and_both_text_encoders(sdxl_run: Any) -> None:
    from safetensors.torch import load_file

    from training.ml.kohya import kohya_key_problems

    _, result = sdxl_run
    assert math.isfinite(result.final_loss) and result.final_loss > 0
    assert result.family == "sdxl"
    state = load_file(result.lora_path)
    assert kohya_key_problems(state) == []
    modules = {k.rsplit(".", 2)[0] for k in state if k.endswith(".lora_down.weight")}
    prefixes = {m.split("_", 2)[1] for m in modules}
    assert prefixes == {"unet", "te1", "te2"}
    counted = {
        "unet": sum(m.startswith("lora_unet_") for m in modules),
        "text_encoder_1": sum(m.startswith("lora_te1_") for m in modules),
        "text_encoder_2": sum(m.startswith("lora_te2_") for m in modules),
    }
    assert result.module_counts == counted
    assert result.metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert result.metadata["family"] == "sdxl"
    assert result.metadata["ss_network_train_unet_only"] == "False"


def test_diffusers_sdxl_pipeline_loads_every_part_and_the_output_changes(
    sdxl_run: Any, tiny_sdxl_base: Path
) -> None:
    from diffusers import StableDiffusionXLPipeline

    _, result = sdxl_run
    pipe = load_pipe(tiny_sdxl_base)
    assert isinstance(pipe, StableDiffusionXLPipeline)
    plain = image(pipe)
    with library_warnings() as warned:
        pipe.load_lora_weights(result.lora_path)
    assert not [m for m in warned if "LoRA" in m or "keys" in m], warned
    adapters = pipe.get_list_adapters()
    assert {"unet", "text_encoder", "text_encoder_2"} <= adapters.keys()
    assert abs(image(pipe) - plain).mean() > 1e-3


def test_sdxl_samples_render_at_the_training_resolution(sdxl_run: Any) -> None:
    from PIL import Image

    config, result = sdxl_run
    assert len(result.sample_paths) == 1
    with Image.open(result.sample_paths[0]) as sample:
        assert sample.size == (config.resolution, config.resolution)
