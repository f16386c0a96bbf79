"""Webhook signing secrets encrypted at rest (like sites' secret keys)."""

from django.db import migrations, models

import campaigns.models.audiences


def encrypt_existing(apps, schema_editor):
    from reengage.encryption import encrypt

    Destination = apps.get_model("campaigns", "Destination")
    for destination in Destination.objects.all():
        destination.signing_secret_encrypted = encrypt(destination.signing_secret)
        destination.save(update_fields=["signing_secret_encrypted"])


def decrypt_existing(apps, schema_editor):
    from reengage.encryption import decrypt

    Destination = apps.get_model("campaigns", "Destination")
    for destination in Destination.objects.all():
        destination.signing_secret = decrypt(destination.signing_secret_encrypted)
        destination.save(update_fields=["signing_secret"])


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0005_engine_email_cap_lock")]

    operations = [
        migrations.AddField(
            model_name="destination",
            name="signing_secret_encrypted",
            field=models.TextField(default="", editable=False),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
        migrations.RemoveField(model_name="destination", name="signing_secret"),
        migrations.AlterField(
            model_name="destination",
            name="signing_secret_encrypted",
            field=models.TextField(
                default=campaigns.models.audiences._encrypted_new_secret, editable=False
            ),
        ),
    ]
