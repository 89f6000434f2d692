"""`manage.py demo` (`make demo`): the whole pipeline on this machine, offline.

Builds the tiny model, serves a sample site of the project's own on loopback,
scrapes it into an album (captions from its alt text and figcaptions), labels
it with Claude when ANTHROPIC_API_KEY is set, builds a dataset version, trains
a tiny LoRA for a few CPU steps, generates with it, and says where to look.
Everything it makes is ordinary data: run it again and it reuses what is the
same (images by content, the dataset by its hash). It writes into the library
IMAGINEER_VAR_DIR names; `make demo` names var/demo/, so the user's own library
stays clean, and the closing lines say how to open the demo's.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test.utils import override_settings
from django.utils.html import escape

from albums.models import Album
from albums.services import album_update
from imagineer_project.cli import run_in_foreground
from imagineer_project.runs import run_execute
from training.generation.runs import generation_job_execute
from training.generation.services import GenerationRequest, generation_job_create
from training.models import DatasetVersion, GenerationJob, Lora
from training.selectors import loss_text

SITE_ALBUM = "Demo: shapes"
GENERATED_ALBUM = "Demo: generated"
TRIGGER_WORD = "shpz"
COLOURS = {
    "red": (210, 40, 40),
    "orange": (240, 140, 20),
    "yellow": (235, 210, 40),
    "green": (40, 160, 70),
    "blue": (40, 90, 210),
    "purple": (130, 50, 170),
}
SHAPES = ("circle", "square", "triangle", "diamond")
# Small and quick on two CPU cores; the tiny model trains at 64 px.
TRAIN_CONFIG: dict[str, Any] = {
    "rank": 4,
    "alpha": 4.0,
    "learning_rate": 5e-3,
    "warmup_steps": 2,
    "gradient_accumulation": 1,
    "batch_size": 4,
    "resolution": 64,
    "checkpoint_every": 0,
    "sample_steps": 10,
    "mixed_precision": "no",
    "seed": 0,
}


# --- the sample site ------------------------------------------------------------------


def _picture(shape: str, colour: tuple[int, int, int], seed: int) -> Any:
    """A 128 px picture of one shape on a speckled ground (the speckles keep
    the perceptual hashes of similar pictures apart)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    ground = tuple(rng.randrange(200, 256) for _ in range(3))
    image = Image.new("RGB", (128, 128), ground)
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.randrange(0, 128, 8), rng.randrange(0, 128, 8)
        shade = tuple(max(0, c - rng.randrange(30, 90)) for c in ground)
        draw.rectangle((x, y, x + 7, y + 7), fill=shade)
    size = rng.randrange(34, 52)
    cx, cy = rng.randrange(size, 128 - size), rng.randrange(size, 128 - size)
    box = (cx - size, cy - size, cx + size, cy + size)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon(
            [(cx, cy - size), (cx - size, cy + size), (cx + size, cy + size)],
            fill=colour,
        )
    else:
        draw.polygon(
            [(cx, cy - size), (cx + size, cy), (cx, cy + size), (cx - size, cy)],
            fill=colour,
        )
    return image


