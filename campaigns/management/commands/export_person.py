"""`manage.py export_person (--email E | --anonymous-id A) --site S`: the access request."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from campaigns.management.commands.forget import add_person_arguments, site_from_option
from campaigns.people.privacy import export


class Command(BaseCommand):
    help = "Print everything held about a person on a site as JSON."

    def add_arguments(self, parser):
        add_person_arguments(parser)

    def handle(self, *args, email, anonymous_id, site, **options):
        import json

        from django.core.serializers.json import DjangoJSONEncoder

        data = export(site_from_option(site), email=email or "", anonymous_id=anonymous_id or "")
        self.stdout.write(json.dumps(data, cls=DjangoJSONEncoder, indent=2))
