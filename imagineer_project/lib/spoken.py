"""Figures as a person reads them."""

from __future__ import annotations


def duration_spoken(seconds: float) -> str:
    """ "40 s", "3 min", "1 h 30 min", "3 h": whole units, no false precision."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h" + (f" {rest} min" if rest else "")
