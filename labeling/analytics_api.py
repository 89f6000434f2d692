"""JSON API for label analytics (/api/labels/stats, ..., /api/albums/{id}/labeling)."""

from __future__ import annotations

from ninja import Router

from imagineer_project.permissions import staff_required

labels_router = Router(tags=["label analytics"], auth=staff_required)
albums_router = Router(tags=["label analytics"], auth=staff_required)
