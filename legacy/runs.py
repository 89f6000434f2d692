"""The body of a legacy import: every file of the run's folders, classified
(legacy.collect), ingested like an upload, and recorded as an ImportItem.

Resuming is by item: a file with a finished item is not read again. Before a
file is ingested its item is written as pending, so a run that dies between
the two knows, when it comes back, that an image with those bytes made since
then is its own ("created", not "duplicate"). Images are content-addressed and
labels, recipes and memberships are written on unique keys, so a second run
over the same folders creates nothing (its items say "duplicate").
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from albums.dedup import HashIndex, library_index
from albums.ingest import ImageRejected, InspectedImage, inspect_image
from albums.models import Album, AlbumImage, Image, SourceKind
from albums.services import album_add_images, album_get_or_create, image_store
from imagineer_project.runs import run_checkpoint
from labeling.models import Label
from labeling.services import label_get_or_create
from legacy.collect import Found, album_name, collect_outputs, collect_packs
from legacy.models import ImportItem, ImportRun
from legacy.selectors import import_summary, summary_line
from legacy.sidecars import made_at, read_sidecar, sidecar_recipe
from training.models import ImageRecipe, Lora

logger = logging.getLogger(__name__)

Outcome = ImportItem.Outcome
# Bits of 64 within which a new image is reported as a near duplicate of one
# already in the library (it is imported all the same, as uploads are).
NEAR_DUPLICATE_DISTANCE = 6
MAX_CAPTION_CHARS = 5000


def legacy_import_files(run: ImportRun) -> list[Found]:
    """Every file of the run's folders, sources first, in a stable order."""
    files: list[Found] = []
    for source in run.sources:
        files.extend(collect_outputs(Path(source)))
    for pack in run.packs:
        files.extend(collect_packs(Path(pack)))
    return files


def legacy_import_execute(run: ImportRun) -> str:
    """The body of an import run (see run_execute); returns its summary line."""
    return LegacyImport(run).run()


