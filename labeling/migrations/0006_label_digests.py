"""Data for the constraint of the next migration (its own transaction: on
PostgreSQL a table cannot be altered with row updates pending)."""

import hashlib

from django.db import migrations, models


IMPORTED = ("html", "sidecar", "legacy")


def fill_digests_and_drop_repeats(apps, schema_editor):
    """text_sha256 for every label; then each imported text once per image,
    kind and source (the oldest row stays), so label_imported_once can hold."""
    Label = apps.get_model("labeling", "Label")
    last = 0
    while True:
        chunk = list(Label.objects.filter(pk__gt=last).order_by("pk")[:2000])
        if not chunk:
            break
        for label in chunk:
            label.text_sha256 = hashlib.sha256(label.text.encode()).hexdigest()
        Label.objects.bulk_update(chunk, ["text_sha256"])
        last = chunk[-1].pk
    keep: dict = {}
    repeats = []
    imported = Label.objects.filter(source__in=IMPORTED).order_by("pk")
    for pk, *key in imported.values_list(
        "pk", "image_id", "kind", "source", "text_sha256"
    ):
        if tuple(key) in keep:
            repeats.append(pk)
        else:
            keep[tuple(key)] = pk
    for start in range(0, len(repeats), 500):
        Label.objects.filter(pk__in=repeats[start : start + 500]).delete()


class Migration(migrations.Migration):
    dependencies = [("labeling", "0005_run_waiting_imported_labels_once")]

    operations = [
        migrations.RunPython(fill_digests_and_drop_repeats, migrations.RunPython.noop),
    ]
