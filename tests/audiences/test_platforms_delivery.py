"""Ad-platform delivery: Retry-After, backoff, dead letters, order, isolation."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.audiences import membership
from campaigns.audiences.platforms import outbox
from campaigns.models import Audience, PlatformBatch, PlatformDestination
from tests.audiences.conftest import (
    GA4_MEASUREMENT,
    GA4_SECRET,
    META_TOKEN,
    deliver,
    give_browser,
    make_person,
)
from tests.audiences.platform_standins import GA4StandIn, MetaStandIn
from tests.factories import make_site

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture
def meta(settings):
    stand_in = MetaStandIn(token=META_TOKEN)
    settings.META_GRAPH_URL = stand_in.url
    yield stand_in
    stand_in.close()


@pytest.fixture
def audience():
    return Audience.objects.create(site=make_site(), name="Retarget")


def pixel(audience, name="Meta pixel") -> PlatformDestination:
    destination = PlatformDestination(audience=audience, name=name, kind="meta_capi",
                                      pixel_id="1234567890")  # fmt: skip
    destination.credential = META_TOKEN
    destination.save()
    return destination


def join(audience, n: int = 1) -> list:
    people = [make_person(audience.site) for _ in range(n)]
    for i, person in enumerate(people):
        give_browser(person, fbp=f"fb.1.1764000000000.{person.id}{i}", ga=f"{person.id}.1")
    membership.add_members([(audience.id, p.id) for p in people], now=NOW)
    return people


def the_batch() -> PlatformBatch:
    return PlatformBatch.objects.get()


def sent(meta) -> int:
    return sum(len(events) for events in meta.events.values())


def test_a_429_is_retried_after_the_seconds_its_retry_after_names(meta, audience):
    pixel(audience)
    join(audience)
    meta.fail_next(1, 429, retry_after="120")
    deliver(NOW)
    batch = the_batch()
    assert batch.status == "pending" and batch.last_status_code == 429
    assert batch.next_attempt_at == NOW + timedelta(seconds=120)
    assert "User request limit reached" in batch.last_error

    deliver(NOW + timedelta(seconds=119))
    assert sent(meta) == 0, "not before Retry-After"
    deliver(NOW + timedelta(seconds=120))
    assert the_batch().status == "delivered" and sent(meta) == 1


def test_a_retry_after_given_as_an_http_date_is_honoured_too(meta, audience):
    from email.utils import format_datetime

    pixel(audience)
    join(audience)
    meta.fail_next(1, 503, retry_after=format_datetime(NOW + timedelta(minutes=7), usegmt=True))
    deliver(NOW)
    assert the_batch().next_attempt_at == NOW + timedelta(minutes=7)


def test_5xx_answers_back_off_exponentially(meta, audience, settings):
    settings.AD_PLATFORM_BACKOFF_SECONDS = 30
    pixel(audience)
    join(audience)
    meta.fail_next(2, 503)
    deliver(NOW)
    assert the_batch().next_attempt_at == NOW + timedelta(seconds=30)
    deliver(NOW + timedelta(seconds=30))
    assert the_batch().next_attempt_at == NOW + timedelta(seconds=30 + 60)
    deliver(NOW + timedelta(seconds=90))
    assert the_batch().status == "delivered"
    assert the_batch().attempts == 3


def test_a_batch_is_dead_after_the_last_attempt_with_the_apis_error_shown(meta, audience, settings):
    settings.AD_PLATFORM_MAX_ATTEMPTS = 3
    destination = pixel(audience)
    join(audience)
    meta.fail_next(10, 500)
    deliver(NOW, rounds=5, step=timedelta(hours=7))
    batch = the_batch()
    assert batch.status == "dead" and batch.attempts == 3
    assert "An unknown error has occurred." in batch.last_error
    destination.refresh_from_db()
    assert "HTTP 500" in destination.last_error and destination.last_success_at is None

    assert outbox.retry_dead([batch.id], now=NOW) == 1
    meta.faults.clear()
    deliver(NOW + timedelta(days=1))
    assert the_batch().status == "delivered"


def test_a_permanent_error_is_dead_at_once_with_metas_message(meta, audience):
    pixel(audience)
    join(audience)
    meta.fail_next(1, 400, body=MetaStandIn.error(
        "Invalid parameter", subcode=2804050))  # fmt: skip
    deliver(NOW)
    batch = the_batch()
    assert batch.status == "dead" and batch.attempts == 1
    assert batch.last_error == "HTTP 400: Invalid parameter (OAuthException, 100, 2804050)"


def test_no_answer_at_all_is_retried(audience, settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        settings.META_GRAPH_URL = f"http://127.0.0.1:{s.getsockname()[1]}"
    pixel(audience)
    join(audience)
    deliver(NOW)
    batch = the_batch()
    assert batch.status == "pending" and batch.last_status_code is None
    assert batch.last_error == "connection refused"


def test_a_destinations_later_batches_wait_for_its_failing_first_one(meta, audience, settings):
    settings.META_CAPI_BATCH_SIZE = 1
    pixel(audience)
    join(audience, 2)
    meta.fail_next(1, 503)
    deliver(NOW)
    assert sent(meta) == 0, "the second batch does not overtake the first"
    deliver(NOW + timedelta(minutes=1), rounds=2)
    first, second = meta.events["1234567890"]
    assert first["event_id"] < second["event_id"]


def test_one_failing_destination_does_not_hold_back_another(meta, audience, settings):
    ga4 = GA4StandIn(measurement_id=GA4_MEASUREMENT, api_secret=GA4_SECRET)
    settings.GA4_MP_URL = ga4.url
    try:
        failing = pixel(audience)
        healthy = PlatformDestination(audience=audience, name="GA4", kind="ga4",
                                      measurement_id=GA4_MEASUREMENT)  # fmt: skip
        healthy.credential = GA4_SECRET
        healthy.save()
        join(audience, 3)
        meta.fail_next(100, 503)
        deliver(NOW, rounds=3)
        assert len(ga4.events) == 3 and ga4.violations == []
        assert PlatformBatch.objects.get(destination=healthy).status == "delivered"
        assert PlatformBatch.objects.get(destination=failing).status == "pending"
    finally:
        ga4.close()


def test_two_batchers_never_put_a_change_in_two_batches(meta, audience):
    from django.db import IntegrityError, transaction

    destination = pixel(audience)
    join(audience)
    outbox.batch_changes(now=NOW)
    batch = the_batch()
    with pytest.raises(IntegrityError), transaction.atomic():
        PlatformBatch.objects.create(destination=destination, change_ids=batch.change_ids,
                                     first_change_id=batch.first_change_id,
                                     next_attempt_at=NOW, created_at=NOW)  # fmt: skip


def test_a_disabled_destination_gets_nothing(meta, audience):
    destination = pixel(audience)
    destination.enabled = False
    destination.save()
    join(audience)
    deliver(NOW)
    assert sent(meta) == 0 and not PlatformBatch.objects.exists()


def test_a_ga4_batch_resumes_after_its_last_answered_request_even_if_a_leave_came_since(
    audience, settings
):
    ga4 = GA4StandIn(measurement_id=GA4_MEASUREMENT, api_secret=GA4_SECRET)
    settings.GA4_MP_URL = ga4.url
    try:
        destination = PlatformDestination(audience=audience, name="GA4", kind="ga4",
                                          measurement_id=GA4_MEASUREMENT)  # fmt: skip
        destination.credential = GA4_SECRET
        destination.save()
        first, second, third = join(audience, 3)
        outbox.batch_changes(now=NOW)
        (batch_id,) = outbox.claim_due(now=NOW)
        # The first request is answered, the second refused.
        original = ga4.dispatch

        def second_fails(method, path, query, headers, body, calls=[0]):  # noqa: B006
            calls[0] += 1
            if calls[0] == 2:
                return 503, {}, None
            return original(method, path, query, headers, body)

        ga4.dispatch = second_fails
        outbox.send_batch(batch_id, now=NOW)
        assert PlatformBatch.objects.get().requests_done == 1
        # The first browser's member leaves before the retry.
        membership.leave_on_conversion([first.id], now=NOW)
        ga4.dispatch = original
        deliver(NOW + timedelta(minutes=5), rounds=2)
        clients = [
            client for client, event in ga4.events if event["name"].startswith("reengage_join")
        ]
        assert sorted(clients) == sorted(f"{p.id}.1" for p in (first, second, third))
        leaves = [client for client, event in ga4.events if "leave" in event["name"]]
        assert leaves == [f"{first.id}.1"]
    finally:
        ga4.close()
