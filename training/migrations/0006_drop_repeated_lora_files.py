"""Data for the constraint of the next migration (its own transaction: on
PostgreSQL a table cannot be altered with row updates pending)."""

from django.db import migrations, models


def drop_repeated_lora_files(apps, schema_editor):
    """The same bytes registered twice become one LoRA: the oldest row stays
    (its file is the same content-addressed file). Generation jobs name their
    LoRAs by id and sha256, so they still find it."""
    Lora = apps.get_model("training", "Lora")
    seen: set = set()
    repeats = []
    for pk, sha256 in Lora.objects.order_by("pk").values_list("pk", "sha256"):
        if sha256 in seen:
            repeats.append(pk)
        seen.add(sha256)
    Lora.objects.filter(pk__in=repeats).delete()


class Migration(migrations.Migration):
    dependencies = [("training", "0005_dataset_runs_unique_lora_files")]

    operations = [
        migrations.RunPython(drop_repeated_lora_files, migrations.RunPython.noop),
    ]
