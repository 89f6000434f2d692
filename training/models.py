"""Dataset versions, training runs and the LoRA registry."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from imagineer_project.runs import BaseRun


class DatasetVersion(models.Model):
    """An immutable snapshot of what a run trains on: images, the caption each
    trains with, the trigger word. The sha256 of its manifest identifies it; the
    same albums with the same captions give the same version (built once)."""

    name = models.CharField(max_length=200)
    albums = models.ManyToManyField(
        "albums.Album", related_name="dataset_versions", blank=True
    )
    trigger_word = models.CharField(max_length=100, blank=True)
    include_nsfw = models.BooleanField(default=False)
    # {"format": 1, "trigger_word", "albums": [...], "items": [{"image_id",
    #  "sha256", "file", "width", "height", "caption", "caption_source"}]}
    manifest = models.JSONField()
    manifest_sha256 = models.CharField(max_length=64, unique=True)
    image_count = models.PositiveIntegerField(default=0)
    captioned_count = models.PositiveIntegerField(default=0)
    warnings = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.manifest_sha256[:12]})"


class DatasetBuild(BaseRun):
    """Building a dataset version from albums on the worker (the admin's build
    form): reading every caption of a large album takes a while."""

    name = models.CharField(max_length=200, blank=True)
    # In the order chosen: it is the dataset's order.
    album_ids = models.JSONField(default=list)
    # Unless `trigger_word_given`, the first chosen album's trigger word.
    trigger_word = models.CharField(max_length=100, blank=True)
    trigger_word_given = models.BooleanField(default=False)
    include_nsfw = models.BooleanField(default=False)
    # {album id (a JSON key, so a string): times its images count per epoch};
    # unlisted albums count once (kohya's N_concept folders).
    album_repeats = models.JSONField(default=dict, blank=True)
    dataset = models.ForeignKey(
        DatasetVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="builds",
    )
    # Whether this build made the version (False: the identical one existed).
    created_version = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    task_path = "training.datasets.tasks.run_dataset_build"

    class Meta(BaseRun.Meta):
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Dataset build #{self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("admin:training_datasetbuild_change", args=[self.pk])


class DatasetExport(BaseRun):
    """A dataset version written as a zip in storage, once per layout and
    repeats; downloads serve the stored file."""

    class Layout(models.TextChoices):
        FLAT = "flat", "flat PNG + .txt"
        KOHYA = "kohya", "kohya N_concept folder"
        JSONL = "jsonl", "metadata.jsonl"

    dataset = models.ForeignKey(
        DatasetVersion, on_delete=models.CASCADE, related_name="exports"
    )
    layout = models.CharField(max_length=8, choices=Layout)
    repeats = models.PositiveIntegerField(default=10)
    # The zip's storage key (exports/...), once written.
    file = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    task_path = "training.datasets.tasks.run_dataset_export"

    class Meta(BaseRun.Meta):
        ordering = ["-id"]
        constraints = [
            # The same export is made once; asking again finds it.
            models.UniqueConstraint(
                fields=["dataset", "layout", "repeats"], name="dataset_export_once"
            ),
        ]

    def __str__(self) -> str:
        return f"Export #{self.pk} of dataset {self.dataset_id} ({self.layout})"

    def get_absolute_url(self) -> str:
        return reverse("admin:training_datasetexport_change", args=[self.pk])


class TrainingRun(BaseRun):
    """A LoRA training run on the `gpu` cluster; resumable from its checkpoints."""

    name = models.CharField(max_length=200)
    dataset = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="runs"
    )
    base_model = models.CharField(
        max_length=500, help_text="A local diffusers folder or a hub id."
    )
    # The validated trainer config (training.ml.config.TrainConfig fields).
    config = models.JSONField(default=dict)
    # What reproduces the run: dataset hash, base model id and hash, library
    # versions, seed, config. Written when training starts.
    manifest = models.JSONField(default=dict, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    # Latest step report (progress_done/progress_total count optimizer steps).
    loss = models.FloatField(null=True, blank=True)
    learning_rate = models.FloatField(null=True, blank=True)
    images_per_second = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    # [[step, loss], ...], thinned to a few hundred points for the chart.
    loss_curve = models.JSONField(default=list, blank=True)
    log_tail = models.TextField(blank=True)
    last_checkpoint_step = models.PositiveIntegerField(default=0)
    # When the run was handed to the gpu worker; empty for a run created without
    # starting it (the admin's and the API's "start" hand it over).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    sample_album = models.ForeignKey(
        "albums.Album",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    task_path = "training.tasks.run_training"
    task_cluster = "gpu"

    class Meta(BaseRun.Meta):
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Training run #{self.pk} {self.name} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("admin:training_trainingrun_change", args=[self.pk])

    @property
    def resume_note(self) -> str:  # type: ignore[override]
        """What run_retry says: a run whose work dir was purged starts over."""
        if self.last_checkpoint_step:
            return "Queued again; resumes from the latest checkpoint"
        return "Queued again; starts from the first step (no checkpoint is kept)"


class StepTiming(models.Model):
    """How long one optimizer step took on a device, measured by a real run:
    what training time estimates scale from (training.estimates)."""

    base_model = models.CharField(max_length=500)  # as shown (paths.base_model_name)
    device = models.CharField(max_length=50)  # "cuda", "mps", "cpu"
    resolution = models.PositiveIntegerField()
    images_per_step = models.PositiveIntegerField()  # batch × accumulation
    # Of a step with TrainConfig's default options: the measured step divided by
    # training.estimates.step_cost(the run's config).
    seconds_per_step = models.FloatField()
    # From the run's start to its first step: loading the model, encoding.
    load_seconds = models.FloatField(default=0)
    measured_at = models.DateTimeField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One measurement per shape; a later run overwrites it.
            models.UniqueConstraint(
                fields=["base_model", "device", "resolution", "images_per_step"],
                name="steptiming_one_per_shape",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.base_model} on {self.device}: {self.seconds_per_step:.3f} s/step"


class Lora(models.Model):
    """A registered LoRA file (kohya-format safetensors), trained here or imported."""

    class Family(models.TextChoices):
        """The model family a LoRA was trained on (training.ml.family); a LoRA
        applies to base models of its own family only."""

        SD1 = "sd1", "SD 1.5"
        SD2 = "sd2", "SD 2.x"
        SDXL = "sdxl", "SDXL"

    name = models.CharField(max_length=200, unique=True)
    file = models.FileField(max_length=255)
    # The file's content hash: the same bytes are one LoRA.
    sha256 = models.CharField(max_length=64, unique=True)
    size = models.PositiveBigIntegerField(default=0)
    trigger_words = models.JSONField(default=list, blank=True)
    default_weight = models.FloatField(default=0.8)
    base_model = models.CharField(max_length=500, blank=True)
    # Blank when neither the run nor the file's metadata or keys tell it.
    family = models.CharField(max_length=8, choices=Family, blank=True)
    rank = models.PositiveIntegerField(null=True, blank=True)
    alpha = models.FloatField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    source_run = models.ForeignKey(
        TrainingRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="loras",
    )
    # The run's step this LoRA is the checkpoint of (its last step for the
    # LoRA a finished run registers); empty for an imported file.
    source_step = models.PositiveIntegerField(null=True, blank=True)
    sample_album = models.ForeignKey(
        "albums.Album",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A run registers each checkpoint's LoRA once, however often its
            # task is delivered or "use step N" is clicked.
            models.UniqueConstraint(
                fields=["source_run", "source_step"],
                condition=Q(source_run__isnull=False),
                name="lora_one_per_run_step",
            ),
            models.CheckConstraint(
                condition=Q(default_weight__gte=-4, default_weight__lte=4),
                name="lora_weight_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class GenerationJob(BaseRun):
    """Text-to-image on the `gpu` cluster with a stack of registered LoRAs."""

    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    base_model = models.CharField(max_length=500)
    steps = models.PositiveSmallIntegerField(default=25)
    guidance = models.FloatField(default=7.5)
    # Always recorded: drawn at random when the request gave none.
    seed = models.BigIntegerField()
    width = models.PositiveSmallIntegerField(default=512)
    height = models.PositiveSmallIntegerField(default=512)
    scheduler = models.CharField(max_length=20, default="ddim")
    num_images = models.PositiveSmallIntegerField(default=1)
    # [{"lora_id", "name", "weight", "sha256", "trigger_words"}], in stack order.
    loras = models.JSONField(default=list, blank=True)
    insert_trigger_words = models.BooleanField(default=True)
    album = models.ForeignKey(
        "albums.Album",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="generation_jobs",
    )
    # The images made so far, in seed order (image i has seed + i). An image
    # identical to one made before is listed by that image's id; its recipe
    # stays the first one, so only this list says which jobs made it.
    image_ids = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    task_path = "training.generation.tasks.run_generation"
    task_cluster = "gpu"

    class Meta(BaseRun.Meta):
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Generation #{self.pk} ({self.status})"


class ImageRecipe(models.Model):
    """Everything needed to make a generated image again."""

    image = models.OneToOneField(
        "albums.Image", on_delete=models.CASCADE, related_name="recipe"
    )
    job = models.ForeignKey(
        GenerationJob,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="recipes",
    )
    # prompt, negative_prompt, base_model, loras [{name, weight, sha256}], seed,
    # steps, guidance, scheduler, width, height, duration_seconds
    recipe = models.JSONField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Recipe of image {self.image_id}"


class SetTemplate(models.Model):
    """A set to render in one request: a table of slots (a deck's cards, a
    tarot's arcana) and how each slot's prompt is made from its row."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # Column names, in table order; a row's values are keyed by them.
    columns = models.JSONField(default=list)
    # [{"key": "ace-of-spades", "label": "Ace of Spades", "values": {column: v}}],
    # in slot order; keys unique (training.sets.templates checks).
    rows = models.JSONField(default=list)
    base_prompt = models.TextField(blank=True)
    prompt_template = models.TextField(help_text="With {column} placeholders.")
    style_suffix = models.TextField(blank=True)
    example_theme = models.CharField(max_length=500, blank=True)
    width = models.PositiveSmallIntegerField(default=512)
    height = models.PositiveSmallIntegerField(default=512)
    negative_prompt = models.TextField(blank=True)
    # [{"name": registered LoRA name, "weight": float}], in stack order.
    loras = models.JSONField(default=list, blank=True)
    base_model = models.CharField(max_length=500, blank=True)
    # Made by a data migration; `edited` once a person changed it, after which
    # no migration overwrites it.
    builtin = models.BooleanField(default=False)
    edited = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("admin:training_settemplate_change", args=[self.pk])

    @property
    def slot_count(self) -> int:
        return len(self.rows)


class SetAlbum(models.Model):
    """An album that holds a set: its template, theme and the settings every
    run into it renders with, so "fill missing" needs nothing more."""

    album = models.OneToOneField(
        "albums.Album", on_delete=models.CASCADE, related_name="set_info"
    )
    template = models.ForeignKey(
        SetTemplate, on_delete=models.PROTECT, related_name="set_albums"
    )
    theme = models.CharField(max_length=500, blank=True)
    # Slot seeds derive from it and the slot key (training.sets.seeds).
    set_seed = models.BigIntegerField()
    variants = models.PositiveSmallIntegerField(default=1)
    negative_prompt = models.TextField(blank=True)
    base_model = models.CharField(max_length=500)
    # [{"lora_id", "name", "weight", "sha256", "trigger_words"}] as GenerationJob.
    loras = models.JSONField(default=list, blank=True)
    insert_trigger_words = models.BooleanField(default=True)
    width = models.PositiveSmallIntegerField(default=512)
    height = models.PositiveSmallIntegerField(default=512)
    steps = models.PositiveSmallIntegerField(default=25)
    guidance = models.FloatField(default=7.5)
    scheduler = models.CharField(max_length=20, default="ddim")
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Set {self.template} in album {self.album_id}"

    def get_absolute_url(self) -> str:
        return reverse("admin:training_setalbum_change", args=[self.pk])


class SetSlot(models.Model):
    """One slot of a set album (a card of the deck) and the variant that fills
    it. Its status is read, not stored: filled while the chosen variant's image
    is in the album, else failed when its last render failed, else missing."""

    set_album = models.ForeignKey(
        SetAlbum, on_delete=models.CASCADE, related_name="slots"
    )
    key = models.CharField(max_length=100)
    label = models.CharField(max_length=200)
    position = models.PositiveIntegerField()
    # The prompt its latest render used (trigger words in front).
    prompt = models.TextField(blank=True)
    chosen = models.ForeignKey(
        "SetVariant",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["set_album", "key"], name="set_slot_once"),
        ]

    def __str__(self) -> str:
        return f"{self.key} of set {self.set_album_id}"


