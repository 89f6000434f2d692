from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from albums.cli import album_from_arg
from imagineer_project.cli import run_in_foreground
from imagineer_project.errors import DomainError
from training.config import FIELDS, config_validate
from training.datasets.services import repeats_by_album
from training.models import TrainingRun
from training.runs import training_run_execute
from training.selectors import loss_text
from training.services import training_run_create_from_albums

# Command-line option -> config field, for the options that set the config.
CONFIG_OPTIONS = {
    "steps": "steps",
    "rank": "rank",
    "alpha": "alpha",
    "resolution": "resolution",
    "lr": "learning_rate",
    "warmup": "warmup_steps",
    "batch_size": "batch_size",
    "grad_accum": "gradient_accumulation",
    "checkpoint_every": "checkpoint_every",
    "seed": "seed",
    "mixed_precision": "mixed_precision",
    "sample_steps": "sample_steps",
}


def _field_options() -> dict[str, str]:
    """argparse dest -> config field for the fields without a short option."""
    return {
        spec.name: spec.name
        for spec in FIELDS
        if spec.name not in CONFIG_OPTIONS.values()
    }


class Command(BaseCommand):
    help = (
        "Train a LoRA on the captioned images of one or more albums. Runs here "
        "with a progress bar (Ctrl-C cancels; the run can be resumed from the "
        "admin), or with --enqueue hands the run to the gpu worker. Unset options "
        "take the defaults in settings (TRAINING_DEFAULTS); --steps and "
        "--resolution may go below the usual minimum for smoke runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--album",
            action="append",
            required=True,
            help="album name or slug; repeat for several albums",
        )
        parser.add_argument(
            "--base-model",
            default="",
            help="local diffusers folder or hub id (default TRAINING_BASE_MODEL)",
        )
        parser.add_argument("--name", default="", help="run name (default: albums)")
        parser.add_argument(
            "--trigger-word",
            help="'' for none (default: the first album's trigger word)",
        )
        parser.add_argument("--include-nsfw", action="store_true")
        parser.add_argument("--steps", type=int)
        parser.add_argument("--rank", type=int)
        parser.add_argument("--alpha", type=float)
        parser.add_argument("--resolution", type=int)
        parser.add_argument("--lr", type=float, help="learning rate")
        parser.add_argument("--warmup", type=int, help="warmup steps")
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--grad-accum", type=int, help="gradient accumulation")
        parser.add_argument("--checkpoint-every", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"))
        parser.add_argument("--sample-steps", type=int)
        # Every other config field, named as in the config ("--lora-targets").
        for spec in FIELDS:
            if spec.name in CONFIG_OPTIONS.values():
                continue
            flag = f"--{spec.name.replace('_', '-')}"
            if spec.kind is bool:
                parser.add_argument(
                    flag, action=argparse.BooleanOptionalAction, help=spec.help
                )
            else:
                parser.add_argument(
                    flag, type=spec.kind, choices=spec.choices or None, help=spec.help
                )
        parser.add_argument(
            "--repeats",
            type=int,
            action="append",
            help="how often an album's images count per epoch (kohya's folder "
            "repeats): one per --album, in the same order",
        )
        parser.add_argument(
            "--enqueue", action="store_true", help="queue for the gpu worker and return"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        albums = [album_from_arg(ref) for ref in options["album"]]
        config = {
            field: options[option]
            for option, field in {**CONFIG_OPTIONS, **_field_options()}.items()
            if options[option] is not None
        }
        try:
            _, warnings = config_validate(
                config, allow_below_minimum=True, base_model=options["base_model"]
            )
            run = training_run_create_from_albums(
                albums=albums,
                trigger_word=options["trigger_word"],
                include_nsfw=options["include_nsfw"],
                repeats=repeats_by_album(albums, options["repeats"]),
                base_model=options["base_model"],
                config=config,
                name=options["name"],
                enqueue=options["enqueue"],
                allow_below_minimum=True,
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        for warning in [*warnings, *run.dataset.warnings]:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
        self.stdout.write(
            f"Training run #{run.pk} “{run.name}”: {run.dataset.captioned_count} "
            f"images, {run.config['steps']} steps at {run.config['resolution']} px "
            f"on {run.base_model}"
        )
        if options["enqueue"]:
            self.stdout.write("Queued for the gpu worker; follow it in the admin.")
            return
        run = run_in_foreground(
            run,
            training_run_execute,
            stream=self.stderr._out,
            unit="step",
            postfix=loss_text,
        )
        if run.status != TrainingRun.Status.SUCCEEDED:
            reason = run.error or run.message
            raise CommandError(f"Training run #{run.pk} {run.status}: {reason}")
        lora = run.loras.first()
        self.stdout.write(self.style.SUCCESS(run.message))
        if lora is not None:
            self.stdout.write(f"LoRA #{lora.pk} stored as {lora.file.name}")
