"""The periodic audience tasks, run by a real Celery worker where it matters."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.audiences import membership
from campaigns.models import Audience, AudienceMember, AudienceRule, Delivery, Destination
from campaigns.tasks import audiences as tasks
from tests.audiences.conftest import add_event, make_person
from tests.audiences.test_webhooks import Receiver
from tests.factories import make_site


def test_the_expiry_task_removes_members_whose_lifetime_ended(db):
    audience = Audience.objects.create(site=make_site(), name="Short", lifetime_days=1)
    old, new = make_person(audience.site), make_person(audience.site)
    membership.add_members([(audience.id, old.id)], now=datetime.now(UTC) - timedelta(days=2))
    membership.add_members([(audience.id, new.id)], now=datetime.now(UTC))
    assert tasks.expire_audience_members() == 1
    assert AudienceMember.objects.get(profile=old).removal_reason == "expired"
    assert AudienceMember.objects.get(profile=new).removed_at is None


def test_the_rule_task_evaluates_a_rule_now(db):
    site = make_site()
    rule = AudienceRule.objects.create(audience=Audience.objects.create(site=site, name="R"))
    viewer = make_person(site)
    add_event(viewer, "Product Viewed", datetime.now(UTC) - timedelta(hours=1))
    assert tasks.evaluate_audience_rule(rule.id) == {"added": 1, "removed": 0}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_delivers_new_changes_to_a_webhook(celery_worker_process):
    receiver = Receiver()
    try:
        audience = Audience.objects.create(site=make_site(), name="Hooked")
        Destination.objects.create(audience=audience, name="hook", url=receiver.url)
        people = [make_person(audience.site) for _ in range(3)]
        membership.add_members([(audience.id, p.id) for p in people], now=datetime.now(UTC))
        tasks.deliver_audience_changes.delay()
        deadline = time.monotonic() + 30
        while not receiver.delivered() and time.monotonic() < deadline:
            time.sleep(0.2)
        ((_, body),) = receiver.delivered()
        assert len(json.loads(body)["data"]["changes"]) == 3
        deadline = time.monotonic() + 10
        while Delivery.objects.get().status != "delivered" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert Delivery.objects.get().status == "delivered"
    finally:
        receiver.close()
