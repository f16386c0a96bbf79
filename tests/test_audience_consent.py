"""People who withdraw advertising consent (or send GPC) leave every audience at once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaigns import membership
from campaigns.models import Audience, AudienceChange, AudienceMember
from tests.factories import make_site, segment_event
from tracking.ingest import SiteKey, parse_batch
from tracking.models import Visitor
from tracking.storage import store_events

pytestmark = pytest.mark.django_db


def store(site, *calls):
    key = SiteKey(site.id, False, ("shop.test",), True, 395, (site.secret_key,), 10**6)
    events, _ = parse_batch({"batch": list(calls)}, key=key, received_at=datetime.now(UTC),
                            client_ip="192.0.2.1", single_type=None)  # fmt: skip
    store_events(events, now=datetime.now(UTC))


@pytest.fixture
def site():
    return make_site()


def members_after(site, context: dict) -> tuple[set[str], list[str]]:
    audiences = [Audience.objects.create(site=site, name=n) for n in ("A", "B")]
    store(site, segment_event(anonymousId="leaver"), segment_event(anonymousId="stayer"))
    people = {v.anonymous_id: v.profile_id for v in Visitor.objects.filter(site=site)}
    membership.add_members(
        [(a.id, p) for a in audiences for p in people.values()], now=datetime.now(UTC)
    )
    store(site, segment_event(anonymousId="leaver", context=context),
          segment_event(anonymousId="stayer", context={"consent": {"advertising": True}}))  # fmt: skip
    current = AudienceMember.objects.filter(removed_at=None)
    ids = {a for a, p in people.items() if current.filter(profile_id=p).exists()}
    reasons = list(AudienceChange.objects.filter(action="remove").values_list("reason", flat=True))
    return ids, reasons


def test_refusing_advertising_leaves_every_audience(site):
    assert members_after(site, {"consent": {"advertising": False}}) == (
        {"stayer"}, ["consent_withdrawn", "consent_withdrawn"],
    )  # fmt: skip


def test_sending_gpc_leaves_every_audience(site):
    assert members_after(site, {"gpc": True}) == (
        {"stayer"}, ["consent_withdrawn", "consent_withdrawn"],
    )  # fmt: skip


def test_other_consent_changes_leave_membership_alone(site):
    assert members_after(site, {"consent": {"email": False}}) == ({"leaver", "stayer"}, [])
