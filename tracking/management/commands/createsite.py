"""`manage.py createsite NAME --domain D [--domain …] [--json]`"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tracking.models import Site


class Command(BaseCommand):
    help = "Create a site and print its write key, secret key and the snippet to paste."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--domain", action="append", default=[], dest="domains",
            help="a host the snippet may send from (repeatable), e.g. shop.example.com",
        )  # fmt: skip
        parser.add_argument(
            "--consent-mode", choices=[c.value for c in Site.ConsentMode], default="none"
        )
        parser.add_argument("--timezone", default="UTC")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, name, domains, consent_mode, timezone, json: bool, **options):
        site = Site(name=name, domains=domains, consent_mode=consent_mode, timezone=timezone)
        try:
            site.full_clean()
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
            )
            raise CommandError(problems) from None
        site.save()
        snippet = loader_for(site)
        if json:
            self.stdout.write(dump_json(site, snippet))
            return
        self.stdout.write(
            f"Created site {site.name!r} (id {site.id})\n\n"
            f"  write key:  {site.write_key}   (public: safe to embed in pages)\n"
            f"  secret key: {site.secret_key}   (server-side only: keep it secret)\n\n"
            f"Paste this before </head> on every page:\n\n{snippet}\n"
        )


def loader_for(site: Site) -> str:
    try:
        from tracking.snippet import loader_html
    except ImportError:  # the snippet module lands separately
        return (
            f"<!-- reengage: see docs/snippet.md; write key {site.write_key}, "
            f"API {settings.PUBLIC_URL} -->"
        )
    return loader_html(site, settings.PUBLIC_URL)


def dump_json(site: Site, snippet: str) -> str:
    return json.dumps(
        {
            "id": site.id,
            "name": site.name,
            "domains": site.domains,
            "write_key": site.write_key,
            "secret_key": site.secret_key,
            "api": settings.PUBLIC_URL,
            "snippet": snippet,
        }
    )
