"""Disk usage in the staff API."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["ops"])
