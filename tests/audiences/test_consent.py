"""People who withdraw advertising consent (or send GPC) leave every audience at once,
and every destination hears of it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from campaigns.audiences import delivery, membership
from campaigns.models import Audience, AudienceChange, AudienceMember, Delivery, Destination
from tests.factories import make_site, segment_event
from tracking import flush
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


def test_a_withdrawal_sent_to_the_ingest_api_reaches_every_destination_at_once(
    client, site, redis_client
):
    """The whole path: the snippet's call → ingest → flush → the member leaves, and the
    removal goes out in the next webhook batch and shows in the pull API's changes."""
    from tests.audiences.test_webhooks import Receiver

    audience = Audience.objects.create(site=site, name="Retarget")
    store(site, segment_event(anonymousId="leaver"))
    [profile_id] = Visitor.objects.filter(site=site).values_list("profile_id", flat=True)
    now = datetime.now(UTC)
    membership.add_members([(audience.id, profile_id)], now=now)
    receiver = Receiver()
    try:
        hook = Destination.objects.create(audience=audience, name="hook", url=receiver.url)
        token = Destination.objects.create(audience=audience, name="pull").issue_token(now=now)
        delivery.batch_changes(now=now)  # the add goes out first
        for delivery_id in delivery.claim_due(now=now):
            delivery.send_delivery(delivery_id, now=now)

        withdrawal = segment_event(
            anonymousId="leaver", context={"consent": {"advertising": False}}
        )
        response = client.post(
            "/v1/batch", json.dumps({"batch": [withdrawal]}), content_type="application/json",
            HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{site.write_key}:".encode()).decode(),
        )  # fmt: skip
        assert response.status_code == 200
        flush.flush_once()
        assert not AudienceMember.objects.filter(removed_at=None).exists()

        delivery.batch_changes(now=now)
        for delivery_id in delivery.claim_due(now=now):
            delivery.send_delivery(delivery_id, now=now)
        sent = [json.loads(body)["data"]["changes"] for _, body in receiver.delivered()]
        assert [[(c["action"], c["reason"]) for c in batch] for batch in sent] == [
            [("add", "campaign")], [("remove", "consent_withdrawn")],
        ]  # fmt: skip
        assert sent[1][0]["anonymousIds"] == ["leaver"]
        assert Delivery.objects.filter(destination=hook, status="delivered").count() == 2

        pulled = client.get(f"/api/v1/audiences/{audience.id}/changes",
                            HTTP_AUTHORIZATION=f"Bearer {token}").json()  # fmt: skip
        assert [(c["action"], c["reason"]) for c in pulled["data"]] == [
            ("add", "campaign"), ("remove", "consent_withdrawn"),
        ]  # fmt: skip
    finally:
        receiver.close()
