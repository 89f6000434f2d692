from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from albums.tests.builders import make_image
from labeling.models import Label

pytestmark = pytest.mark.django_db

LABELS = "/admin/labeling/label/"


def listed(response: Any) -> list[int]:
    assert response.status_code == 200
    return [obj.pk for obj in response.context["cl"].result_list]


def query_count(client: Any, url: str) -> int:
    client.get(url)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx)


def test_changelist_shows_thumbnails_in_constant_queries(admin_client: Any) -> None:
    for seed in range(3):
        Label.objects.create(image=make_image(seed=seed), kind="tag", text=f"t{seed}")
    few = query_count(admin_client, LABELS)
    for seed in range(3, 15):
        Label.objects.create(image=make_image(seed=seed), kind="tag", text=f"t{seed}")

    assert query_count(admin_client, LABELS) == few
    label = Label.objects.first()
    response = admin_client.get(LABELS)
    assert f'src="/api/images/{label.image_id}/thumbnail?size=256"' in response.text


def test_search_by_text(admin_client: Any) -> None:
    image = make_image(seed=1)
    wanted = Label.objects.create(image=image, kind="caption", text="a lone lighthouse")
    Label.objects.create(image=image, kind="caption", text="a busy harbour")

    assert listed(admin_client.get(LABELS, {"q": "lighthouse"})) == [wanted.pk]


def test_filter_by_kind_and_source(admin_client: Any) -> None:
    image = make_image(seed=1)
    tag = Label.objects.create(image=image, kind="tag", text="sea", source="claude")
    Label.objects.create(image=image, kind="caption", text="the sea", source="claude")
    Label.objects.create(image=image, kind="tag", text="boat", source="human")

    params = {"kind__exact": "tag", "source__exact": "claude"}
    assert listed(admin_client.get(LABELS, params)) == [tag.pk]


def test_adding_a_label_records_the_author(admin_client: Any) -> None:
    image = make_image(seed=1)

    response = admin_client.post(
        f"{LABELS}add/",
        {
            "image": image.pk,
            "kind": "note",
            "text": "crop the border",
            "source": "human",
            "review": "unreviewed",
            "model_name": "",
            "prompt_version": "",
            "confidence": "",
            "author": "",
        },
    )

    assert response.status_code == 302
    label = Label.objects.get()
    assert (label.text, label.author.username) == ("crop the border", "admin")
