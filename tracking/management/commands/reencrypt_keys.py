"""Re-encrypt sites' secret keys under the current FIELD_ENCRYPTION_KEY.

After putting a new key first in FIELD_ENCRYPTION_KEY ("NEW,OLD"), run this,
then drop OLD. Until then, rows written under OLD still work (every configured
key decrypts and matches digests), so there is no downtime.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from reengage import encryption
from tracking.models import Site


class Command(BaseCommand):
    help = "Re-encrypt sites' secret keys (and their lookup digests) under the current key."

    def handle(self, *args, **options) -> None:
        count = 0
        with transaction.atomic():
            for site in Site.objects.select_for_update().order_by("id"):
                site.secret_key = site.secret_key  # re-encrypt and re-digest under the first key
                if site.previous_secret_key_encrypted:
                    previous = site.previous_secret_key
                    site.previous_secret_key_digest = encryption.digest(previous)
                    site.previous_secret_key_encrypted = encryption.encrypt(previous)
                site.save(
                    update_fields=[
                        "secret_key_digest", "secret_key_encrypted",
                        "previous_secret_key_digest", "previous_secret_key_encrypted",
                    ]
                )  # fmt: skip
                count += 1
        self.stdout.write(f"Re-encrypted the secret keys of {count} site(s).")
