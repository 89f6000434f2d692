"""LoRAs record their model family and, when trained here, the step they are
the checkpoint of: a run may register one LoRA per step ("use step N").

Existing rows are filled from what they already hold: the family from the
file's metadata (ours, then sd-scripts'), the step from `ss_steps` or the run's
configured steps. The rules are copied here, not imported, so this migration
means the same thing whatever the registry later becomes.
"""

from django.db import migrations, models
from django.db.models import Q

KOHYA_VERSIONS = (("sdxl", "sdxl"), ("sd_v2", "sd2"), ("sd_v1", "sd1"))


def family_from_metadata(metadata):
    ours = str(metadata.get("family", "")).strip().lower()
    if ours in ("sd1", "sd2", "sdxl"):
        return ours
    version = str(metadata.get("ss_base_model_version", "")).strip().lower()
    for prefix, family in KOHYA_VERSIONS:
        if version.startswith(prefix):
            return family
    if str(metadata.get("ss_v2", "")).strip().lower() == "true":
        return "sd2"
    return ""


def step_of(lora):
    steps = str(lora.metadata.get("ss_steps", "")).strip()
    if steps.isdigit():
        return int(steps)
    configured = (lora.source_run.config or {}).get("steps")
    return configured if isinstance(configured, int) else None


def fill(apps, schema_editor):
    Lora = apps.get_model("training", "Lora")
    for lora in Lora.objects.select_related("source_run").iterator():
        lora.family = family_from_metadata(lora.metadata or {})
        if lora.source_run_id is not None:
            lora.source_step = step_of(lora)
        lora.save(update_fields=["family", "source_step"])


class Migration(migrations.Migration):
    dependencies = [("training", "0010_steptiming")]

    operations = [
        migrations.RemoveConstraint(model_name="lora", name="lora_one_per_run"),
        migrations.AddField(
            model_name="lora",
            name="family",
            field=models.CharField(
                blank=True,
                choices=[("sd1", "SD 1.5"), ("sd2", "SD 2.x"), ("sdxl", "SDXL")],
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="lora",
            name="source_step",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="lora",
            constraint=models.UniqueConstraint(
                condition=Q(source_run__isnull=False),
                fields=("source_run", "source_step"),
                name="lora_one_per_run_step",
            ),
        ),
    ]
