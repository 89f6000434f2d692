"""Admin for dataset versions."""

from __future__ import annotations
