"""The admin home as a workflow (imagineer_project.workflow): the five stages
with their counts and start links, the jobs of every kind, Django's internals
at the bottom; and the onward links of object pages."""

from __future__ import annotations

from typing import Any

import pytest
from bs4 import BeautifulSoup
from django.db import connection
from django.template import Context, Template
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from albums.models import Image
from albums.tests.builders import make_album, make_image
from imagineer_project.runs import BaseRun
from labeling.services import label_create
from scraping.tests.builders import make_job
from training.models import ImageRecipe, Lora
from training.tests.builders import make_tiny_run

pytestmark = pytest.mark.django_db

HOME = "/admin/"
Status = BaseRun.Status


def soup(response: Any) -> BeautifulSoup:
    assert response.status_code == 200
    return BeautifulSoup(response.text, "html.parser")


def stage(page: BeautifulSoup, key: str) -> dict[str, Any]:
    panel = page.select_one(f"#stage-{key}")
    return {
        "counts": [
            li.get_text(" ", strip=True) for li in panel.select(".workflow-counts li")
        ],
        "links": {
            a.get_text(strip=True): a["href"] for a in panel.select(".workflow-links a")
        },
    }


def test_the_home_page_walks_the_five_stages_in_order(admin_client: Any) -> None:
    page = soup(admin_client.get(HOME))

    titles = [h2.get_text(" ", strip=True) for h2 in page.select(".workflow-stage h2")]
    assert titles == ["1 Collect", "2 Label", "3 Curate", "4 Train", "5 Generate"]
    assert stage(page, "collect")["links"] == {
        "Upload into an album": "/admin/albums/album/",
        "New album": "/admin/albums/album/add/",
        "New scrape": "/admin/scraping/scrapejob/add/",
        "Legacy import": "/admin/legacy/importrun/add/",
    }
    assert stage(page, "label")["links"]["Label with Claude"] == "/admin/albums/album/"
    assert "Review grid" in stage(page, "curate")["links"]
    assert stage(page, "train")["links"]["Train a LoRA"] == (
        "/admin/training/trainingrun/add/"
    )
    assert stage(page, "generate")["links"]["Generate"] == (
        "/admin/training/generationjob/add/"
    )


def test_each_stage_counts_what_it_holds(admin_client: Any) -> None:
    album = make_album(name="Cards")
    first, second, third = (make_image(album=album, seed=n) for n in (1, 2, 3))
    label_create(image=first, kind="caption", text="a red card")
    Image.objects.filter(pk=first.pk).update(review_status="approved")
    Image.objects.filter(pk=second.pk).update(review_status="rejected")
    make_job()

    page = soup(admin_client.get(HOME))

    assert stage(page, "collect")["counts"] == [
        "1 album",
        "3 images",
        "1 scrape job",
        "0 legacy imports",
    ]
    assert stage(page, "label")["counts"] == [
        "1 image captioned",
        "2 not captioned yet",
    ]
    assert stage(page, "curate")["counts"] == [
        "1 unreviewed",
        "1 approved",
        "1 rejected",
    ]
    unreviewed = page.select_one("#stage-curate .workflow-counts a")["href"]
    assert unreviewed == "/admin/albums/image/?review_status__exact=unreviewed"
    assert stage(page, "train")["counts"] == [
        "0 dataset versions",
        "0 training runs",
        "0 LoRAs",
    ]
    assert stage(page, "generate")["counts"] == [
        "0 generation jobs",
        "0 set runs",
        "0 images generated",
    ]


def test_the_home_page_costs_the_same_queries_whatever_the_library_holds(
    admin_client: Any,
) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(HOME).status_code == 200
        return len(captured)

    queries()  # the first look records the disk alert rows
    empty = queries()
    album = make_album(name="Cards")
    for n in range(4):
        image = make_image(album=album, seed=n)
        label_create(image=image, kind="caption", text=f"card {n}")
    for status in (Status.QUEUED, Status.RUNNING, Status.FAILED, Status.SUCCEEDED):
        make_job(status=status, finished_at=timezone.now())

    assert queries() == empty


def test_the_panels_cost_a_handful_of_queries(
    admin_user: Any, django_assert_num_queries: Any
) -> None:
    from imagineer_project.workflow import workflow_runs, workflow_stages

    request = RequestFactory().get(HOME)
    request.user = admin_user

    # One per counter (seven), and one UNION for each of the two job tables.
    with django_assert_num_queries(9):
        workflow_stages(request)
        workflow_runs(request)


def test_the_jobs_panel_shows_active_jobs_with_progress_and_the_last_ended(
    admin_client: Any,
) -> None:
    running = make_job(
        status=Status.RUNNING,
        progress_done=3,
        progress_total=12,
        message="Fetching page 3",
    )
    failed = make_job(
        status=Status.FAILED, message="Start URL refused", finished_at=timezone.now()
    )

    page = soup(admin_client.get(HOME))

    active = page.select_one("tr.job-active")
    link = active.select_one("a")
    assert link.get_text() == f"Scrape job #{running.pk}"
    assert link["href"] == f"/admin/scraping/scrapejob/{running.pk}/change/"
    assert active.select_one("progress")["value"] == "25"
    assert "25% (3 of 12)" in active.get_text(" ", strip=True)
    assert "Fetching page 3" in active.get_text()
    ended = page.select_one("tr.job-ended")
    assert ended.select_one("a").get_text() == f"Scrape job #{failed.pk}"
    assert ended.select_one(".job-status").get_text() == "Failed"
    assert "Start URL refused" in ended.get_text()


