"""Admin for training: dataset versions (admin_datasets), runs and LoRAs."""

from __future__ import annotations

from training import admin_datasets  # noqa: F401 (registers DatasetVersion)
