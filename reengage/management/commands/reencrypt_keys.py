"""Re-encrypt every secret held at rest under the current FIELD_ENCRYPTION_KEY.

After putting a new key first in FIELD_ENCRYPTION_KEY ("NEW,OLD"), run this,
then drop OLD. Until then, rows written under OLD still work (every configured
key decrypts and matches digests), so there is no downtime.

Which columns: every model field named `*_encrypted` (the convention for
reengage.encryption's output; a test fails if a Fernet token sits in any other
column), with its lookup digest, where it has one, in the sibling `*_digest`.
Today: sites' secret keys (current and previous) and audience destinations'
webhook signing secrets (current and previous).
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import models, transaction

from reengage import encryption


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """(model, its `*_encrypted` field names) for every model that has some."""
    found = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if f.name.endswith("_encrypted")]
        if names:
            found.append((model, names))
    return found


def reencrypt(model: type[models.Model], names: list[str]) -> int:
    """Re-encrypt (and re-digest) these fields of every row, in one transaction."""
    own = {f.name for f in model._meta.concrete_fields}
    digests = {n: n.removesuffix("_encrypted") + "_digest" for n in names}
    digests = {n: d for n, d in digests.items() if d in own}
    changed = []
    with transaction.atomic():
        for row in model.objects.select_for_update().order_by("pk"):
            for name in names:
                token = getattr(row, name)
                if not token:
                    continue
                plaintext = encryption.decrypt(token)
                setattr(row, name, encryption.encrypt(plaintext))
                if name in digests:
                    setattr(row, digests[name], encryption.digest(plaintext))
            changed.append(row)
        model.objects.bulk_update(changed, [*names, *digests.values()], batch_size=500)
    return len(changed)


class Command(BaseCommand):
    help = "Re-encrypt every secret at rest (and its lookup digest) under the current key."

    def handle(self, *args, **options) -> None:
        for model, names in encrypted_fields():
            count = reencrypt(model, names)
            self.stdout.write(
                f"Re-encrypted {', '.join(names)} of {count} {model._meta.verbose_name_plural}."
            )
        self._refresh_site_key_copies()

    def _refresh_site_key_copies(self) -> None:
        # Redis's fallback copies of site keys are named by the key's digest and hold
        # the keys encrypted: rewrite them under the new key, so ingest keeps working
        # through a PostgreSQL outage right after the old key is dropped.
        from tracking.keys import refresh_keys
        from tracking.models import Site

        for site in Site.objects.order_by("pk"):
            refresh_keys([site.write_key, *site.secret_keys()])
