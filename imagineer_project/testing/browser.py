"""What the browser tests share: a signed-in staff page, and files dropped onto
a page as a person drags them there.

The `browser` fixture itself (Debian's Chromium through Playwright, skipped
when absent) is in the root conftest.py.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from imagineer_project.testing import make_user

USERNAME = "curator"
PASSWORD = "pw-for-tests-only"


def staff_page(
    browser: Any,
    base_url: str,
    *,
    next_path: str = "/admin/",
    width: int = 1280,
    height: int = 800,
    timeout_ms: int = 5000,
    context: dict[str, Any] | None = None,
) -> Any:
    """A new tab signed in to the admin as a new superuser "curator", on
    `next_path`."""
    make_user(username=USERNAME, staff=True, is_superuser=True)
    tab = browser.new_context(
        viewport={"width": width, "height": height}, **(context or {})
    ).new_page()
    tab.set_default_timeout(timeout_ms)
    tab.goto(f"{base_url}/admin/login/?next={quote(next_path)}")
    tab.fill("#id_username", USERNAME)
    tab.fill("#id_password", PASSWORD)
    tab.click("input[type=submit]")
    tab.wait_for_url(f"{base_url}{next_path}")
    return tab


# A drop as a browser makes it: a DataTransfer built in the page, dispatched in
# real dragover and drop events (Playwright cannot drag files from the disk).
_DROP = """([zone, files]) => {
  const transfer = new DataTransfer();
  for (const [name, b64, type] of files) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, { type }));
  }
  const target = document.querySelector(zone);
  const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
  target.dispatchEvent(new DragEvent("dragover", init));
  target.dispatchEvent(new DragEvent("drop", init));
}"""


def drop_files(page: Any, zone: str, files: list[tuple[str, bytes, str]]) -> None:
    """Drop (name, bytes, content type) files onto the element `zone`."""
    encoded = [
        [name, base64.b64encode(data).decode(), kind] for name, data, kind in files
    ]
    page.evaluate(_DROP, [zone, encoded])
