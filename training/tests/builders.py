"""Builders shared by the training and generation tests (fixtures are in
conftest.py).

Runs train the session's tiny pipeline (conftest.py) at 64 px for a few steps
on six small captioned images, so a whole run with its samples takes seconds
on a CPU. Generation jobs render on the same pipeline at 64 px with 2 steps.
"""

from __future__ import annotations

from typing import Any

import pytest

from albums.tests.builders import make_album, make_image
from training.generation.services import GenerationRequest

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
    from training.datasets.services import dataset_version_build

    return dataset_version_build(albums=[make_training_album(**album_options)])


def make_tiny_run(*, dataset: Any = None, enqueue: bool = False, **config: Any) -> Any:
    """A run of the tiny model, created without starting it."""
    from training.services import training_run_create

    return training_run_create(
        dataset=dataset or make_dataset(),
        config={**TINY_CONFIG, **config},
        name="blocks",
        enqueue=enqueue,
        allow_below_minimum=True,
    )


# diffusers' schedulers trip a numpy 2 deprecation on every timestep setup.
QUIET = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SMALL: dict[str, Any] = {"steps": 2, "width": 64, "height": 64, "guidance": 5.0}


def small_request(**overrides: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a cat", "seed": 7, **SMALL, **overrides})


def small_payload(**overrides: Any) -> dict[str, Any]:
    return {"prompt": "a cat", "seed": 7, **SMALL, **overrides}


def run_job(job: Any) -> Any:
    """Run a queued job's task inline and return it fresh."""
    from training.generation.tasks import run_generation

    run_generation(job.pk)
    job.refresh_from_db()
    return job
