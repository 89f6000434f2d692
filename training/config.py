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
from training.ml.config import (
    LORA_TARGET_CHOICES,
    LOSS_CHOICES,
    MIXED_PRECISION_CHOICES,
    OPTIMIZER_CHOICES,
    SCHEDULER_CHOICES,
)

BASICS, NETWORK, DATA, OPTIMISATION, CHECKPOINTS = (
    "Basics",
    "Network",
    "Data & captions",
    "Optimisation",
    "Checkpoints & samples",
)
SECTIONS = (BASICS, NETWORK, DATA, OPTIMISATION, CHECKPOINTS)
# Sections the admin form shows folded: their defaults suit most runs.
ADVANCED_SECTIONS = (NETWORK, DATA, OPTIMISATION)


@dataclass(frozen=True)
class ConfigField:
    name: str
    kind: type  # int, float, bool or str
    help: str
    section: str = BASICS
    choices: tuple[str, ...] = ()
    below_minimum_ok: bool = False  # the CLI may go lower, with a warning
    multiple_of: int = 1
    kohya: str = ""  # sd-scripts' name for it, for people coming from there


FIELDS = (
    # --- basics ---
    ConfigField(
        "steps",
        int,
        "Optimizer steps to train.",
        below_minimum_ok=True,
        kohya="max_train_steps",
    ),
    ConfigField(
        "resolution",
        int,
        "Training size in pixels: buckets hold about resolution² pixels (a "
        "multiple of 8). Unset: the base model's own (SD 1.5 512, SD 2.x 768, "
        "SDXL 1024).",
        below_minimum_ok=True,
        multiple_of=8,
        kohya="resolution",
    ),
    ConfigField(
        "learning_rate",
        float,
        "Peak learning rate of the UNet's LoRA (after warmup). Prodigy: about 1.0 "
        "(it finds its own step size).",
        kohya="unet_lr",
    ),
    ConfigField("batch_size", int, "Images per batch.", kohya="train_batch_size"),
    ConfigField(
        "gradient_accumulation",
        int,
        "Batches added up into one optimizer step.",
        kohya="gradient_accumulation_steps",
    ),
    ConfigField(
        "mixed_precision",
        str,
        "bf16 or fp16 on CUDA; other devices train in full precision.",
        choices=MIXED_PRECISION_CHOICES,
        kohya="mixed_precision",
    ),
    ConfigField(
        "seed", int, "Seed for initialisation, data order and noise.", kohya="seed"
    ),
    # --- network ---
    ConfigField(
        "rank",
        int,
        "LoRA rank (network dim): capacity and file size.",
        section=NETWORK,
        kohya="network_dim",
    ),
    ConfigField(
        "alpha",
        float,
        "LoRA alpha; the update is scaled by alpha / rank.",
        section=NETWORK,
        kohya="network_alpha",
    ),
    ConfigField(
        "lora_targets",
        str,
        "Which UNet layers get a LoRA: transformer (every linear layer of the "
        "transformer blocks, as kohya), attention (the attention projections "
        "only: smaller), transformer+conv (plus the 3x3 convolutions, LoCon).",
        section=NETWORK,
        choices=LORA_TARGET_CHOICES,
        kohya="network_module / conv_dim",
    ),
    ConfigField(
        "conv_rank",
        int,
        "Rank of the 3x3 convolution LoRAs (transformer+conv only).",
        section=NETWORK,
        kohya="conv_dim",
    ),
    ConfigField(
        "conv_alpha",
        float,
        "Alpha of the 3x3 convolution LoRAs.",
        section=NETWORK,
        kohya="conv_alpha",
    ),
    ConfigField(
        "train_text_encoder",
        bool,
        "Train a LoRA on the text encoder(s) too: learns new words better, "
        "overfits sooner.",
        section=NETWORK,
        kohya="(not network_train_unet_only)",
    ),
    ConfigField(
        "text_encoder_lr",
        float,
        "Learning rate of the text-encoder LoRA.",
        section=NETWORK,
        kohya="text_encoder_lr",
    ),
    # --- data and captions ---
    ConfigField(
        "bucketing",
        bool,
        "Aspect-ratio buckets: each image trains at the bucket nearest its shape, "
        "uncropped. Off: square crops.",
        section=DATA,
        kohya="enable_bucket",
    ),
    ConfigField(
        "bucket_min_side",
        int,
        "Shortest bucket side in pixels (0: resolution / 2).",
        section=DATA,
        kohya="min_bucket_reso",
    ),
    ConfigField(
        "bucket_max_side",
        int,
        "Longest bucket side in pixels (0: resolution × 2).",
        section=DATA,
        kohya="max_bucket_reso",
    ),
    ConfigField(
        "bucket_step",
        int,
        "Bucket sides are multiples of this many pixels.",
        section=DATA,
        kohya="bucket_reso_steps",
    ),
    ConfigField(
        "center_crop",
        bool,
        "Crop the centre (else a random place) where an image is cropped.",
        section=DATA,
        kohya="(not random_crop)",
    ),
    ConfigField(
        "random_flip",
        bool,
        "Mirror images at random (left/right).",
        section=DATA,
        kohya="flip_aug",
    ),
    ConfigField(
        "shuffle_tags",
        bool,
        "Shuffle a caption's comma-separated tags each time it is drawn (after "
        "the first keep_tokens; the trigger word stays first).",
        section=DATA,
        kohya="shuffle_caption",
    ),
    ConfigField(
        "keep_tokens",
        int,
        "Leading tags that shuffle_tags leaves in place.",
        section=DATA,
        kohya="keep_tokens",
    ),
    ConfigField(
        "caption_dropout",
        float,
        "Chance an image trains with an empty caption (helps the LoRA work "
        "without its words).",
        section=DATA,
        kohya="caption_dropout_rate",
    ),
    ConfigField(
        "reg_album",
        int,
        "Album of regularisation (class) images trained alongside, by id; 0: "
        "none. Their captions are their own, else the album's trigger word, else "
        "its name.",
        section=DATA,
        kohya="reg_data_dir",
    ),
    ConfigField(
        "reg_weight",
        float,
        "Loss weight of the regularisation images.",
        section=DATA,
        kohya="prior_loss_weight",
    ),
    ConfigField(
        "validation_split",
        float,
        "Share of the dataset's images held out (chosen by the seed) to measure "
        "a validation loss at every checkpoint; 0: none.",
        section=DATA,
        kohya="validation_split",
    ),
    # --- optimisation ---
    ConfigField(
        "optimizer",
        str,
        "adamw; adamw8bit (bitsandbytes, CUDA only: less memory); prodigy "
        "(adapts its step size: set the learning rate to about 1.0).",
        section=OPTIMISATION,
        choices=OPTIMIZER_CHOICES,
        kohya="optimizer_type",
    ),
    ConfigField(
        "lr_scheduler",
        str,
        "How the learning rate changes over the run.",
        section=OPTIMISATION,
        choices=SCHEDULER_CHOICES,
        kohya="lr_scheduler",
    ),
    ConfigField(
        "warmup_steps",
        int,
        "Steps of linear learning-rate warmup.",
        section=OPTIMISATION,
        kohya="lr_warmup_steps",
    ),
    ConfigField(
        "lr_cycles",
        int,
        "Restarts of cosine_with_restarts.",
        section=OPTIMISATION,
        kohya="lr_scheduler_num_cycles",
    ),
    ConfigField(
        "loss_type",
        str,
        "l2 (mean squared error) or huber (less swayed by outliers).",
        section=OPTIMISATION,
        choices=LOSS_CHOICES,
        kohya="loss_type",
    ),
    ConfigField(
        "huber_c",
        float,
        "Huber loss threshold (huber only).",
        section=OPTIMISATION,
        kohya="huber_c",
    ),
    ConfigField(
        "min_snr_gamma",
        float,
        "Min-SNR-γ loss weighting (0: off; 5 is the paper's value): steadier, "
        "faster training.",
        section=OPTIMISATION,
        kohya="min_snr_gamma",
    ),
    ConfigField(
        "noise_offset",
        float,
        "Noise offset (0: off; about 0.05): lets the LoRA learn very dark and "
        "very bright images.",
        section=OPTIMISATION,
        kohya="noise_offset",
    ),
    ConfigField(
        "gradient_checkpointing",
        bool,
        "Trade speed for memory (for large batches or resolutions).",
        section=OPTIMISATION,
        kohya="gradient_checkpointing",
    ),
    ConfigField(
        "compile_unet",
        bool,
        "torch.compile the UNet (CUDA only; slow first step).",
        section=OPTIMISATION,
        kohya="torch_compile",
    ),
    # --- checkpoints and samples ---
    ConfigField(
        "checkpoint_every",
        int,
        "Save a resumable checkpoint, its LoRA and sample images every N steps "
        "(0: only at the end).",
        section=CHECKPOINTS,
        kohya="save_every_n_steps",
    ),
    ConfigField(
        "sample_steps",
        int,
        "Denoising steps of each sample image.",
        section=CHECKPOINTS,
        kohya="sample_sampler steps",
    ),
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}
# Fields of the run that are not TrainConfig fields: training.runs turns them
# into regularisation and validation samples.
RUN_ONLY_FIELDS = ("reg_album", "validation_split")
# Learning rates an optimizer starts from when the request sets none: Prodigy
# adapts its own step size, scaled by these (its README: leave them at 1.0).
OPTIMIZER_DEFAULTS = {"prodigy": {"learning_rate": 1.0, "text_encoder_lr": 1.0}}


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
    return {
        name: tuple(bounds)
        for name, bounds in settings.TRAINING_RANGES.items()
        if "@" not in name
    }


