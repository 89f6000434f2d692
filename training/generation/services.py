"""Generation jobs: check a request and queue it on the gpu worker.

A request is checked whole (every bad field named at once) before anything is
queued; the seed is drawn here when the request gave none, so it is always
recorded. The worker's half is training.generation.runs.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from albums.models import Album
from albums.services import album_get_or_create
from imagineer_project.errors import Invalid
from imagineer_project.permissions import person
from imagineer_project.ratelimit import RateLimitExceeded, rate_limit_take
from imagineer_project.runs import run_enqueue
from training.models import GenerationJob, Lora
from training.paths import base_model_location, base_model_name
from training.registry import base_model_family

if TYPE_CHECKING:
    from django.contrib.auth.models import User

SEED_MAX = 2**32 - 1
WEIGHT_RANGE = (-4.0, 4.0)  # as the LoRA registry's default weights
TINY_MODEL_FOLDER = "models/tiny-sd"  # under VAR_DIR; `make demo` builds it


class GenerationInvalid(Invalid):
    """A request that cannot run; `errors` maps each bad field to why."""

    code = "generation_invalid"

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors=errors)


@dataclass(frozen=True)
class GenerationRequest:
    """What a person asks for. `loras` is [(name or id, weight or None)]: a
    missing weight means the LoRA's default weight."""

    prompt: str
    negative_prompt: str = ""
    steps: int = 25
    guidance: float = 7.5
    seed: int | None = None
    width: int = 512
    height: int = 512
    scheduler: str = "ddim"
    num_images: int = 1
    loras: Sequence[tuple[str | int, float | None]] = field(default_factory=tuple)
    insert_trigger_words: bool = True
    album: str = ""  # an album name; created if missing; "" for the default album
    base_model: str = ""  # "" for GENERATION_BASE_MODEL


# --- settings that need a decision at call time ---------------------------------


def default_base_model() -> str:
    """GENERATION_BASE_MODEL, else TRAINING_BASE_MODEL, else the tiny demo model
    if it was built; "" when none of them is there."""
    configured = settings.GENERATION_BASE_MODEL or settings.TRAINING_BASE_MODEL
    if configured.strip():
        return configured.strip()
    tiny = Path(settings.VAR_DIR) / TINY_MODEL_FOLDER
    return str(tiny) if (tiny / "model_index.json").is_file() else ""


# Denoising steps a request starts from: full models look right at 25; a tiny
# test model (native size below SMALL_MODEL_SIZE) shows its noise in 10.
DEFAULT_STEPS = 25
SMALL_MODEL_STEPS = 10
SMALL_MODEL_SIZE = 256
FALLBACK_SIZE = 512  # SD 1.5's, when the model's files are not at hand


def _model_config(base_model: str, name: str) -> dict[str, Any]:
    """`<name>/config.json` of a local folder or a hub model already in the
    local cache (never downloaded here); {} when absent or unreadable."""
    folder = Path(base_model_location(base_model)).expanduser()
    path: Path | str | None = folder / name / "config.json"
    if not _readable(path) and not folder.is_absolute() and base_model.count("/") == 1:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(base_model, f"{name}/config.json")
    if not isinstance(path, str | Path) or not _readable(path):
        return {}
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _readable(path: Any) -> bool:
    try:
        return isinstance(path, str | Path) and Path(path).is_file()
    except (OSError, ValueError):
        return False


def base_model_defaults(base_model: str) -> dict[str, int]:
    """The width, height and steps a request on `base_model` starts from: its
    native size (the unet's sample_size × the VAE's scale, read from its
    config files without loading it) and DEFAULT_STEPS, or SMALL_MODEL_STEPS
    for a tiny test model."""
    unet = _model_config(base_model, "unet")
    vae = _model_config(base_model, "vae")
    sample, blocks = unet.get("sample_size"), vae.get("block_out_channels")
    if isinstance(sample, int) and isinstance(blocks, list) and blocks:
        size = sample * 2 ** (len(blocks) - 1)
    else:
        size = FALLBACK_SIZE
    size = min(max(size, settings.GENERATION_MIN_SIZE), settings.GENERATION_MAX_SIZE)
    steps = SMALL_MODEL_STEPS if size < SMALL_MODEL_SIZE else DEFAULT_STEPS
    return {"width": size, "height": size, "steps": steps}


