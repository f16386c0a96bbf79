"""Secret keys encrypted at rest, step 2 of 3: encrypt existing rows.

Uses reengage.encryption with the configured FIELD_ENCRYPTION_KEY (a migration
cannot freeze a key it does not know). Redis's copies of site keys written by
older releases are named after the plaintext key and hold it: they are deleted
(best effort; they expire within 7 days anyway) and rewritten on next use.
"""

import contextlib

from django.db import migrations


def encrypt_keys(apps, schema_editor):
    from reengage import encryption

    Site = apps.get_model("tracking", "Site")
    for site in Site.objects.all():
        site.secret_key_digest = encryption.digest(site.secret_key)
        site.secret_key_encrypted = encryption.encrypt(site.secret_key)
        if site.previous_secret_key:
            site.previous_secret_key_digest = encryption.digest(site.previous_secret_key)
            site.previous_secret_key_encrypted = encryption.encrypt(site.previous_secret_key)
        site.secret_key = site.previous_secret_key = ""
        site.save()
    _delete_plaintext_copies_in_redis()


def decrypt_keys(apps, schema_editor):
    from reengage import encryption

    Site = apps.get_model("tracking", "Site")
    for site in Site.objects.all():
        site.secret_key = encryption.decrypt(site.secret_key_encrypted)
        if site.previous_secret_key_encrypted:
            site.previous_secret_key = encryption.decrypt(site.previous_secret_key_encrypted)
        site.save()


def _delete_plaintext_copies_in_redis():
    import redis

    from tracking import buffer

    with contextlib.suppress(redis.RedisError):
        client = buffer.client()
        for name in client.scan_iter("reengage:key:*", count=1000):
            client.delete(name)


class Migration(migrations.Migration):
    dependencies = [("tracking", "0004_site_secret_key_encryption")]

    operations = [migrations.RunPython(encrypt_keys, decrypt_keys)]
