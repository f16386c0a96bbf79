"""Many emails in flight at once, through the real Anymail Postmark backend, against a
stand-in of Postmark's API at the HTTP boundary (tests/email/postmark_standin.py):
concurrency, the per-site limit, 429 Retry-After, rate limits, exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections

from campaigns.email import pacing, sending
from campaigns.models import CampaignOptOut, EmailSettings, Message, Suppression
from campaigns.models.email import email_hash
from tests.email.conftest import T0, make_campaign, queue_messages
from tests.email.postmark_standin import PostmarkStandIn, postmark_settings
from tests.factories import make_site
from tracking.models import Profile

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_pacing(redis_client):
    """Rate windows and pauses live in the test Redis DB (flushed by redis_client)."""
    pacing.reset()
    yield
    pacing.reset()


@pytest.fixture
def standin(request):
    options = getattr(request, "param", {})
    server = PostmarkStandIn(**options).start()
    yield server
    server.stop()


@pytest.fixture
def postmark(settings, standin):
    """The real `anymail.backends.postmark.EmailBackend`, pointed at the stand-in."""
    for name, value in postmark_settings(standin.url).items():
        setattr(settings, name, value)
    return standin


def send_all(at=T0, **options):
    # No backend given: every sending thread opens its own Postmark connection.
    return sending.send_queued(clock=lambda: at, **options)


def statuses(**filters) -> dict[str, int]:
    found: dict[str, int] = {}
    for status in Message.objects.filter(**filters).values_list("status", flat=True):
        found[status] = found.get(status, 0) + 1
    return found


@pytest.mark.parametrize("standin", [{"latency": 0.2}], indirect=True)
def test_twenty_emails_are_in_flight_at_the_esp_at_the_same_time(postmark):
    campaign, step, _ = make_campaign()
    messages = queue_messages(campaign, step, 20)

    report = send_all()

    assert report.counts == {"sent": 20}
    # Serially the stand-in would never see more than one request at a time.
    assert postmark.max_in_flight >= 16
    assert postmark.refused == []
    assert set(postmark.accepted.values()) == {1}
    for message in Message.objects.filter(pk__in=[m.pk for m in messages]):
        assert message.status == "sent"
        assert message.esp_message_id == postmark.message_ids[str(message.pk)]
    body = postmark.bodies[0]
    assert body["Tag"].startswith("campaign-")  # one tag: EMAIL_MAX_TAGS=1 for Postmark
    assert {h["Name"] for h in body["Headers"]} >= {"List-Unsubscribe", "Message-ID"}


@pytest.mark.parametrize("standin", [{"latency": 0.1}], indirect=True)
def test_a_site_never_has_more_than_its_concurrency_in_flight(postmark, settings):
    settings.EMAIL_SEND_SITE_CONCURRENCY = 3
    campaign, step, _ = make_campaign()
    queue_messages(campaign, step, 12)

    assert send_all().counts == {"sent": 12}

    assert postmark.max_in_flight == 3


@pytest.mark.parametrize(
    "standin", [{"latency": 0.2, "throttle_first": 1, "retry_after": "30"}], indirect=True
)
def test_a_429_with_retry_after_pauses_the_site_and_halves_its_concurrency(
    postmark, settings, redis_client
):
    settings.EMAIL_SEND_SITE_CONCURRENCY = 4
    throttled_campaign, throttled_step, _ = make_campaign()
    postmark.throttle_site = str(throttled_campaign.site_id)
    other_campaign, other_step, _ = make_campaign(make_site(postal_address="2 Other Street"))
    queue_messages(throttled_campaign, throttled_step, 10)
    queue_messages(other_campaign, other_step, 6, prefix="other")
    site_id = throttled_campaign.site_id

    report = send_all()

    # The four in flight when the 429 came: one refused, three accepted. The other six
    # were claimed but never sent: back in the queue until Retry-After.
    assert report.throttled_sites == [site_id]
    assert statuses(site_id=site_id) == {"sent": 3, "queued": 7}
    refused = Message.objects.get(site_id=site_id, status="queued", attempts=1)
    assert "429" in refused.error
    assert refused.not_before == T0 + timedelta(seconds=30)
    held = Message.objects.filter(site_id=site_id, status="queued").exclude(pk=refused.pk)
    assert {(m.not_before, m.attempts) for m in held} == {(T0 + timedelta(seconds=30), 0)}
    # The other site is not held back.
    assert statuses(site_id=other_campaign.site_id) == {"sent": 6}
    # Halved to 2 by the 429, then grown by one after as many successes (the three
    # accepted): below the 4 it had.
    assert pacing.site_concurrency(site_id) == 3
    # Every worker sees the pause (Redis), before the messages' own not_before.
    assert (
        float(redis_client.hget(pacing.PAUSED_KEY, str(site_id)))
        == (T0 + timedelta(seconds=30)).timestamp()
    )
    Message.objects.filter(site_id=site_id, status="queued").update(not_before=None)
    assert send_all(at=T0 + timedelta(seconds=10)).total == 0

    assert send_all(at=T0 + timedelta(seconds=31)).counts == {"sent": 7}
    assert pacing.site_concurrency(site_id) == 4  # grown back to the cap
    assert set(postmark.accepted.values()) == {1}


@pytest.mark.parametrize(
    "standin", [{"latency": 0.01, "throttle_first": 1, "retry_after": "1"}], indirect=True
)
def test_a_run_waits_out_a_short_retry_after_and_sends_the_rest(postmark, settings):
    from django.utils import timezone

    settings.EMAIL_SEND_SITE_CONCURRENCY = 1
    campaign, step, _ = make_campaign()
    queue_messages(campaign, step, 3)

    started = timezone.now()
    report = sending.send_queued()  # the real clock: the pause really passes

    assert report.counts == {"retried": 1, "sent": 3}
    assert report.throttled_sites == [campaign.site_id]
    assert statuses() == {"sent": 3}
    first_sent = Message.objects.order_by("sent_at").first().sent_at
    assert first_sent >= started + timedelta(seconds=1), "nothing went out during the pause"


@pytest.mark.parametrize("standin", [{"latency": 0.05}], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_senders_stay_within_the_sites_per_minute_limit(postmark):
    campaign, step, _ = make_campaign()
    EmailSettings.objects.create(site=campaign.site, sends_per_minute=7)
    queue_messages(campaign, step, 30)

    run_side_by_side(lambda: send_all(), lambda: send_all())

    assert sum(postmark.accepted.values()) == 7
    assert statuses() == {"sent": 7, "queued": 23}
    held = Message.objects.filter(status="queued")
    assert {m.not_before for m in held} <= {None, T0 + timedelta(minutes=1)}
    assert {m.attempts for m in held} == {0}  # held back is not an attempt

    run_side_by_side(lambda: send_all(T0 + timedelta(minutes=1)))
    assert sum(postmark.accepted.values()) == 14


@pytest.mark.parametrize("standin", [{"latency": 0.05}], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_the_esp_account_limit_holds_across_sites(postmark, settings):
    settings.EMAIL_ESP_SENDS_PER_MINUTE = 5
    first, first_step, _ = make_campaign()
    second, second_step, _ = make_campaign(make_site(postal_address="2 Other Street"))
    queue_messages(first, first_step, 4)
    queue_messages(second, second_step, 4, prefix="other")

    run_side_by_side(lambda: send_all(), lambda: send_all())

    assert sum(postmark.accepted.values()) == 5
    assert statuses() == {"sent": 5, "queued": 3}


@pytest.mark.parametrize("standin", [{"latency": 0.01}], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_senders_send_each_message_exactly_once(postmark):
    campaign, step, _ = make_campaign()
    EmailSettings.objects.create(site=campaign.site, sends_per_minute=1_000_000)
    messages = queue_messages(campaign, step, 200)

    reports = run_side_by_side(lambda: send_all(), lambda: send_all())

    assert sum(r.counts.get("sent", 0) for r in reports) == 200
    assert all(r.counts.get("sent", 0) > 0 for r in reports), "both senders took a share"
    assert set(postmark.accepted) == {str(m.pk) for m in messages}
    assert set(postmark.accepted.values()) == {1}
    for message_id, esp_id in Message.objects.values_list("pk", "esp_message_id"):
        assert esp_id == postmark.message_ids[str(message_id)]


@pytest.mark.parametrize("standin", [{"latency": 0.05}], indirect=True)
def test_suppression_and_consent_are_rechecked_for_each_message_of_a_batch(postmark):
    campaign, step, _ = make_campaign()
    messages = queue_messages(campaign, step, 10)
    bounced, opted_out, declined, unverified, *fine = messages
    site = campaign.site
    Suppression.objects.create(site=site, email_hash=email_hash(bounced.to_email), reason="bounced")
    CampaignOptOut.objects.create(
        site=site, campaign=campaign, email_hash=email_hash(opted_out.to_email)
    )
    Profile.objects.filter(pk=declined.profile_id).update(consent={"email": False})
    Profile.objects.filter(pk=unverified.profile_id).update(email_verified=False)

    report = send_all()

    assert report.counts == {"suppressed": 4, "sent": 6}
    assert {b["To"] for b in postmark.bodies} == {m.to_email for m in fine}
    errors = dict(Message.objects.filter(status="suppressed").values_list("pk", "error"))
    assert errors == {
        bounced.pk: "suppressed: bounced",
        opted_out.pk: "suppressed: left this campaign",
        declined.pk: "suppressed: email consent withdrawn",
        unverified.pk: "suppressed: email no longer verified",
    }


@pytest.mark.parametrize("standin", [{"latency": 0.0}], indirect=True)
def test_a_run_that_stops_at_its_limit_says_there_is_more_work(postmark):
    campaign, step, _ = make_campaign()
    queue_messages(campaign, step, 10)

    first = send_all(limit=6)
    second = send_all(limit=6)

    assert (first.counts, first.more_work) == ({"sent": 6}, True)
    assert (second.counts, second.more_work) == ({"sent": 4}, False)


def test_the_send_task_requeues_itself_until_the_queue_is_empty(settings):
    from campaigns.tasks.email import send_queued_email
    from reengage.celery import app

    settings.EMAIL_SEND_BATCH = 4  # most messages per run
    campaign, step, _ = make_campaign()
    queue_messages(campaign, step, 10)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True  # the re-queued runs run here, one after another
    try:
        counts = send_queued_email()
    finally:
        app.conf.task_always_eager = eager

    assert counts == {"sent": 4}  # the first run's; the next ones sent the rest
    assert statuses() == {"sent": 10}


def run_side_by_side(*runs):
    """Each run on its own thread and database connection, as two workers would."""
    reports: list = [None] * len(runs)

    def worker(index, run):
        try:
            reports[index] = run()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, r)) for i, r in enumerate(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(r is not None for r in reports), "a sender failed"
    return reports