def generation_device() -> str:
    return settings.GENERATION_DEVICE or settings.TRAINING_DEVICE


# --- checking a request -------------------------------------------------------------


def scheduler_names() -> list[str]:
    from training.ml.generate import SCHEDULERS

    return list(SCHEDULERS)


def path_parts(model: str) -> list[str]:
    return [p for p in re.split(r"[/\\]+", model.strip().lower()) if p]


def same_base_model(a: str, b: str) -> bool:
    """Whether a LoRA made for base model `a` fits base model `b`.

    Unknown (empty) on either side fits. Otherwise the two must name the same
    model: equal ignoring case and trailing slashes, or ending in the same
    last path part, so that a local copy `/models/stable-diffusion-v1-5` fits
    the hub id `stable-diffusion-v1-5/stable-diffusion-v1-5`.
    """
    parts_a, parts_b = path_parts(a), path_parts(b)
    if not parts_a or not parts_b:
        return True
    return parts_a == parts_b or parts_a[-1] == parts_b[-1]


def _find_lora(ref: str | int) -> Lora | None:
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        found = Lora.objects.filter(pk=int(ref)).first()
        if found is not None or isinstance(ref, int):
            return found
    return Lora.objects.filter(name=str(ref).strip()).first()


def family_label(family: str) -> str:
    return Lora.Family(family).label if family in Lora.Family.values else "unknown"


def lora_fit_problem(lora: Lora, base_model: str, base_family: str) -> str | None:
    """Why `lora` cannot apply to `base_model` (of `base_family`, "" when
    unknown); None when it can.

    When both families are known the family decides: a LoRA of another
    family is refused (its layers do not match), while one trained on another
    checkpoint of the same family (an SD 1.5 LoRA on an SD 1.5 fine-tune)
    works and is allowed. When either family is unknown, the base models'
    names must match (same_base_model), as before families were recorded.
    """
    if lora.family and base_family:
        if lora.family == base_family:
            return None
        return (
            f"{lora.name!r} is an {family_label(lora.family)} LoRA; base model "
            f"{base_model_name(base_model)!r} is {family_label(base_family)}"
        )
    if same_base_model(lora.base_model, base_model):
        return None
    return (
        f"{lora.name!r} was made for base model "
        f"{base_model_name(lora.base_model)!r}, not {base_model_name(base_model)!r}"
    )


def _check_loras(
    request: GenerationRequest, base_model: str, errors: dict[str, str]
) -> list[tuple[Lora, float]]:
    chosen: list[tuple[Lora, float]] = []
    problems: list[str] = []
    base_family: str | None = None  # read once, only when a LoRA has a family
    if len(request.loras) > settings.GENERATION_MAX_LORAS:
        problems.append(f"at most {settings.GENERATION_MAX_LORAS} LoRAs at once")
    for ref, weight in request.loras:
        lora = _find_lora(ref)
        if lora is None:
            known = ", ".join(Lora.objects.values_list("name", flat=True)[:20])
            problems.append(f"unknown LoRA {ref!r} (registered: {known or 'none yet'})")
            continue
        weight = lora.default_weight if weight is None else float(weight)
        if not math.isfinite(weight) or not (
            WEIGHT_RANGE[0] <= weight <= WEIGHT_RANGE[1]
        ):
            problems.append(
                f"the weight of {lora.name!r} must be between {WEIGHT_RANGE[0]} and "
                f"{WEIGHT_RANGE[1]} (got {weight})"
            )
        elif any(lora.pk == other.pk for other, _ in chosen):
            problems.append(f"{lora.name!r} is listed twice; give it one weight")
        else:
            if base_family is None and lora.family:
                base_family = base_model_family(base_model)
            problem = lora_fit_problem(lora, base_model, base_family or "")
            if problem:
                problems.append(problem)
            else:
                chosen.append((lora, weight))
    if problems:
        errors["loras"] = "; ".join(problems)
    return chosen


