"""Imported labels (from a page, a sidecar file, the old system) are recorded
once per image, kind, source and text: a unique constraint holds it, however
the writes race."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from albums.tests.builders import make_image
from imagineer_project.errors import Invalid
from labeling.models import Label, text_digest
from labeling.services import label_create, label_get_or_create

pytestmark = pytest.mark.django_db


def test_the_same_imported_text_is_one_label_even_when_it_is_long() -> None:
    image = make_image(seed=1)
    page_text = "A long paragraph about the card. " * 400  # past any index row
    first, created = label_get_or_create(
        image=image, kind="page_text", text=page_text, source="html"
    )
    again, created_again = label_get_or_create(
        image=image, kind="page_text", text=f"  {page_text}  ", source="html"
    )
    assert (created, created_again, again.pk) == (True, False, first.pk)
    assert Label.objects.count() == 1


def test_the_database_refuses_a_second_copy_written_around_the_service() -> None:
    image = make_image(seed=2)
    label_get_or_create(image=image, kind="caption", text="The Fool", source="sidecar")
    with pytest.raises(IntegrityError), transaction.atomic():
        Label.objects.create(
            image=image, kind="caption", text="The Fool", source="sidecar"
        )
    # Other kinds and sources of the same text are other labels.
    label_get_or_create(image=image, kind="alt_text", text="The Fool", source="html")
    label_create(image=image, kind="caption", text="The Fool")  # a person's
    label_create(image=image, kind="caption", text="The Fool")  # may repeat
    assert Label.objects.filter(text="The Fool").count() == 4


def test_a_label_keeps_its_digest_when_its_text_is_edited() -> None:
    image = make_image(seed=3)
    label = label_create(image=image, kind="caption", text="first")
    label.text = "second"
    label.save(update_fields=["text"])
    label.refresh_from_db()
    assert label.text_sha256 == text_digest("second") != text_digest("first")


def test_only_imported_labels_are_written_through_get_or_create() -> None:
    with pytest.raises(Invalid, match="Only imported labels"):
        label_get_or_create(
            image=make_image(seed=4), kind="caption", text="x", source="human"
        )
