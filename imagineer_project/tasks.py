from __future__ import annotations

from imagineer_project import runs


def reap_stale_runs() -> dict[str, int]:
    """Scheduled: fail or re-queue runs whose worker stopped sending heartbeats."""
    return runs.reap_stale_runs()
