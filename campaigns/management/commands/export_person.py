"""`manage.py export_person (--email E | --anonymous-id A) --site S`: the access request."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from campaigns.management.commands.forget import site_from_option
from campaigns.privacy import export


class Command(BaseCommand):
    help = "Print everything held about a person on a site as JSON."

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--email")
        who.add_argument("--anonymous-id", help="an anonymousId or a userId")
        parser.add_argument("--site", required=True, help="site id, name or write key")

    def handle(self, *args, email, anonymous_id, site, **options):
        import json

        from django.core.serializers.json import DjangoJSONEncoder

        data = export(site_from_option(site), email=email or "", anonymous_id=anonymous_id or "")
        self.stdout.write(json.dumps(data, cls=DjangoJSONEncoder, indent=2))
