"""Admin for bug reports: triage, the timeline, the captured log lines."""
