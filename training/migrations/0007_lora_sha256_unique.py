from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("training", "0006_drop_repeated_lora_files")]

    operations = [
        migrations.AlterField(
            model_name='lora',
            name='sha256',
            field=models.CharField(max_length=64, unique=True),
        ),
    ]
