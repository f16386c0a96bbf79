"""Sending queued Messages: headers, suppression, retries, exactly once, rate limit."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
import requests
import urllib3
from anymail.exceptions import AnymailAPIError
from django.core import mail
from django.core.mail import get_connection
from django.test import override_settings

from campaigns.email import composing, sending
from campaigns.models import (
    CampaignOptOut,
    DevMail,
    EmailSettings,
    Message,
    PromoCode,
    PromoPool,
    StepPromo,
    StepVariant,
    Suppression,
)
from campaigns.models.email import email_hash
from tests.email.conftest import T0, make_campaign, make_template, queue_messages

pytestmark = pytest.mark.django_db

ANYMAIL_TEST = "anymail.backends.test.EmailBackend"


@pytest.fixture(autouse=True)
def _clean_rate_limits(redis_client):
    """Rate-limit counters live in the test Redis DB (flushed by redis_client)."""


def esp_error(status: int, text: str) -> AnymailAPIError:
    """What Anymail raises for an ESP's HTTP error answer."""
    response = requests.Response()
    response.status_code, response.reason = status, text
    response._content = b'{"ErrorCode": 0, "Message": "%s"}' % text.encode()
    return AnymailAPIError(text, status_code=status, response=response)


def clock():
    return T0


def send_all(backend=None):
    return sending.send_queued(clock=clock, backend=backend or get_connection(ANYMAIL_TEST))


def test_it_sends_a_queued_message_with_metadata_tags_and_unsubscribe_headers():
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)

    report = send_all()

    assert report.counts == {"sent": 1}
    [email] = mail.outbox
    params = email.anymail_test_params
    assert params["metadata"]["message_id"] == str(message.pk)
    assert params["tags"] == [
        f"campaign-{campaign.pk}",
        f"step-{step.pk}",
        f"site-{campaign.site_id}",
    ]
    headers = params["extra_headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https_link, mailto = headers["List-Unsubscribe"].split(", ")
    assert https_link.startswith("<http") and "/email/unsubscribe/" in https_link
    assert mailto.startswith("<mailto:hello@shop.test?subject=unsubscribe")
    assert headers["List-Id"] == f'"Shop" <site-{campaign.site_id}.127.0.0.1>'
    assert email.subject == "Ada, your cart is waiting"
    html = email.alternatives[0][0]
    assert "Shop Ltd, 1 Market Street, Leeds" in html
    assert "Linen shirt" in html and "style=" in html  # CSS inlined
    assert "Unsubscribe:" in email.body  # text part generated, with the footer
    message.refresh_from_db()
    assert message.status == "sent"
    assert message.esp_message_id == "0"  # the test backend's id for the first email
    assert message.sent_at == T0


def test_a_duplicate_task_or_second_worker_does_not_send_again():
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)
    backend = get_connection(ANYMAIL_TEST)

    assert sending.send_one(message.pk, clock=clock, backend=backend) == "sent"
    assert sending.send_one(message.pk, clock=clock, backend=backend) == "skipped"
    assert send_all(backend).total == 0

    assert len(mail.outbox) == 1


def test_it_rechecks_suppression_and_campaign_opt_out_at_send_time():
    campaign, step, _ = make_campaign()
    suppressed, opted_out, fine = queue_messages(campaign, step, 3)
    Suppression.objects.create(
        site=campaign.site, email_hash=email_hash(suppressed.to_email.upper()), reason="bounced"
    )
    CampaignOptOut.objects.create(
        site=campaign.site, campaign=campaign, email_hash=email_hash(opted_out.to_email)
    )

    report = send_all()

    assert report.counts == {"suppressed": 2, "sent": 1}
    assert [e.to for e in mail.outbox] == [[fine.to_email]]
    suppressed.refresh_from_db()
    assert suppressed.status == "suppressed" and suppressed.error == "suppressed: bounced"


def test_it_refuses_a_header_injected_through_a_trait():
    campaign, step, template = make_campaign()
    template.subject = "Hello {{ traits.name }}"
    template.save()
    [message] = queue_messages(campaign, step)
    message.profile.traits = {"name": "Ada\r\nBcc: victim@example.com"}
    message.profile.save()

    report = send_all()

    assert report.counts == {"failed": 1}
    assert mail.outbox == []
    message.refresh_from_db()
    assert message.status == "failed"
    assert "header injection refused: Subject" in message.error


