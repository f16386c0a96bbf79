"""Builders for the email tests: a site with a campaign, a step and queued Messages.

Until the engine creates Messages itself, the tests create them as its decision
transaction would: status queued, with an Enrollment carrying the trigger.
"""

from __future__ import annotations

from datetime import UTC, datetime

from campaigns.models import Campaign, EmailTemplate, Enrollment, Message, Step
from tests.factories import make_site
from tracking.models import Profile

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

TRIGGER = {
    "currency": "EUR",
    "value": 69.5,
    "url": "https://shop.test/cart",
    "products": [
        {"name": "Linen shirt", "price": 49.5, "quantity": 1,
         "image_url": "https://shop.test/shirt.jpg", "url": "https://shop.test/p/shirt"},
        {"name": "Socks", "price": 10, "quantity": 2, "url": "https://shop.test/p/socks"},
    ],
}  # fmt: skip


def make_template(site, **fields) -> EmailTemplate:
    defaults = {
        "name": "Cart reminder",
        "subject": "{{ first_name|default:'Hi' }}, your cart is waiting",
        "preheader": "Still thinking it over?",
        "html": "<p>Hello {{ first_name }},</p>{{ products_block }}"
        '<p><a href="{{ cart_url }}">Back to your cart</a> {{ promo_code }}</p>',
        "from_name": "Shop",
        "from_email": "hello@shop.test",
    }
    defaults.update(fields)
    return EmailTemplate.objects.create(site=site, **defaults)


def make_campaign(site=None, **fields):
    site = site or make_site(postal_address="Shop Ltd, 1 Market Street, Leeds")
    campaign = Campaign.objects.create(site=site, name="Abandoned cart", status="active", **fields)
    template = make_template(site)
    step = Step.objects.create(campaign=campaign, position=0, template=template)
    return campaign, step, template


def make_profile(site, email: str, **fields) -> Profile:
    defaults = {
        "email": email,
        "email_verified": True,
        "traits": {"first_name": "Ada"},
        "consent": {"email": True},
        "first_seen_at": T0,
        "last_seen_at": T0,
    }
    defaults.update(fields)
    return Profile.objects.create(site=site, **defaults)


def queue_messages(campaign, step, count: int = 1, *, prefix: str = "person") -> list[Message]:
    """What the engine's decision transaction creates: an enrollment and a queued Message."""
    messages = []
    for i in range(count):
        profile = make_profile(campaign.site, f"{prefix}{i}@example.com")
        enrollment = Enrollment.objects.create(
            site=campaign.site, campaign=campaign, profile=profile, enrolled_at=T0,
            last_activity_at=T0, trigger_properties=TRIGGER,
        )  # fmt: skip
        message = Message(
            site=campaign.site, campaign=campaign, step=step, position=step.position,
            enrollment=enrollment, profile=profile, template=step.template,
            to_email=profile.email, created_at=T0,
        )  # fmt: skip
        messages.append(message)
    return Message.objects.bulk_create(messages)


def sent_message() -> Message:
    """One message of a new campaign, handed to the ESP (sent, ESP id "esp-1")."""
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)
    Message.objects.filter(pk=message.pk).update(status="sent", sent_at=T0, esp_message_id="esp-1")
    message.refresh_from_db()
    return message
