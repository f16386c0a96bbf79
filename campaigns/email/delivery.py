"""One claimed message: loaded with its suppression state (in batches), checked,
rendered for its recipient, and what the backend's answer means for it.

campaigns/email/sending.py runs the loop around these; nothing here changes a row
except through campaigns/email/outbox.py, and nothing here calls the backend.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.conf import settings
from django.db import connection

from campaigns.email import pacing
from campaigns.email.composing import (
    HeaderRefused,
    PromoPoolEmpty,
    build_email,
    choose_variant,
    email_data,
    promo_code_for,
)
from campaigns.email.outbox import Finish, finish_many
from campaigns.email.rendering import render_email
from campaigns.email.sandbox import TemplateRefused
from campaigns.email.senders import Job, Result
from campaigns.models import (
    Campaign,
    CampaignOptOut,
    EmailSettings,
    EmailTemplate,
    Message,
    StepPromo,
    StepVariant,
    Suppression,
)
from campaigns.models.email import email_hash
from tracking.ingest import is_one_mailbox
from tracking.models import Profile, Site

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

SENT, SUPPRESSED, FAILED, RETRIED, SKIPPED = "sent", "suppressed", "failed", "retried", "skipped"


# --- what to send ------------------------------------------------------------------


@dataclass
class RunCache:
    """Per-run lookups that every message of a site or step shares."""

    email_settings: dict[int, EmailSettings] = field(default_factory=dict)
    variants: dict[int, list[StepVariant]] = field(default_factory=dict)
    promos: dict[int, StepPromo | None] = field(default_factory=dict)

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

    # The sites, templates and campaigns of the loaded messages, read again when older
    # than this (seconds): an edited template goes out within it, and a run that claims
    # a batch every few milliseconds reads each once per interval, not once per batch.
    shared_for = 2.0
    shared: dict[tuple[type, int], tuple[float, object]] = field(default_factory=dict)

    def rows(self, model: type, ids: set[int]) -> dict[int, object]:
        """`model.objects.in_bulk(ids)`, from this run's copies younger than `shared_for`."""
        now = time.monotonic()
        found, stale = {}, set()
        for pk in ids:
            copy = self.shared.get((model, pk))
            if copy is not None and now - copy[0] < self.shared_for:
                found[pk] = copy[1]
            else:
                stale.add(pk)
        if stale:
            for pk, row in model.objects.in_bulk(stale).items():
                self.shared[(model, pk)] = (now, row)
                found[pk] = row
        return found


SUPPRESSIONS_OF = f"""
SELECT 's', site_id, email_hash, reason FROM {Suppression._meta.db_table}
WHERE site_id = ANY(%(sites)s) AND email_hash = ANY(%(hashes)s)
UNION ALL
SELECT 'o', campaign_id, email_hash, '' FROM {CampaignOptOut._meta.db_table}
WHERE campaign_id = ANY(%(campaigns)s) AND email_hash = ANY(%(hashes)s)
"""


def load_claimed(message_ids: list[int], cache: RunCache | None = None) -> list[Message]:
    """The claimed messages with everything a render needs and their suppression state:
    two queries for the whole batch, and one per kind of shared row that `cache` does
    not hold fresh."""
    messages = list(
        Message.objects.select_related("profile", "enrollment")
        .filter(pk__in=message_ids, status=Message.Status.SENDING)
        .order_by("id")
    )
    if not messages:
        return messages
    # The site, template and campaign: one instance each for the batch's messages that
    # share them (a JOIN would build one per message, ~10 % of a send's CPU).
    cache = cache or RunCache()
    for relation, model in (("site", Site), ("template", EmailTemplate), ("campaign", Campaign)):
        ids = {getattr(m, f"{relation}_id") for m in messages} - {None}
        shared = cache.rows(model, ids)
        for message in messages:
            if (key := getattr(message, f"{relation}_id")) in shared:
                setattr(message, relation, shared[key])
    digests = {m.pk: email_hash(m.to_email) for m in messages}
    params = {
        "sites": sorted({m.site_id for m in messages}),
        "campaigns": sorted({m.campaign_id for m in messages if m.campaign_id}),
        "hashes": sorted(set(digests.values())),
    }
    suppressed, left = {}, set()
    with connection.cursor() as cursor:
        cursor.execute(SUPPRESSIONS_OF, params)
        for kind, owner, digest, reason in cursor.fetchall():
            if kind == "s":
                suppressed[(owner, digest)] = reason
            else:
                left.add((owner, digest))
    for message in messages:
        digest = digests[message.pk]
        message.suppressed_as = suppressed.get((message.site_id, digest))
        message.left_campaign = (message.campaign_id, digest) in left
    return messages


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
    import urllib3

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
            # "Connection aborted" (a reset or disconnect once connected) may come after
            # the ESP read the whole request; only a connection never made is safe.
            inner = cause.args[0] if cause.args else None
            if isinstance(inner, urllib3.exceptions.ProtocolError):
                return UNKNOWN, reason
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


