"""`manage.py forget (--email E | --anonymous-id A) --site S [--json]`: erase a person."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from campaigns.people.privacy import forget
from tracking.models import Site


def site_from_option(value: str) -> Site:
    """A site by id, exact name, or write key."""
    query = Site.objects.filter(name=value) | Site.objects.filter(write_key=value)
    if value.isdigit():
        query |= Site.objects.filter(id=int(value))
    sites = list(query.distinct())
    if len(sites) != 1:
        names = ", ".join(f"{s.id}: {s.name}" for s in Site.objects.all()[:20]) or "none"
        raise CommandError(
            f"--site {value!r} matches {len(sites)} sites; give an id, a name or a write key "
            f"(sites: {names})"
        )
    return sites[0]


def add_person_arguments(parser) -> None:
    """--email or --anonymous-id, and --site: how the privacy commands name a person."""
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--anonymous-id", help="an anonymousId or a userId")
    parser.add_argument("--site", required=True, help="site id, name or write key")


class Command(BaseCommand):
    help = "Erase everything about a person on a site; a hashed suppression remains."

    def add_arguments(self, parser):
        add_person_arguments(parser)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, email, anonymous_id, site, json: bool, **options):
        site_obj = site_from_option(site)
        report = forget(site_obj, email=email or "", anonymous_id=anonymous_id or "",
                        now=timezone.now())  # fmt: skip
        if json:
            self.stdout.write(_dumps(report.as_dict()))
            return
        if not report.profiles and not report.events:
            self.stdout.write("Nothing held about this person (already erased?).")
        for name, value in report.as_dict().items():
            if name != "emails":
                self.stdout.write(f"  {name.replace('_', ' ')}: {value}")


def _dumps(data: dict) -> str:
    return json.dumps(data)
