"""Fixtures for the training tests: one tiny real SD pipeline per session.

The ML tests use no database. Building the tiny pipeline and importing torch,
diffusers and peft cost a few seconds, paid once per session.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def write_training_images(folder: Path, count: int = 6) -> list[Path]:
    """Small PNGs with distinct blocky patterns; one is wider, to exercise cropping."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    paths = []
    for i in range(count):
        width = 80 if i == 0 else 64
        blocks = rng.integers(0, 256, size=(8, width // 8, 3), dtype=np.uint8)
        pixels = np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))
        path = folder / f"image-{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def make_train_config(base_model: Path, output_dir: Path, **overrides: Any) -> Any:
    """A TrainConfig sized for the tiny model: 64 px, a few cheap steps."""
    from training.ml.config import TrainConfig

    config = TrainConfig(
        base_model=str(base_model),
        output_dir=str(output_dir),
        steps=4,
        rank=4,
        alpha=4.0,
        learning_rate=1e-3,
        warmup_steps=1,
        gradient_accumulation=1,
        batch_size=2,
        resolution=64,
        checkpoint_every=2,
        trigger_word="zxq",
        dataset_hash="dataset-1",
    )
    return replace(config, **overrides)


@pytest.fixture(scope="session")
def train_samples(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    from training.ml.config import TrainSample

    paths = write_training_images(tmp_path_factory.mktemp("ml-images"))
    return [
        TrainSample(str(p), f"a blocky picture number {i}") for i, p in enumerate(paths)
    ]


@pytest.fixture(scope="session")
def trained_lora(
    tiny_base: Path, train_samples: list[Any], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """One finished run shared by the file-format and generation tests.

    A high learning rate so the LoRA visibly changes the tiny model's output.
    """
    from training.ml.trainer import train_lora

    config = make_train_config(
        tiny_base,
        tmp_path_factory.mktemp("ml-run"),
        steps=6,
        learning_rate=5e-2,
        sample_prompts=("zxq a cat", "a dog"),
        sample_steps=2,
        mixed_precision="bf16",  # asked for; the CPU runs fp32 and says so
    )
    return train_lora(config, train_samples)


@pytest.fixture
def train_env(settings: Any, tmp_path: Path, tiny_base: Path) -> Path:
    """Settings for tiny runs; returns the tiny base model's folder."""
    settings.TRAINING_MIN_CAPTIONED = 3
    settings.TRAINING_WORK_DIR = tmp_path / "work"
    settings.TRAINING_BASE_MODEL = str(tiny_base)
    settings.TRAINING_DEVICE = "cpu"
    return tiny_base


@pytest.fixture
def gen_env(settings: Any, tiny_base: Path) -> Path:
    """Settings for tiny jobs; returns the tiny base model's folder."""
    from django.core.cache import cache

    settings.GENERATION_BASE_MODEL = str(tiny_base)
    settings.GENERATION_DEVICE = "cpu"
    cache.clear()  # rate-limit windows from other tests
    return tiny_base


@pytest.fixture(scope="session")
def second_lora_file(trained_lora: Any, tmp_path_factory: Any) -> Path:
    """Another valid LoRA: the trained one with its up weights times -2."""
    from safetensors.torch import load_file

    from training.ml.kohya import read_lora_metadata, save_kohya_lora

    state = load_file(trained_lora.lora_path)
    flipped = {k: -2 * v if ".lora_up." in k else v for k, v in state.items()}
    path = tmp_path_factory.mktemp("gen-lora") / "other.safetensors"
    save_kohya_lora(flipped, path, read_lora_metadata(trained_lora.lora_path))
    return path


@pytest.fixture
def loras(
    db: Any, gen_env: Path, trained_lora: Any, second_lora_file: Path
) -> tuple[Any, Any]:
    """Two registered LoRAs for the tiny model: "blocks" (trigger word zxq) and
    "inverse" (trigger words qqv, blk)."""
    from training.registry import lora_import

    first = lora_import(
        file=trained_lora.lora_path,
        name="blocks",
        trigger_words=["zxq"],
        base_model=str(gen_env),
    )
    second = lora_import(
        file=second_lora_file,
        name="inverse",
        trigger_words=["qqv", "blk"],
        default_weight=0.5,
        base_model=str(gen_env),
    )
    return first, second


@pytest.fixture(scope="session")
def tiny_sdxl_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real SDXL pipeline on disk (two text encoders, text_time
    conditioning), built once per session."""
    from training.ml.tiny import build_tiny_pipeline

    return build_tiny_pipeline(
        tmp_path_factory.mktemp("ml-xl") / "tiny-sdxl", family="sdxl"
    )
