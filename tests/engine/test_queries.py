"""Hot paths cost a constant number of queries, whatever the batch size."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.engine.enrollment import enroll_stored
from campaigns.engine.tick import QUERIES_PER_BATCH, run_batch
from campaigns.models import Decision, Enrollment, SitePolicy
from tests.engine.conftest import T0, envelope, make_campaign, minutes
from tests.factories import make_site
from tracking.storage import store_events

pytestmark = pytest.mark.django_db


def seed(site, people: int, tag: str) -> None:
    """A mix that exercises every write: emails, retargets, a conversion, a reschedule."""
    events = []
    for n in range(people):
        anon = f"{tag}{n}"
        if n % 2:
            events.append(
                envelope(site, type="identify", anonymous_id=anon, at=T0 - minutes(1),
                         traits={"email": f"{anon}@example.com"}, email=f"{anon}@example.com",
                         email_verified=True)
            )  # fmt: skip
        events.append(envelope(site, "Product Added", anonymous_id=anon))
    store_events(events, now=T0)
    # Converted after the trigger, stored without the receiver noticing (a late
    # order reaching the table some other way): the decision itself must see it.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tracking_event (site_id, profile_id, message_id, type, name, timestamp,"
            " received_at) SELECT %s, v.profile_id, 'late-' || v.id, 'track', 'Order Completed',"
            " %s, %s FROM tracking_visitor v WHERE v.anonymous_id = %s",
            [site.id, T0 + minutes(1), T0 + minutes(1), f"{tag}0"],
        )


@pytest.mark.parametrize("people", [6, 60])
def test_a_batch_costs_the_same_few_queries_whatever_its_size(people):
    site = make_site()
    SitePolicy.objects.create(site=site, email_cap_count=1, email_cap_days=1)
    make_campaign(site, name="first", priority=1)
    make_campaign(site, name="second", priority=2)  # same trigger: its emails hit the cap
    seed(site, people, "p")

    with CaptureQueriesContext(connection) as queries:
        result = run_batch(now=T0 + minutes(60), batch_size=1000)

    assert result.decided == 2 * people
    outcomes = set(Decision.objects.values_list("outcome", flat=True))
    assert outcomes == {"email", "retarget", "exit", "rescheduled"}
    # The test's transaction turns the batch's own into a savepoint; not a query of the batch.
    statements = [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) == QUERIES_PER_BATCH, [s[:80] for s in statements]


@pytest.mark.parametrize("people", [5, 100])
def test_enrolling_a_stored_batch_costs_the_same_queries_whatever_its_size(people):
    site = make_site()
    make_campaign(site, name="first", inactivity_minutes=30)
    make_campaign(
        site, name="second", trigger_conditions=[{"property": "value", "op": ">", "value": 1}]
    )
    events = [
        envelope(site, "Product Added", anonymous_id=f"q{n}", properties={"value": n})
        for n in range(people)
    ]
    captured = []

    def counted(**kwargs):
        with CaptureQueriesContext(connection) as queries:
            result = enroll_stored(**kwargs)
        captured.extend(q["sql"] for q in queries)
        return result

    with mock.patch("campaigns.engine.enrollment.enroll_stored", counted):
        store_events(events, now=T0)

    assert Enrollment.objects.count() == 2 * people - 2  # values 0 and 1 fail "value > 1"
    assert len(captured) == 5, [sql[:80] for sql in captured]


def test_batch_columns_travel_as_array_literals_that_postgresql_reads_back_exactly():
    from datetime import UTC, datetime

    from campaigns.engine.tick import pg_array

    texts = [
        'o"brien@example.com',
        "back\\slash@example.com",
        "a,b{c}@example.com",
        "",
        "NULL",
        "ü@例え.jp",
    ]
    moments = [datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC), None]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT %s::text[], %s::timestamptz[], %s::bigint[], %s::boolean[]",
            [
                pg_array(texts),
                pg_array(moments),
                pg_array([1, None, 2**40]),
                pg_array([True, False]),
            ],
        )
        assert cursor.fetchone() == (texts, moments, [1, None, 2**40], [True, False])
