"""JSON API for labeling: label jobs and label editing."""

from __future__ import annotations

from ninja import Router

from imagineer_project.permissions import staff_required

images_router = Router(tags=["labeling"])
albums_router = Router(tags=["labeling"], auth=staff_required)
labels_router = Router(tags=["labeling"])
jobs_router = Router(tags=["labeling"], auth=staff_required)