def test_a_transient_esp_error_is_retried_later_with_backoff():
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)

    class Unavailable(get_connection(ANYMAIL_TEST).__class__):
        def post_to_esp(self, payload, message):
            raise esp_error(503, "Service Unavailable")

    report = send_all(Unavailable())

    assert report.counts == {"retried": 1}
    message.refresh_from_db()
    assert message.status == "queued"
    assert message.not_before == T0 + timedelta(seconds=60)
    assert "503" in message.error
    # Not due yet: the next run at the same time leaves it alone.
    assert send_all().total == 0


def test_a_permanent_esp_error_is_recorded_with_the_reason():
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)

    class Refusing(get_connection(ANYMAIL_TEST).__class__):
        def post_to_esp(self, payload, message):
            raise esp_error(422, "Invalid 'From' address")

    assert send_all(Refusing()).counts == {"failed": 1}
    message.refresh_from_db()
    assert message.status == "failed"
    assert "Invalid 'From' address" in message.error


def test_an_interrupted_send_is_flagged_for_checking_not_resent():
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)
    # A worker claimed it and was killed before recording the outcome.
    Message.objects.filter(pk=message.pk).update(status="sending", claimed_at=T0)

    result = sending.recover_interrupted(
        now=T0 + timedelta(hours=1), backend=get_connection(ANYMAIL_TEST)
    )

    assert result == {"reconciled": 0, "requeued": 0, "failed": 1}
    message.refresh_from_db()
    assert message.status == "failed"
    assert message.error.startswith("interrupted mid-send, check ESP")
    assert f"<reengage.{message.pk}@" in message.error
    assert send_all().total == 0 and mail.outbox == []


def test_a_recent_sending_message_is_left_to_its_worker():
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)
    Message.objects.filter(pk=message.pk).update(status="sending", claimed_at=T0)

    result = sending.recover_interrupted(now=T0 + timedelta(seconds=30))

    assert result == {"reconciled": 0, "requeued": 0, "failed": 0}


def test_a_backend_that_can_tell_what_it_received_reconciles_interrupted_sends():
    campaign, step, _ = make_campaign()
    received, never_received = queue_messages(campaign, step, 2)
    backend = get_connection("campaigns.email.devmail.EmailBackend")
    # Both claimed; the worker died after the backend took the first one.
    assert sending.claim_one(received.pk, T0) and sending.claim_one(never_received.pk, T0)
    DevMail.objects.create(message=received, esp_message_id="dev-1", from_email="x", to="y",
                           subject="z")  # fmt: skip

    result = sending.recover_interrupted(now=T0 + timedelta(hours=1), backend=backend)

    assert result == {"reconciled": 1, "requeued": 1, "failed": 0}
    received.refresh_from_db()
    never_received.refresh_from_db()
    assert (received.status, received.esp_message_id) == ("sent", "dev-1")
    assert never_received.status == "queued"


def test_the_per_site_rate_limit_holds_the_rest_for_the_next_minute():
    campaign, step, _ = make_campaign()
    EmailSettings.objects.create(site=campaign.site, sends_per_minute=2)
    queue_messages(campaign, step, 5)

    report = send_all()

    assert report.counts == {"sent": 2}
    assert report.rate_limited_sites == [campaign.site_id]
    held = Message.objects.filter(status="queued")
    assert held.count() == 3
    assert {m.not_before for m in held} <= {None, T0 + timedelta(minutes=1)}
    # Another worker in the same minute shares the window (Redis): it sends nothing.
    assert send_all().total == 0
    assert Message.objects.filter(status="sent").count() == 2