def optimizer_ranges(name: str) -> dict[str, tuple[Any, Any]]:
    """Ranges of `name` that depend on the optimizer ("learning_rate@prodigy"
    in TRAINING_RANGES): {optimizer: (minimum, maximum)}."""
    return {
        key.split("@", 1)[1]: tuple(bounds)
        for key, bounds in settings.TRAINING_RANGES.items()
        if key.startswith(f"{name}@")
    }


def _range_text(bounds: tuple[Any, Any]) -> str:
    return f"{bounds[0]}–{bounds[1]}"


def field_help(name: str) -> str:
    """A field's help text with its range or choices and default, for forms."""
    spec = FIELDS_BY_NAME[name]
    default = config_defaults()[name]
    bounds = config_ranges().get(name)
    if spec.choices:
        return f"{spec.help} One of {', '.join(spec.choices)}; default {default}."
    if bounds:
        others = "".join(
            f"; {optimizer}: {_range_text(b)}"
            for optimizer, b in optimizer_ranges(name).items()
        )
        return f"{spec.help} {_range_text(bounds)}{others}; default {default}."
    if spec.kind is bool:
        return f"{spec.help} Default {'on' if default else 'off'}."
    return f"{spec.help} Default {default}."


def config_fields() -> list[dict[str, Any]]:
    """Each field with its type, section, default, range or choices: what
    clients show. `optimizer_ranges` holds a range that depends on the
    optimizer (the learning rate's for Prodigy)."""
    defaults, ranges = config_defaults(), config_ranges()
    return [
        {
            "name": spec.name,
            "type": spec.kind.__name__,
            "section": spec.section,
            "default": defaults[spec.name],
            "minimum": ranges.get(spec.name, (None, None))[0],
            "maximum": ranges.get(spec.name, (None, None))[1],
            "choices": list(spec.choices),
            "optimizer_ranges": {
                optimizer: list(bounds)
                for optimizer, bounds in optimizer_ranges(spec.name).items()
            },
            "help": spec.help,
            "kohya": spec.kohya,
        }
        for spec in FIELDS
    ]


