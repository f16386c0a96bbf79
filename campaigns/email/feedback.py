"""What happens after sending: ESP webhooks, our own click/open tracking.

Anymail's webhook views (mounted at /anymail/, basic-auth protected by
ANYMAIL_WEBHOOK_SECRET) validate and normalise each ESP's payload and send the
`anymail.signals.tracking` signal; `record_tracking_event` stores the event once
(unique on the ESP's event id), moves the Message's status forward and
suppresses the address on a hard bounce, a complaint or an unsubscribe.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from django.db import connection, transaction
from django.db.models import DateTimeField, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from campaigns.email.unsubscribe import suppress
from campaigns.models import Message, Suppression
from tracking.ingest import is_storable

log = logging.getLogger(__name__)

S = Message.Status
# Engagement only moves forward; a bounce/complaint/unsubscribe overrides it.
PROGRESS = {S.SENT: 1, S.DELIVERED: 2, S.OPENED: 3, S.CLICKED: 4}
TERMINAL = {S.BOUNCED, S.COMPLAINED, S.UNSUBSCRIBED}

EVENT_STATUS = {
    EventType.DELIVERED: S.DELIVERED,
    EventType.OPENED: S.OPENED,
    EventType.CLICKED: S.CLICKED,
    EventType.BOUNCED: S.BOUNCED,
    EventType.COMPLAINED: S.COMPLAINED,
    EventType.UNSUBSCRIBED: S.UNSUBSCRIBED,
}


def on_tracking_event(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    record_tracking_event(event, esp_name, now=timezone.now())


def event_key(event: AnymailTrackingEvent) -> str:
    """The ESP's event id, or (Postmark opens/clicks have none) a digest of the event."""
    if event.event_id:
        return _storable(str(event.event_id))[:200]
    parts = (event.event_type, event.message_id, event.recipient, event.timestamp, event.click_url)
    return "sha256:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def _storable(value: str) -> str:
    """`value` without what PostgreSQL cannot hold (NUL, lone surrogates)."""
    return value if is_storable(value) else "".join(c for c in value if is_storable(c))


def _text(value) -> str:
    """A field the ESP should have sent as a string; anything else (a payload's
    `"Recipient": true`, which Anymail passes through) counts as absent."""
    return _storable(value) if isinstance(value, str) else ""


def find_message(event: AnymailTrackingEvent) -> Message | None:
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    raw = str(metadata.get("message_id", ""))
    if raw.isascii() and raw.isdigit() and len(raw) < 19:  # fits a bigint
        found = Message.objects.filter(pk=int(raw)).first()
        if found:
            return found
    if event.message_id:
        return Message.objects.filter(esp_message_id=_storable(str(event.message_id))).first()
    return None


def suppression_for(event: AnymailTrackingEvent, esp_name: str) -> str | None:
    """Which suppression reason this event calls for, if any (hard bounces only)."""
    kind, reason = event.event_type, event.reject_reason
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    if kind == EventType.BOUNCED:
        # Anymail maps Postmark's soft bounces to "bounced" too; they are not permanent.
        if esp_name == "Postmark" and raw.get("Type") in {"SoftBounce", "Transient", "DnsError"}:
            return None
        return Suppression.Reason.BOUNCED
    if kind == EventType.COMPLAINED:
        return Suppression.Reason.COMPLAINED
    if kind == EventType.UNSUBSCRIBED:
        return Suppression.Reason.UNSUBSCRIBED
    if kind == EventType.REJECTED:
        return {
            RejectReason.BOUNCED: Suppression.Reason.BOUNCED,
            RejectReason.INVALID: Suppression.Reason.BOUNCED,
            RejectReason.SPAM: Suppression.Reason.COMPLAINED,
            RejectReason.UNSUBSCRIBED: Suppression.Reason.UNSUBSCRIBED,
        }.get(reason)
    return None


INSERT_EVENT = """
INSERT INTO campaigns_emailevent
    (esp_name, event_key, event_type, message_id, recipient, occurred_at, received_at, detail)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (esp_name, event_key) DO NOTHING
RETURNING id
"""


@transaction.atomic
def record_tracking_event(event: AnymailTrackingEvent, esp_name: str, *, now: datetime) -> bool:
    """Apply one ESP event; False when it was seen before (redelivered webhook)."""
    message = find_message(event)
    recipient = _text(event.recipient)
    if len(recipient) > 254:  # not an address (RFC 5321 caps paths at 254)
        recipient = ""
    detail = _storable(
        str(event.description or event.mta_response or event.reject_reason or "")[:500]
    )
    occurred_at = event.timestamp if isinstance(event.timestamp, datetime) else None
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT_EVENT,
            [esp_name[:40], event_key(event), _storable(str(event.event_type))[:20],
             message.pk if message else None, recipient,
             occurred_at, now, detail],
        )  # fmt: skip
        if cursor.fetchone() is None:
            return False
    when = occurred_at or now
    if message is not None:
        apply_status(message.pk, EVENT_STATUS.get(event.event_type), when)
    reason = suppression_for(event, esp_name)
    if reason:
        if message is None:
            # No site to suppress on: an email this instance did not send (or a test).
            log.warning("%s %s for an unknown message %r", esp_name, event.event_type,
                        event.message_id)  # fmt: skip
        else:
            suppress(message.site_id, recipient or message.to_email, reason, now=now,
                     note=f"{esp_name} {event.event_type}: {detail}")  # fmt: skip
    return True


def apply_status(message_id: int, status: str | None, when: datetime) -> None:
    """Move the message's status forward and keep the first time of each engagement."""
    message = Message.objects.select_for_update().filter(pk=message_id).first()
    if message is None or status is None:
        return
    # Webhooks arrive out of order: keep the earliest time (LEAST skips NULLs).
    at = Value(when, output_field=DateTimeField())
    fields: dict = {"last_event_at": Greatest("last_event_at", at)}
    if status == S.DELIVERED:
        fields["delivered_at"] = Least("delivered_at", at)
    if status in {S.OPENED, S.CLICKED}:
        fields["opened_at"] = Least("opened_at", at)
    if status == S.CLICKED:
        fields["clicked_at"] = Least("clicked_at", at)
    current = message.status
    if (status in TERMINAL and current not in TERMINAL) or (
        status in PROGRESS and PROGRESS[status] > PROGRESS.get(current, 99)
    ):
        fields["status"] = status
    Message.objects.filter(pk=message_id).update(**fields)


@transaction.atomic
def record_engagement(message_id: int, status: str, *, now: datetime) -> None:
    """Our own click redirect and open pixel (the ESP's tracking may be off)."""
    apply_status(message_id, status, now)
