"""Filing, triaging and purging bug reports."""
