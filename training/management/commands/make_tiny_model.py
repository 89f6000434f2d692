from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Build the tiny Stable-Diffusion-1.5-shaped pipeline (about 2 M random "
        "parameters, offline) for demos and smoke runs, and print its folder. Use "
        "the folder as --base-model: training and generation run in seconds on a "
        "CPU, and the images are noise. --family sdxl builds the tiny SDXL one "
        "instead. Does nothing if the folder is already built."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "dest",
            nargs="?",
            type=Path,
            help="target folder (default var/models/tiny-sd, or tiny-sdxl)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--family",
            choices=("sd1", "sdxl"),
            default="sd1",
            help="the model family to shape it after (default sd1)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from training.ml.tiny import build_tiny_pipeline

        family = options["family"]
        default_name = "tiny-sdxl" if family == "sdxl" else "tiny-sd"
        dest = options["dest"] or Path(settings.VAR_DIR) / "models" / default_name
        try:
            folder = build_tiny_pipeline(
                dest.expanduser(), seed=options["seed"], family=family
            )
        except FileExistsError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(folder.resolve()))
