"""Secret keys encrypted at rest, step 1 of 3: the new columns.

The plaintext columns lose their unique constraint and default here, so that
the whole change can be migrated backwards (0006 re-adds them empty, 0005 fills
them, this restores the constraint).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tracking", "0003_security_marketers_group")]

    operations = [
        migrations.AddField(
            model_name="site",
            name="secret_key_digest",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="site",
            name="secret_key_encrypted",
            field=models.TextField(default="", editable=False),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="site",
            name="previous_secret_key_digest",
            field=models.CharField(blank=True, default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="site",
            name="previous_secret_key_encrypted",
            field=models.TextField(blank=True, default="", editable=False),
        ),
        migrations.AlterField(
            model_name="site",
            name="secret_key",
            field=models.CharField(blank=True, default="", editable=False, max_length=96),
        ),
    ]
