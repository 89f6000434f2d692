"""Generation jobs: check a request, queue it on the gpu worker, and the body the
worker runs (every image an Image in the job's album, with its recipe).

The body runs inside `run_execute`. Image i of a job is rendered with seed
`seed + i`, so a job can resume where it stopped: an attempt after a crash, or
a second delivery of the task, renders only the images not yet recorded in
`job.image_ids`. Images are content-addressed, so an image identical to one
already in the library (same bytes) is that Image again: it is added to this
job's album and listed in its `image_ids`, and keeps the recipe it had (which
makes the same bytes). The recipe is one per image (a OneToOne).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.core.files.storage import default_storage
from django.db import transaction

from albums.models import Album, Image, SourceKind
from albums.services import album_create, image_ingest
from imagineer_project.runs import run_checkpoint, run_enqueue, run_request_cancel
from training import generation_settings as conf
from training.models import GenerationJob, ImageRecipe, Lora
from training.ratelimit import rate_limit_hit

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from scraping.dedup import HashIndex
    from training.ml.generate import LoraSpec

logger = logging.getLogger(__name__)

SEED_MAX = 2**32 - 1
WEIGHT_RANGE = (-4.0, 4.0)  # as the LoRA registry's default weights
LOOKALIKE_DISTANCE = 6  # bits of 64, the scraper's default near-duplicate radius
# A running job polls its cancel flag (and refreshes its heartbeat) between
# denoising steps at most this often: a few writes a second at most.
STOP_POLL_SECONDS = 0.5


class GenerationInvalid(ValueError):
    """A request that cannot run; `errors` maps each bad field to why."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class GenerationRateLimited(Exception):
    """Too many generation requests from one user; retry after `retry_after` s."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"Too many generation requests; try again in {retry_after} seconds."
        )


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


# --- checking a request -------------------------------------------------------------


def scheduler_names() -> list[str]:
    from training.ml.generate import SCHEDULERS

    return list(SCHEDULERS)


def _path_parts(model: str) -> list[str]:
    return [p for p in re.split(r"[/\\]+", model.strip().lower()) if p]


def same_base_model(a: str, b: str) -> bool:
    """Whether a LoRA made for base model `a` fits base model `b`.

    Unknown (empty) on either side fits. Otherwise the two must name the same
    model: equal ignoring case and trailing slashes, or ending in the same
    last path part, so that a local copy `/models/stable-diffusion-v1-5` fits
    the hub id `stable-diffusion-v1-5/stable-diffusion-v1-5`.
    """
    parts_a, parts_b = _path_parts(a), _path_parts(b)
    if not parts_a or not parts_b:
        return True
    return parts_a == parts_b or parts_a[-1] == parts_b[-1]


def _find_lora(ref: str | int) -> Lora | None:
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        found = Lora.objects.filter(pk=int(ref)).first()
        if found is not None or isinstance(ref, int):
            return found
    return Lora.objects.filter(name=str(ref).strip()).first()


def _check_loras(
    request: GenerationRequest, base_model: str, errors: dict[str, str]
) -> list[tuple[Lora, float]]:
    chosen: list[tuple[Lora, float]] = []
    problems: list[str] = []
    if len(request.loras) > conf.max_loras():
        problems.append(f"at most {conf.max_loras()} LoRAs at once")
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
        elif not same_base_model(lora.base_model, base_model):
            problems.append(
                f"{lora.name!r} was made for base model {lora.base_model!r}, "
                f"not {base_model!r}"
            )
        else:
            chosen.append((lora, weight))
    if problems:
        errors["loras"] = "; ".join(problems)
    return chosen


def _check_text(request: GenerationRequest, errors: dict[str, str]) -> None:
    limit = conf.max_prompt_chars()
    if not request.prompt.strip():
        errors["prompt"] = "a prompt is required"
    elif len(request.prompt) > limit:
        errors["prompt"] = f"at most {limit} characters (got {len(request.prompt)})"
    if len(request.negative_prompt) > limit:
        errors["negative_prompt"] = (
            f"at most {limit} characters (got {len(request.negative_prompt)})"
        )


def _check_numbers(request: GenerationRequest, errors: dict[str, str]) -> None:
    low, high = conf.size_range()
    for side in ("width", "height"):
        value = getattr(request, side)
        if not (low <= value <= high) or value % 8:
            errors[side] = f"a multiple of 8 from {low} to {high} (got {value})"
    if not 1 <= request.steps <= conf.max_steps():
        errors["steps"] = f"from 1 to {conf.max_steps()} (got {request.steps})"
    g_low, g_high = conf.guidance_range()
    if not (math.isfinite(request.guidance) and g_low <= request.guidance <= g_high):
        errors["guidance"] = f"from {g_low:g} to {g_high:g} (got {request.guidance})"
    if not 1 <= request.num_images <= conf.max_images():
        errors["num_images"] = (
            f"from 1 to {conf.max_images()} (got {request.num_images})"
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
    base_model = (request.base_model or conf.base_model()).strip()
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


def _album_for(name: str, created_by: Any) -> Album:
    """The album named `name` (or the default one), made as a "generated" album
    if it does not exist yet."""
    name = name.strip() or conf.default_album()
    existing = Album.objects.filter(name=name).order_by("id").first()
    return existing or album_create(
        name=name, source_kind=Album.Kind.GENERATED, created_by=created_by
    )


def _rate_check(user: Any) -> None:
    if user is None or not getattr(user, "pk", None):
        return
    if conf.rate_limit_exempt_staff() and user.is_staff:
        return
    retry_after = rate_limit_hit(f"generate:{user.pk}", conf.rate_limit())
    if retry_after is not None:
        raise GenerationRateLimited(retry_after)


def generation_job_create(
    *,
    request: GenerationRequest,
    created_by: Any = None,
    rate_limited: bool = False,
    enqueue: bool = True,
) -> GenerationJob:
    """Check `request` and queue it on the gpu worker.

    Raises GenerationInvalid (every bad field, with why) and, with
    `rate_limited`, GenerationRateLimited when `created_by` made too many
    requests lately (GENERATION_RATE_LIMIT; staff exempt by setting). The seed
    is drawn here when the request gave none, so it is always recorded.
    """
    base_model, loras = generation_validate(request)
    if rate_limited:
        _rate_check(created_by)
    user = created_by if getattr(created_by, "pk", None) else None
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
            loras=[_stack_entry(lora, weight) for lora, weight in loras],
            insert_trigger_words=request.insert_trigger_words,
            album=_album_for(request.album, user),
            progress_total=request.num_images,
            created_by=user,
        )
        if enqueue:
            run_enqueue(job)
    return job


def _stack_entry(lora: Lora, weight: float) -> dict[str, Any]:
    return {
        "lora_id": lora.pk,
        "name": lora.name,
        "weight": weight,
        "sha256": lora.sha256,
        "trigger_words": list(lora.trigger_words),
    }


def generation_job_cancel(*, job: GenerationJob) -> bool:
    """Stop a job: at once if queued, within a denoising step if running. False
    when it had already ended."""
    return run_request_cancel(job)


# --- reading ------------------------------------------------------------------------


def generation_job_images(job: GenerationJob) -> list[Image]:
    """The job's images in seed order, each with its recipe (one query)."""
    found = Image.objects.select_related("recipe").in_bulk(job.image_ids)
    return [found[pk] for pk in job.image_ids if pk in found]


