"""Secret keys encrypted at rest, step 3 of 3: drop the plaintext columns."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tracking", "0005_encrypt_site_secret_keys")]

    operations = [
        migrations.RemoveField(model_name="site", name="secret_key"),
        migrations.RemoveField(model_name="site", name="previous_secret_key"),
        migrations.AlterField(
            model_name="site",
            name="secret_key_digest",
            field=models.CharField(editable=False, max_length=64, unique=True),
        ),
        migrations.AlterField(
            model_name="site",
            name="secret_key_encrypted",
            field=models.TextField(editable=False),
        ),
        migrations.AlterField(
            model_name="site",
            name="previous_secret_key_digest",
            field=models.CharField(
                blank=True, db_index=True, default="", editable=False, max_length=64
            ),
        ),
    ]