def _check_text(request: GenerationRequest, errors: dict[str, str]) -> None:
    limit = settings.GENERATION_MAX_PROMPT_CHARS
    if not request.prompt.strip():
        errors["prompt"] = "a prompt is required"
    elif len(request.prompt) > limit:
        errors["prompt"] = f"at most {limit} characters (got {len(request.prompt)})"
    if len(request.negative_prompt) > limit:
        errors["negative_prompt"] = (
            f"at most {limit} characters (got {len(request.negative_prompt)})"
        )


def size_error(value: object) -> str | None:
    """Why `value` is no image side the generator takes (None when it is)."""
    low, high = settings.GENERATION_MIN_SIZE, settings.GENERATION_MAX_SIZE
    if isinstance(value, int) and low <= value <= high and not value % 8:
        return None
    return f"a multiple of 8 from {low} to {high} (got {value})"


def _check_numbers(request: GenerationRequest, errors: dict[str, str]) -> None:
    for side in ("width", "height"):
        if problem := size_error(getattr(request, side)):
            errors[side] = problem
    if not 1 <= request.steps <= settings.GENERATION_MAX_STEPS:
        errors["steps"] = (
            f"from 1 to {settings.GENERATION_MAX_STEPS} (got {request.steps})"
        )
    g_low, g_high = settings.GENERATION_GUIDANCE_RANGE
    if not (math.isfinite(request.guidance) and g_low <= request.guidance <= g_high):
        errors["guidance"] = f"from {g_low:g} to {g_high:g} (got {request.guidance})"
    if not 1 <= request.num_images <= settings.GENERATION_MAX_IMAGES:
        errors["num_images"] = (
            f"from 1 to {settings.GENERATION_MAX_IMAGES} (got {request.num_images})"
        )
    if request.seed is not None and not 0 <= request.seed <= SEED_MAX:
        errors["seed"] = f"from 0 to {SEED_MAX}, or leave it out for a random one"
    if request.scheduler not in scheduler_names():
        errors["scheduler"] = (
            f"unknown scheduler {request.scheduler!r}; one of "
            f"{', '.join(scheduler_names())}"
        )


def generation_validate(
    request: GenerationRequest,
) -> tuple[str, list[tuple[Lora, float]]]:
    """The base model and the LoRAs (with weights) of a valid request; raises
    GenerationInvalid naming every bad field."""
    errors: dict[str, str] = {}
    _check_text(request, errors)
    _check_numbers(request, errors)
    base_model = base_model_location(request.base_model or default_base_model())
    if not base_model:
        errors["base_model"] = (
            "no base model: set GENERATION_BASE_MODEL, or name a local diffusers "
            "folder or hub id"
        )
    elif len(base_model) > 500:
        errors["base_model"] = "at most 500 characters"
    if len(request.album) > 200:
        errors["album"] = "at most 200 characters"
    loras = _check_loras(request, base_model, errors)
    if errors:
        raise GenerationInvalid(errors)
    return base_model, loras


# --- trigger words ------------------------------------------------------------------


def trigger_words(loras: Sequence[dict[str, Any]]) -> list[str]:
    """The stack's trigger words, in stack order, each once."""
    words = (w.strip() for lora in loras for w in lora.get("trigger_words", []))
    return list(dict.fromkeys(w for w in words if w))


def prompt_with_trigger_words(prompt: str, words: Sequence[str]) -> str:
    """`prompt` led by each of `words` it does not already contain (as a whole
    word, ignoring case): "zxq, a cat"."""
    missing = [
        w
        for w in words
        if not re.search(rf"(?<!\w){re.escape(w)}(?!\w)", prompt, re.IGNORECASE)
    ]
    return ", ".join([*missing, prompt.strip()]) if missing else prompt.strip()


