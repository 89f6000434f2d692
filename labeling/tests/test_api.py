"""/api/images/{id}/label(s), /api/albums/{id}/label, /api/labels/{id},
/api/labeling-jobs: start, watch, cancel, edit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from albums.tests.builders import make_album, make_image
from imagineer_project.testing.fake_anthropic import refusal, tool_reply
from labeling.models import Label, LabelingJob
from labeling.services import label_create

pytestmark = pytest.mark.django_db


def post(client: Any, url: str, body: dict | None = None, method: str = "post") -> Any:
    return getattr(client, method)(
        url, data=json.dumps(body or {}), content_type="application/json"
    )


def test_labeling_an_album_runs_a_job_to_watch(
    call_as, fake_anthropic, django_capture_on_commit_callbacks, settings
):
    settings.LABELING_CONCURRENCY = 1  # the refusal goes to the second image
    album = make_album(name="Moon deck")
    images = [make_image(album=album, seed=i) for i in range(3)]
    fake_anthropic.queue(tool_reply("a"), refusal(), tool_reply("c"))
    client = call_as("token")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            client,
            f"/api/albums/{album.slug}/label",
            {"style": "training", "budget": "5", "limit": 3},
        )
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert response["Location"] == f"/api/labeling-jobs/{job_id}"

    body = client.get(f"/api/labeling-jobs/{job_id}").json()
    assert body["status"] == "succeeded"
    assert (body["labeled_count"], body["failed_count"]) == (2, 1)
    assert (body["progress_done"], body["progress_total"], body["percent"]) == (
        3,
        3,
        100,
    )
    assert body["budget_usd"] == "5.0000"
    assert body["input_tokens"] == 4500 and body["cost_usd"] == "0.017175"
    assert body["failures"] == [
        {
            "image": images[1].pk,
            "reason": "Claude declined to label this image (refusal).",
            "created": body["failures"][0]["created"],
        }
    ]
    listed = client.get("/api/labeling-jobs?status=succeeded").json()
    assert [job["id"] for job in listed["items"]] == [job_id]
    assert client.get("/api/labeling-jobs?status=failed").json()["items"] == []


def test_labeling_one_image(
    call_as, fake_anthropic, django_capture_on_commit_callbacks
):
    image = make_image(seed=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            call_as("staff"),
            f"/api/images/{image.pk}/label",
            {"style": "description", "force": True},
        )
    assert response.status_code == 202
    job = LabelingJob.objects.get()
    assert (job.status, job.style, job.force, job.image_ids) == (
        "succeeded",
        "description",
        True,
        [image.pk],
    )
    assert image.labels.filter(kind="description", source="claude").count() == 1


@pytest.mark.parametrize(
    ("caller", "status"), [("anonymous", 401), ("user", 403), ("token", 202)]
)
def test_only_staff_start_labeling(call_as, fake_anthropic, caller, status):
    image = make_image(seed=1)
    response = post(call_as(caller), f"/api/images/{image.pk}/label")
    assert response.status_code == status


def test_without_an_api_key_labeling_says_so_and_queues_nothing(call_as):
    album = make_album()
    response = post(call_as("token"), f"/api/albums/{album.pk}/label")
    assert response.status_code == 503
    body = response.json()
    assert body["error_code"] == "labeling_not_configured"
    assert "set ANTHROPIC_API_KEY" in body["error"]
    assert not LabelingJob.objects.exists()


@pytest.mark.parametrize(
    "body",
    [{"style": "poem"}, {"budget": 0}, {"budget": "-1"}, {"limit": 0}],
)
def test_bad_job_requests_are_422(call_as, fake_anthropic, body):
    album = make_album()
    response = post(call_as("token"), f"/api/albums/{album.pk}/label", body)
    assert response.status_code == 422
    assert response.json()["error_code"] == "validation_error"


def test_unknown_targets_are_404(call_as, fake_anthropic):
    client = call_as("token")
    assert post(client, "/api/albums/nope/label").status_code == 404
    assert post(client, "/api/images/999/label").status_code == 404
    assert client.get("/api/labeling-jobs/999").status_code == 404


def test_cancelling_an_ended_job_is_a_conflict(call_as, fake_anthropic):
    job = LabelingJob.objects.create(status="succeeded", model_name="m")
    response = post(call_as("token"), f"/api/labeling-jobs/{job.pk}/cancel")
    assert response.status_code == 409
    queued = LabelingJob.objects.create(model_name="m")
    response = post(call_as("token"), f"/api/labeling-jobs/{queued.pk}/cancel")
    assert response.json()["status"] == "cancelled"


# --- label editing ----------------------------------------------------------------


def test_image_labels_show_the_caption_that_trains(call_as):
    image = make_image(seed=1)
    claude_caption = label_create(
        image=image, kind="caption", text="a fox", source="claude"
    )
    label_create(image=image, kind="alt_text", text="Fox (alt)", source="html")
    body = call_as("anonymous").get(f"/api/images/{image.pk}/labels").json()
    assert body["training_caption"]["text"] == "a fox"
    assert body["training_caption"]["label_id"] == claude_caption.pk
    assert body["training_caption"]["reason"] == "newest caption from Claude"
    assert [lb["kind"] for lb in body["labels"]] == ["alt_text", "caption"]


def test_visitors_do_not_see_who_wrote_a_label(call_as, staff_user):
    image = make_image(seed=1)
    label_create(image=image, kind="caption", text="a fox", author=staff_user)
    url = f"/api/images/{image.pk}/labels"
    assert call_as("anonymous").get(url).json()["labels"][0]["author"] is None
    assert call_as("token").get(url).json()["labels"][0]["author"] == "staff"


def test_hidden_images_hide_their_labels(call_as):
    image = make_image(seed=1, is_nsfw=True)
    assert call_as("anonymous").get(f"/api/images/{image.pk}/labels").status_code == 404
    assert call_as("staff").get(f"/api/images/{image.pk}/labels").status_code == 200


def test_a_person_adds_edits_reviews_and_deletes_labels(call_as, staff_user):
    image = make_image(seed=1)
    client = call_as("token")
    created = post(
        client, f"/api/images/{image.pk}/labels", {"kind": "caption", "text": " a owl "}
    )
    assert created.status_code == 201
    label = created.json()
    assert (label["text"], label["source"], label["review"], label["author"]) == (
        "a owl",
        "human",
        "approved",
        staff_user.username,
    )
    claude_tag = label_create(image=image, kind="tag", text="bird", source="claude")
    patched = post(
        client, f"/api/labels/{claude_tag.pk}", {"text": "barn owl"}, method="patch"
    ).json()
    assert (patched["text"], patched["source"], patched["author"]) == (
        "barn owl",
        "human",
        staff_user.username,
    )
    reviewed = post(
        client, f"/api/labels/{label['id']}", {"review": "rejected"}, method="patch"
    ).json()
    assert (reviewed["review"], reviewed["text"]) == ("rejected", "a owl")
    assert client.delete(f"/api/labels/{label['id']}").status_code == 204
    assert list(image.labels.values_list("text", flat=True)) == ["barn owl"]
    assert client.delete(f"/api/labels/{label['id']}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"kind": "caption", "text": "   "}, {"kind": "mood", "text": "x"}, {"text": "x"}],
)
def test_bad_labels_are_422(call_as, body):
    image = make_image(seed=1)
    response = post(call_as("token"), f"/api/images/{image.pk}/labels", body)
    assert response.status_code == 422
    assert not Label.objects.exists()


@pytest.mark.parametrize(("caller", "status"), [("anonymous", 401), ("user", 403)])
def test_only_staff_edit_labels(call_as, caller, status):
    image = make_image(seed=1)
    label = label_create(image=image, kind="tag", text="fox")
    client = call_as(caller)
    assert (
        post(client, f"/api/images/{image.pk}/labels", {"kind": "tag", "text": "x"})
    ).status_code == status
    assert (
        post(client, f"/api/labels/{label.pk}", {"text": "y"}, method="patch")
    ).status_code == status
    assert client.delete(f"/api/labels/{label.pk}").status_code == status
    label.refresh_from_db()
    assert label.text == "fox"
