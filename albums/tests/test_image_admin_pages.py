"""The image changelist and page as a reviewer uses them: the training caption
and the one review state in the list, NSFW as a warning, thumbnails at the
image's shape, the caption and review first on the page, and previous / next
within the album."""

from __future__ import annotations

import re
from typing import Any

import pytest

from albums.models import Image
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import admin_listed, query_count
from labeling.models import Label
from labeling.services import label_create

pytestmark = pytest.mark.django_db

IMAGES = "/admin/albums/image/"


def row(response: Any, image: Image) -> str:
    """The changelist row of `image`, as HTML."""
    start = response.text.index(f'value="{image.pk}"')
    return response.text[start : response.text.index("</tr>", start)]


def test_changelist_shows_caption_review_and_nsfw_warning(admin_client: Any) -> None:
    nsfw = make_image(seed=1, size=(40, 80), is_nsfw=True, review_status="approved")
    label_create(image=nsfw, kind="caption", text="a tower " * 30, source="claude")
    safe = make_image(seed=2, size=(80, 40))

    response = admin_client.get(IMAGES)

    flagged = row(response, nsfw)
    assert '<span class="imagineer-nsfw">NSFW</span>' in flagged
    assert "icon-yes" not in flagged and "icon-no" not in flagged
    assert "imagineer-review-approved" in flagged and "Approved" in flagged
    assert "a tower a tower" in flagged and "…" in flagged  # truncated
    # Thumbnails keep the image's shape in a 64 px box.
    assert 'width="32" height="64"' in flagged
    plain = row(response, safe)
    assert 'width="64" height="32"' in plain
    assert "imagineer-nsfw" not in plain and "Unreviewed" in plain
    assert "—" in plain  # no caption yet


def test_changelist_captions_cost_no_query_per_row(admin_client: Any) -> None:
    def add(seed: int) -> None:
        image = make_image(seed=seed)
        label_create(image=image, kind="caption", text=f"card {seed}", source="claude")
        label_create(image=image, kind="caption", text=f"mine {seed}")

    for seed in range(3):
        add(seed)
    few = query_count(admin_client, IMAGES)
    for seed in range(3, 23):
        add(seed)
    assert query_count(admin_client, IMAGES) == few
    response = admin_client.get(IMAGES)
    assert len(admin_listed(response)) == 23
    assert "mine 22" in response.text and "card 22" not in response.text


def test_approve_action_approves_the_caption_too(admin_client: Any) -> None:
    image = make_image(seed=1)
    caption = label_create(image=image, kind="caption", text="a", source="claude")
    admin_client.post(
        IMAGES, {"action": "approve", "_selected_action": [image.pk], "index": 0}
    )
    caption.refresh_from_db()
    image.refresh_from_db()
    assert (image.review_status, caption.review) == ("approved", "approved")


def test_image_page_leads_with_caption_and_one_review_field(admin_client: Any) -> None:
    image = make_image(seed=1)
    label_create(image=image, kind="caption", text="a moth", source="claude")

    page = admin_client.get(f"{IMAGES}{image.pk}/change/").text

    assert "Caption review" not in page and 'name="caption_review"' not in page
    caption, review = page.index('name="caption"'), page.index('name="review_status"')
    assert caption < review < page.index('class="fieldset-heading">File<')
    assert re.search(r"<label[^>]*for=\"id_review_status\">Review:</label>", page)
    # The preview fits beside the form: the 512 px thumbnail shown at most 360 px.
    assert re.search(r'thumbnail\?size=512" width="360" height="270"', page)
    # One line per label, and no empty row added unasked.
    assert 'rows="1"' in page and 'name="labels-TOTAL_FORMS" value="1"' in page


def test_image_page_review_approves_the_image_and_its_caption(
    admin_client: Any,
) -> None:
    image = make_image(seed=1)
    caption = label_create(image=image, kind="caption", text="a moth", source="claude")
    response = admin_client.post(
        f"{IMAGES}{image.pk}/change/",
        {
            "visibility": "public",
            "review_status": "approved",
            "caption": "a moth",
            "tags": "",
            "labels-TOTAL_FORMS": "0",
            "labels-INITIAL_FORMS": "0",
            "labels-MIN_NUM_FORMS": "0",
            "labels-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302
    caption.refresh_from_db()
    image.refresh_from_db()
    assert (image.review_status, caption.review) == ("approved", "approved")
    assert Label.objects.filter(image=image).count() == 1


def test_image_page_links_to_previous_and_next_in_the_album(admin_client: Any) -> None:
    album = make_album(name="Tarot")
    first, middle, last = (make_image(album=album, seed=s) for s in range(3))
    make_image(seed=9)  # newer, but in no album
    query = f"?album={album.pk}&amp;_changelist_filters=album%3D{album.pk}"

    # Newest first, as the changelist lists them: last, middle, first.
    page = admin_client.get(f"{IMAGES}{middle.pk}/change/?album={album.pk}").text
    assert f'href="{IMAGES}{last.pk}/change/{query}" rel="prev"' in page
    assert f'href="{IMAGES}{first.pk}/change/{query}" rel="next"' in page

    # Opened from the album's changelist, the filter says which album.
    newest = admin_client.get(
        f"{IMAGES}{last.pk}/change/?_changelist_filters=album%3D{album.pk}"
    ).text
    assert 'rel="prev"' not in newest
    assert f'href="{IMAGES}{middle.pk}/change/{query}" rel="next"' in newest

    # Opened from nowhere in particular: no album, no links.
    alone = admin_client.get(f"{IMAGES}{middle.pk}/change/").text
    assert 'rel="next"' not in alone and 'rel="prev"' not in alone
