from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("labeling", "0006_label_digests")]

    operations = [
        migrations.AddConstraint(
            model_name='label',
            constraint=models.UniqueConstraint(condition=models.Q(('source__in', ('html', 'sidecar', 'legacy'))), fields=('image', 'kind', 'source', 'text_sha256'), name='label_imported_once'),
        ),
    ]
