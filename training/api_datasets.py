"""JSON API for training data: /api/training/albums and /api/training/datasets."""

from __future__ import annotations

from ninja import Router

from imagineer_project.permissions import staff_required

router = Router(tags=["training data"], auth=staff_required)
