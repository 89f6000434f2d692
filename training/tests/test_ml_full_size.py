"""A full-size SD 1.5 (random weights, built from training.ml.shapes) through
train_lora: the saved LoRA covers kohya's module sets.

One step at 64 px on the CPU; building and saving the 1 B-parameter model
costs most of the test's minute, so it is built once for the module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.ml.trainer import train_lora
from training.tests.conftest import make_train_config


@pytest.fixture(scope="module")
def full_size_sd15(tmp_path_factory: Any) -> Path:
    from training.ml.shapes import SD15_TEXT, SD15_UNET, SD15_VAE, assemble_pipeline

    folder = tmp_path_factory.mktemp("ml-sd15") / "sd15-random"
    pipe = assemble_pipeline(SD15_UNET, SD15_VAE, SD15_TEXT, seed=0)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def saved_module_counts(path: str) -> dict[str, int]:
    """LoRA modules per kohya prefix, counted in the saved file."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        names = list(handle.keys())
    modules = {k.rsplit(".", 2)[0] for k in names if "lora_down" in k}
    counts: dict[str, int] = {}
    for module in modules:
        prefix = module.split("_", 2)[1]  # "unet" or "te"
        counts[prefix] = counts.get(prefix, 0) + 1
    return counts


def test_full_size_sd15_lora_has_kohyas_192_unet_and_72_text_modules(
    full_size_sd15: Path, train_samples: list, tmp_path: Path
) -> None:
    base = make_train_config(
        full_size_sd15,
        tmp_path / "unet",
        steps=1,
        batch_size=1,
        checkpoint_every=0,
    )
    unet_only = train_lora(base, train_samples[:1])
    assert saved_module_counts(unet_only.lora_path) == {"unet": 192}
    assert unet_only.module_counts == {"unet": 192}

    with_te = make_train_config(
        full_size_sd15,
        tmp_path / "te",
        steps=1,
        batch_size=1,
        checkpoint_every=0,
        train_text_encoder=True,
    )
    both = train_lora(with_te, train_samples[:1])
    counts = saved_module_counts(both.lora_path)
    assert counts == {"unet": 192, "te": 72}
    assert sum(counts.values()) == 264
    assert both.module_counts == {"unet": 192, "text_encoder": 72}
