"""The built-in set templates (playing cards, tarot, zodiac).

Made when missing; refreshed from training.sets.builtin only while nobody has
edited them, so a person's changes survive every later migration.
"""

from django.db import migrations


def install(apps, schema_editor):
    from training.sets.builtin import builtin_templates
    from training.sets.templates import normalize_rows

    SetTemplate = apps.get_model("training", "SetTemplate")
    for data in builtin_templates():
        fields = {
            **data,
            "rows": normalize_rows(data["columns"], data["rows"]),
            "builtin": True,
        }
        existing = SetTemplate.objects.filter(slug=data["slug"]).first()
        if existing is None:
            SetTemplate.objects.create(**fields)
        elif existing.builtin and not existing.edited:
            SetTemplate.objects.filter(pk=existing.pk).update(**fields)


class Migration(migrations.Migration):
    dependencies = [("training", "0008_set_templates_and_runs")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