def test_variants_are_stable_per_person_and_recorded_on_the_message():
    campaign, step, template_a = make_campaign()
    template_b = make_template(campaign.site, name="B", subject="Variant B")
    StepVariant.objects.create(step=step, template=template_a, share=50)
    StepVariant.objects.create(step=step, template=template_b, share=50)
    messages = queue_messages(campaign, step, 40)

    send_all()

    chosen = {m.pk: m.template_id for m in Message.objects.filter(pk__in=[m.pk for m in messages])}
    assert set(chosen.values()) == {template_a.pk, template_b.pk}
    for message in messages:
        variants = sending.RunCache().variants_for(step.pk)
        again = composing.choose_variant(variants, str(message.profile_id), step.pk)
        assert again.pk == chosen[message.pk]
    subjects = {e.to[0]: e.subject for e in mail.outbox}
    b_message = next(m for m in messages if chosen[m.pk] == template_b.pk)
    assert subjects[b_message.to_email] == "Variant B"


def test_each_pool_code_is_handed_out_at_most_once():
    campaign, step, _ = make_campaign()
    pool = PromoPool.objects.create(site=campaign.site, name="Spring")
    PromoCode.objects.bulk_create([PromoCode(pool=pool, code=f"SPRING-{i}") for i in range(3)])
    StepPromo.objects.create(step=step, pool=pool)
    messages = queue_messages(campaign, step, 4)

    report = send_all()

    assert report.counts == {"sent": 3, "failed": 1}
    codes = list(Message.objects.filter(status="sent").values_list("promo_code", flat=True))
    assert sorted(codes) == ["SPRING-0", "SPRING-1", "SPRING-2"]
    html_to = {e.to[0]: e.alternatives[0][0] for e in mail.outbox}
    for sent in Message.objects.filter(status="sent"):
        assert sent.promo_code in html_to[sent.to_email]
    failed = Message.objects.get(status="failed")
    assert "no codes left" in failed.error
    assert PromoCode.objects.filter(message__isnull=False).count() == 3
    assert len(messages) == 4


def test_a_code_cannot_be_given_to_two_messages_by_the_database():
    from django.db import IntegrityError, transaction

    campaign, step, _ = make_campaign()
    first, second = queue_messages(campaign, step, 2)
    pool = PromoPool.objects.create(site=campaign.site, name="P")
    code = PromoCode.objects.create(pool=pool, code="ONCE", message=first)
    with pytest.raises(IntegrityError), transaction.atomic():
        PromoCode.objects.create(pool=pool, code="ONCE", message=second)
    assert PromoCode.objects.get(pk=code.pk).message_id == first.pk


@override_settings(EMAIL_BACKEND="campaigns.email.devmail.EmailBackend")
def test_the_development_backend_keeps_the_rendered_email_for_the_admin():
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)

    sending.send_queued(clock=clock)

    [kept] = DevMail.objects.all()
    assert kept.message_id == message.pk
    assert kept.subject == "Ada, your cart is waiting"
    assert "Linen shirt" in kept.html
    assert kept.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    message.refresh_from_db()
    assert message.esp_message_id == kept.esp_message_id


