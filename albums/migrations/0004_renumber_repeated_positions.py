"""Data for the constraint of the next migration (its own transaction: on
PostgreSQL a table cannot be altered with row updates pending)."""

from django.db import migrations, models


def renumber_repeated_positions(apps, schema_editor):
    """Albums whose positions repeat (two adds raced before album_add_images
    locked the album) get their members renumbered 1..n in (position, id)
    order, so the unique constraint can hold; the order people saw is kept."""
    AlbumImage = apps.get_model("albums", "AlbumImage")
    repeated = (
        AlbumImage.objects.values("album_id", "position")
        .annotate(n=models.Count("id"))
        .filter(n__gt=1)
        .values_list("album_id", flat=True)
        .distinct()
    )
    for album_id in set(repeated):
        members = list(
            AlbumImage.objects.filter(album_id=album_id).order_by("position", "id")
        )
        # Two passes: positions out of the way first, so no step collides.
        offset = max(m.position for m in members) + 1
        for n, member in enumerate(members, start=1):
            member.position = offset + n
        AlbumImage.objects.bulk_update(members, ["position"])
        for n, member in enumerate(members, start=1):
            member.position = n
        AlbumImage.objects.bulk_update(members, ["position"])


class Migration(migrations.Migration):
    dependencies = [("albums", "0003_run_waiting_folder_imports_unique_positions")]

    operations = [
        migrations.RunPython(renumber_repeated_positions, migrations.RunPython.noop),
    ]
