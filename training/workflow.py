"""What training adds to the admin home (Train, Generate) and to object pages:
an album's "Train on" and "Generate into", a run's or LoRA's "Generate with
this LoRA", a generated image's "Generate again" (imagineer_project.workflow).
Registered from TrainingConfig.ready()."""

from __future__ import annotations

from django.http import HttpRequest

from albums.models import Album, Image
from imagineer_project.workflow import (
    Count,
    admin_url,
    count_rows,
    register_counts,
    register_link,
    register_onward,
)
from training.models import (
    DatasetVersion,
    GenerationJob,
    ImageRecipe,
    Lora,
    SetRun,
    TrainingRun,
)
from training.selectors import run_lora

GENERATE = "training.add_generationjob"


def train_counts() -> list[Count]:
    datasets, runs, loras = count_rows(
        DatasetVersion.objects.all(), TrainingRun.objects.all(), Lora.objects.all()
    )
    return [
        Count(
            "dataset versions",
            datasets,
            admin_url("admin:training_datasetversion_changelist"),
            "dataset version",
        ),
        Count(
            "training runs",
            runs,
            admin_url("admin:training_trainingrun_changelist"),
            "training run",
        ),
        Count("LoRAs", loras, admin_url("admin:training_lora_changelist"), "LoRA"),
    ]


def generate_counts() -> list[Count]:
    jobs, set_runs, images = count_rows(
        GenerationJob.objects.all(), SetRun.objects.all(), ImageRecipe.objects.all()
    )
    return [
        Count(
            "generation jobs",
            jobs,
            admin_url("admin:training_generationjob_changelist"),
            "generation job",
        ),
        Count(
            "set runs",
            set_runs,
            admin_url("admin:training_setrun_changelist"),
            "set run",
        ),
        Count("images generated", images, one="image generated"),
    ]


def _generate_url(query: str) -> str:
    return admin_url("admin:training_generationjob_add", query=query)


def album_train(request: HttpRequest, album: Album) -> list[tuple[str, str]]:
    if not request.user.has_perm("training.add_trainingrun"):
        return []
    url = admin_url("admin:training_trainingrun_add", query=f"album={album.pk}")
    return [("Train on", url)]


def album_generate(request: HttpRequest, album: Album) -> list[tuple[str, str]]:
    if not request.user.has_perm(GENERATE):
        return []
    return [("Generate into", _generate_url(f"album={album.pk}"))]


def lora_generate(request: HttpRequest, lora: Lora) -> list[tuple[str, str]]:
    if not request.user.has_perm(GENERATE):
        return []
    return [("Generate with this LoRA", _generate_url(f"lora={lora.pk}"))]


def run_generate(request: HttpRequest, run: TrainingRun) -> list[tuple[str, str]]:
    # Only a run that made a LoRA: its latest registered step's.
    if not request.user.has_perm(GENERATE):
        return []
    lora = run_lora(run)
    if lora is None:
        return []
    return [("Generate with this LoRA", _generate_url(f"lora={lora.pk}"))]


def image_generate_again(request: HttpRequest, image: Image) -> list[tuple[str, str]]:
    if not request.user.has_perm(GENERATE):
        return []
    if not ImageRecipe.objects.filter(image=image).exists():
        return []
    return [("Generate again", _generate_url(f"from_image={image.pk}"))]


def register() -> None:
    register_counts("train", train_counts, permission="training.view_trainingrun")
    register_counts(
        "generate", generate_counts, permission="training.view_generationjob"
    )
    register_link(
        "train",
        "Train a LoRA",
        "admin:training_trainingrun_add",
        permission="training.add_trainingrun",
        order=10,
    )
    register_link(
        "train",
        "Dataset versions",
        "admin:training_datasetversion_changelist",
        permission="training.view_datasetversion",
        order=20,
    )
    register_link(
        "generate",
        "Generate",
        "admin:training_generationjob_add",
        permission=GENERATE,
        order=10,
    )
    register_link(
        "generate",
        "Make a set",
        "admin:training_setrun_add",
        permission="training.add_setrun",
        order=20,
    )
    register_onward("albums.Album", album_train, order=50)
    register_onward("albums.Album", album_generate, order=60)
    register_onward("training.TrainingRun", run_generate)
    register_onward("training.Lora", lora_generate)
    register_onward("albums.Image", image_generate_again)