def test_a_message_inserted_with_only_the_engines_columns_can_be_sent():
    """The engine inserts Messages with raw SQL naming its own columns; new ones need DB defaults."""
    from django.db import connection

    campaign, step, _ = make_campaign()
    [model] = queue_messages(campaign, step)
    Message.objects.filter(pk=model.pk).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO campaigns_message
                (site_id, campaign_id, step_id, position, enrollment_id, profile_id, template_id,
                 to_email, status, created_at, claimed_at, sent_at, esp_message_id, error, attempts)
            VALUES (%s, %s, %s, 0, %s, %s, %s, %s, 'queued', %s, NULL, NULL, '', '', 0)
            """,
            [campaign.site_id, campaign.pk, step.pk, model.enrollment_id, model.profile_id,
             step.template_id, model.to_email, T0],
        )  # fmt: skip

    assert send_all().counts == {"sent": 1}


@override_settings(EMAIL_SEND_CONCURRENCY=50)
def test_forty_emails_are_claimed_loaded_checked_and_finished_in_batches():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    campaign, step, _ = make_campaign()
    queue_messages(campaign, step, 40)
    backend = get_connection(ANYMAIL_TEST)

    with CaptureQueriesContext(connection) as queries:
        report = sending.send_queued(clock=clock, backend=backend)

    assert report.counts == {"sent": 40}
    kinds = Counter(query_kind(q["sql"]) for q in queries.captured_queries)
    # Per run: email settings, step variants, step promo. For all 40 emails: one claim,
    # one load (messages and relations), one suppression + opt-out lookup; then the
    # claim that finds the queue empty; the finishes as the ESP's answers come in
    # (every 50 ms at most, or when half the slots are waiting): a few, not 40.
    assert kinds["claim"] == 2
    assert kinds["load"] == 1
    assert kinds["suppressions"] == 1
    assert kinds["lookups"] == 3
    assert 1 <= kinds["finish"] <= 5
    assert sum(kinds.values()) <= 12  # three per email (120) before batching


@override_settings(EMAIL_SEND_CONCURRENCY=8)
def test_a_run_reads_the_site_template_and_campaign_once_not_once_per_batch():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    campaign, step, _ = make_campaign()
    queue_messages(campaign, step, 40)
    with CaptureQueriesContext(connection) as queries:
        report = sending.send_queued(clock=clock, backend=get_connection(ANYMAIL_TEST))

    assert report.counts == {"sent": 40}
    sqls = [q["sql"] for q in queries.captured_queries]
    assert sum(query_kind(sql) == "claim" for sql in sqls) >= 6  # 8 at a time at most
    for table in ("tracking_site", "campaigns_emailtemplate", "campaigns_campaign"):
        assert sum(sql.startswith("SELECT") and f'FROM "{table}"' in sql for sql in sqls) == 1


def test_a_run_reads_an_edited_template_again_once_its_copy_is_older_than_the_interval():
    from campaigns.email.delivery import RunCache
    from campaigns.models import EmailTemplate

    _, _, template = make_campaign()
    cache = RunCache()
    cache.shared_for = 0.2
    assert cache.rows(EmailTemplate, {template.pk})[template.pk].subject == template.subject
    EmailTemplate.objects.filter(pk=template.pk).update(subject="Edited")
    assert cache.rows(EmailTemplate, {template.pk})[template.pk].subject == template.subject
    time.sleep(0.25)
    assert cache.rows(EmailTemplate, {template.pk})[template.pk].subject == "Edited"


def query_kind(sql: str) -> str:
    if "SET status = 'sending'" in sql:
        return "claim"
    if "unnest(" in sql:
        return "finish"
    if "campaigns_suppression" in sql:
        return "suppressions"
    if 'FROM "campaigns_message"' in sql:
        return "load"
    if any(
        t in sql
        for t in ("campaigns_emailsettings", "campaigns_stepvariant", "campaigns_steppromo")
    ):
        return "lookups"
    return sql[:60]


@pytest.mark.parametrize(
    ("cause", "status", "error_starts"),
    [
        (requests.ConnectionError("connection refused"), "queued", "attempt 1:"),
        (requests.ReadTimeout("read timed out"), "failed", "outcome unknown"),
        (
            requests.ConnectionError(
                urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104))
            ),
            "failed",
            "outcome unknown",
        ),
    ],
)
def test_a_network_error_is_retried_only_when_the_esp_surely_did_not_take_the_email(
    cause, status, error_starts
):
    campaign, step, _ = make_campaign()
    [message] = queue_messages(campaign, step)

    class Flaky(get_connection(ANYMAIL_TEST).__class__):
        def post_to_esp(self, payload, message):
            try:
                raise cause
            except requests.RequestException as exc:
                raise AnymailAPIError("ESP request failed") from exc

    send_all(Flaky())

    message.refresh_from_db()
    assert message.status == status
    assert message.error.startswith(error_starts)


def test_without_redis_nothing_goes_out_uncounted_and_the_emails_wait_seconds_not_a_minute(
    settings,
):
    campaign, step, _ = make_campaign()
    queue_messages(campaign, step, 3)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: the limit is unknown

    report = sending.send_queued(
        clock=clock, backend=get_connection(ANYMAIL_TEST), budget_seconds=1
    )

    assert report.total == 0 and mail.outbox == []
    held = list(Message.objects.all())
    assert {(m.status, m.not_before, m.attempts) for m in held} == {
        ("queued", T0 + timedelta(seconds=5), 0)
    }
