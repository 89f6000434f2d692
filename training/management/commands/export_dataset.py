from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from albums.cli import album_from_arg
from imagineer_project.errors import DomainError
from training.datasets.export import LAYOUTS, dataset_export
from training.datasets.services import (
    MAX_REPEATS,
    dataset_version_build_or_get,
)
from training.models import DatasetVersion


class Command(BaseCommand):
    help = (
        "Export a dataset version to a folder: flat PNG + .txt pairs, a kohya "
        "<repeats>_<concept> folder, or images + metadata.jsonl. With --album the "
        "version is built from those albums first (or the identical one reused). "
        "The folder must be new, empty, or an earlier export."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--dataset", type=int, help="a dataset version id")
        source.add_argument(
            "--album",
            action="append",
            help="album name or slug; repeat for several albums, in order",
        )
        parser.add_argument("--layout", required=True, choices=LAYOUTS)
        parser.add_argument("--out", required=True, type=Path, help="target folder")
        parser.add_argument(
            "--repeats", type=int, default=10, help="kohya repeats (default 10)"
        )
        parser.add_argument("--name", default="", help="name of a new version")
        parser.add_argument(
            "--trigger-word",
            help="with --album: the trigger word ('' for none; default: the "
            "first album's)",
        )
        parser.add_argument(
            "--include-nsfw", action="store_true", help="with --album: keep NSFW"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["repeats"] <= MAX_REPEATS:
            raise CommandError(f"--repeats must be between 1 and {MAX_REPEATS}")
        dataset = self._dataset(options)
        self.stdout.write(
            f"Dataset version #{dataset.pk} “{dataset.name}”\n"
            f"sha256 {dataset.manifest_sha256}\n"
            f"{dataset.captioned_count} captioned images exported "
            f"(of {dataset.image_count} usable)"
            + (
                f", trigger word “{dataset.trigger_word}”"
                if dataset.trigger_word
                else ""
            )
        )
        for warning in dataset.warnings:
            self.stdout.write(self.style.WARNING(f"Warning: {warning}"))
        try:
            out = dataset_export(
                dataset,
                options["out"],
                layout=options["layout"],
                repeats=options["repeats"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote the {options['layout']} layout to {out.resolve()}"
            )
        )

    def _dataset(self, options: dict[str, Any]) -> DatasetVersion:
        if options["dataset"] is not None:
            if options["trigger_word"] is not None or options["include_nsfw"]:
                raise CommandError(
                    "--trigger-word and --include-nsfw choose what a new version "
                    "holds: use them with --album, not --dataset"
                )
            dataset = DatasetVersion.objects.filter(pk=options["dataset"]).first()
            if dataset is None:
                raise CommandError(f"No dataset version {options['dataset']}.")
            return dataset
        albums = [album_from_arg(ref) for ref in options["album"]]
        try:
            dataset, created = dataset_version_build_or_get(
                albums=albums,
                name=options["name"],
                trigger_word=options["trigger_word"],
                include_nsfw=options["include_nsfw"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            "Built a new dataset version."
            if created
            else "Reused the identical dataset version."
        )
        return dataset
