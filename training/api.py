"""JSON API for training runs (/api/training/runs) and LoRAs (/api/loras)."""

from __future__ import annotations

from ninja import Router

runs_router = Router(tags=["training"])
loras_router = Router(tags=["loras"])