def build_sample_site(folder: Path, count: int = 24) -> list[str]:
    """Write `count` pictures and two gallery pages linked from index.html;
    return the captions."""
    pictures = [(s, c) for s in SHAPES for c in COLOURS][:count]
    (folder / "img").mkdir(parents=True, exist_ok=True)
    figures, captions = [], []
    for n, (shape, colour) in enumerate(pictures):
        name = f"{colour}-{shape}.png"
        _picture(shape, COLOURS[colour], seed=n).save(folder / "img" / name)
        caption = f"a {colour} {shape} on a speckled background"
        captions.append(caption)
        figures.append(
            f'<figure><img src="/img/{name}" alt="{escape(caption)}" width="128" '
            f'height="128"><figcaption>{escape(caption)}</figcaption></figure>'
        )
    half = (len(figures) + 1) // 2
    for page, part in (
        ("gallery-1.html", figures[:half]),
        ("gallery-2.html", figures[half:]),
    ):
        (folder / page).write_text(
            f"<!doctype html><html><head><title>Shapes: {page}</title></head><body>"
            f"<h1>Shapes</h1>{''.join(part)}<p><a href='/'>Home</a></p></body></html>"
        )
    (folder / "index.html").write_text(
        "<!doctype html><html><head><title>Imagineer demo: shapes</title></head>"
        "<body><h1>Shapes</h1><ul><li><a href='/gallery-1.html'>Gallery 1</a></li>"
        "<li><a href='/gallery-2.html'>Gallery 2</a></li></ul></body></html>"
    )
    (folder / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    return captions


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (a free port) in a thread; yield its URL."""
    handler = partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# --- the steps ------------------------------------------------------------------------


def train_demo_lora(
    *, dataset: DatasetVersion, base_model: str, steps: int, stream: TextIO
) -> Lora:
    """Train and register a LoRA on `dataset`, here and now (not on the worker).

    The one place the demo trains: through training.runs, so the run, its
    samples and the registered LoRA are what the admin shows for any run.
    """
    from training.models import TrainingRun
    from training.runs import training_run_execute
    from training.services import training_run_create

    run = training_run_create(
        dataset=dataset,
        base_model=base_model,
        config={**TRAIN_CONFIG, "steps": steps},
        name="Demo: shapes LoRA",
        enqueue=False,
        allow_below_minimum=True,
    )
    run = run_in_foreground(
        run, training_run_execute, stream=stream, unit="step", postfix=loss_text
    )
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise CommandError(f"Training run #{run.pk} {run.status}: {run.error}")
    return Lora.objects.get(source_run=run)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Progress bars and INFO logs of the libraries and the apps off while the
    demo runs: it prints its own steps (-v 2 shows everything)."""
    import logging

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    apps = [
        logging.getLogger(n) for n in ("albums", "scraping", "labeling", "training")
    ]
    before = [(lib.get_verbosity(), lib.is_progress_bar_enabled()) for lib in libraries]
    levels = [app.level for app in apps]
    for library in libraries:
        library.set_verbosity_error()
        library.disable_progress_bar()
    for app in apps:
        app.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for library, (verbosity, bars) in zip(libraries, before, strict=True):
            library.set_verbosity(verbosity)
            if bars:
                library.enable_progress_bar()
        for app, level in zip(apps, levels, strict=True):
            app.setLevel(level)


class Command(BaseCommand):
    help = (
        "Show the whole pipeline offline in a few minutes: build the tiny model, "
        "scrape a sample site served on loopback, (label with Claude if "
        "ANTHROPIC_API_KEY is set), build a dataset, train a tiny LoRA on the "
        "CPU, generate with it, and print where to look."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-model",
            default="",
            help="default: the tiny model, built in var/models/tiny-sd",
        )
        parser.add_argument("--train-steps", type=int, default=60)
        parser.add_argument("--images", type=int, default=4, help="to generate")
        parser.add_argument("--generate-steps", type=int, default=20)

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        self.number, self.total = 0, 6 if settings.ANTHROPIC_API_KEY else 5
        quiet = _quiet() if options["verbosity"] < 2 else contextlib.nullcontext()
        with quiet:
            self._pipeline(options, started)

    def _pipeline(self, options: dict[str, Any], started: float) -> None:
        base_model = self._step("Base model", self._base_model, options)
        album = self._step("Scrape the sample site", self._scrape)
        self._label(album)
        dataset = self._step("Dataset version", self._dataset, album)
        lora = self._step(
            "Train a LoRA", self._train, dataset, base_model, options["train_steps"]
        )
        job = self._step("Generate with it", self._generate, lora, base_model, options)
        self._where(album, dataset, lora, job, time.monotonic() - started)

    # --- steps ------------------------------------------------------------------------

    def _step(self, title: str, work: Callable[..., Any], *args: Any) -> Any:
        self.number += 1
        self.stdout.write(f"[{self.number}/{self.total}] {title}…")
        began = time.monotonic()
        result = work(*args)
        self.stdout.write(f"      done in {time.monotonic() - began:.1f} s")
        return result

    def _base_model(self, options: dict[str, Any]) -> str:
        if options["base_model"]:
            return options["base_model"]
        from training.ml.tiny import build_tiny_pipeline

        folder = build_tiny_pipeline(Path(settings.VAR_DIR) / "models" / "tiny-sd")
        self.stdout.write(
            f"      {folder} (2 M random parameters: its images are noise)"
        )
        return str(folder)

    def _scrape(self) -> Album:
        from scraping.models import ScrapeJob
        from scraping.services import scrape_job_create
        from scraping.tasks import run_scrape_job

        with tempfile.TemporaryDirectory(prefix="imagineer-demo-site-") as folder:
            build_sample_site(Path(folder))
            # Loopback is refused to every other scrape; this one serves it itself.
            with (
                serve_folder(Path(folder)) as url,
                override_settings(SCRAPER_ALLOW_PRIVATE_ADDRESSES=True),
            ):
                self.stdout.write(f"      serving {url} from {folder}")
                job = scrape_job_create(
                    url=url,
                    album_name=SITE_ALBUM,
                    enqueue=False,
                    politeness_delay=0,
                    render=ScrapeJob.Render.NEVER,
                    max_depth=1,
                )
                run_scrape_job(job.pk)
        job.refresh_from_db()
        if job.status != ScrapeJob.Status.SUCCEEDED:
            raise CommandError(f"Scrape job #{job.pk} {job.status}: {job.error}")
        self.stdout.write(f"      {job.message}")
        album = album_update(album=job.album, trigger_word=TRIGGER_WORD)
        return album

    def _label(self, album: Album) -> None:
        if not settings.ANTHROPIC_API_KEY:
            self.stdout.write(
                "      (no ANTHROPIC_API_KEY: the captions are the site's own "
                "figcaptions; set the key to have Claude label the album too)"
            )
            return
        self._step("Label with Claude", self._label_with_claude, album)

    def _label_with_claude(self, album: Album) -> None:
        from labeling.models import LabelingJob
        from labeling.runs import labeling_job_execute
        from labeling.services import labeling_job_create

        job = labeling_job_create(album=album, enqueue=False)
        run_execute(LabelingJob, job.pk, labeling_job_execute)
        job.refresh_from_db()
        self.stdout.write(f"      {job.status}: {job.message or job.error}")

    def _dataset(self, album: Album) -> DatasetVersion:
        from training.datasets.services import dataset_version_build

        dataset = dataset_version_build(albums=[album], name="Demo: shapes")
        self.stdout.write(
            f"      {dataset.captioned_count} captioned images, trigger word "
            f"{dataset.trigger_word!r}, sha256 {dataset.manifest_sha256[:12]}"
        )
        return dataset

    def _train(self, dataset: DatasetVersion, base_model: str, steps: int) -> Lora:
        lora = train_demo_lora(
            dataset=dataset, base_model=base_model, steps=steps, stream=self.stderr._out
        )
        self.stdout.write(f"      registered LoRA {lora.name!r} ({lora.sha256[:12]})")
        return lora

    def _generate(
        self, lora: Lora, base_model: str, options: dict[str, Any]
    ) -> GenerationJob:
        job = generation_job_create(
            request=GenerationRequest(
                prompt="a blue circle on a speckled background",
                loras=((lora.pk, 1.0),),
                seed=1234,
                width=64,
                height=64,
                steps=options["generate_steps"],
                num_images=options["images"],
                album=GENERATED_ALBUM,
                base_model=base_model,
            ),
            enqueue=False,
        )
        run_execute(GenerationJob, job.pk, generation_job_execute)
        job.refresh_from_db()
        if job.status != GenerationJob.Status.SUCCEEDED:
            raise CommandError(f"Generation job #{job.pk} {job.status}: {job.error}")
        self.stdout.write(f"      {job.message}")
        return job

    def _where(
        self,
        album: Album,
        dataset: DatasetVersion,
        lora: Lora,
        job: GenerationJob,
        seconds: float,
    ) -> None:
        run_id = lora.source_run_id
        var = _shown(Path(settings.VAR_DIR))
        run = "make run" if var == "var" else f"IMAGINEER_VAR_DIR={var} make run"
        lines = [
            f"The whole pipeline ran in {seconds:.0f} s, in the library {var}/ "
            "(your own library is untouched).",
            f"Open it with `{run}`, sign in at http://127.0.0.1:8000/admin/ with "
            f"the user name and password in {var}/admin-password.txt (its two "
            "lines) and look at:",
            f"  scraped album     /albums/{album.slug}/  (admin: /admin/albums/album/"
            f"{album.pk}/change/)",
            f"  dataset version   /admin/training/datasetversion/{dataset.pk}/change/",
            f"  training run      /training/runs/{run_id}/  (loss curve, samples)",
            f"  LoRA              /admin/training/lora/{lora.pk}/change/",
            f"  generation        /generate/jobs/{job.pk}/  (album /albums/"
            f"{job.album.slug}/)",
            f"  a generated image /images/{job.image_ids[0]}/  (its recipe, and "
            "'generate again')",
            "The tiny model's weights are random, so its pictures are noise: point "
            "TRAINING_BASE_MODEL and GENERATION_BASE_MODEL at Stable Diffusion 1.5 "
            "for real ones.",
        ]
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))


def _shown(folder: Path) -> str:
    """`folder` as the user types it: relative to the repository when inside."""
    folder = folder.resolve()
    try:
        return str(folder.relative_to(settings.BASE_DIR))
    except ValueError:
        return str(folder)
