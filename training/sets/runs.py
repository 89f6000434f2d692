"""The body a set run executes on the gpu worker: one image per slot and
variant, in slot order, each stored in the set album with its recipe and
recorded as a variant of its slot.

Every render tried is listed in `run.items_done` ("aries/0") in the same
transaction that records its image, so an attempt after a crash, or a second
delivery of the task, renders only what is not listed. A render that fails
marks its slot failed (with the error) and the run goes on; the run fails only
when every render failed. A cancel stops it within a denoising step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from django.db import transaction

from albums.models import Image
from imagineer_project.runs import RunCancelled, run_checkpoint
from training.generation.runs import (
    StepCheckpoint,
    lora_specs,
    render_recipe,
    store_generated,
    warm_pipeline,
)
from training.models import ImageRecipe, SetAlbum, SetRun, SetSlot, SetVariant
from training.sets.services import SetInvalid, slot_seed

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from training.ml.generate import LoraSpec, PipelineHolder

logger = logging.getLogger(__name__)


def item(key: str, variant: int) -> str:
    return f"{key}/{variant}"


def slot_tried(run: SetRun, key: str, tried: set[str]) -> bool:
    """Whether every variant of slot `key` is among `tried` (run.items_done)."""
    return all(item(key, v) in tried for v in range(run.variants))


def slots_done(run: SetRun) -> int:
    """Slots every variant of which was tried."""
    tried = set(run.items_done)
    return sum(slot_tried(run, key, tried) for key in run.slot_keys)


class _Progress(StepCheckpoint):
    """`should_stop` and `on_step` for generate_images: at each checkpoint the
    slot and step in hand go on the run's row, in the checkpoint's write."""

    def __init__(self, run: SetRun) -> None:
        super().__init__(run)
        self.key, self.label, self.step = "", "", 0

    def start(self, key: str, variant: int) -> None:
        self.key, self.step = key, 0
        several = self.run.variants > 1
        self.label = key + (f" (variant {variant + 1})" if several else "")
        self.due(force=True)

    def on_step(self, step: int, steps: int) -> None:
        self.step = step
        self.due(force=step == steps)  # the last step is always told

    def checkpoint(self) -> None:
        run = self.run
        run_checkpoint(
            run,
            message=f"{slots_done(run)} of {len(run.slot_keys)} slots; rendering "
            f"{self.label}, step {self.step} of {run.render['steps']}",
            fields={"current_slot": self.key, "current_step": self.step},
        )


def _store(
    run: SetRun, set_album: SetAlbum, key: str, variant: int, picture: PILImage
) -> Image:
    return store_generated(
        picture,
        filename=f"{run.template.slug}-{key}-{variant + 1}.png",
        album=set_album.album,
        made_by=run.created_by,
    )


def _record(
    run: SetRun,
    slot: SetSlot,
    variant: int,
    image: Image,
    recipe: dict[str, Any],
) -> None:
    """The image as a variant of its slot (the first variant of a run fills
    the slot), its recipe, and the render as done: one transaction."""
    with transaction.atomic():
        chosen, _ = SetVariant.objects.get_or_create(
            slot=slot,
            image=image,
            defaults={"seed": recipe["seed"], "prompt": recipe["prompt"], "run": run},
        )
        # One recipe per image: an identical image made earlier keeps its own.
        ImageRecipe.objects.get_or_create(image=image, defaults={"recipe": recipe})
        changes = {"prompt": recipe["prompt"], "error": ""}
        if variant == 0 or slot.chosen_id is None:
            changes["chosen"] = chosen
        SetSlot.objects.filter(pk=slot.pk).update(**changes)
        slot.chosen_id = changes["chosen"].pk if "chosen" in changes else slot.chosen_id
        _mark_done(run, item(slot.key, variant))


def _record_failure(run: SetRun, slot: SetSlot, variant: int, error: str) -> None:
    with transaction.atomic():
        SetSlot.objects.filter(pk=slot.pk).update(error=error[:2000])
        run.failed_items += 1
        _mark_done(run, item(slot.key, variant), failed_items=run.failed_items)


def _mark_done(run: SetRun, entry: str, **more: Any) -> None:
    run.items_done = [*run.items_done, entry]
    SetRun.objects.filter(pk=run.pk).update(items_done=run.items_done, **more)


def _render_one(
    holder: PipelineHolder,
    run: SetRun,
    key: str,
    variant: int,
    progress: _Progress,
    loras: tuple[LoraSpec, ...],
) -> tuple[PILImage, dict[str, Any]]:
    from training.ml.generate import GenerateSpec, generate_images

    render = SimpleNamespace(**run.render)  # what render_recipe reads
    prompt = run.render["prompts"][key]
    seed = slot_seed(run.set_seed, key, variant)
    spec = GenerateSpec(
        prompt=prompt,
        negative_prompt=render.negative_prompt,
        steps=render.steps,
        guidance=render.guidance,
        seed=seed,
        width=render.width,
        height=render.height,
        scheduler=render.scheduler,
        num_images=1,
        loras=loras,
    )
    started = time.monotonic()
    progress.start(key, variant)
    [picture] = generate_images(
        holder, spec, should_stop=progress, on_step=progress.on_step
    )
    recipe = {
        **render_recipe(render, prompt=prompt, seed=seed),
        "duration_seconds": round(time.monotonic() - started, 3),
        "device": holder.device,
        "set_run_id": run.pk,
        "template": run.template.slug,
        "theme": run.theme,
        "slot": key,
        "variant": variant,
    }
    return picture, recipe


def set_run_execute(
    run: SetRun,
    *,
    on_image: Callable[[SetRun, Image], None] | None = None,
) -> str:
    """The body of a set run (see run_execute); returns its final message."""
    from training.ml.generate import prompt_overflow

    set_album = run.set_album
    if set_album is None:
        raise SetInvalid("The set album was deleted after the run was queued.")
    slots = {s.key: s for s in set_album.slots.all()}
    done = set(run.items_done)
    todo = [
        (slots[key], v)
        for key in run.slot_keys
        for v in range(run.variants)
        if item(key, v) not in done and key in slots
    ]
    run_checkpoint(run, done=slots_done(run), total=len(run.slot_keys))
    if not todo:
        return _summary(run, [])
    holder = warm_pipeline(run, run.render["base_model"])
    loras = lora_specs(run.render["loras"])  # a deleted LoRA fails the run
    # The pipeline cuts long prompts silently; the run's message says so.
    prompts = run.render["prompts"]
    cut = [k for k in run.slot_keys if prompt_overflow(holder, prompts[k])]
    progress = _Progress(run)
    for slot, variant in todo:
        _render_slot(holder, run, set_album, slot, variant, progress, loras, on_image)
    return _summary(run, cut)


def _render_slot(
    holder: PipelineHolder,
    run: SetRun,
    set_album: SetAlbum,
    slot: SetSlot,
    variant: int,
    progress: _Progress,
    loras: tuple[LoraSpec, ...],
    on_image: Callable[[SetRun, Image], None] | None,
) -> None:
    """One image of one slot, recorded as made or failed; a cancel goes
    through, any other error is the slot's."""
    from training.ml.generate import GenerationStopped

    try:
        picture, recipe = _render_one(holder, run, slot.key, variant, progress, loras)
        image = _store(run, set_album, slot.key, variant, picture)
    except (RunCancelled, GenerationStopped):
        raise
    except Exception as exc:  # one slot failing is the slot's failure
        logger.exception("Set run %s: slot %s failed", run.pk, slot.key)
        _record_failure(run, slot, variant, f"{type(exc).__name__}: {exc}")
    else:
        _record(run, slot, variant, image, recipe)
        if on_image is not None:
            on_image(run, image)
    run_checkpoint(
        run,
        done=slots_done(run),
        message=f"{slots_done(run)} of {len(run.slot_keys)} slots",
    )


def _summary(run: SetRun, cut: list[str]) -> str:
    total = len(run.slot_keys) * run.variants
    if run.failed_items and run.failed_items >= total:
        error = (
            SetSlot.objects.filter(set_album=run.set_album, key__in=run.slot_keys)
            .exclude(error="")
            .values_list("error", flat=True)
            .first()
        )
        raise RuntimeError(f"Every slot failed; the first error: {error}")
    made = total - run.failed_items
    failed = f", {run.failed_items} failed" if run.failed_items else ""
    note = (
        f"; the prompts of {len(cut)} slot(s) ({cut[0]} first) were cut at the "
        "model's 77 tokens"
        if cut
        else ""
    )
    return f"{len(run.slot_keys)} slot(s): {made} image(s) made{failed}{note}"
