"""Reads for legacy imports: a run's summary, its items, and what a folder
holds that no import took (or that changed since)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from legacy.collect import collect_outputs, collect_packs
from legacy.models import ImportItem, ImportRun

Outcome = ImportItem.Outcome
# Every outcome a file ends with, in the order summaries list them.
IMAGE_OUTCOMES = [*ImportItem.IMPORTED, Outcome.REJECTED, Outcome.SKIPPED]


def import_summary(run: ImportRun) -> dict[str, Any]:
    """What a run did (or, for a dry run, would do), counted from its items:
    a few grouped queries whatever the number of files."""
    items = run.items.all()
    outcomes = dict(items.values_list("outcome").annotate(n=Count("id")).order_by())
    sidecars = dict(
        items.exclude(sidecar_status="")
        .values_list("sidecar_status")
        .annotate(n=Count("id"))
        .order_by()
    )
    albums: dict[str, list[str]] = {}
    for name, what in sorted(run.albums.items()):
        albums.setdefault(what, []).append(name)
    seconds = None
    if run.started_at:  # until it ends, the time so far
        end = run.finished_at or timezone.now()
        seconds = round((end - run.started_at).total_seconds(), 1)
    return {
        "dry_run": run.dry_run,
        "files": sum(outcomes.values()),
        "images": {o: outcomes.get(o, 0) for o in IMAGE_OUTCOMES},
        "pending": outcomes.get(Outcome.PENDING, 0),
        "rejected_by_reason": _by_reason(items, Outcome.REJECTED),
        "skipped_by_reason": _by_reason(items, Outcome.SKIPPED),
        "albums": albums,
        "sidecars": {s: sidecars.get(s, 0) for s in ("ok", "missing", "malformed")},
        "bytes": items.aggregate(total=Sum("bytes"))["total"] or 0,
        "seconds": seconds,
    }


def _by_reason(items: QuerySet[ImportItem], outcome: str) -> dict[str, int]:
    rows = (
        items.filter(outcome=outcome)
        .values_list("reason")
        .annotate(n=Count("id"))
        .order_by("-n", "reason")
    )
    return dict(rows)


def summary_line(summary: dict[str, Any]) -> str:
    """The summary in one line (the run's final message, the CLI's last)."""
    images = summary["images"]
    albums = summary["albums"]
    made = ("would create", "exists") if summary["dry_run"] else ("created", "reused")
    head = "Dry run: " if summary["dry_run"] else ""
    return (
        f"{head}{images['created']} created, {images['near_duplicate']} near "
        f"duplicates, {images['duplicate']} duplicates, {images['attached']} "
        f"attached, {images['rejected']} rejected, {images['skipped']} skipped; "
        f"albums {made[0]} {len(albums.get(made[0], []))}, "
        f"{made[1]} {len(albums.get(made[1], []))}; sidecars missing "
        f"{summary['sidecars']['missing']}, malformed "
        f"{summary['sidecars']['malformed']}"
    )


def import_items(*, run: ImportRun, outcome: str | None = None) -> QuerySet[ImportItem]:
    """The run's items in the order it met the files (the import_item_outcome
    index when filtered)."""
    items = run.items.select_related("album")
    return items.filter(outcome=outcome) if outcome else items


def import_runs() -> QuerySet[ImportRun]:
    # Lists leave out the summaries and album maps.
    return ImportRun.objects.defer("albums")


def reconcile(source: Path, *, pack: bool = False) -> dict[str, list[str]]:
    """`source` compared with what real imports took from it (relative paths,
    sorted): image files no import met (`not_imported`); imported files that
    have since gone (`gone`) or whose bytes changed (`changed`); and, to know
    them, the files an import refused (`refused`, "path (why)")."""
    source = Path(source).resolve()
    collect = collect_packs if pack else collect_outputs
    here = {f.relative: f for f in collect(source) if f.is_image}
    latest: dict[str, tuple[str, str, str]] = {}
    met = ImportItem.objects.filter(root=str(source), run__dry_run=False).exclude(
        outcome=Outcome.PENDING
    )
    rows = met.order_by("id").values_list(
        "relative_path", "outcome", "source_sha256", "reason"
    )
    for path, outcome, sha, reason in rows:
        latest[path] = (outcome, sha, reason)  # the newest import of a file wins
    imported = {p: sha for p, (o, sha, _) in latest.items() if o in ImportItem.IMPORTED}
    changed = [
        path
        for path, sha in imported.items()
        if path in here and _sha256(here[path].path) != sha
    ]
    refused = [
        f"{path} ({reason})"
        for path, (outcome, _, reason) in sorted(latest.items())
        if outcome == Outcome.REJECTED and path in here
    ]
    return {
        "not_imported": sorted(set(here) - set(latest)),
        "gone": sorted(set(imported) - set(here)),
        "changed": sorted(changed),
        "refused": refused,
    }


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def outcome_counts(runs: list[ImportRun]) -> dict[int, Counter[str]]:
    """{run id: outcome counts} for a page of runs, in one query."""
    counts: dict[int, Counter[str]] = {run.pk: Counter() for run in runs}
    rows = (
        ImportItem.objects.filter(run__in=runs)
        .values_list("run_id", "outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    for run_id, outcome, n in rows:
        counts[run_id][outcome] = n
    return counts
