"""The parts of default storage this app owns, for reconcile-storage
(imagineer_project.maintenance.registry)."""

from __future__ import annotations

from collections.abc import Iterator

from imagineer_project.maintenance.registry import register_storage_owner
from training.models import DatasetExport, Lora

CHUNK = 2000  # rows per chunk of a streamed query


def lora_keys() -> Iterator[str]:
    """Every LoRA file a Lora row references."""
    yield from Lora.objects.values_list("file", flat=True).iterator(chunk_size=CHUNK)


def export_keys() -> Iterator[str]:
    """Every dataset zip an export row references (one being written has none
    yet; its file is young, so the grace period keeps it)."""
    written = DatasetExport.objects.exclude(file="").values_list("file", flat=True)
    yield from written.iterator(chunk_size=CHUNK)


register_storage_owner("loras/", lora_keys, description="LoRAs (Lora.file)")
register_storage_owner(
    "exports/", export_keys, description="dataset exports (DatasetExport.file)"
)
