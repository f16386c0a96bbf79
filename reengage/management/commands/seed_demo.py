"""`manage.py seed_demo [--json]`: create (idempotently) the demo store's site and campaign."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from reengage.demo import DEMO_SITE_NAME


class Command(BaseCommand):
    help = "Seed the demo store's site (idempotent) and print its keys."

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", help="print the demo site's keys as JSON"
        )

    @transaction.atomic
    def handle(self, *args, json: bool = False, **options):
        from tracking.models import Site

        site, created = Site.objects.get_or_create(
            name=DEMO_SITE_NAME,
            defaults={
                "domains": ["127.0.0.1", "localhost"],
                "postal_address": "Trailhead Supply (demo), 1 Example Street, 00000 Nowhere",
                "anonymize_ip": True,
            },
        )
        if json:
            self.stdout.write(_json(site))
        else:
            verb = "created" if created else "already there"
            self.stdout.write(
                f"Demo store {verb}: {settings.PUBLIC_URL}/demo/\n"
                f"  write key:  {site.write_key}\n  secret key: {site.secret_key}\n"
            )


def _json(site) -> str:
    return json.dumps(
        {
            "id": site.id,
            "name": site.name,
            "write_key": site.write_key,
            "secret_key": site.secret_key,
            "url": f"{settings.PUBLIC_URL}/demo/",
        }
    )
