"""The parts of default storage this app owns, for reconcile-storage
(imagineer_project.maintenance.registry)."""
