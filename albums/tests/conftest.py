"""Fixtures for the API tests: callers of each kind and a small mixed library."""

from __future__ import annotations

from typing import Any

import pytest

from albums.tests.builders import make_album, make_image


@pytest.fixture
def library(db: Any) -> dict[str, Any]:
    """A public album holding a safe, an NSFW and a private image (in that
    order); a private album holding one safe image; one image in no album."""
    public = make_album(name="Tarot deck", description="Major arcana")
    private = make_album(name="Drafts", visibility="private")
    return {
        "public": public,
        "private": private,
        "safe": make_image(album=public, seed=1),
        "nsfw": make_image(album=public, seed=2, is_nsfw=True),
        "hidden": make_image(album=public, seed=3, visibility="private"),
        "draft": make_image(album=private, seed=4),
        "loose": make_image(seed=5),
    }
