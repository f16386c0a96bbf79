"""Erasure is complete: after a person who used two browsers (two profiles, one
merged into the other) is erased through the privacy API, no text or JSON column of
any table holds their email, phone, name, user id or browsers' ids."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from django.db import connection

from campaigns.audiences import membership
from campaigns.models import Audience, AudienceChange, Message
from tests.factories import make_site, segment_event
from tracking.ingest import SiteKey, parse_batch
from tracking.models import Profile
from tracking.storage import store_events

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)

EMAIL = "zebulon.quartermaine@example.com"
PHONE = "+44 7700 900417"
FIRST_NAME = "Zebulonius"
USER_ID = "user-zeb-4471"
BROWSERS = ["zeb-laptop-9f3a", "zeb-phone-77c1"]
IDENTIFIERS = [EMAIL, PHONE, FIRST_NAME, USER_ID, *BROWSERS]
# The erasure's own removal changes keep the person's browser ids and hashes until a
# destination has been told to remove them: they are the one allowed remainder.
ALLOWED = {("campaigns_audiencechange", "anonymous_ids"): "reason = 'erased'"}


def store(site, *calls):
    key = SiteKey(site.id, True, (), True, 395, (site.secret_key,), 10**6)
    events, _ = parse_batch({"batch": list(calls)}, key=key, received_at=datetime.now(UTC),
                            client_ip="192.0.2.1", single_type=None)  # fmt: skip
    store_events(events, now=datetime.now(UTC))


def text_columns() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.table_name, c.column_name FROM information_schema.columns c
            JOIN information_schema.tables t
              ON t.table_schema = c.table_schema AND t.table_name = c.table_name
            WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
              AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')
            ORDER BY 1, 2
            """
        )
        return cursor.fetchall()


def rows_naming(identifiers: list[str]) -> list[tuple[str, str, str, int]]:
    found = []
    with connection.cursor() as cursor:
        for table, column in text_columns():
            allowed = ALLOWED.get((table, column))
            for identifier in identifiers:
                where = f'"{column}"::text ILIKE %s'
                if allowed:
                    where += f" AND NOT ({allowed})"
                cursor.execute(f'SELECT count(*) FROM "{table}" WHERE {where}',
                               ["%" + identifier + "%"])  # fmt: skip
                if count := cursor.fetchone()[0]:
                    found.append((table, column, identifier, count))
    return found


@pytest.fixture
def zeb(site):
    laptop, phone = BROWSERS
    store(
        site,
        # The phone browser first: anonymous, with a name and a number (profile 1) ...
        segment_event(anonymousId=phone, event="Product Viewed",
                      properties={"name": "Shirt", "url": "https://shop.test/p/1"}),
        segment_event("identify", anonymousId=phone,
                      traits={"phone": PHONE, "firstName": FIRST_NAME, "city": "Leeds"}),
        # ... then the laptop, identified (profile 2) ...
        segment_event(anonymousId=laptop, event="Product Added"),
        segment_event("identify", anonymousId=laptop, userId=USER_ID,
                      traits={"email": EMAIL, "first_name": FIRST_NAME},
                      context={"consent": {"advertising": True, "email": True}}),
    )  # fmt: skip
    # ... and the phone logs in: profile 1 is merged into profile 2.
    store(site, segment_event("identify", anonymousId=phone, userId=USER_ID))
    person = Profile.objects.get(site=site, user_id=USER_ID)
    merged = Profile.objects.filter(site=site, merged_into=person)
    assert merged.count() == 1 and merged.get().traits["phone"] == PHONE
    audience = Audience.objects.create(site=site, name="Cart", include_hashed_emails=True)
    membership.add_members([(audience.id, person.id)], now=NOW)
    Message.objects.create(site=site, profile=person, to_email=EMAIL.title(), status="sent")
    return person


@pytest.fixture
def site():
    return make_site()


def test_before_erasure_the_scan_finds_the_person_everywhere(site, zeb):
    tables = {table for table, _, _, _ in rows_naming(IDENTIFIERS)}
    assert {"tracking_profile", "tracking_visitor", "tracking_event",
            "campaigns_message", "campaigns_audiencechange"} <= tables  # fmt: skip


def test_after_erasure_no_column_of_any_table_names_the_person(client, site, zeb):
    other = segment_event("identify", anonymousId="someone-else", userId="other-user",
                          traits={"email": "other@example.com", "phone": "+44 7700 900000"})  # fmt: skip
    store(site, other)
    response = client.delete(
        f"/api/v1/privacy/person?email={EMAIL}",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{site.secret_key}:".encode()).decode(),
    )
    assert response.status_code == 200
    assert rows_naming(IDENTIFIERS) == []
    assert response.json()["erased"]["profiles"] == 2
    # The removal change still tells destinations whom to remove, and others are kept.
    removal = AudienceChange.objects.get(action="remove")
    assert removal.reason == "erased" and sorted(removal.anonymous_ids) == sorted(BROWSERS)
    assert Profile.objects.filter(site=site, user_id="other-user").exists()
    assert {t for t, _, _, _ in rows_naming(["other@example.com", "someone-else"])} >= {
        "tracking_profile",
        "tracking_visitor",
        "tracking_event",
    }


def test_the_removal_changes_are_blanked_once_old_and_sent_to_every_webhook(site, zeb, settings):
    from datetime import timedelta

    from campaigns.audiences import delivery
    from campaigns.models import Delivery, Destination
    from campaigns.people.privacy import blank_erasure_changes, forget

    settings.OUTBOUND_ALLOW_LOOPBACK = False  # nothing is actually sent here
    audience = Audience.objects.get(site=site)
    Destination.objects.create(audience=audience, name="hook", url="https://hooks.example/x")
    forget(site, email=EMAIL, now=NOW)
    later = NOW + timedelta(days=31)

    # Not yet batched for the webhook: kept, however old.
    assert blank_erasure_changes(now=later, days=30) == 0
    delivery.batch_changes(now=NOW)
    # Batched but still pending: kept (the body is rebuilt from the rows per attempt).
    assert blank_erasure_changes(now=later, days=30) == 0
    Delivery.objects.update(status=Delivery.Status.DELIVERED)
    # Sent, but younger than ERASURE_CHANGE_DAYS: kept for pull consumers.
    assert blank_erasure_changes(now=NOW + timedelta(days=29), days=30) == 0

    assert blank_erasure_changes(now=later, days=30) == 1
    assert rows_naming(BROWSERS) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM campaigns_audiencechange WHERE anonymous_ids <> '[]'")
        assert cursor.fetchone()[0] == 0
