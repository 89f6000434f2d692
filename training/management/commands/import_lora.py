from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagineer_project.errors import DomainError
from training.registry import lora_import


class Command(BaseCommand):
    help = (
        "Register an external LoRA (a kohya-format .safetensors file, as A1111, "
        "ComfyUI and diffusers use) under NAME. The file is checked, then stored "
        "under its sha256; trigger words and base model default to its metadata."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the .safetensors file")
        parser.add_argument("--name", required=True, help="a unique name")
        parser.add_argument(
            "--trigger-word",
            action="append",
            default=[],
            dest="trigger_words",
            help="repeat for several",
        )
        parser.add_argument(
            "--weight", type=float, default=0.8, help="default weight (-4 to 4)"
        )
        parser.add_argument("--base-model", default="", help="what it was trained on")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            lora = lora_import(
                file=path,
                name=options["name"],
                trigger_words=options["trigger_words"],
                default_weight=options["weight"],
                base_model=options["base_model"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        words = ", ".join(lora.trigger_words) or "none"
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported LoRA #{lora.pk} “{lora.name}”: rank {lora.rank}, "
                f"{lora.size:,} bytes, trigger words: {words}, sha256 {lora.sha256}"
            )
        )
