"""Training presets: named configs the admin's run form offers.

Standard is the configured defaults (settings.TRAINING_DEFAULTS). Smoke test
proves the whole path works (dataset, training, LoRA, samples) in about a
minute on the tiny model on a CPU; its LoRA learns nothing. High quality
trains longer at a higher rank. Prodigy is that optimizer with its
recommended settings; SDXL suits an SDXL base model at 1024 px. Presets other
than the smoke test are kept inside TRAINING_RANGES (Prodigy's learning rates
inside Prodigy's ranges); the smoke test goes below the minimum steps and
resolution, which the admin allows with a warning (as `manage.py train`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.config import config_defaults, config_ranges, optimizer_ranges


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    help: str
    changes: dict[str, Any]  # over the defaults


PRESETS = (
    Preset(
        "smoke",
        "Smoke test",
        "A handful of steps at a small size: checks that the whole path works. "
        "The LoRA learns nothing useful.",
        {
            "steps": 20,
            "resolution": 64,
            "rank": 4,
            "alpha": 4.0,
            "learning_rate": 1e-3,
            "warmup_steps": 0,
            "gradient_accumulation": 1,
            "batch_size": 1,
            "checkpoint_every": 0,
            "sample_steps": 5,
        },
    ),
    Preset("standard", "Standard", "The configured defaults: a usable LoRA.", {}),
    Preset(
        "high",
        "High quality",
        "Twice the steps at twice the rank, checkpointed more often.",
        {"steps": "2x", "rank": "2x", "alpha": "2x", "checkpoint_every": 250},
    ),
    Preset(
        "prodigy",
        "Prodigy",
        "The Prodigy optimizer, which finds its own step size: learning rates "
        "1.0, constant schedule without warmup, min-SNR-γ 5.",
        {
            "optimizer": "prodigy",
            "learning_rate": 1.0,
            "text_encoder_lr": 1.0,
            "lr_scheduler": "constant",
            "warmup_steps": 0,
            "min_snr_gamma": 5.0,
        },
    ),
    Preset(
        "sdxl",
        "SDXL",
        "For an SDXL base model: 1024 px buckets, a batch of 2 with gradient "
        "checkpointing, min-SNR-γ 5 (bf16 on CUDA).",
        {
            "resolution": 1024,
            "batch_size": 2,
            "gradient_accumulation": 2,
            "gradient_checkpointing": True,
            "mixed_precision": "bf16",
            "min_snr_gamma": 5.0,
        },
    ),
)
PRESETS_BY_KEY = {p.key: p for p in PRESETS}
DEFAULT_PRESET = "standard"
KEEP_IN_RANGE = ("high", "prodigy", "sdxl")  # the smoke test goes below on purpose


def preset_config(key: str) -> dict[str, Any]:
    """The full config of preset `key`: the defaults with its changes ("2x":
    twice the default), kept inside TRAINING_RANGES except the smoke test's
    steps and resolution."""
    config = config_defaults()
    changes = PRESETS_BY_KEY[key].changes
    optimizer = changes.get("optimizer", config["optimizer"])
    ranges = {name: optimizer_ranges(name).get(optimizer) for name in changes}
    ranges = {**config_ranges(), **{k: v for k, v in ranges.items() if v}}
    for name, value in changes.items():
        if value == "2x":
            value = config[name] * 2
        if key in KEEP_IN_RANGE and name in ranges:
            low, high = ranges[name]
            value = type(config[name])(min(max(value, low), high))
        config[name] = value
    return config


def preset_configs() -> dict[str, dict[str, Any]]:
    return {p.key: preset_config(p.key) for p in PRESETS}
