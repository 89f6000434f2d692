"""Maintenance passes this app registers (imagineer_project.maintenance.registry)."""
