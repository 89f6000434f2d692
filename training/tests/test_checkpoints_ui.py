"""Checkpoints people choose between: the run pages' step x prompt grid of
sample images, "use step N" (registers that step's LoRA, once), and the
checkpoints API. Snapshots are real files in the layout training.ml.snapshots
writes (a real trained LoRA, real PNGs); the last test trains a real tiny run.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from imagineer_project.testing import make_image_bytes
from training.ml.snapshots import finish_snapshot, sample_path, snapshot_folder
from training.models import Lora, TrainingRun
from training.registry import lora_register_from_run
from training.runs import run_work_dir
from training.tests.builders import make_tiny_run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("train_env")]

PROMPTS = ["zxq", "zxq, a blocky picture number 0"]


def write_snapshot(
    run: TrainingRun,
    step: int,
    lora_file: Path,
    *,
    loss: float,
    validation_loss: float | None = None,
    samples: int = len(PROMPTS),
) -> Path:
    """A finished snapshot of `run` at `step`, as the trainer leaves it."""
    folder = snapshot_folder(run_work_dir(run) / "out", step)
    shutil.copyfile(lora_file, folder / "lora.safetensors")
    for i in range(samples):
        sample_path(folder, i).write_bytes(
            make_image_bytes("PNG", (64, 64), seed=step * 10 + i)
        )
    finish_snapshot(
        folder,
        {
            "loss": loss,
            "validation_loss": validation_loss,
            "prompts": PROMPTS,
            "seeds": [0, 1],
        },
    )
    return folder


@pytest.fixture
def run_with_checkpoints(trained_lora: Any, second_lora_file: Path) -> TrainingRun:
    """A finished run with snapshots at steps 2 and 4 (different LoRAs); step
    4 lacks its second sample."""
    run = make_tiny_run()
    TrainingRun.objects.filter(pk=run.pk).update(
        status="succeeded", manifest={"sample_prompts": PROMPTS}
    )
    run.refresh_from_db()
    write_snapshot(run, 2, second_lora_file, loss=0.25, validation_loss=0.3)
    write_snapshot(run, 4, Path(trained_lora.lora_path), loss=0.125, samples=1)
    return run


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def grid_rows(html: str) -> list[str]:
    return re.findall(r'<tr class="checkpoint-row".*?</tr>', html, re.S)


def test_the_run_page_shows_a_row_per_checkpoint_and_a_cell_per_prompt(
    staff_client: Any, run_with_checkpoints: TrainingRun
) -> None:
    run = run_with_checkpoints
    page = staff_client.get(f"/training/runs/{run.pk}/").content.decode()
    heads = re.findall(r'<th scope="col" class="checkpoint-prompt">(.*?)</th>', page)
    assert heads == PROMPTS
    rows = grid_rows(page)
    assert [re.search(r'data-step="(\d+)"', r).group(1) for r in rows] == ["2", "4"]
    base = f"/api/training/runs/{run.pk}/checkpoints"
    assert re.findall(r'<img src="([^"]+)"', rows[0]) == [
        f"{base}/2/samples/0",
        f"{base}/2/samples/1",
    ]
    # Step 4's second image is missing: its cell says so, the row keeps its shape.
    assert re.findall(r'<img src="([^"]+)"', rows[1]) == [f"{base}/4/samples/0"]
    assert rows[1].count('class="checkpoint-sample"') == 2
    assert "<td>0.2500</td>" in rows[0] and "<td>0.3000</td>" in rows[0]
    assert "<td>0.1250</td>" in rows[1] and "<td>–</td>" in rows[1]
    assert "Use step 2" in rows[0] and "Use step 4" in rows[1]
    # Named by run, step and index: no path on the worker's disk anywhere.
    assert str(run_work_dir(run)) not in page and "snapshots/" not in page


def test_a_sample_cell_streams_that_steps_png_to_staff_only(
    staff_client: Any, client: Any, run_with_checkpoints: TrainingRun
) -> None:
    run = run_with_checkpoints
    url = f"/api/training/runs/{run.pk}/checkpoints/2/samples/1"
    response = staff_client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    expected = run_work_dir(run) / "out/snapshots/step-000002/samples/sample-01.png"
    assert b"".join(response.streaming_content) == expected.read_bytes()
    missing = staff_client.get(f"/api/training/runs/{run.pk}/checkpoints/4/samples/1")
    assert missing.status_code == 404
    assert missing.json()["error"] == (
        f"No sample 1 at step 4 of training run {run.pk}."
    )
    client.logout()
    assert client.get(url).status_code == 401


def test_use_step_registers_that_steps_lora_once_and_lands_on_it(
    staff_client: Any, run_with_checkpoints: TrainingRun, second_lora_file: Path
) -> None:
    run = run_with_checkpoints
    page = staff_client.get(f"/training/runs/{run.pk}/").content.decode()
    # The buttons post the page's own form, which sits outside the report.
    action = re.search(r'formaction="([^"]+)">Use step 2<', page).group(1)
    assert '<form id="checkpoint-use" method="post"' in page

    response = staff_client.post(action)
    lora = Lora.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/training/lora/{lora.pk}/change/"
    snapshot_file = run_work_dir(run) / "out/snapshots/step-000002/lora.safetensors"
    assert lora.sha256 == sha256_of(snapshot_file) == sha256_of(second_lora_file)
    assert (lora.source_run, lora.source_step, lora.name) == (run, 2, "blocks step 2")
    assert (lora.trigger_words, lora.family) == (["zxq"], "sd1")

    # A second click finds the same LoRA; the row now names it.
    assert staff_client.post(action)["Location"] == response["Location"]
    assert Lora.objects.count() == 1
    page = staff_client.get(f"/training/runs/{run.pk}/").content.decode()
    row = grid_rows(page)[0]
    assert "Use step 2" not in row and ">blocks step 2</a>" in row


def test_a_step_without_a_snapshot_is_not_registered(
    staff_client: Any, run_with_checkpoints: TrainingRun
) -> None:
    run = run_with_checkpoints
    response = staff_client.post(f"/training/runs/{run.pk}/checkpoints/3/use")
    assert response["Location"] == f"/admin/training/trainingrun/{run.pk}/change/"
    assert not Lora.objects.exists()
    api = staff_client.post(f"/api/training/runs/{run.pk}/checkpoints/3/register")
    assert api.status_code == 404
    assert api.json()["error"] == (
        f"Training run {run.pk} has no checkpoint at step 3 (checkpoints: 2, 4)."
    )


def test_the_final_lora_and_its_last_checkpoint_are_one_lora(
    staff_client: Any, run_with_checkpoints: TrainingRun, trained_lora: Any
) -> None:
    """The run registers its final LoRA (step 4, from the file's ss_steps);
    "use step 4" then finds it rather than making a copy."""
    run = run_with_checkpoints
    final = lora_register_from_run(run=run, lora_path=Path(trained_lora.lora_path))
    assert (final.name, final.source_step) == ("blocks", 6)  # trained 6 steps
    response = staff_client.post(f"/api/training/runs/{run.pk}/checkpoints/4/register")
    assert response.json()["id"] == final.pk  # the same bytes: one LoRA
    assert Lora.objects.count() == 1


def test_the_admin_run_page_shows_the_grid_and_its_form_outside_the_change_form(
    admin_client: Any, run_with_checkpoints: TrainingRun
) -> None:
    run = run_with_checkpoints
    page = admin_client.get(f"/admin/training/trainingrun/{run.pk}/change/")
    html = page.content.decode()
    assert len(grid_rows(html)) == 2
    # A form inside the change form would be dropped by the browser.
    change_form_end = html.index("</form>", html.index('id="trainingrun_form"'))
    assert html.index('<form id="checkpoint-use"') > change_form_end
    assert "Use step 4" in html


def test_the_checkpoints_api_lists_steps_losses_and_urls_and_registers(
    staff_client: Any, run_with_checkpoints: TrainingRun, trained_lora: Any
) -> None:
    run = run_with_checkpoints
    base = f"/api/training/runs/{run.pk}/checkpoints"
    listed = staff_client.get(base)
    assert listed.status_code == 200
    assert listed.json() == [
        {
            "step": 2,
            "loss": 0.25,
            "validation_loss": 0.3,
            "samples": [
                {"index": 0, "prompt": PROMPTS[0], "url": f"{base}/2/samples/0"},
                {"index": 1, "prompt": PROMPTS[1], "url": f"{base}/2/samples/1"},
            ],
            "lora_id": None,
            "lora_url": f"{base}/2/lora",
            "register_url": f"{base}/2/register",
        },
        {
            "step": 4,
            "loss": 0.125,
            "validation_loss": None,
            "samples": [
                {"index": 0, "prompt": PROMPTS[0], "url": f"{base}/4/samples/0"},
                None,
            ],
            "lora_id": None,
            "lora_url": f"{base}/4/lora",
            "register_url": f"{base}/4/register",
        },
    ]
    registered = staff_client.post(f"{base}/4/register")
    assert registered.status_code == 200
    body = registered.json()
    shown = (body["name"], body["family"], body["source_step"])
    assert shown == ("blocks step 4", "sd1", 4)
    assert body["sha256"] == sha256_of(Path(trained_lora.lora_path))
    assert staff_client.post(f"{base}/4/register").json()["id"] == body["id"]
    assert staff_client.get(base).json()[1]["lora_id"] == body["id"]


def test_a_checkpoints_lora_downloads_before_it_is_registered(
    staff_client: Any, run_with_checkpoints: TrainingRun, second_lora_file: Path
) -> None:
    run = run_with_checkpoints
    response = staff_client.get(f"/api/training/runs/{run.pk}/checkpoints/2/lora")
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="blocks-step-2.safetensors"'
    )
    assert b"".join(response.streaming_content) == second_lora_file.read_bytes()


def test_a_run_without_snapshots_shows_no_grid(staff_client: Any) -> None:
    run = make_tiny_run()
    page = staff_client.get(f"/training/runs/{run.pk}/").content.decode()
    assert "Checkpoints" not in page and not grid_rows(page)
    assert staff_client.get(f"/api/training/runs/{run.pk}/checkpoints").json() == []
