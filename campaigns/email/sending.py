"""Send queued Messages through the configured email backend, each exactly once.

The Message row is the outbox. The order of writes is what makes "exactly once"
hold when a worker is SIGKILLed or a task is delivered twice:

1. **claim** — one conditional UPDATE `queued → sending` (with `FOR UPDATE SKIP
   LOCKED` to pick the next row), committed on its own *before* the backend is
   called. A second worker or a duplicate task finds the row no longer `queued`
   and skips it (row count 0).
2. **send** — hand the email to the backend (Anymail, SMTP, the dev mailbox).
3. **finish** — conditional UPDATE `sending → sent` with the ESP's message id.

A crash between 1 and 3 leaves the row in `sending`; nothing ever resends a
`sending` row blindly, because the ESP may have accepted it. `recover_interrupted`
looks at rows stuck longer than any task may run: if the backend can say what it
received (the optional `find_sent(ids)` hook — the dev mailbox has it) the row
is reconciled to `sent` or safely re-queued; otherwise it is marked `failed`
with "interrupted mid-send, check ESP" and the Message-ID to search for. Only
one message per worker process can be in that window, since each message is
claimed just before it is sent.

Transient ESP errors (HTTP 429/5xx, connection refused, SMTP 4xx) put the row
back to `queued` with a backoff; permanent ones mark it `failed` with the
reason; an ambiguous one (a timeout after the request went out) is `failed`
with "outcome unknown, check ESP" rather than risk a duplicate.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import formataddr

import redis
from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from anymail.message import AnymailMessage
from django.conf import settings
from django.core.mail import get_connection
from django.db import connection
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from campaigns.email.composing import (
    HeaderRefused,
    PromoPoolEmpty,
    build_email,
    check_headers,
    choose_variant,
    domain,
    email_data,
    promo_code_for,
)
from campaigns.email.rendering import EmailData, render_email
from campaigns.email.sandbox import TemplateRefused
from campaigns.models import (
    CampaignOptOut,
    EmailSettings,
    Message,
    StepPromo,
    StepVariant,
    Suppression,
)
from campaigns.models.email import email_hash
from reengage import redis_pool
from tracking.ingest import is_one_mailbox
from tracking.models import Profile

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

INTERRUPTED = "interrupted mid-send, check ESP"


# --- claiming ----------------------------------------------------------------------

CLAIM_NEXT = """
UPDATE campaigns_message SET status = 'sending', claimed_at = %(now)s, attempts = attempts + 1
WHERE id = (
    SELECT id FROM campaigns_message
    WHERE status = 'queued' AND (not_before IS NULL OR not_before <= %(now)s)
      AND NOT (site_id = ANY(%(paused)s))
    ORDER BY created_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, site_id, to_email
"""

CLAIM_ONE = """
UPDATE campaigns_message SET status = 'sending', claimed_at = %(now)s, attempts = attempts + 1
WHERE id = %(id)s AND status = 'queued' AND (not_before IS NULL OR not_before <= %(now)s)
RETURNING id, site_id, to_email
"""


def claim_next(now: datetime, paused: list[int]) -> tuple[int, int, str] | None:
    # Runs outside any transaction (autocommit): the claim is durable before the
    # backend is called, which is the point.
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_NEXT, {"now": now, "paused": paused})
        return cursor.fetchone()


def claim_one(message_id: int, now: datetime) -> tuple[int, int, str] | None:
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_ONE, {"now": now, "id": message_id})
        return cursor.fetchone()


def _finish(message_id: int, **fields) -> bool:
    """Move a claimed message on; False when someone else (the recovery) already did.

    Committed without waiting for the WAL flush (synchronous_commit off): if
    PostgreSQL crashed and lost this commit, the row would be back in `sending`,
    which recovery settles without resending. The claim, whose loss could cause
    a resend, stays a normal durable commit. Saves one fsync per email.
    """
    columns = ", ".join(f"{name} = %s" for name in fields)  # names are ours, never input
    values = [str(v) if isinstance(v, str) else v for v in fields.values()]
    with connection.cursor() as cursor:
        # One round trip: a multi-statement string runs as one implicit transaction.
        cursor.execute(
            "SET LOCAL synchronous_commit TO OFF; "
            f"UPDATE campaigns_message SET {columns} WHERE id = %s AND status = 'sending'",
            [*values, message_id],
        )
        return cursor.rowcount == 1


# --- rate limit ----------------------------------------------------------------------


def _redis_client() -> redis.Redis:
    return redis_pool.client(timeout=2)


def reserve_sends(site_id: int, per_minute: int, now: datetime, want: int) -> int:
    """Take up to `want` sends from the site's current one-minute window (shared by every
    worker through Redis); returns how many were granted, 0 when the window is used up."""
    window = int(now.timestamp() // 60)
    key = f"reengage:email:rate:{site_id}:{window}"
    pipe = _redis_client().pipeline()
    pipe.incrby(key, want)
    pipe.expire(key, 120)
    count, _ = pipe.execute()
    return max(0, min(want, per_minute - (count - want)))


def _next_window(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


# --- what to send ------------------------------------------------------------------


@dataclass
class RunCache:
    """Per-run lookups that every message of a site or step shares."""

    email_settings: dict[int, EmailSettings] = field(default_factory=dict)
    variants: dict[int, list[StepVariant]] = field(default_factory=dict)
    promos: dict[int, StepPromo | None] = field(default_factory=dict)
    sends_left: dict[tuple[int, int], int] = field(default_factory=dict)

    def settings_for(self, site_id: int) -> EmailSettings:
        if site_id not in self.email_settings:
            self.email_settings[site_id] = EmailSettings.for_site(site_id)
        return self.email_settings[site_id]

    def variants_for(self, step_id: int) -> list[StepVariant]:
        if step_id not in self.variants:
            self.variants[step_id] = list(
                StepVariant.objects.filter(step_id=step_id).select_related("template")
            )
        return self.variants[step_id]

    def promo_for(self, step_id: int) -> StepPromo | None:
        if step_id not in self.promos:
            self.promos[step_id] = StepPromo.objects.filter(step_id=step_id).first()
        return self.promos[step_id]


def suppression_annotations(address: str) -> dict:
    digest = email_hash(address)
    return {
        "suppressed_as": Subquery(
            Suppression.objects.filter(site_id=OuterRef("site_id"), email_hash=digest).values(
                "reason"
            )[:1]
        ),
        "left_campaign": Exists(
            CampaignOptOut.objects.filter(campaign_id=OuterRef("campaign_id"), email_hash=digest)
        ),
    }


def suppression_reason(message: Message) -> str:
    """Why this message must not go out now ("" when it may). Needs the annotations.

    The engine checked the same things when it decided, but seconds (or, after a
    retry's backoff, hours) pass before the send: whatever the person did
    meanwhile — unsubscribed, withdrew consent, was erased — wins.
    """
    if message.suppressed_as:
        return f"suppressed: {message.suppressed_as}"
    if message.left_campaign:
        return "suppressed: left this campaign"
    if not message.to_email:  # erasure blanks the address (and deletes the profile)
        return "suppressed: person erased"
    if not is_one_mailbox(message.to_email):  # "a@x, b@y": two recipients, one checked
        return "suppressed: the address is not one mailbox"
    if message.profile_id is None:
        return ""
    profile = current_profile(message.profile)
    if (profile.consent or {}).get("email") is False:
        return "suppressed: email consent withdrawn"
    if not profile.email_verified or not profile.email:
        return "suppressed: email no longer verified"
    if profile.email.strip().lower() != message.to_email.strip().lower():
        return "suppressed: the person's verified email changed"
    return ""


def current_profile(profile: Profile) -> Profile:
    """The profile a merge folded this one into (consent and email live there now)."""
    seen = {profile.pk}
    while profile.merged_into_id is not None and profile.merged_into_id not in seen:
        survivor = Profile.objects.filter(pk=profile.merged_into_id).first()
        if survivor is None:
            break
        seen.add(survivor.pk)
        profile = survivor
    return profile


# --- classifying backend errors -------------------------------------------------------

RETRY, PERMANENT, UNKNOWN = "retry", "permanent", "unknown"


def classify(exc: BaseException) -> tuple[str, str]:
    """Is it safe to try again? Only when the ESP surely did not take the email."""
    import requests

    try:
        reason = f"{type(exc).__name__}: {exc}"[:500]
    except Exception:  # an exception whose __str__ fails must not lose the outcome
        reason = type(exc).__name__
    if isinstance(exc, AnymailRecipientsRefused):
        return PERMANENT, reason
    if isinstance(exc, AnymailAPIError):
        status = exc.status_code
        if status in {429, 500, 502, 503, 504}:
            return RETRY, reason
        cause = exc.__cause__
        if (
            status is None
            and isinstance(cause, requests.Timeout)
            and not isinstance(cause, requests.ConnectTimeout)
        ):
            return UNKNOWN, reason
        if status is None and isinstance(cause, requests.ConnectionError):
            return RETRY, reason
        return PERMANENT, reason
    if isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPSenderRefused):
        return PERMANENT, reason
    if isinstance(exc, smtplib.SMTPConnectError | ConnectionRefusedError | socket.gaierror):
        return RETRY, reason
    if isinstance(exc, smtplib.SMTPResponseException):
        return (RETRY if 400 <= exc.smtp_code < 500 else PERMANENT), reason
    if isinstance(exc, smtplib.SMTPServerDisconnected | TimeoutError | OSError):
        return UNKNOWN, reason
    return PERMANENT, reason


def backoff(attempts: int) -> timedelta:
    return timedelta(
        seconds=min(settings.EMAIL_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), 3600)
    )


# --- one message ------------------------------------------------------------------------

SENT, SUPPRESSED, FAILED, RETRIED, SKIPPED = "sent", "suppressed", "failed", "retried", "skipped"


def deliver(message_id: int, to_email: str, *, backend, clock: Clock, cache: RunCache) -> str:
    """Render and send one claimed (`sending`) message, then record the outcome."""
    message = (
        Message.objects.select_related("site", "template", "profile", "enrollment", "campaign")
        .annotate(**suppression_annotations(to_email))  # one query: row, relations, suppression
        .filter(pk=message_id)
        .first()
    )
    if message is None or message.status != Message.Status.SENDING:
        return SKIPPED
    reason = suppression_reason(message)
    if reason:
        _finish(message_id, status=Message.Status.SUPPRESSED, error=reason)
        return SUPPRESSED
    email_settings = cache.settings_for(message.site_id)
    template = message.template
    try:
        if message.step_id and (variants := cache.variants_for(message.step_id)):
            template = choose_variant(
                variants, str(message.profile_id or message.to_email.lower()), message.step_id
            )
        promo = cache.promo_for(message.step_id) if message.step_id else None
        promo_code = promo_code_for(message, promo, clock())
        if template is None:
            raise TemplateRefused("the message has no template")
        if template.pk != message.template_id or promo_code != message.promo_code:
            # Kept before sending so the browser view and reports see what was sent.
            Message.objects.filter(pk=message_id).update(template=template, promo_code=promo_code)
            message.template, message.promo_code = template, promo_code
        rendered = render_email(template, email_data(message, email_settings, template.pk))
        email = build_email(message, template, rendered, email_settings, backend)
    except (TemplateRefused, HeaderRefused, PromoPoolEmpty, AnymailError) as exc:
        _finish(message_id, status=Message.Status.FAILED, error=str(exc)[:1000])
        return FAILED
    except Exception as exc:  # a template filter blowing up on odd data, say
        log.exception("rendering message %s failed", message_id)
        _finish(message_id, status=Message.Status.FAILED, error=f"rendering failed: {exc}"[:1000])
        return FAILED

    try:
        email.send()
    except Exception as exc:
        kind, reason = classify(exc)
        log.warning("sending message %s: %s (%s)", message_id, reason, kind)
        if kind == RETRY and message.attempts < settings.EMAIL_MAX_ATTEMPTS:
            _finish(
                message_id,
                status=Message.Status.QUEUED,
                not_before=clock() + backoff(message.attempts),
                error=f"attempt {message.attempts}: {reason}",
            )
            return RETRIED
        if kind == UNKNOWN:
            reason = f"outcome unknown ({reason}); the ESP may have accepted it, check ESP"
        elif kind == RETRY:
            reason = f"gave up after {message.attempts} attempts: {reason}"
        _finish(message_id, status=Message.Status.FAILED, error=reason)
        return FAILED

    status = getattr(email, "anymail_status", None)
    esp_id = getattr(status, "message_id", None)
    if esp_id is None:  # plain Django backends (SMTP) report none: our Message-ID it is
        esp_id = email.extra_headers["Message-ID"]
    if not _finish(
        message_id,
        status=Message.Status.SENT,
        sent_at=clock(),
        esp_message_id=str(esp_id)[:200],
        error="",
    ):
        log.error("message %s was sent but its row had been moved on by recovery", message_id)
    return SENT


# --- runs --------------------------------------------------------------------------------


@dataclass
class SendReport:
    counts: dict[str, int] = field(default_factory=dict)
    rate_limited_sites: list[int] = field(default_factory=list)

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def send_queued(
    *,
    clock: Clock = timezone.now,
    limit: int | None = None,
    budget_seconds: float | None = None,
    backend=None,
) -> SendReport:
    """Claim and send queued messages until none is left, `limit` or the time budget."""
    limit = limit if limit is not None else settings.EMAIL_SEND_BATCH
    budget = budget_seconds if budget_seconds is not None else settings.EMAIL_SEND_BUDGET_SECONDS
    deadline = time.monotonic() + budget
    backend = backend or get_connection()
    cache = RunCache()
    report = SendReport()
    with backend:  # one SMTP connection (or HTTP session) for the whole run
        while report.total < limit and time.monotonic() < deadline:
            now = clock()
            claimed = claim_next(now, report.rate_limited_sites)
            if claimed is None:
                break
            message_id, site_id, to_email = claimed
            if not _within_rate(site_id, now, cache):
                _finish(message_id, status=Message.Status.QUEUED, not_before=_next_window(now))
                report.rate_limited_sites.append(site_id)
                continue
            report.add(deliver(message_id, to_email, backend=backend, clock=clock, cache=cache))
    return report


def send_one(message_id: int, *, clock: Clock = timezone.now, backend=None) -> str:
    """Send this message now if it is still queued (the engine's on-commit task)."""
    now = clock()
    claimed = claim_one(message_id, now)
    if claimed is None:
        return SKIPPED  # already claimed by another worker, a duplicate task, or not due
    cache = RunCache()
    if not _within_rate(claimed[1], now, cache):
        _finish(message_id, status=Message.Status.QUEUED, not_before=_next_window(now))
        return SKIPPED
    backend = backend or get_connection()
    with backend:
        return deliver(message_id, claimed[2], backend=backend, clock=clock, cache=cache)


RESERVE_CHUNK = 20


def _within_rate(site_id: int, now: datetime, cache: RunCache) -> bool:
    """Spend one send of the site's minute; sends are reserved from Redis in small chunks
    (a chunk left over when the minute ends is simply not used: never over the limit)."""
    window = int(now.timestamp() // 60)
    left = cache.sends_left.get((site_id, window), 0)
    if left == 0:
        per_minute = cache.settings_for(site_id).sends_per_minute
        try:
            left = reserve_sends(site_id, per_minute, now, min(RESERVE_CHUNK, per_minute))
        except redis.RedisError:
            log.warning("Redis unavailable for the send rate limit; holding site %s", site_id)
            return False
        if left == 0:
            return False
    cache.sends_left[(site_id, window)] = left - 1
    return True


def recover_interrupted(*, now: datetime, backend=None) -> dict[str, int]:
    """Settle messages stuck in `sending` longer than any send task may run."""
    cutoff = now - timedelta(seconds=settings.EMAIL_INTERRUPTED_AFTER_SECONDS)
    stuck = list(
        Message.objects.filter(status=Message.Status.SENDING, claimed_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:1000]
    )
    result = {"reconciled": 0, "requeued": 0, "failed": 0}
    if not stuck:
        return result
    backend = backend or get_connection()
    find_sent = getattr(backend, "find_sent", None)
    if find_sent is None:
        for message_id in stuck:
            result["failed"] += _finish(
                message_id,
                status=Message.Status.FAILED,
                error=f"{INTERRUPTED} for Message-ID <reengage.{message_id}@{domain()}>; "
                "not resent automatically",
            )
        return result
    # The backend can say what it received: settle each message by its answer.
    found = find_sent(stuck)
    for message_id in stuck:
        if message_id in found:
            result["reconciled"] += _finish(
                message_id,
                status=Message.Status.SENT,
                sent_at=now,
                esp_message_id=found[message_id],
            )
        else:
            result["requeued"] += _finish(
                message_id,
                status=Message.Status.QUEUED,
                error="interrupted before the backend received it; re-queued",
            )
    return result


def send_test(template, to_email: str, data: EmailData, *, backend=None) -> None:
    """The admin's "send a test to me": rendered like the real thing, no tracking."""
    rendered = render_email(template, data, tracking=False)
    if template.from_email:
        from_email = formataddr((template.from_name, template.from_email))
    else:
        from_email = settings.DEFAULT_FROM_EMAIL
    subject = f"[Test] {rendered.subject}"
    check_headers({"Subject": subject, "To": to_email, "From": from_email})
    email = AnymailMessage(
        subject=subject,
        body=rendered.text,
        from_email=from_email,
        to=[to_email],
        metadata={"test": "1"},
        connection=backend or get_connection(),
    )
    email.attach_alternative(rendered.html, "text/html")
    email.send()
