"""Shapes of /api/admin/legacy-imports. Folders are shown relative to the
LEGACY_IMPORT_ROOTS folder that holds them, files relative to their folder:
no absolute path leaves the server."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from ninja import ModelSchema, Schema
from pydantic import Field

from albums.schemas import AlbumRefOut
from imagineer_project.run_api import RunFilterIn
from legacy.models import ImportItem, ImportRun
from legacy.services import relative_to_roots

Folders = list[str]


class ImportRunIn(Schema):
    sources: Folders = Field(
        default_factory=list,
        max_length=50,
        description="Outputs folders of the old system, under LEGACY_IMPORT_ROOTS",
    )
    packs: Folders = Field(
        default_factory=list,
        max_length=50,
        description="Folders of image packs (.txt captions), under LEGACY_IMPORT_ROOTS",
    )
    dry_run: bool = Field(False, description="Walk and classify only")


class ImportRunOut(ModelSchema):
    percent: int
    sources: list[str]
    packs: list[str]

    class Meta:
        model = ImportRun
        fields = [
            "id",
            "status",
            "dry_run",
            "progress_done",
            "progress_total",
            "message",
            "error",
            "cancel_requested",
            "created",
            "started_at",
            "finished_at",
        ]

    @staticmethod
    def resolve_sources(run: ImportRun) -> list[str]:
        return [relative_to_roots(folder) for folder in run.sources]

    @staticmethod
    def resolve_packs(run: ImportRun) -> list[str]:
        return [relative_to_roots(folder) for folder in run.packs]


class ImportSummaryOut(Schema):
    id: int
    status: str
    dry_run: bool
    files: int
    images: dict[str, int] = Field(
        description="created, near_duplicate, duplicate, attached, rejected, skipped"
    )
    pending: int
    rejected_by_reason: dict[str, int]
    skipped_by_reason: dict[str, int]
    albums: dict[str, list[str]] = Field(
        description="Album names by what the run did: created, reused (a dry "
        "run: would create, exists)"
    )
    sidecars: dict[str, int] = Field(description="ok, missing, malformed")
    bytes: int
    seconds: float | None


class ImportItemFilterIn(Schema):
    outcome: ImportItem.Outcome | None = None


class ImportRunFilterIn(RunFilterIn):
    dry_run: bool | None = None

    def apply(self, runs: QuerySet) -> QuerySet:
        runs = super().apply(runs)
        return runs if self.dry_run is None else runs.filter(dry_run=self.dry_run)


class ImportItemOut(ModelSchema):
    source: str
    path: str
    album: AlbumRefOut | None
    image_id: int | None

    class Meta:
        model = ImportItem
        fields = [
            "id",
            "kind",
            "outcome",
            "reason",
            "album_name",
            "sidecar_status",
            "made_at",
            "made_at_from",
            "bytes",
        ]

    @staticmethod
    def resolve_source(item: ImportItem) -> str:
        return item.root_name

    @staticmethod
    def resolve_path(item: ImportItem) -> str:
        return item.relative_path


def summary_out(run: ImportRun, summary: dict[str, Any]) -> dict[str, Any]:
    return {"id": run.pk, "status": run.status, **summary}
