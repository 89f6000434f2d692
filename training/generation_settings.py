"""Generation settings, read in one place with their defaults.

Read at call time (not import time), so a test's `settings` fixture applies.
docs/configuration.md lists them; settings.py sets them from the environment.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from training.ratelimit import Rate, RateInvalid, parse_rate

TINY_MODEL_FOLDER = "models/tiny-sd"  # under VAR_DIR; `make demo` builds it


def base_model() -> str:
    """GENERATION_BASE_MODEL, else TRAINING_BASE_MODEL, else the tiny demo model
    if it was built; "" when none of them is there."""
    configured = getattr(settings, "GENERATION_BASE_MODEL", "") or getattr(
        settings, "TRAINING_BASE_MODEL", ""
    )
    if configured.strip():
        return configured.strip()
    tiny = Path(settings.VAR_DIR) / TINY_MODEL_FOLDER
    return str(tiny) if (tiny / "model_index.json").is_file() else ""


def device() -> str:
    return getattr(settings, "GENERATION_DEVICE", "") or getattr(
        settings, "TRAINING_DEVICE", "auto"
    )


def mixed_precision() -> str:
    return getattr(settings, "GENERATION_MIXED_PRECISION", "fp16")


def max_prompt_chars() -> int:
    return int(getattr(settings, "GENERATION_MAX_PROMPT_CHARS", 1000))


def size_range() -> tuple[int, int]:
    return (
        int(getattr(settings, "GENERATION_MIN_SIZE", 64)),
        int(getattr(settings, "GENERATION_MAX_SIZE", 1024)),
    )


def max_steps() -> int:
    return int(getattr(settings, "GENERATION_MAX_STEPS", 150))


def max_images() -> int:
    return int(getattr(settings, "GENERATION_MAX_IMAGES", 8))


def guidance_range() -> tuple[float, float]:
    low, high = getattr(settings, "GENERATION_GUIDANCE_RANGE", (0.0, 30.0))
    return float(low), float(high)


def max_loras() -> int:
    return int(getattr(settings, "GENERATION_MAX_LORAS", 8))


def rate_limit() -> Rate | None:
    text = getattr(settings, "GENERATION_RATE_LIMIT", "20/hour")
    try:
        return parse_rate(text)
    except RateInvalid as exc:
        raise ImproperlyConfigured(f"GENERATION_RATE_LIMIT: {exc}") from exc


def rate_limit_exempt_staff() -> bool:
    return bool(getattr(settings, "GENERATION_RATE_LIMIT_EXEMPT_STAFF", False))


def default_album() -> str:
    return getattr(settings, "GENERATION_DEFAULT_ALBUM", "Generated") or "Generated"


def lora_cache_dir() -> Path:
    """Where LoRA files from non-local storage (S3) are copied for the worker."""
    configured = getattr(settings, "GENERATION_LORA_CACHE_DIR", "")
    return Path(configured) if configured else Path(settings.VAR_DIR) / "lora-cache"
