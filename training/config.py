"""A training run's config: the fields, their defaults and allowed ranges.

Defaults and ranges live in settings (TRAINING_DEFAULTS, TRAINING_RANGES) and
are read at call time, so a deployment (or a test) can change them. The API and
the admin keep every number inside its range; `manage.py train` may go below
the minimum steps and resolution, for smoke runs and demos, with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from imagineer_project.errors import Invalid
from training.ml.config import MIXED_PRECISION_CHOICES


@dataclass(frozen=True)
class ConfigField:
    name: str
    kind: type  # int, float, bool or str
    help: str
    choices: tuple[str, ...] = ()
    below_minimum_ok: bool = False  # the CLI may go lower, with a warning
    multiple_of: int = 1


FIELDS = (
    ConfigField("steps", int, "Optimizer steps to train.", below_minimum_ok=True),
    ConfigField("rank", int, "LoRA rank (network dim): capacity and file size."),
    ConfigField("alpha", float, "LoRA alpha; the update is scaled by alpha / rank."),
    ConfigField("learning_rate", float, "Peak learning rate (after warmup)."),
    ConfigField("warmup_steps", int, "Steps of linear learning-rate warmup."),
    ConfigField(
        "gradient_accumulation", int, "Batches added up into one optimizer step."
    ),
    ConfigField("batch_size", int, "Images per batch."),
    ConfigField(
        "resolution",
        int,
        "Square training size in pixels (a multiple of 8).",
        below_minimum_ok=True,
        multiple_of=8,
    ),
    ConfigField("random_flip", bool, "Mirror images at random (left/right)."),
    ConfigField("center_crop", bool, "Crop the centre square (else a random one)."),
    ConfigField(
        "mixed_precision",
        str,
        "bf16 or fp16 on CUDA; other devices train in full precision.",
        choices=MIXED_PRECISION_CHOICES,
    ),
    ConfigField("seed", int, "Seed for initialisation, data order and noise."),
    ConfigField(
        "checkpoint_every", int, "Save a resumable checkpoint every N steps (0: off)."
    ),
    ConfigField(
        "gradient_checkpointing",
        bool,
        "Trade speed for memory (for large batches or resolutions).",
    ),
    ConfigField("sample_steps", int, "Denoising steps of each sample image."),
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}


class ConfigInvalid(Invalid):
    """A config that cannot be used; `errors` maps each field to what is wrong."""

    code = "config_invalid"

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors=errors)


def config_defaults() -> dict[str, Any]:
    """Every field's default (settings.TRAINING_DEFAULTS)."""
    defaults = settings.TRAINING_DEFAULTS
    return {f.name: f.kind(defaults[f.name]) for f in FIELDS}


def config_ranges() -> dict[str, tuple[Any, Any]]:
    """(minimum, maximum) of each numeric field (settings.TRAINING_RANGES)."""
    return {name: tuple(bounds) for name, bounds in settings.TRAINING_RANGES.items()}


def field_help(name: str) -> str:
    """A field's help text with its range or choices and default, for forms."""
    spec = FIELDS_BY_NAME[name]
    default = config_defaults()[name]
    bounds = config_ranges().get(name)
    if spec.choices:
        return f"{spec.help} One of {', '.join(spec.choices)}; default {default}."
    if bounds:
        return f"{spec.help} {bounds[0]}–{bounds[1]}; default {default}."
    return f"{spec.help} Default {'on' if default else 'off'}."


def config_fields() -> list[dict[str, Any]]:
    """Each field with its type, default, range or choices: what clients show."""
    defaults, ranges = config_defaults(), config_ranges()
    return [
        {
            "name": spec.name,
            "type": spec.kind.__name__,
            "default": defaults[spec.name],
            "minimum": ranges.get(spec.name, (None, None))[0],
            "maximum": ranges.get(spec.name, (None, None))[1],
            "choices": list(spec.choices),
            "help": spec.help,
        }
        for spec in FIELDS
    ]


def config_validate(
    values: Mapping[str, Any] | None, *, allow_below_minimum: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The full config (defaults filled in) and warnings; raises ConfigInvalid.

    Each error names the field and the allowed range, e.g. "steps must be
    between 500 and 5000 (got 10)". With `allow_below_minimum` (the CLI),
    steps and resolution may go below their minimum, which only warns.
    """
    values = dict(values or {})
    errors: dict[str, str] = {}
    warnings: list[str] = []
    unknown = sorted(set(values) - set(FIELDS_BY_NAME))
    for name in unknown:
        errors[name] = f"unknown setting (known: {', '.join(FIELDS_BY_NAME)})"
    config = config_defaults()
    ranges = config_ranges()
    for spec in FIELDS:
        if values.get(spec.name) is None:
            continue
        try:
            value = _coerce(spec, values[spec.name])
        except ValueError as exc:
            errors[spec.name] = str(exc)
            continue
        problem = _check(spec, value, ranges.get(spec.name), allow_below_minimum)
        if problem is None:
            config[spec.name] = value
        elif problem.startswith("warning: "):
            config[spec.name] = value
            warnings.append(problem.removeprefix("warning: "))
        else:
            errors[spec.name] = problem
    if errors:
        raise ConfigInvalid(errors)
    return config, warnings


def _coerce(spec: ConfigField, value: Any) -> Any:
    if spec.kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{spec.name} must be true or false (got {value!r})")
    if spec.kind is str:
        return str(value).strip()
    if isinstance(value, bool):
        raise ValueError(f"{spec.name} must be a number (got {value!r})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{spec.name} must be a number (got {value!r})") from None
    if spec.kind is int:
        if not number.is_integer():
            raise ValueError(f"{spec.name} must be a whole number (got {value!r})")
        return int(number)
    return number


def _check(
    spec: ConfigField,
    value: Any,
    bounds: tuple[Any, Any] | None,
    allow_below_minimum: bool,
) -> str | None:
    """None when fine, "warning: ..." when only a warning, else the error."""
    if spec.choices and value not in spec.choices:
        return f"{spec.name} must be one of {', '.join(spec.choices)} (got {value!r})"
    if spec.multiple_of > 1 and (value <= 0 or value % spec.multiple_of):
        return f"{spec.name} must be a positive multiple of {spec.multiple_of}"
    if bounds is None:
        return None
    low, high = bounds
    if low <= value <= high:
        return None
    if value < low and spec.below_minimum_ok and allow_below_minimum and value >= 1:
        return (
            f"warning: {spec.name} {value} is below the usual minimum {low}: "
            "fine for a smoke test, too little for a useful LoRA"
        )
    return f"{spec.name} must be between {low} and {high} (got {value})"
