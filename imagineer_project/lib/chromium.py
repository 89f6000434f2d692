"""Where Debian's Chromium is and how we launch it (headless, as root, offline)."""

from __future__ import annotations

import shutil
from pathlib import Path

# --no-sandbox: the sandbox cannot start as root. The rest stop Chromium from
# calling home, which this network refuses (and a scraper should not do anyway).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_executable() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
