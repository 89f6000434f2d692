"""training.selectors: album readiness counts."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from albums.services import album_add_images
from albums.tests.builders import make_album, make_image
from labeling.services import label_create
from training.datasets.selectors import training_albums

pytestmark = pytest.mark.django_db


def test_training_albums_counts_what_a_dataset_would_take(settings: Any) -> None:
    settings.TRAINING_MIN_CAPTIONED = 2
    tarot = make_album(name="Tarot", trigger_word="zxq")
    empty = make_album(name="Empty")
    for fields in ({}, {}, {"is_nsfw": True}, {"review_status": "rejected"}):
        image = make_image(album=tarot, **fields)
        label_create(image=image, kind="caption", text="a card")
    uncaptioned = make_image(album=tarot)
    rejected_caption = make_image(album=tarot)
    label_create(image=rejected_caption, kind="caption", text="x", review="rejected")
    alt_only = make_image(album=tarot)
    label_create(image=alt_only, kind="alt_text", text="alt", source="html")
    album_add_images(album=empty, images=[uncaptioned])

    with CaptureQueriesContext(connection) as queries:
        rows = training_albums()

    assert len(queries) == 1
    assert rows == [
        {
            "id": empty.pk,
            "slug": empty.slug,
            "name": "Empty",
            "trigger_word": "",
            "total_images": 1,
            "captioned_images": 0,
            "nsfw_images": 0,
            "rejected_images": 0,
            "ready_for_training": False,
        },
        {
            "id": tarot.pk,
            "slug": tarot.slug,
            "name": "Tarot",
            "trigger_word": "zxq",
            "total_images": 7,
            "captioned_images": 3,  # two captions and the alt text
            "nsfw_images": 1,
            "rejected_images": 1,
            "ready_for_training": True,
        },
    ]
    with_nsfw = training_albums(include_nsfw=True)
    assert with_nsfw[1]["captioned_images"] == 4
