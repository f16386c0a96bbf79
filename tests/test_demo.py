"""The demo store: seeded idempotently, its pages carry the snippet, and its campaign works."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from campaigns.email.sending import send_queued
from campaigns.engine.tick import tick
from campaigns.models import AudienceMember, Campaign, DevMail, EmailTemplate, Message
from reengage.demo import DEMO_SITE_NAME
from tests.factories import segment_event
from tracking.ingest import SiteKey, parse_batch
from tracking.models import Site
from tracking.storage import store_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_is_idempotent_and_prints_the_keys(demo):
    again = StringIO()
    call_command("seed_demo", "--json", stdout=again)
    assert json.loads(again.getvalue()) == demo
    site = Site.objects.get(id=demo["id"])
    assert demo["write_key"] == site.write_key and demo["secret_key"] == site.secret_key
    assert Campaign.objects.filter(site=site).count() == 1
    assert EmailTemplate.objects.filter(site=site).count() == 1


def test_the_demo_campaign_and_template_pass_the_admin_validation(demo):
    from campaigns.engine.forms import CampaignForm

    campaign = Campaign.objects.get(name=demo["campaign"])
    form = CampaignForm(
        data={**{f: getattr(campaign, f) for f in ("name", "status", "priority",
                                                  "trigger_event", "goal_event")},
              "site": campaign.site_id, "trigger_conditions": "[]",
              "audience_conditions": "{}", "holdout_percent": 0,
              "reentry_cooldown_hours": 0, "inactivity_minutes": 2},
        instance=campaign,
    )  # fmt: skip
    assert not form.errors.get("trigger_event") and not form.errors.get("goal_event")


@pytest.mark.parametrize("path", ["/demo/", "/demo/product/mug/", "/demo/cart/",
                                  "/demo/checkout/", "/demo/signup/"])  # fmt: skip
def test_every_demo_page_carries_the_snippet(client, demo, path):
    page = client.get(path).content.decode()
    assert demo["write_key"] in page
    assert "reengage.js" in page


def test_the_sign_up_form_computes_a_valid_user_hash(client, demo):
    site = Site.objects.get(id=demo["id"])
    page = client.post("/demo/signup/", {"email": "Ann@Example.com"}).content.decode()
    assert site.identity_proof("demo-ann@example.com", "Ann@Example.com") in page


def store(site, *calls, at):
    key = SiteKey(site.id, False, ("127.0.0.1",), True, 395, (site.secret_key,), 10**6)
    events, _ = parse_batch({"batch": list(calls)}, key=key, received_at=at,
                            client_ip="127.0.0.1", single_type=None)  # fmt: skip
    store_events(events, now=at)


def test_an_abandoned_demo_cart_is_emailed_to_a_signed_up_visitor(demo, settings):
    settings.EMAIL_BACKEND = "campaigns.email.devmail.EmailBackend"
    site = Site.objects.get(id=demo["id"])
    start = datetime.now(UTC)
    added = segment_event(
        anonymousId="demo-visitor", event="Product Added", timestamp=start.isoformat(),
        properties={"product_id": "mug", "name": "Enamel camp mug", "price": 18.0,
                    "quantity": 1, "url": "http://127.0.0.1:8000/demo/cart/"},
    )  # fmt: skip
    signup = segment_event(
        "identify", anonymousId="demo-visitor", userId="demo-ann@example.com",
        timestamp=start.isoformat(),
        traits={"email": "ann@example.com",
                "user_hash": site.identity_proof("demo-ann@example.com", "ann@example.com")},
        context={"consent": {"analytics": True, "email": True, "advertising": True}},
    )  # fmt: skip
    store(site, signup, added, at=start)
    tick(now=start + timedelta(minutes=3))
    message = Message.objects.get(site=site)
    assert message.to_email == "ann@example.com"
    send_queued(clock=lambda: start + timedelta(minutes=3))
    mail = DevMail.objects.get(message=message)
    assert "Enamel camp mug" in mail.html


def test_an_anonymous_demo_visitor_lands_in_the_audience(demo):
    site = Site.objects.get(id=demo["id"])
    start = datetime.now(UTC)
    store(site, segment_event(anonymousId="demo-anon", event="Product Added",
                              timestamp=start.isoformat()), at=start)  # fmt: skip
    tick(now=start + timedelta(minutes=3))
    member = AudienceMember.objects.get(audience__site=site)
    assert list(member.profile.visitors.values_list("anonymous_id", flat=True)) == ["demo-anon"]


def test_seed_demo_says_where_to_read_the_secret_key_instead_of_printing_it():
    out = StringIO()
    call_command("seed_demo", stdout=out)
    site = Site.objects.get(name=DEMO_SITE_NAME)
    printed = out.getvalue()
    assert site.write_key in printed
    assert site.secret_key not in printed
    assert "secret key: not printed" in printed and "steps after 2 and 10 minutes" in printed