def family_resolution(base_model: str) -> int | None:
    """The base model's family's training size (SDXL 1024), or None when the
    family cannot be read here (train_lora then says what is wrong)."""
    if not base_model:
        return None
    from training.ml.config import TrainingError
    from training.ml.family import DEFAULT_RESOLUTION, detect_family

    try:
        return DEFAULT_RESOLUTION[detect_family(base_model)]
    except (TrainingError, OSError, ValueError, KeyError):
        return None


def config_validate(
    values: Mapping[str, Any] | None,
    *,
    allow_below_minimum: bool = False,
    base_model: str = "",
) -> tuple[dict[str, Any], list[str]]:
    """The full config (defaults filled in) and warnings; raises ConfigInvalid.

    Each error names the field and the allowed range, e.g. "steps must be
    between 500 and 5000 (got 10)". With `allow_below_minimum` (the CLI),
    steps and resolution may go below their minimum, which only warns.
    Unset fields take their defaults, except: the resolution follows
    `base_model`'s family (SDXL 1024) and the learning rates the optimizer
    (Prodigy 1.0, OPTIMIZER_DEFAULTS). Rules across fields: the learning rates'
    ranges are the optimizer's ("learning_rate@prodigy" in TRAINING_RANGES);
    bucket sides must bracket the resolution.
    """
    values = dict(values or {})
    errors: dict[str, str] = {}
    warnings: list[str] = []
    unknown = sorted(set(values) - set(FIELDS_BY_NAME))
    for name in unknown:
        errors[name] = f"unknown setting (known: {', '.join(FIELDS_BY_NAME)})"
    given = {name for name in FIELDS_BY_NAME if values.get(name) is not None}
    config = config_defaults()
    ranges = config_ranges()
    for spec in FIELDS:
        if spec.name not in given:
            continue
        try:
            config[spec.name] = _coerce(spec, values[spec.name])
        except ValueError as exc:
            errors[spec.name] = str(exc)
    _fill_dependent_defaults(config, given, base_model)
    ranges = {**ranges, **_dependent_ranges(config)}
    for spec in FIELDS:
        if spec.name not in given or spec.name in errors:
            continue
        value = config[spec.name]
        problem = _check(spec, value, ranges.get(spec.name), allow_below_minimum)
        if problem is None:
            continue
        if problem.startswith("warning: "):
            warnings.append(problem.removeprefix("warning: "))
        else:
            errors[spec.name] = problem
            config[spec.name] = config_defaults()[spec.name]
    if not errors:
        errors.update(_cross_field_errors(config))
    if errors:
        raise ConfigInvalid(errors)
    return config, warnings