def image_recipe(image: Image) -> dict[str, Any] | None:
    recipe = getattr(image, "recipe", None)  # None when the image has none
    return recipe.recipe if recipe is not None else None


def recipe_for_viewer(recipe: dict[str, Any], *, staff: bool) -> dict[str, Any]:
    """The recipe as a viewer may see it: whole for staff; for others a local
    base model folder is named by its last part only (public reads show no
    filesystem paths). Hub ids are shown as they are."""
    base_model = recipe.get("base_model", "")
    if staff or not re.match(r"^(?:[/~.\\]|[A-Za-z]:[/\\])", base_model):
        return recipe
    return {**recipe, "base_model": (_path_parts(base_model) or [""])[-1]}


def recipe_form_query(recipe: dict[str, Any]) -> str:
    """The generate page's query string that fills its form with `recipe`.

    Its prompt already carries the trigger words it was made with, so the form
    does not insert them again.
    """
    loras = "\n".join(f"{x['name']}:{x['weight']:g}" for x in recipe.get("loras", []))
    fields = {
        "prompt": recipe.get("prompt", ""),
        "negative_prompt": recipe.get("negative_prompt", ""),
        "base_model": recipe.get("base_model", ""),
        "steps": recipe.get("steps", ""),
        "guidance": recipe.get("guidance", ""),
        "seed": recipe.get("seed", ""),
        "width": recipe.get("width", ""),
        "height": recipe.get("height", ""),
        "scheduler": recipe.get("scheduler", ""),
        "num_images": 1,
        "loras": loras,
        "insert_trigger_words": "0",
    }
    return urlencode(fields)


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


