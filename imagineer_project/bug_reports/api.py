"""Bug reports in the JSON API: filing (any signed-in user) and the staff API."""

from __future__ import annotations

from ninja import Router

router = Router(tags=["bug reports"])
admin_router = Router(tags=["bug reports"])
