"""Bug reports: filed by any signed-in user, triaged by staff (docs/bug-reports.md)."""
