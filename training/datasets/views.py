"""HTTP answers shared by the dataset admin and API."""

from __future__ import annotations

from django.http import FileResponse

from training.datasets.export import export_filename
from training.datasets.selectors import dataset_export_open
from training.models import DatasetExport


def export_response(export: DatasetExport) -> FileResponse:
    """A written export's zip as a download named after its dataset and layout.
    Raises the selector's Conflict/NotFound when there is no zip to give."""
    return FileResponse(
        dataset_export_open(export),
        as_attachment=True,
        filename=export_filename(export.dataset, export.layout),
        content_type="application/zip",
    )
