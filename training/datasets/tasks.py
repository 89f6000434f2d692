"""django-q2 entry points for dataset builds and exports (thin: take the id,
run the body)."""

from __future__ import annotations

from imagineer_project.runs import run_execute
from training.datasets.runs import dataset_build_execute, dataset_export_execute
from training.models import DatasetBuild, DatasetExport


def run_dataset_build(build_id: int) -> str | None:
    """Build a dataset version from albums; safe to deliver twice."""
    build = run_execute(DatasetBuild, build_id, dataset_build_execute)
    return build.status if build else None


def run_dataset_export(export_id: int) -> str | None:
    """Write a dataset version's zip export; safe to deliver twice."""
    export = run_execute(DatasetExport, export_id, dataset_export_execute)
    return export.status if export else None
