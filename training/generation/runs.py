"""The body a generation job runs on the gpu worker: every image an Image in the
job's album, with its recipe.

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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import transaction

from albums.models import Image, SourceKind
from albums.services import image_ingest
from imagineer_project.lib.spoken import duration_spoken
from imagineer_project.runs import run_checkpoint
from training.generation.selectors import PREVIEW_SECONDS, generation_preview_key
from training.generation.services import (
    GenerationInvalid,
    album_for,
    effective_prompt,
    generation_device,
)
from training.models import GenerationJob, ImageRecipe, Lora

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from PIL.Image import Image as PILImage

    from albums.models import Album
    from imagineer_project.runs import BaseRun
    from training.ml.generate import LoraSpec, PipelineHolder

logger = logging.getLogger(__name__)

# A running job polls its cancel flag (and refreshes its heartbeat) between
# denoising steps at most this often: a few writes a second at most.
STOP_POLL_SECONDS = 0.5
PREVIEW_EVERY = 5  # denoising steps between two previews of the image in the making


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
    folder = Path(settings.GENERATION_LORA_CACHE_DIR)
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


def lora_specs(entries: list[dict[str, Any]]) -> tuple[LoraSpec, ...]:
    """The generator's LoRA stack for a job's (or a set's) stack entries."""
    from training.ml.generate import LoraSpec

    return tuple(
        LoraSpec(str(local_lora_path(e)), float(e["weight"]), e["name"])
        for e in entries
    )


def render_recipe(source: Any, *, prompt: str, seed: int) -> dict[str, Any]:
    """What makes an image again, from anything with a job's render fields
    (negative_prompt, base_model, loras, steps, guidance, scheduler, width,
    height): a GenerationJob, or a set run's settings."""
    return {
        "prompt": prompt,
        "negative_prompt": source.negative_prompt,
        "base_model": source.base_model,
        "loras": [
            {"name": e["name"], "weight": e["weight"], "sha256": e["sha256"]}
            for e in source.loras
        ],
        "seed": seed,
        "steps": source.steps,
        "guidance": source.guidance,
        "scheduler": source.scheduler,
        "width": source.width,
        "height": source.height,
    }


def _recipe(
    job: GenerationJob, index: int, duration: float, device: str
) -> dict[str, Any]:
    return {
        **render_recipe(job, prompt=effective_prompt(job), seed=job.seed + index),
        "duration_seconds": round(duration, 3),
        "device": device,
        "job_id": job.pk,
        "index": index,
    }


def store_generated(
    picture: PILImage, *, filename: str, album: Album, made_by: User | None
) -> Image:
    """A rendered picture as a PNG Image in `album` (the same bytes made before
    are that Image again)."""
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    result = image_ingest(
        data=buffer.getvalue(),
        filename=filename,
        source_kind=SourceKind.GENERATED,
        album=album,
        uploaded_by=made_by,
    )
    if result.image is None:
        raise RuntimeError(f"The generated image was refused: {result.reason}")
    return result.image


class StepCheckpoint:
    """`should_stop` for generate_images: a checkpoint (heartbeat, and
    RunCancelled when a cancel was asked for) at most every STOP_POLL_SECONDS.
    Subclasses say more at each one (`checkpoint`)."""

    def __init__(self, run: BaseRun) -> None:
        self.run = run
        self.last = time.monotonic()

    def __call__(self) -> bool:
        self.due()
        return False

    def due(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= STOP_POLL_SECONDS:
            self.last = now
            self.checkpoint()

    def checkpoint(self) -> None:
        run_checkpoint(self.run)


def warm_pipeline(run: BaseRun, base_model: str) -> PipelineHolder:
    """This worker's pipeline for `base_model`, loaded (once per worker) while
    the run says so; a cancel asked for meanwhile lands as soon as it is."""
    from training.ml.generate import holder_for

    holder = holder_for(
        base_model,
        device=generation_device(),
        mixed_precision=settings.GENERATION_MIXED_PRECISION,
    )
    if not holder.loaded:
        run_checkpoint(run, message="Loading the base model")
        holder.pipe  # noqa: B018 - loads it under the run's heartbeat
        run_checkpoint(run)
    return holder


class _Progress(StepCheckpoint):
    """`should_stop`, `on_step` and `on_preview` for a job's generate_images.

    Progress counts denoising steps over the whole job (num_images x steps),
    so the bar moves with every step. The pace is measured from the end of the
    first step this attempt saw (the first one also warms the device up), and
    covers decoding and storing each image as well.
    """

    def __init__(self, job: GenerationJob) -> None:
        super().__init__(job)
        self.job, self.step = job, 0
        self.first_mark: float | None = None
        self.last_mark = 0.0
        self.paced = 0  # steps timed since first_mark

    @property
    def total(self) -> int:
        return self.job.num_images * self.job.steps

    @property
    def done(self) -> int:
        return len(self.job.image_ids) * self.job.steps + self.step

    def on_step(self, step: int, steps: int) -> None:
        self.last_mark = time.monotonic()
        if self.first_mark is None:
            self.first_mark = self.last_mark
        else:
            self.paced += 1
        self.step = step
        self.due(force=step == 1)  # the first step of an image is always told

    def on_preview(self, picture: PILImage) -> None:
        buffer = io.BytesIO()
        picture.save(buffer, "WEBP", quality=70)
        cache.set(
            generation_preview_key(self.job.pk), buffer.getvalue(), PREVIEW_SECONDS
        )

    def image_stored(self) -> None:
        self.step = 0
        self.due(force=True)

    def eta(self) -> str:
        if not self.paced or self.first_mark is None:
            return ""
        per_step = (self.last_mark - self.first_mark) / self.paced
        return f" · about {duration_spoken(per_step * (self.total - self.done))} left"

    def checkpoint(self) -> None:
        made, count = len(self.job.image_ids), self.job.num_images
        if self.step:
            where = (
                f"Image {made + 1} of {count} · step {self.step} of {self.job.steps}"
            )
        else:
            where = f"{made} of {count} image(s) made"
        run_checkpoint(
            self.job,
            done=min(self.done, self.total),
            total=self.total,
            message=where + (self.eta() if made < count else ""),
        )


class _Recorder:
    """`on_image` for generate_images: store each image and its recipe."""

    def __init__(
        self,
        job: GenerationJob,
        done: list[int],
        device: str,
        on_image: Callable[[GenerationJob, Image], None] | None,
        progress: _Progress,
    ) -> None:
        self.job, self.ids, self.device, self.on_image = job, done, device, on_image
        self.progress = progress
        self.first = len(done)
        self.album = job.album or album_for("", job.created_by)
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
        self.progress.image_stored()
        if self.on_image is not None:
            self.on_image(self.job, image)
        self.mark = time.monotonic()

    def _store(self, index: int, picture: PILImage) -> Image:
        return store_generated(
            picture,
            filename=f"generation-{self.job.pk}-{index + 1}.png",
            album=self.album,
            made_by=self.job.created_by,
        )


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
    from training.ml.generate import GenerateSpec, generate_images, prompt_overflow

    done = _done_so_far(job)
    job.image_ids = done
    progress = _Progress(job)
    note = ""
    run_checkpoint(job, done=progress.done, total=progress.total)
    if len(done) < job.num_images:
        holder = warm_pipeline(job, job.base_model)
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
            loras=lora_specs(job.loras),
        )
        # The texts go in fields the redact filter masks (docs/operations.md).
        logger.info(
            "Generation %s: rendering %s image(s) from seed %s",
            job.pk,
            spec.num_images,
            spec.seed,
            extra={"prompt": spec.prompt, "negative_prompt": spec.negative_prompt},
        )
        if cut := prompt_overflow(holder, spec.prompt):
            # The pipeline truncates silently; say so where the user looks.
            note = f"; the prompt's last {cut} token(s) were cut (the model reads 77)"
            logger.warning("Generation %s: %s", job.pk, note.lstrip("; "))
        first = f"image {len(done) + 1} of {job.num_images}"
        run_checkpoint(
            job,
            message=f"Loading {len(spec.loras)} LoRA(s), then {first}"
            if spec.loras
            else f"Starting {first}",
        )
        generate_images(
            holder,
            spec,
            on_image=_Recorder(job, done, holder.device, on_image, progress),
            should_stop=progress,
            on_step=progress.on_step,
            on_preview=progress.on_preview,
            preview_every=PREVIEW_EVERY,
        )
    last = job.seed + job.num_images - 1
    return f"{job.num_images} image(s) made, seeds {job.seed} to {last}{note}"
