from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from albums.folder_import import folder_import, image_files
from albums.models import Album
from albums.services import album_get_or_create


class Command(BaseCommand):
    help = (
        "Import every image under DIR (recursively) into the album NAME, creating it "
        "if needed. A .txt file beside an image becomes its caption."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dir", type=Path)
        parser.add_argument(
            "--album", required=True, help="album name (created if new)"
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(
        self, *args: Any, dir: Path, album: str, quiet: bool, **options: Any
    ) -> None:
        root = dir.expanduser().resolve()
        if not root.is_dir():
            raise CommandError(f"{dir} is not a folder.")
        total = sum(1 for _ in image_files(root))
        target = album_get_or_create(name=album, source_kind=Album.Kind.UPLOAD)
        with tqdm(
            total=total, unit="img", disable=quiet or total == 0, file=self.stderr._out
        ) as bar:

            def advance(path: Path, result: Any) -> None:
                bar.update(1)
                bar.set_postfix_str(result.status, refresh=False)

            report = folder_import(root=root, album=target, on_progress=advance)
        for rejected in report.rejected:
            self.stderr.write(f"rejected {rejected.filename}: {rejected.reason}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Album '{target.name}' (/albums/{target.slug}/): "
                f"{report.created} new, "
                f"{report.duplicate} already known, {len(report.rejected)} rejected, "
                f"{report.captions} caption(s) from .txt files."
            )
        )