def retry_after_of(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers.get("Retry-After") if headers is not None else None


# --- one message -------------------------------------------------------------------------


@dataclass
class Prepared:
    job: Job
    choice: tuple[int, int, str] | None = None  # (id, template, promo code) to record first


def prepare(message: Message, *, clock: Clock, cache: RunCache) -> Prepared | Finish:
    """Check one claimed message and render it for its recipient: the email to send, or
    the reason it must not go out."""
    message_id = message.pk
    reason = suppression_reason(message)
    if reason:
        return Finish(message_id, Message.Status.SUPPRESSED, error=reason)
    email_settings = cache.settings_for(message.site_id)
    template = message.template
    choice = None
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
            choice = (message_id, template.pk, promo_code)
            message.template, message.promo_code = template, promo_code
        rendered = render_email(template, email_data(message, email_settings, template.pk))
        email = build_email(message, template, rendered, email_settings, None)
    except (TemplateRefused, HeaderRefused, PromoPoolEmpty, AnymailError) as exc:
        return Finish(message_id, Message.Status.FAILED, error=str(exc)[:1000])
    except Exception as exc:  # a template filter blowing up on odd data, say
        log.exception("rendering message %s failed", message_id)
        return Finish(message_id, Message.Status.FAILED, error=f"rendering failed: {exc}"[:1000])
    return Prepared(Job(message_id, message.site_id, message.attempts, email), choice)


@dataclass
class Settled:
    finish: Finish
    outcome: str
    pause_until: datetime | None = None  # the ESP said 429 with Retry-After
    throttled: bool = False  # the ESP said 429


def settle(result: Result, now: datetime) -> Settled:
    """What the backend's answer means for the message (and its site)."""
    job = result.job
    if result.error is None:
        finish = Finish(job.message_id, Message.Status.SENT, error="", sent_at=now,
                        esp_id=result.esp_id, site_id=job.site_id)  # fmt: skip
        return Settled(finish, SENT)
    exc = result.error
    kind, reason = classify(exc)
    log.warning("sending message %s: %s (%s)", job.message_id, reason, kind)
    throttled = isinstance(exc, AnymailAPIError) and exc.status_code == 429
    wait = pacing.retry_after_seconds(retry_after_of(exc), now) if throttled else None
    pause_until = now + timedelta(seconds=wait) if wait else None
    if kind == RETRY and job.attempts < settings.EMAIL_MAX_ATTEMPTS:
        not_before = pause_until or now + backoff(job.attempts)
        finish = Finish(
            job.message_id,
            Message.Status.QUEUED,
            error=f"attempt {job.attempts}: {reason}",
            not_before=not_before,
        )
        return Settled(finish, RETRIED, pause_until, throttled)
    if kind == UNKNOWN:
        reason = f"outcome unknown ({reason}); the ESP may have accepted it, check ESP"
    elif kind == RETRY:
        reason = f"gave up after {job.attempts} attempts: {reason}"
    return Settled(Finish(job.message_id, Message.Status.FAILED, error=reason), FAILED,
                   pause_until, throttled)  # fmt: skip


def record(finishes: list[Finish], now: datetime) -> None:
    """Write outcomes in one statement and count the sent ones for the admin's rate."""
    moved = finish_many(finishes)
    sent_by_site: Counter[int] = Counter()
    for finish in finishes:
        if finish.status != Message.Status.SENT:
            continue
        sent_by_site[finish.site_id or 0] += 1
        if finish.message_id not in moved:
            log.error("message %s was sent but its row had been moved on by recovery",
                      finish.message_id)  # fmt: skip
    pacing.count_sent(sent_by_site, now)
