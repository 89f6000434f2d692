"""Generated images and set albums are private unless GENERATED_VISIBILITY says
public; an album the user picked keeps its own visibility."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from albums.models import Album, Visibility
from albums.services import album_create
from training.generation.services import generation_job_create
from training.sets.services import SetRequest, set_run_create
from training.tests.builders import QUIET, run_job, small_request

pytestmark = [pytest.mark.django_db, QUIET]


def generated(**overrides: Any) -> tuple[Album, int]:
    job = run_job(generation_job_create(request=small_request(**overrides)))
    assert job.status == "succeeded", job.error
    return job.album, job.image_ids[0]


def test_a_generated_image_is_private_to_visitors_by_default(
    client: Any, admin_client: Any, gen_env: Path
) -> None:
    album, image_id = generated()
    assert (album.name, album.visibility) == ("Generated", Visibility.PRIVATE)
    assert client.get(f"/api/images/{image_id}").status_code == 404
    assert client.get(f"/images/{image_id}/").status_code == 404
    assert admin_client.get(f"/images/{image_id}/").status_code == 200


def test_generated_visibility_public_makes_them_public(
    client: Any, gen_env: Path, settings: Any
) -> None:
    settings.GENERATED_VISIBILITY = "public"
    album, image_id = generated(album="Shared")
    assert album.visibility == Visibility.PUBLIC
    assert client.get(f"/api/images/{image_id}").status_code == 200


def test_an_album_the_user_picked_keeps_its_visibility(
    client: Any, gen_env: Path
) -> None:
    picked = album_create(name="Portfolio", visibility=Visibility.PUBLIC)
    album, image_id = generated(album="Portfolio")
    assert album == picked
    album.refresh_from_db()
    assert album.visibility == Visibility.PUBLIC
    assert client.get(f"/api/images/{image_id}").status_code == 200


def test_a_new_set_album_is_private_by_default(db: Any) -> None:
    request = SetRequest(
        template="zodiac", theme="Neon", album="Signs", seed=5, slots=("aries",)
    )
    set_run_create(request=request, enqueue=False)
    assert Album.objects.get(name="Signs").visibility == Visibility.PRIVATE