class LegacyImport:
    def __init__(self, run: ImportRun) -> None:
        self.run_row = run
        self.albums: dict[str, Album | None] = {}
        self._index: HashIndex | None = None
        self._loras: dict[str, str] | None = None
        # A dry run's memory of the bytes it met: {sha256: album names}.
        self._seen: dict[str, set[str]] = {}

    def run(self) -> str:
        run = self.run_row
        run_checkpoint(run, message="Listing the files to import")
        files = legacy_import_files(run)
        recorded = {
            (root, path): outcome
            for root, path, outcome in run.items.values_list(
                "root", "relative_path", "outcome"
            )
        }
        done = sum(1 for outcome in recorded.values() if outcome != Outcome.PENDING)
        run_checkpoint(
            run, done=done, total=len(files), message=f"Importing {len(files)} file(s)"
        )
        logger.info(
            "legacy_import.start run=%s sources=%d packs=%d files=%d dry_run=%s",
            run.pk,
            len(run.sources),
            len(run.packs),
            len(files),
            run.dry_run,
        )
        for found in files:
            if recorded.get((str(found.root), found.relative), Outcome.PENDING) != (
                Outcome.PENDING
            ):
                continue
            self.import_one(found)
            done += 1
            message = f"{done}/{len(files)}: {found.relative}"
            run_checkpoint(run, done=done, message=message)
        summary = import_summary(run)
        line = summary_line(summary)
        logger.info("legacy_import.summary run=%s %s", run.pk, _key_values(summary))
        return line

    # --- one file ---------------------------------------------------------------

    def import_one(self, found: Found) -> None:
        item = {"kind": found.kind}
        if found.skip or found.reject:
            outcome = Outcome.SKIPPED if found.skip else Outcome.REJECTED
            self._record(found, outcome, reason=found.skip or found.reject, **item)
            return
        raw = self._read(found)
        if raw is None:
            self._record(
                found, Outcome.REJECTED, reason="the file cannot be read", **item
            )
            return
        item.update(self._facts(found, raw))
        try:
            inspected = inspect_image(raw, found.path.name)
        except ImageRejected as exc:
            self._record(found, Outcome.REJECTED, reason=exc.reason, **item)
            return
        if self.run_row.dry_run:
            outcome, reason = self._would(inspected, item["album_name"])
            self._record(found, outcome, reason=reason, **item)
            return
        self._ingest(found, inspected, item)

    def _read(self, found: Found) -> bytes | None:
        try:
            with found.path.open("rb") as fh:
                return fh.read(settings.IMAGINEER_MAX_UPLOAD_BYTES + 1)
        except OSError:
            return None

    def _facts(self, found: Found, raw: bytes) -> dict[str, Any]:
        """What the file, its name and its sidecar say, before ingest."""
        sidecar = read_sidecar(found.sidecar) if found.kind != "pack" else None
        data = sidecar.data if sidecar else None
        moment, source = made_at(data, found.path.name, found.path.stat().st_mtime)
        month = moment.strftime("%Y-%m") if source != "mtime" else None
        return {
            "album_name": album_name(found, month),
            "sidecar_status": sidecar.status if sidecar else "",
            "sidecar": data,
            "sidecar_reason": sidecar.reason if sidecar else "",
            "made_at": moment,
            "made_at_from": source,
            "bytes": len(raw),
            "source_sha256": hashlib.sha256(raw).hexdigest(),
        }

    def _ingest(self, found: Found, inspected: InspectedImage, item: dict) -> None:
        pending = self._record(found, Outcome.PENDING, **item)
        album = self._album(item["album_name"])
        existing = Image.objects.filter(sha256=inspected.sha256).first()
        reason = ""
        if existing is not None:
            image = existing
            outcome = self._existing_outcome(existing, album, pending)
            album_add_images(album=album, images=[existing])
        else:
            near = self.index.nearest(inspected.phash, NEAR_DUPLICATE_DISTANCE)
            stored = image_store(
                inspected=inspected,
                filename=found.path.name,
                source_kind=SourceKind.LEGACY,
                album=album,
            )
            image = stored.image
            self.index.add(image.pk, image.phash)
            outcome = (
                Outcome.CREATED if stored.status == "created" else Outcome.ATTACHED
            )
            if near and outcome == Outcome.CREATED:
                outcome = Outcome.NEAR_DUPLICATE
                reason = f"looks like image #{near[0][0]} ({near[0][1]} bits apart)"
        with transaction.atomic():
            self._extras(found, image, item)
            self._record(
                found, outcome, reason=reason, album=album, image=image, **item
            )

    def _existing_outcome(self, image: Image, album: Album, pending: ImportItem) -> str:
        # Made by this run before it died (after its pending item was written).
        if image.source_kind == SourceKind.LEGACY and image.created >= pending.created:
            return Outcome.CREATED
        in_album = AlbumImage.objects.filter(album=album, image=image).exists()
        return Outcome.DUPLICATE if in_album else Outcome.ATTACHED

    def _extras(self, found: Found, image: Image, item: dict) -> None:
        """The recipe a sidecar gives a generated image (an image made before
        keeps its own), and a pack image's caption."""
        if item["sidecar_status"] == "ok":
            recipe = sidecar_recipe(item["sidecar"], self._lora_sha256)
            ImageRecipe.objects.get_or_create(image=image, defaults={"recipe": recipe})
        if found.caption is not None:
            text = found.caption.read_text(encoding="utf-8", errors="replace")
            text = " ".join(text.split())[:MAX_CAPTION_CHARS]
            if text:
                label_get_or_create(
                    image=image,
                    kind=Label.Kind.CAPTION,
                    text=text,
                    source=Label.Source.LEGACY,
                )

    def _would(self, inspected: InspectedImage, name: str) -> tuple[str, str]:
        """A dry run's verdict: what importing the file would do (counting the
        files it met before as if they had been imported)."""
        self._album_would(name)
        earlier = self._seen.setdefault(inspected.sha256, set())
        existing = Image.objects.filter(sha256=inspected.sha256).first()
        if existing is not None:
            earlier |= set(
                existing.memberships.filter(
                    album__source_kind=Album.Kind.LEGACY
                ).values_list("album__name", flat=True)
            )
        if existing is not None or earlier:
            outcome = Outcome.DUPLICATE if name in earlier else Outcome.ATTACHED
            earlier.add(name)
            return outcome, ""
        earlier.add(name)
        near = self.index.nearest(inspected.phash, NEAR_DUPLICATE_DISTANCE)
        if near:
            return Outcome.NEAR_DUPLICATE, (
                f"looks like image #{near[0][0]} ({near[0][1]} bits apart)"
            )
        return Outcome.CREATED, ""

    # --- shared state ---------------------------------------------------------

    def _record(self, found: Found, outcome: str, **fields: Any) -> ImportItem:
        """Write (or rewrite) the file's item."""
        # An item with no reason of its own says what is wrong with its sidecar.
        sidecar_reason = fields.pop("sidecar_reason", "")
        fields["reason"] = (fields.get("reason") or sidecar_reason)[:500]
        item, _ = ImportItem.objects.update_or_create(
            run=self.run_row,
            root=str(found.root),
            relative_path=found.relative,
            defaults={"outcome": outcome, **fields},
        )
        return item

    @property
    def index(self) -> HashIndex:
        if self._index is None:
            self._index = library_index()
        return self._index

    def _album(self, name: str) -> Album:
        album = self.albums.get(name)
        if album is None:
            existed = Album.objects.filter(
                name=name, source_kind=Album.Kind.LEGACY
            ).exists()
            album = album_get_or_create(
                name=name, source_kind=Album.Kind.LEGACY, same_kind_only=True
            )
            self.albums[name] = album
            self._note_album(name, "reused" if existed else "created")
        return album

    def _album_would(self, name: str) -> None:
        if name not in self.albums:
            self.albums[name] = None
            exists = Album.objects.filter(
                name=name, source_kind=Album.Kind.LEGACY
            ).exists()
            self._note_album(name, "exists" if exists else "would create")

    def _note_album(self, name: str, what: str) -> None:
        run = self.run_row
        # A resumed run keeps what its earlier attempt said of an album.
        run.albums = {name: what, **run.albums}
        ImportRun.objects.filter(pk=run.pk).update(albums=run.albums)

    def _lora_sha256(self, name: str, file: str) -> str:
        """The registered LoRA a sidecar names, by its name or file name."""
        if self._loras is None:
            self._loras = {
                lora_name.casefold(): sha
                for lora_name, sha in Lora.objects.values_list("name", "sha256")
            }
        for key in (name, Path(file).stem):
            if key and (sha := self._loras.get(key.casefold())):
                return sha
        return ""


def _key_values(summary: dict[str, Any]) -> str:
    """The summary's counts as key=value pairs, for a log line dashboards read."""
    pairs = {f"images_{k}": v for k, v in summary["images"].items()}
    pairs |= {f"sidecars_{k}": v for k, v in summary["sidecars"].items()}
    pairs |= {
        "albums_created": len(summary["albums"].get("created", [])),
        "albums_reused": len(summary["albums"].get("reused", [])),
        "bytes": summary["bytes"],
        "seconds": summary["seconds"],
        "dry_run": summary["dry_run"],
    }
    return " ".join(f"{k}={v}" for k, v in pairs.items())