# --- the run body ------------------------------------------------------------------


def _done_so_far(job: GenerationJob) -> list[int]:
    """Images already made, including ones an attempt stored but died before
    listing: each fresh image's recipe names its job and index."""
    ids = [int(pk) for pk in job.image_ids]
    by_index = {
        r.recipe.get("index"): r.image_id
        for r in job.recipes.only("recipe", "image_id")
    }
    while len(ids) < job.num_images and len(ids) in by_index:
        ids.append(by_index[len(ids)])
    return ids


def local_lora_path(entry: dict[str, Any]) -> Path:
    """A local path to a stack entry's LoRA file: the file itself on local
    storage, else a copy in GENERATION_LORA_CACHE_DIR named by its sha256
    (checked while copying, written atomically)."""
    lora = Lora.objects.filter(pk=entry["lora_id"]).first() or (
        Lora.objects.filter(sha256=entry["sha256"]).first()
    )
    if lora is None:
        raise GenerationInvalid(
            {"loras": f"LoRA {entry['name']!r} was deleted after the job was queued"}
        )
    try:
        return Path(default_storage.path(lora.file.name))
    except NotImplementedError:  # remote storage (S3): copy it once per sha256
        return _cached_copy(lora)


def _cached_copy(lora: Lora) -> Path:
    folder = conf.lora_cache_dir()
    target = folder / f"{lora.sha256}.safetensors"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with (
        default_storage.open(lora.file.name, "rb") as source,
        tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as out,
    ):
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    scratch = Path(out.name)
    if digest.hexdigest() != lora.sha256:
        scratch.unlink(missing_ok=True)
        raise GenerationInvalid(
            {"loras": f"the stored file of {lora.name!r} does not match its sha256"}
        )
    scratch.replace(target)  # atomic: a reader sees the whole file or none
    return target


def _lora_specs(job: GenerationJob) -> tuple[LoraSpec, ...]:
    from training.ml.generate import LoraSpec

    return tuple(
        LoraSpec(str(local_lora_path(e)), float(e["weight"]), e["name"])
        for e in job.loras
    )


def _recipe(
    job: GenerationJob, index: int, duration: float, device: str
) -> dict[str, Any]:
    return {
        "prompt": effective_prompt(job),
        "negative_prompt": job.negative_prompt,
        "base_model": job.base_model,
        "loras": [
            {"name": e["name"], "weight": e["weight"], "sha256": e["sha256"]}
            for e in job.loras
        ],
        "seed": job.seed + index,
        "steps": job.steps,
        "guidance": job.guidance,
        "scheduler": job.scheduler,
        "width": job.width,
        "height": job.height,
        "duration_seconds": round(duration, 3),
        "device": device,
        "job_id": job.pk,
        "index": index,
    }


class _Stopper:
    """`should_stop` for generate_images: a checkpoint (heartbeat, and
    RunCancelled when a cancel was asked for) at most every STOP_POLL_SECONDS."""

    def __init__(self, job: GenerationJob) -> None:
        self.job = job
        self.last = time.monotonic()

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last >= STOP_POLL_SECONDS:
            self.last = now
            run_checkpoint(self.job)
        return False