def effective_prompt(job: GenerationJob) -> str:
    """The prompt the job renders: with trigger words unless it opted out."""
    if not job.insert_trigger_words:
        return job.prompt.strip()
    return prompt_with_trigger_words(job.prompt, trigger_words(job.loras))


# --- creating and cancelling -------------------------------------------------------


def album_for(name: str, created_by: User | None) -> Album:
    """The album named `name` (or the default one), made as a "generated" album
    if it does not exist yet, with the GENERATED_VISIBILITY setting (private
    by default); an album that already exists keeps its own visibility."""
    return album_get_or_create(
        name=name.strip() or settings.GENERATION_DEFAULT_ALBUM,
        source_kind=Album.Kind.GENERATED,
        created_by=created_by,
        visibility=settings.GENERATED_VISIBILITY,
    )


def generation_rate_check(
    user: User | None,
    *,
    images: int = 1,
    field: str = "num_images",
    limit: str = "generate",
) -> None:
    """Count `images` against `user`'s rate limit `limit` (generate, or
    set_generate for sets; imagineer_project.ratelimit); raises
    RateLimitExceeded when they do not fit now, and GenerationInvalid (on
    `field`) when they could never fit in one window."""
    try:
        rate_limit_take(limit, user=user, cost=images)
    except RateLimitExceeded as exc:
        if images > exc.usage.limit:
            raise GenerationInvalid(
                {
                    field: f"{images} images are more than the '{limit}' rate "
                    f"limit allows at once ({exc.usage.limit} per "
                    f"{exc.usage.reset}s); ask for fewer, or ask an operator to "
                    "raise the limit"
                }
            ) from exc
        raise


def generation_job_create(
    *,
    request: GenerationRequest,
    created_by: User | None = None,
    rate_limited: bool = False,
    enqueue: bool = True,
) -> GenerationJob:
    """Check `request` and queue it on the gpu worker.

    Raises GenerationInvalid (every bad field, with why) and, with
    `rate_limited`, RateLimitExceeded when `created_by` asked for too many
    images lately (the `generate` rate limit). The seed
    is drawn here when the request gave none, so it is always recorded.
    """
    base_model, loras = generation_validate(request)
    user = person(created_by)
    if rate_limited:
        generation_rate_check(user, images=request.num_images)
    seed = secrets.randbelow(SEED_MAX + 1) if request.seed is None else request.seed
    with transaction.atomic():
        job = GenerationJob.objects.create(
            prompt=request.prompt.strip(),
            negative_prompt=request.negative_prompt.strip(),
            base_model=base_model,
            steps=request.steps,
            guidance=request.guidance,
            seed=seed,
            width=request.width,
            height=request.height,
            scheduler=request.scheduler,
            num_images=request.num_images,
            loras=[stack_entry(lora, weight) for lora, weight in loras],
            insert_trigger_words=request.insert_trigger_words,
            album=album_for(request.album, user),
            # Counted in denoising steps: the bar moves with every step.
            progress_total=request.num_images * request.steps,
            created_by=user,
        )
        if enqueue:
            run_enqueue(job)
    return job


def stack_entry(lora: Lora, weight: float) -> dict[str, Any]:
    return {
        "lora_id": lora.pk,
        "name": lora.name,
        "weight": weight,
        "sha256": lora.sha256,
        "trigger_words": list(lora.trigger_words),
    }


def parse_lora_lines(text: str) -> list[tuple[str, float | None]]:
    """`NAME:WEIGHT` per line (or comma-separated); `NAME` alone takes the LoRA's
    default weight. A name may itself contain ':' (the last one splits)."""
    stack: list[tuple[str, float | None]] = []
    for raw in re.split(r"[\n,]", text):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, weight = entry.rpartition(":")
        if sep and name.strip():
            try:
                stack.append((name.strip(), float(weight)))
                continue
            except ValueError:
                pass
        stack.append((entry, None))
    return stack
