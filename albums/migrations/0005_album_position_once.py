from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("albums", "0004_renumber_repeated_positions")]

    operations = [
        migrations.AddConstraint(
            model_name='albumimage',
            constraint=models.UniqueConstraint(fields=('album', 'position'), name='album_position_once'),
        ),
    ]
