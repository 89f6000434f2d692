"""Builders and fixtures shared by the training-run tests (no tests here).

Runs train the session's tiny pipeline (training/tests/conftest.py) at 64 px
for a few steps on six small captioned images, so a whole run with its
samples takes seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagineer_project.testing import make_album, make_image

# Sized for the tiny model: a few cheap steps, a checkpoint every 2.
TINY_CONFIG: dict[str, Any] = {
    "steps": 4,
    "rank": 4,
    "alpha": 4.0,
    "learning_rate": 1e-3,
    "warmup_steps": 1,
    "gradient_accumulation": 1,
    "batch_size": 2,
    "resolution": 64,
    "checkpoint_every": 2,
    "sample_steps": 2,
    "mixed_precision": "no",
}


@pytest.fixture
def train_env(settings: Any, tmp_path: Path, tiny_base: Path) -> Path:
    """Settings for tiny runs; returns the tiny base model's folder."""
    settings.TRAINING_MIN_CAPTIONED = 3
    settings.TRAINING_WORK_DIR = tmp_path / "work"
    settings.TRAINING_BASE_MODEL = str(tiny_base)
    settings.TRAINING_DEVICE = "cpu"
    # The heartbeat thread must not write during a test's open transaction.
    settings.TRAINING_HEARTBEAT_SECONDS = 3600
    return tiny_base


def make_training_album(
    count: int = 6,
    *,
    name: str = "Blocks",
    trigger_word: str = "zxq",
    first_seed: int = 1000,
) -> Any:
    """An album of `count` captioned images ("a blocky picture number i");
    albums made with different `first_seed`s hold different images."""
    from labeling.services import label_create

    album = make_album(name=name, trigger_word=trigger_word)
    for i in range(count):
        image = make_image(album=album, seed=first_seed + i, size=(72, 64))
        label_create(image=image, kind="caption", text=f"a blocky picture number {i}")
    return album


def make_dataset(**album_options: Any) -> Any:
    from training.dataset import dataset_version_build

    return dataset_version_build(albums=[make_training_album(**album_options)])


def make_tiny_run(*, dataset: Any = None, enqueue: bool = False, **config: Any) -> Any:
    """A run of the tiny model, created without starting it."""
    from training.runs import training_run_create

    return training_run_create(
        dataset=dataset or make_dataset(),
        config={**TINY_CONFIG, **config},
        name="blocks",
        enqueue=enqueue,
        allow_below_minimum=True,
    )
