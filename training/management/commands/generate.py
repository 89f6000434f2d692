from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagineer_project.cli import run_in_foreground
from imagineer_project.errors import Invalid
from training.generation.runs import generation_job_execute
from training.generation.services import (
    GenerationRequest,
    effective_prompt,
    generation_job_create,
    parse_lora_lines,
)
from training.models import GenerationJob

# The option that sets each request field, for error messages.
OPTION = {
    "negative_prompt": "negative",
    "num_images": "count",
    "loras": "lora",
    "base_model": "base-model",
}


class Command(BaseCommand):
    help = (
        "Generate images from a prompt with any stack of registered LoRAs. Each "
        "image is stored in the album (default GENERATION_DEFAULT_ALBUM) with its "
        "full recipe. Runs here with a progress bar and prints the image ids and "
        "the seed, or with --enqueue hands the job to the gpu worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prompt", required=True)
        parser.add_argument("--negative", default="", help="negative prompt")
        parser.add_argument(
            "--lora",
            action="append",
            default=[],
            metavar="NAME:WEIGHT",
            help="a registered LoRA, with a weight (default: its own); repeatable",
        )
        parser.add_argument("--seed", type=int, help="default: random (printed)")
        parser.add_argument("--album", default="", help="album name (made if new)")
        parser.add_argument("--base-model", default="", help="folder or hub id")
        parser.add_argument("--width", type=int, default=512)
        parser.add_argument("--height", type=int, default=512)
        parser.add_argument("--steps", type=int, default=25)
        parser.add_argument("--guidance", type=float, default=7.5)
        parser.add_argument("--scheduler", default="ddim")
        parser.add_argument("--count", type=int, default=1, help="number of images")
        parser.add_argument(
            "--no-trigger-words",
            action="store_true",
            help="do not put the LoRAs' trigger words in front of the prompt",
        )
        parser.add_argument(
            "--enqueue", action="store_true", help="queue for the gpu worker and return"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        request = GenerationRequest(
            prompt=options["prompt"],
            negative_prompt=options["negative"],
            steps=options["steps"],
            guidance=options["guidance"],
            seed=options["seed"],
            width=options["width"],
            height=options["height"],
            scheduler=options["scheduler"],
            num_images=options["count"],
            loras=tuple(parse_lora_lines("\n".join(options["lora"]))),
            insert_trigger_words=not options["no_trigger_words"],
            album=options["album"],
            base_model=options["base_model"],
        )
        try:
            job = generation_job_create(request=request, enqueue=options["enqueue"])
        except Invalid as exc:
            lines = (f"--{OPTION.get(k, k)}: {v}" for k, v in exc.errors.items())
            raise CommandError("\n".join(lines) or exc.message) from exc
        self.stdout.write(f"Prompt: {effective_prompt(job)}")
        self.stdout.write(f"Seed: {job.seed}")
        if options["enqueue"]:
            page = f"/generate/jobs/{job.pk}/"
            self.stdout.write(f"Queued generation job #{job.pk}; follow it at {page}")
            return
        job = run_in_foreground(
            job,
            generation_job_execute,
            stream=self.stderr._out,
            unit="image",
            quiet=options["verbosity"] < 1,
        )
        if job.status != GenerationJob.Status.SUCCEEDED:
            raise CommandError(
                f"Generation job #{job.pk} {job.status}: {job.error or job.message}"
            )
        for index, pk in enumerate(job.image_ids):
            self.stdout.write(f"Image {pk}: /images/{pk}/ (seed {job.seed + index})")
        album = job.album.name if job.album else ""
        self.stdout.write(
            self.style.SUCCESS(f"{job.message}; in album {album!r} (job #{job.pk})")
        )