class SetVariant(models.Model):
    """An image rendered for a slot. The same bytes for the same slot are one
    variant, however often they are made."""

    slot = models.ForeignKey(SetSlot, on_delete=models.CASCADE, related_name="variants")
    image = models.ForeignKey(
        "albums.Image", on_delete=models.CASCADE, related_name="+"
    )
    seed = models.BigIntegerField()
    prompt = models.TextField()
    run = models.ForeignKey(
        "SetRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rendered",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["slot", "image"], name="set_variant_once"),
        ]

    def __str__(self) -> str:
        return f"Image {self.image_id} for slot {self.slot_id}"


class SetRun(BaseRun):
    """Rendering slots of a set album on the `gpu` cluster: a whole set, its
    missing slots, or chosen slots again with a new seed. Progress counts slots;
    `current_slot`/`current_step` tell where the image in hand is."""

    class Mode(models.TextChoices):
        SET = "set", "Generate set"
        FILL = "fill", "Fill missing slots"
        REGENERATE = "regenerate", "Regenerate slots"

    template = models.ForeignKey(
        SetTemplate, on_delete=models.PROTECT, related_name="runs"
    )
    set_album = models.ForeignKey(
        SetAlbum, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    mode = models.CharField(max_length=12, choices=Mode, default=Mode.SET)
    theme = models.CharField(max_length=500, blank=True)
    # The seed this run's slot seeds derive from: the album's set seed, or a
    # fresh one when regenerating.
    set_seed = models.BigIntegerField()
    variants = models.PositiveSmallIntegerField(default=1)
    # What each image renders with, copied from the set album when the run was
    # made: base_model, loras, negative_prompt, insert_trigger_words, width,
    # height, steps, guidance, scheduler.
    render = models.JSONField(default=dict)
    # The slot keys to render, in slot order.
    slot_keys = models.JSONField(default=list)
    # "key/variant" of each render tried (made or failed), so a resumed or
    # twice-delivered run renders nothing twice.
    items_done = models.JSONField(default=list, blank=True)
    failed_items = models.PositiveIntegerField(default=0)
    current_slot = models.CharField(max_length=100, blank=True)
    current_step = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    task_path = "training.sets.tasks.run_set"
    task_cluster = "gpu"
    resume_note = "Queued again; it renders only the slots it had not tried"

    class Meta(BaseRun.Meta):
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Set run #{self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("admin:training_setrun_change", args=[self.pk])
