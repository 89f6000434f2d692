"""Builders and fixtures shared by the generation tests (no tests here).

Jobs render on the session's tiny pipeline (training/tests/conftest.py) at
64 px with 2 steps: a job of a few images takes well under a second on a CPU.
The two LoRAs are the session's trained one and a copy with its up weights
times -2, registered per test (each test has its own media folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.generation import GenerationRequest

# diffusers' schedulers trip a numpy 2 deprecation on every timestep setup.
QUIET = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SMALL: dict[str, Any] = {"steps": 2, "width": 64, "height": 64, "guidance": 5.0}


def small_request(**overrides: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a cat", "seed": 7, **SMALL, **overrides})


def small_payload(**overrides: Any) -> dict[str, Any]:
    return {"prompt": "a cat", "seed": 7, **SMALL, **overrides}


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
def gen_env(settings: Any, tiny_base: Path) -> Path:
    """Settings for tiny jobs; returns the tiny base model's folder."""
    from django.core.cache import cache

    settings.GENERATION_BASE_MODEL = str(tiny_base)
    settings.GENERATION_DEVICE = "cpu"
    cache.clear()  # rate-limit windows from other tests
    return tiny_base


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


def run_job(job: Any) -> Any:
    """Run a queued job's task inline and return it fresh."""
    from training.generation_tasks import run_generation

    run_generation(job.pk)
    job.refresh_from_db()
    return job
