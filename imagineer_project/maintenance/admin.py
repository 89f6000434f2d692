"""Admin for maintenance runs: each pass, its report, and running one now."""
