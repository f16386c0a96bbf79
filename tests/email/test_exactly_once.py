"""A send worker SIGKILLed mid-batch of 1,000: no message reaches the ESP twice.

Twice over, once per way of sending (campaigns/email/sending.py, step 3):
- through the sending threads, to the dev mailbox (`campaigns.email.devmail.EmailBackend`),
  which commits one row per email it accepts and can tell recovery what it received,
  so every message ends `sent`, each received exactly once;
- through the event loop, with the real Anymail Postmark backend and the Postmark
  stand-in at the HTTP boundary (tests/email/postmark_standin.py), which counts what it
  accepted per message. Postmark cannot be asked what it received, so what was in
  flight when the worker died is marked "interrupted, check ESP", never resent: each
  message is accepted at most once, every `sent` one exactly once with its MessageID,
  and only interrupted ones (at most the concurrency) can be missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.mail import get_connection
from django.db.models import Count
from django.utils import timezone

from campaigns.email import sending
from campaigns.models import DevMail, EmailSettings, Enrollment, Message
from tests.conftest import ROOT, child_env
from tests.email.conftest import T0, TRIGGER, make_campaign
from tests.email.postmark_standin import TOKEN, PostmarkStandIn, postmark_settings
from tracking.models import Profile

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

COUNT = 1000
POSTMARK = "anymail.backends.postmark.EmailBackend"


def queue_many(campaign, step, count: int) -> list[int]:
    site = campaign.site
    profiles = Profile.objects.bulk_create(
        Profile(site=site, email=f"p{i}@example.com", email_verified=True,
                traits={"first_name": f"P{i}"}, consent={"email": True},
                first_seen_at=T0, last_seen_at=T0)
        for i in range(count)
    )  # fmt: skip
    enrollments = Enrollment.objects.bulk_create(
        Enrollment(site=site, campaign=campaign, profile=p, enrolled_at=T0,
                   last_activity_at=T0, trigger_properties=TRIGGER)
        for p in profiles
    )  # fmt: skip
    messages = Message.objects.bulk_create(
        Message(site=site, campaign=campaign, step=step, position=0, enrollment=e,
                profile=e.profile, template=step.template, to_email=e.profile.email,
                created_at=T0)
        for e in enrollments
    )  # fmt: skip
    return [m.pk for m in messages]


def start_worker(name: str, **env: str) -> subprocess.Popen:
    log = open(ROOT / ".data" / f"test-email-{name}.log", "w")  # noqa: SIM115
    env = env or {"EMAIL_BACKEND": "campaigns.email.devmail.EmailBackend"}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "reengage", "worker", "--pool", "solo",
         "-l", "WARNING", "-n", f"email-{name}-{os.getpid()}@%h", "--without-heartbeat",
         "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=child_env(**env), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def kill_mid_batch(worker: subprocess.Popen, received, what: str) -> None:
    """The periodic task, delivered twice, then SIGKILL once 300 emails are received."""
    from campaigns.tasks.email import send_queued_email

    try:
        send_queued_email.delay()
        send_queued_email.delay()
        wait_for(lambda: received() >= 300, 180, what)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def race_for_the_rest(worker: subprocess.Popen, backend=None) -> None:
    """Two senders race for what is left, a new worker and this process, until every
    message is settled."""
    from campaigns.tasks.email import send_queued_email

    try:
        send_queued_email.delay()
        sending.send_queued(budget_seconds=120, backend=backend)
        wait_for(
            lambda: not Message.objects.filter(status__in=["queued", "sending"]).exists(),
            120,
            "every message to be settled",
        )
    finally:
        worker.terminate()
        worker.wait(timeout=15)


def dev_mailbox():
    return get_connection("campaigns.email.devmail.EmailBackend")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    left = list(
        Message.objects.exclude(status="sent")
        .values("status", "not_before", "attempts", "error")
        .annotate(n=Count("id"))
    )
    pytest.fail(f"timed out waiting for {what}; not sent: {left}")


def test_a_worker_killed_mid_batch_still_sends_each_message_exactly_once(redis_client):

    campaign, step, _ = make_campaign()
    EmailSettings.objects.create(site=campaign.site, sends_per_minute=1_000_000)
    ids = queue_many(campaign, step, COUNT)
    (ROOT / ".data").mkdir(exist_ok=True)

    kill_mid_batch(start_worker("first"), DevMail.objects.count, "300 emails sent")
    received_before_recovery = DevMail.objects.count()
    assert 300 <= received_before_recovery < COUNT, "the kill must land mid-batch"
    # At most the worker's concurrency is left in `sending` (in flight, or sent and not
    # yet finished): never the rest of a claimed batch.
    assert Message.objects.filter(status="sending").count() <= settings.EMAIL_SEND_CONCURRENCY

    # Beat's recovery, once the killed task could no longer be running (clock moved).
    # (pytest-django swaps EMAIL_BACKEND for locmem in this process: name the backend.)
    sending.recover_interrupted(now=timezone.now() + timedelta(hours=1), backend=dev_mailbox())

    race_for_the_rest(start_worker("second"), backend=dev_mailbox())

    per_message = dict(
        DevMail.objects.values("message_id").annotate(n=Count("id")).values_list("message_id", "n")
    )
    assert len(per_message) == COUNT
    assert set(per_message.values()) == {1}, "no message was received twice"
    assert set(per_message) == set(ids)
    assert Message.objects.filter(status="sent").count() == COUNT
    esp_ids = dict(DevMail.objects.values_list("message_id", "esp_message_id"))
    for message_id, esp_id in Message.objects.values_list("id", "esp_message_id"):
        assert esp_ids[message_id] == esp_id


def test_a_worker_killed_mid_batch_sending_through_the_event_loop_resends_nothing(
    redis_client, settings
):

    # Each request waits 20 ms at the ESP: the kill finds emails in flight.
    postmark = PostmarkStandIn(latency=0.02).start()
    try:
        for name, value in postmark_settings(postmark.url).items():
            setattr(settings, name, value)
        env = {"EMAIL_BACKEND": POSTMARK, "ANYMAIL_POSTMARK_SERVER_TOKEN": TOKEN,
               "ANYMAIL_POSTMARK_API_URL": postmark.url, "EMAIL_MAX_TAGS": "1"}  # fmt: skip
        campaign, step, _ = make_campaign()
        EmailSettings.objects.create(site=campaign.site, sends_per_minute=1_000_000)
        ids = queue_many(campaign, step, COUNT)
        (ROOT / ".data").mkdir(exist_ok=True)

        def accepted() -> int:
            return sum(postmark.accepted.values())

        kill_mid_batch(start_worker("loop-first", **env), accepted, "300 emails accepted")
        assert 300 <= accepted() < COUNT, "the kill must land mid-batch"
        left = Message.objects.filter(status="sending").count()
        assert 0 < left <= settings.EMAIL_SEND_CONCURRENCY

        recovered = sending.recover_interrupted(now=timezone.now() + timedelta(hours=1))
        assert recovered == {"reconciled": 0, "requeued": 0, "failed": left}
        race_for_the_rest(start_worker("loop-second", **env))
    finally:
        postmark.stop()

    assert set(postmark.accepted.values()) == {1}, "no message was accepted twice"
    statuses = dict(Message.objects.values_list("id", "status"))
    interrupted = {i for i, status in statuses.items() if status == "failed"}
    assert len(interrupted) == left
    errors = dict(Message.objects.filter(id__in=interrupted).values_list("id", "error"))
    for message_id, error in errors.items():
        assert error.startswith(f"{sending.INTERRUPTED} for Message-ID <reengage.{message_id}@")
    sent = {i for i, status in statuses.items() if status == "sent"}
    assert sent | interrupted == set(ids)
    assert {str(i) for i in sent} <= set(postmark.accepted), "every sent one was accepted"
    assert set(postmark.accepted) <= {str(i) for i in ids}
    for message_id, esp_id in Message.objects.filter(id__in=sent).values_list(
        "id", "esp_message_id"
    ):
        assert postmark.message_ids[str(message_id)] == esp_id