def _fill_dependent_defaults(
    config: dict[str, Any], given: set[str], base_model: str
) -> None:
    if "resolution" not in given:
        config["resolution"] = family_resolution(base_model) or config["resolution"]
    for name, value in OPTIMIZER_DEFAULTS.get(config["optimizer"], {}).items():
        if name not in given:
            config[name] = value


def _dependent_ranges(config: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The ranges that depend on the chosen optimizer."""
    found = {}
    for spec in FIELDS:
        bounds = optimizer_ranges(spec.name).get(config["optimizer"])
        if bounds is not None:
            found[spec.name] = bounds
    return found


def _cross_field_errors(config: dict[str, Any]) -> dict[str, str]:
    errors = {}
    low, high = config["bucket_min_side"], config["bucket_max_side"]
    resolution = config["resolution"]
    if config["bucketing"] and low and low > resolution:
        errors["bucket_min_side"] = (
            f"bucket_min_side must be at most the resolution {resolution} (got {low})"
        )
    if config["bucketing"] and high and high < resolution:
        errors["bucket_max_side"] = (
            f"bucket_max_side must be at least the resolution {resolution} (got {high})"
        )
    return errors


def config_check_machine(config: Mapping[str, Any]) -> None:
    """Refuse what the training device here cannot run (settings.TRAINING_DEVICE):
    adamw8bit and compile_unet need CUDA. Raises ConfigInvalid naming the field.
    Imports torch: called when a run is created, not on every form check."""
    from training.ml.device import pick_device

    try:
        device = pick_device(settings.TRAINING_DEVICE)
    except ValueError as exc:
        device = f"unavailable ({exc})"
    if device.startswith("cuda"):
        return
    needs_cuda = {
        "optimizer": config.get("optimizer") == "adamw8bit",
        "compile_unet": bool(config.get("compile_unet")),
    }
    what = {
        "optimizer": "adamw8bit (bitsandbytes) needs a CUDA GPU",
        "compile_unet": "compile_unet needs a CUDA GPU",
    }
    errors = {
        name: f"{what[name]}; the training device here is {device} "
        f"(TRAINING_DEVICE={settings.TRAINING_DEVICE!r}): choose "
        + ("adamw or prodigy" if name == "optimizer" else "off")
        for name, wanted in needs_cuda.items()
        if wanted
    }
    if errors:
        raise ConfigInvalid(errors)


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
