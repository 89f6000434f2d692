"""Starting a legacy import: which folders, checked, as a run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction

from imagineer_project.errors import Invalid
from imagineer_project.permissions import person
from imagineer_project.runs import run_enqueue
from legacy.models import ImportRun

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def import_roots() -> list[Path]:
    """LEGACY_IMPORT_ROOTS, resolved: the folders the API and the admin may
    import from (and below)."""
    return [Path(root).expanduser().resolve() for root in settings.LEGACY_IMPORT_ROOTS]


def _under_a_root(folder: Path) -> bool:
    return any(folder.is_relative_to(root) for root in import_roots())


def _check(
    field: str, folders: list[str], *, roots_only: bool, errors: dict[str, str]
) -> list[str]:
    """The folders resolved; a problem with any goes into `errors`, naming it
    by its position only (a path outside the roots is never echoed)."""
    resolved = []
    for n, given in enumerate(folders):
        try:
            folder = Path(given).expanduser().resolve()
        except (RuntimeError, ValueError, OSError):
            # "~nobody" (no such home), a NUL byte: no folder anyone can name.
            errors[f"{field}[{n}]"] = (
                "not inside a LEGACY_IMPORT_ROOTS folder"
                if roots_only
                else "not a folder"
            )
            continue
        if roots_only and not _under_a_root(folder):
            errors[f"{field}[{n}]"] = "not inside a LEGACY_IMPORT_ROOTS folder"
        elif not folder.is_dir():
            errors[f"{field}[{n}]"] = "not a folder"
        else:
            resolved.append(str(folder))
    return resolved


def legacy_import_create(
    *,
    sources: list[str] = (),
    packs: list[str] = (),
    dry_run: bool = False,
    created_by: User | None = None,
    roots_only: bool = True,
    enqueue: bool = True,
) -> ImportRun:
    """Queue an import of outputs trees (`sources`) and image packs (`packs`).

    With `roots_only` (the API and the admin) every folder must lie under a
    LEGACY_IMPORT_ROOTS folder; the CLI passes False and may name any folder.
    Raises Invalid naming each bad folder by its place in the request.
    """
    errors: dict[str, str] = {}
    if roots_only and not settings.LEGACY_IMPORT_ROOTS:
        raise Invalid(
            "Legacy imports through the API and the admin need LEGACY_IMPORT_ROOTS "
            "(the folders they may read); `manage.py import_legacy` takes any.",
            code="legacy_roots_unset",
        )
    if not sources and not packs:
        errors["sources"] = "name at least one outputs folder or image pack folder"
    found_sources = _check(
        "sources", list(sources), roots_only=roots_only, errors=errors
    )
    found_packs = _check("packs", list(packs), roots_only=roots_only, errors=errors)
    if errors:
        raise Invalid(errors=errors, code="legacy_import_invalid")
    with transaction.atomic():
        run = ImportRun.objects.create(
            sources=found_sources,
            packs=found_packs,
            dry_run=dry_run,
            created_by=person(created_by),
            message="Waiting for the worker",
        )
        if enqueue:
            run_enqueue(run)
    return run


def legacy_import_again(*, run: ImportRun, created_by: User | None = None) -> ImportRun:
    """A new run over the same folders (a real one, even after a dry run). Its
    folders must still lie under LEGACY_IMPORT_ROOTS, as for any import started
    from the admin: a run the command made elsewhere is imported again there."""
    return legacy_import_create(
        sources=run.sources, packs=run.packs, created_by=created_by, roots_only=True
    )


def relative_to_roots(folder: str) -> str:
    """A folder as callers may see it: relative to the import root that holds
    it ("<root name>/sub"), or its name alone."""
    path = Path(folder)
    for root in import_roots():
        if path.is_relative_to(root):
            return str(Path(root.name) / path.relative_to(root))
    return path.name
