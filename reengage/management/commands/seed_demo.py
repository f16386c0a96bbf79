"""`manage.py seed_demo [--json|--brief]`: create (idempotently) the demo store's site and campaign.

The secret key is printed only with --json (for scripts): a console scrolls back
and gets pasted into tickets. People read it in the admin instead.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from reengage.demo import DEMO_SITE_NAME, LEGACY_DEMO_SITE_NAME


class Command(BaseCommand):
    help = "Seed the demo store (site, abandoned-cart campaign, template, audience); idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", help="print the demo site's keys as JSON"
        )
        parser.add_argument(
            "--brief", action="store_true", help="one line (what `make run` prints)"
        )

    @transaction.atomic
    def handle(self, *args, json: bool = False, brief: bool = False, **options):
        from tracking.models import Site

        # Checkouts seeded before the demo was named after its shop keep their site.
        if not Site.objects.filter(name=DEMO_SITE_NAME).exists():
            Site.objects.filter(name=LEGACY_DEMO_SITE_NAME).update(name=DEMO_SITE_NAME)
        site, created = Site.objects.get_or_create(
            name=DEMO_SITE_NAME,
            defaults={
                "domains": ["127.0.0.1", "localhost"],
                "postal_address": f"{DEMO_SITE_NAME}, 1 Example Street, 00000 Nowhere",
                "anonymize_ip": True,
                "cart_path": "/demo/cart/",
            },
        )
        seeded = seed_campaign(site)
        verb = "created" if created else "already there"
        if json:
            self.stdout.write(_json(site, seeded))
        elif brief:
            self.stdout.write(
                f"demo store {verb}: campaign {seeded['campaign']!r}, "
                f"steps after {delays_in_words()}"
            )
        elif options.get("verbosity", 1) > 0:
            self.stdout.write(
                f"Demo store {verb}: {settings.PUBLIC_URL}/demo/\n"
                f"  write key:  {site.write_key}\n"
                f"  secret key: not printed; the admin's Sites → {DEMO_SITE_NAME} page shows its "
                "start (rotate it there to see a new one in full), or use --json\n"
                f"  campaign:   {seeded['campaign']} (steps after {delays_in_words()})\n"
                f"  audience:   {seeded['audience']}\n"
            )


DEMO_DELAYS = (2, 10)  # minutes: short, so a newcomer sees the result while they watch


def delays_in_words() -> str:
    """(2, 10) → "2 and 10 minutes"."""
    numbers = [str(delay) for delay in DEMO_DELAYS]
    listed = ", ".join(numbers[:-1]) + " and " + numbers[-1] if len(numbers) > 1 else numbers[0]
    return f"{listed} minutes"


# What a marketer copies: every line reads well in the HTML and in the text part
# generated from it (headings on one line, the value as the products block writes it).
DEMO_TEMPLATE_HTML = """\
<h1>{% if first_name %}{{ first_name }}, you{% else %}You{% endif %} left something behind</h1>
<p>Your cart at {{ site_name }} is waiting{% if value_display %}: {{ value_display }}{% endif %}.</p>
{{ products_block }}
<p><a href="{{ cart_url|default:'#' }}">Back to your cart</a></p>
{% if promo_code %}<p>Use code <strong>{{ promo_code }}</strong> for 10 % off.</p>{% endif %}
"""


def seed_campaign(site) -> dict:
    """The demo's abandoned-cart campaign: two email-else-retarget steps, short delays."""
    from campaigns.models import Audience, Campaign, EmailTemplate, SitePolicy, Step

    # Demos run at any hour: no quiet hours, and a cap that a demo never reaches.
    SitePolicy.objects.get_or_create(
        site=site,
        defaults={"quiet_hours_enabled": False, "email_cap_count": 20, "email_cap_days": 1},
    )
    template, _ = EmailTemplate.objects.get_or_create(
        site=site,
        name="Demo: you left something behind",
        defaults={"subject": "Still thinking it over?", "preheader": "Your cart is saved.",
                  "html": DEMO_TEMPLATE_HTML, "from_name": DEMO_SITE_NAME,
                  "from_email": "shop@demo.invalid"},
    )  # fmt: skip
    audience, _ = Audience.objects.get_or_create(
        site=site, name="Demo: cart abandoners", defaults={"lifetime_days": 30}
    )
    campaign, created = Campaign.objects.get_or_create(
        site=site,
        name="Demo: abandoned cart",
        defaults={"trigger_event": "Product Added", "goal_event": "Order Completed",
                  "inactivity_minutes": DEMO_DELAYS[0], "reentry_cooldown_hours": 0,
                  "holdout_percent": 0, "status": Campaign.Status.ACTIVE},
    )  # fmt: skip
    if created:
        for position, delay in enumerate(DEMO_DELAYS):
            Step.objects.create(
                campaign=campaign, position=position, delay_minutes=delay,
                delay_from=Step.DelayFrom.TRIGGER if position == 0 else Step.DelayFrom.PREVIOUS,
                channel=Step.Channel.EMAIL_ELSE_RETARGET, template=template, audience=audience,
            )  # fmt: skip
    seed_platforms(audience)
    return {"campaign": campaign.name, "audience": audience.name, "template": template.name}


def seed_platforms(audience) -> None:
    """A Meta pixel and a GA4 destination without credentials: what they would receive
    lands in the admin's dev ad-platform inbox (docs/audiences.md), so the demo shows the
    anonymous abandoner reaching "Meta" and "Google", and leaving again after an order."""
    from campaigns.models import PlatformDestination

    kinds = PlatformDestination.Kind
    for name, kind, ids in (
        ("Demo: Meta pixel", kinds.META_CAPI, {"pixel_id": "1000000000000001"}),
        ("Demo: GA4", kinds.GA4, {"measurement_id": "G-DEMO000001"}),
    ):
        PlatformDestination.objects.get_or_create(
            audience=audience, name=name, defaults={"kind": kind, **ids}
        )


def _json(site, seeded: dict) -> str:
    return json.dumps(
        {
            "id": site.id,
            "name": site.name,
            "write_key": site.write_key,
            "secret_key": site.secret_key,
            "url": f"{settings.PUBLIC_URL}/demo/",
            **seeded,
        }
    )