def test_no_active_job_says_so(admin_client: Any) -> None:
    page = soup(admin_client.get(HOME))

    assert "No job is queued or running." in page.select_one("#workflow-jobs").text
    assert page.select_one("#disk-usage") is not None


def test_djangos_internals_come_last_under_administration(admin_client: Any) -> None:
    text = soup(admin_client.get(HOME)).select_one("#content-main").get_text()

    albums = text.index("Albums and images")
    administration = text.index("Administration")
    assert albums < text.index("Training and generation") < administration
    assert administration < text.index("Authentication and Authorization")
    assert administration < text.index("Django Q")
    assert administration < text.index("API tokens")


def test_every_admin_pages_sidebar_follows_the_workflow(admin_client: Any) -> None:
    response = admin_client.get("/admin/albums/album/")

    sidebar = [app["app_label"] for app in response.context["available_apps"]]
    assert sidebar == [
        "albums",
        "labeling",
        "scraping",
        "training",
        "legacy",
        "imagineer",
        "auth",
        "django_q",
    ]


# --- onward links ----------------------------------------------------------------


def tools(response: Any) -> dict[str, str]:
    page = soup(response)
    return {a.get_text(strip=True): a["href"] for a in page.select(".object-tools a")}


def test_an_album_page_links_onward_through_the_workflow(admin_client: Any) -> None:
    album = make_album(name="Cards")

    page = soup(admin_client.get(f"/admin/albums/album/{album.pk}/change/"))

    onward = [(a.get_text(strip=True), a["href"]) for a in page.select("a.onward-link")]
    pk = album.pk
    assert onward == [
        ("Upload images", f"/admin/albums/album/{pk}/upload/"),
        ("Scrape into", f"/admin/scraping/scrapejob/add/?album={pk}"),
        ("Label with Claude", f"/admin/albums/album/{pk}/label/"),
        ("Review", f"/admin/albums/image/review/?album={pk}"),
        ("Train on", f"/admin/training/trainingrun/add/?album={pk}"),
        ("Generate into", f"/admin/training/generationjob/add/?album={pk}"),
    ]


def test_a_user_sees_only_the_onward_links_they_may_follow(
    client: Any, django_user_model: Any
) -> None:
    from django.contrib.auth.models import Permission

    album = make_album(name="Cards")
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_album", "add_scrapejob"])
    )
    client.force_login(viewer)

    page = soup(client.get(f"/admin/albums/album/{album.pk}/change/"))

    assert [a.get_text() for a in page.select("a.onward-link")] == ["Scrape into"]


def lora(**fields: Any) -> Lora:
    return Lora.objects.create(
        **{"name": "blocks", "file": "loras/a.safetensors", "sha256": "a" * 64} | fields
    )


def test_a_lora_page_offers_generate_with_this_lora(admin_client: Any) -> None:
    made = lora()

    links = tools(admin_client.get(f"/admin/training/lora/{made.pk}/change/"))

    assert links["Generate with this LoRA"] == (
        f"/admin/training/generationjob/add/?lora={made.pk}"
    )


def test_a_run_offers_generate_with_its_lora_once_it_has_one(
    admin_client: Any, settings: Any
) -> None:
    settings.TRAINING_MIN_CAPTIONED = 3
    run = make_tiny_run()
    page = f"/admin/training/trainingrun/{run.pk}/change/"

    before = tools(admin_client.get(page))
    made = lora(source_run=run)
    after = tools(admin_client.get(page))

    assert "Generate with this LoRA" not in before
    assert after["Generate with this LoRA"] == (
        f"/admin/training/generationjob/add/?lora={made.pk}"
    )


def test_a_generated_image_offers_generate_again(admin_user: Any) -> None:
    made = make_image(seed=1)
    uploaded = make_image(seed=2)
    ImageRecipe.objects.create(image=made, recipe={"prompt": "a cat", "seed": 7})
    request = RequestFactory().get("/")
    request.user = admin_user
    tag = Template("{% load imagineer_workflow %}{% onward_links obj %}")

    def links(image: Image) -> str:
        return tag.render(Context({"request": request, "obj": image})).strip()

    assert links(made) == (
        f'<li><a href="/admin/training/generationjob/add/?from_image={made.pk}"'
        ' class="onward-link">Generate again</a></li>'
    )
    assert links(uploaded) == ""


def test_a_generated_images_admin_page_shows_generate_again(admin_client: Any) -> None:
    made = make_image(seed=1)
    uploaded = make_image(seed=2)
    ImageRecipe.objects.create(image=made, recipe={"prompt": "a cat", "seed": 7})

    made_tools = tools(admin_client.get(f"/admin/albums/image/{made.pk}/change/"))
    uploaded_tools = tools(
        admin_client.get(f"/admin/albums/image/{uploaded.pk}/change/")
    )

    assert made_tools["Generate again"] == (
        f"/admin/training/generationjob/add/?from_image={made.pk}"
    )
    assert "Generate again" not in uploaded_tools


# --- favicon ---------------------------------------------------------------------


def test_the_favicon_answers_and_every_page_links_it(
    client: Any, admin_client: Any
) -> None:
    icon = client.get("/favicon.ico")

    assert icon.status_code == 302
    assert icon["Location"] == "/static/imagineer/favicon.svg"
    for page in (client.get("/"), admin_client.get(HOME), client.get("/admin/login/")):
        link = soup(page).select_one('link[rel="icon"]')
        assert link["href"] == "/static/imagineer/favicon.svg"