class _Recorder:
    """`on_image` for generate_images: store each image and its recipe."""

    def __init__(
        self,
        job: GenerationJob,
        done: list[int],
        device: str,
        on_image: Callable[[GenerationJob, Image], None] | None,
    ) -> None:
        self.job, self.ids, self.device, self.on_image = job, done, device, on_image
        self.first = len(done)
        self.album = job.album or _album_for("", job.created_by)
        self.mark = time.monotonic()

    def __call__(self, offset: int, picture: PILImage) -> None:
        index = self.first + offset
        duration, self.mark = time.monotonic() - self.mark, time.monotonic()
        image = self._store(index, picture)
        recipe = _recipe(self.job, index, duration, self.device)
        with transaction.atomic():
            # One recipe per image: an identical image made earlier keeps its own.
            ImageRecipe.objects.get_or_create(
                image=image, defaults={"job": self.job, "recipe": recipe}
            )
            self.ids.append(image.pk)
            GenerationJob.objects.filter(pk=self.job.pk).update(image_ids=self.ids)
        self.job.image_ids = self.ids
        run_checkpoint(
            self.job,
            done=len(self.ids),
            message=f"{len(self.ids)} of {self.job.num_images} image(s) made",
        )
        if self.on_image is not None:
            self.on_image(self.job, image)
        self.mark = time.monotonic()

    def _store(self, index: int, picture: PILImage) -> Image:
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        result = image_ingest(
            data=buffer.getvalue(),
            filename=f"generation-{self.job.pk}-{index + 1}.png",
            source_kind=SourceKind.GENERATED,
            album=self.album,
            uploaded_by=self.job.created_by,
        )
        if result.image is None:
            raise RuntimeError(f"The generated image was refused: {result.reason}")
        return result.image


def generation_job_execute(
    job: GenerationJob,
    *,
    on_image: Callable[[GenerationJob, Image], None] | None = None,
) -> str:
    """The body of a generation job (see run_execute); returns its final message.

    Renders the images not made yet on the worker's warm pipeline for the
    job's base model, each stored as it is done. A cancel stops it within a
    denoising step (RunCancelled); the images made so far stay.
    """
    from training.ml.generate import (
        GenerateSpec,
        generate_images,
        holder_for,
        prompt_overflow,
    )

    done = _done_so_far(job)
    note = ""
    run_checkpoint(job, done=len(done), total=job.num_images)
    if len(done) < job.num_images:
        holder = holder_for(
            job.base_model, device=conf.device(), mixed_precision=conf.mixed_precision()
        )
        run_checkpoint(job, message="Loading the base model and LoRAs")
        holder.pipe  # noqa: B018 - loads it (once per worker) under a heartbeat
        spec = GenerateSpec(
            prompt=effective_prompt(job),
            negative_prompt=job.negative_prompt,
            steps=job.steps,
            guidance=job.guidance,
            seed=job.seed + len(done),
            width=job.width,
            height=job.height,
            scheduler=job.scheduler,
            num_images=job.num_images - len(done),
            loras=_lora_specs(job),
        )
        if cut := prompt_overflow(holder, spec.prompt):
            # The pipeline truncates silently; say so where the user looks.
            note = f"; the prompt's last {cut} token(s) were cut (the model reads 77)"
            logger.warning("Generation %s: %s", job.pk, note.lstrip("; "))
        recorder = _Recorder(job, done, holder.device, on_image)
        generate_images(holder, spec, on_image=recorder, should_stop=_Stopper(job))
    last = job.seed + job.num_images - 1
    return f"{job.num_images} image(s) made, seeds {job.seed} to {last}{note}"


# --- what the library remembers of its own output ----------------------------------


def generated_phash_index() -> HashIndex:
    """The perceptual hashes of every generated image, for near-duplicate checks."""
    from scraping.dedup import HashIndex

    rows = list(
        Image.objects.filter(source_kind=SourceKind.GENERATED).values_list(
            "pk", "phash"
        )
    )
    return HashIndex([pk for pk, _ in rows], [h for _, h in rows])


def generated_lookalikes(
    image_ids: Sequence[int], *, max_distance: int = LOOKALIKE_DISTANCE
) -> dict[int, int]:
    """{image id: the nearest generated image's id} for the given images that are
    within `max_distance` bits of a generated image. A generated image maps to
    itself: training on it is training on the system's own output too."""
    index = generated_phash_index()
    if not len(index):
        return {}
    found: dict[int, int] = {}
    ids = list(dict.fromkeys(image_ids))
    for start in range(0, len(ids), 500):  # stay under SQLite's variable limit
        rows = Image.objects.filter(pk__in=ids[start : start + 500]).values_list(
            "pk", "phash", "source_kind"
        )
        for pk, phash, kind in rows:
            if kind == SourceKind.GENERATED:
                found[pk] = pk
            elif hits := index.nearest(phash, max_distance):
                found[pk] = hits[0][0]
    return found
