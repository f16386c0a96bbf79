"""The dev ad-platform inbox: without credentials, a destination of each kind records
exactly what it would have sent, and nothing leaves the machine."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.audiences import membership
from campaigns.audiences.membership import hash_email
from campaigns.audiences.platforms import outbox
from campaigns.models import Audience, PlatformDestination, PlatformInboxEntry
from tests.audiences.conftest import deliver, give_browser, make_person
from tests.factories import make_site

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def nowhere(settings):
    """Every platform URL points where nothing listens: a request would fail loudly."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    settings.META_GRAPH_URL = settings.GOOGLE_DATAMANAGER_URL = settings.GA4_MP_URL = dead
    return dead


def test_each_kind_records_its_requests_in_the_inbox_without_credentials(nowhere):
    audience = Audience.objects.create(site=make_site(), name="Demo", include_hashed_emails=True)
    kinds = {
        "meta_capi": {"pixel_id": "111"},
        "meta_audience": {"custom_audience_id": "222"},
        "google_audience": {"google_operating_account_id": "333", "google_audience_id": "444",
                            "google_terms_accepted": True},
        "ga4": {"measurement_id": "G-DEMO1234"},
    }  # fmt: skip
    destinations = {}
    for kind, fields in kinds.items():
        destination = PlatformDestination(audience=audience, name=kind, kind=kind, **fields)
        destination.full_clean()
        destination.save()
        destinations[kind] = destination
    person = make_person(audience.site, email="Demo@Example.com")
    give_browser(person, fbp="fb.1.1764000000000.42", ga="42.1764000000")
    membership.add_members([(audience.id, person.id)], now=NOW)
    deliver(NOW)
    membership.leave_on_conversion([person.id], now=NOW)
    deliver(NOW + timedelta(minutes=1))

    email = hash_email("demo@example.com")
    entries = {kind: list(PlatformInboxEntry.objects.filter(destination=d).order_by("id"))
               for kind, d in destinations.items()}  # fmt: skip
    join, leave = entries["meta_capi"]
    assert join.endpoint == f"{nowhere}/v25.0/111/events"
    assert join.payload["data"][0]["user_data"]["fbp"] == "fb.1.1764000000000.42"
    assert join.payload["data"][0]["user_data"]["em"] == [email]
    assert leave.payload["data"][0]["event_name"] == "reengage_leave_demo"
    add, remove = entries["meta_audience"]
    assert (add.method, remove.method) == ("POST", "DELETE")
    assert add.payload["payload"]["data"] == [[email, ""]]
    ingest, removal = entries["google_audience"]
    assert ingest.endpoint.endswith("/v1/audienceMembers:ingest")
    assert removal.endpoint.endswith("/v1/audienceMembers:remove")
    assert ingest.payload["audienceMembers"][0]["userData"] == {
        "userIdentifiers": [{"emailAddress": email}]}  # fmt: skip
    assert ingest.payload["audienceMembers"][0]["consent"] == {
        "adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}  # fmt: skip
    ga_join, ga_leave = entries["ga4"]
    assert ga_join.payload["client_id"] == "42.1764000000"
    assert [e["name"] for e in ga_leave.payload["events"]] == ["reengage_leave_demo"]
    assert all(d.batches.filter(status="delivered").count() == 2 for d in destinations.values())


def test_send_test_without_credentials_goes_to_the_inbox(nowhere):
    audience = Audience.objects.create(site=make_site(), name="Demo")
    destination = PlatformDestination.objects.create(audience=audience, name="ga", kind="ga4",
                                                     measurement_id="G-DEMO1234")  # fmt: skip
    outcome = outbox.send_test(destination, now=NOW)
    assert outcome.ok and "dev ad-platform inbox" in outcome.error
    assert PlatformInboxEntry.objects.get().endpoint.endswith(
        "/debug/mp/collect?measurement_id=G-DEMO1234"
    )
