"""Disk usage, the low-space alert and the hard floor (docs/operations.md)."""
