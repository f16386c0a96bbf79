"""Webhook delivery of audience changes, signed per Standard Webhooks.

The outbox is the Delivery table:

1. `batch_changes` puts each destination's new changes (id > its cursor) into
   Delivery rows of at most AUDIENCE_WEBHOOK_BATCH_SIZE changes. The
   destination's row lock serialises batchers, and a unique key on
   (destination, first change) makes a second batch of the same changes
   impossible even so.
2. `claim_due` leases the oldest pending delivery of each destination whose
   time has come (a conditional UPDATE whose row count is the claim), so a
   destination receives its batches in order and two workers never send the
   same one at once.
3. `send_delivery` POSTs one claimed batch outside any transaction, with a
   timeout, then records the outcome: delivered, or retried with exponential
   backoff, or dead after AUDIENCE_WEBHOOK_MAX_ATTEMPTS. Each send is its own
   Celery task, so a slow or dead receiver only holds back its own destination.

The webhook-id stays the same on every retry of a batch: receivers dedupe on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from campaigns.models import AudienceChange, Delivery, Destination
from reengage import outbound

log = logging.getLogger(__name__)

USER_AGENT = "reengage-webhooks/1"


# --- signing (https://www.standardwebhooks.com/) -----------------------------------


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64 HMAC-SHA256 of "id.timestamp.body" under the base64 key after whsec_."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def signed_headers(
    secrets: list[str], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """One signature per secret, space-separated as the spec allows: while a rotated
    secret overlaps, a receiver configured with either the old or the new one verifies."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, webhook_id, timestamp, body) for s in secrets),
    }


# --- payloads ------------------------------------------------------------------------


def change_json(change: AudienceChange) -> dict:
    return {
        "id": change.id,
        "action": change.action,
        "reason": change.reason,
        "anonymousIds": change.anonymous_ids,
        "emailSha256": change.email_sha256 or None,
        "phoneSha256": change.phone_sha256 or None,
        "phoneDigitsSha256": change.phone_digits_sha256 or None,
        "at": change.created_at.isoformat(),
    }


def delivery_body(delivery: Delivery) -> bytes:
    """The same bytes on every attempt: built from the stored change ids only."""
    destination = delivery.destination
    changes = AudienceChange.objects.filter(id__in=delivery.change_ids).order_by("id")
    payload = {
        "type": "audience.changes",
        "data": {
            "audience": {"id": destination.audience_id, "name": destination.audience.name},
            "changes": [change_json(c) for c in changes],
        },
    }
    return json.dumps(payload, separators=(",", ":")).encode()


# --- 1. batching ---------------------------------------------------------------------


def batch_changes(*, now: datetime, batch_size: int | None = None) -> int:
    """Create deliveries for every enabled webhook destination's new changes."""
    batch_size = batch_size or settings.AUDIENCE_WEBHOOK_BATCH_SIZE
    created = 0
    destination_ids = list(
        Destination.objects.filter(enabled=True).exclude(url="").values_list("id", flat=True)
    )
    for destination_id in destination_ids:
        while True:
            with transaction.atomic():
                destination = (
                    Destination.objects.select_for_update(skip_locked=True)
                    .filter(pk=destination_id)
                    .first()
                )
                if destination is None:  # another batcher holds it
                    break
                ids = list(
                    AudienceChange.objects.filter(
                        audience_id=destination.audience_id, id__gt=destination.last_change_id
                    )
                    .order_by("id")
                    .values_list("id", flat=True)[:batch_size]
                )
                if not ids:
                    break
                Delivery.objects.create(
                    destination=destination,
                    change_ids=ids,
                    first_change_id=ids[0],
                    next_attempt_at=now,
                    created_at=now,
                )
                destination.last_change_id = ids[-1]
                destination.save(update_fields=["last_change_id"])
                created += 1
            if len(ids) < batch_size:
                break
    return created


# --- 2. claiming ---------------------------------------------------------------------

CLAIM = """
UPDATE campaigns_delivery d SET next_attempt_at = %(lease_until)s
WHERE d.id IN (
    SELECT DISTINCT ON (h.destination_id) h.id FROM campaigns_delivery h
    JOIN campaigns_destination t ON t.id = h.destination_id AND t.enabled
    WHERE h.status = 'pending'
    ORDER BY h.destination_id, h.id
)
  AND d.next_attempt_at <= %(now)s AND d.status = 'pending'
RETURNING d.id
"""


def claim_due(*, now: datetime) -> list[int]:
    """Lease the head-of-line delivery of each destination that is due; return their ids."""
    lease = timedelta(seconds=settings.AUDIENCE_WEBHOOK_TIMEOUT_SECONDS * 3 + 30)
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, {"now": now, "lease_until": now + lease})
        return sorted(row[0] for row in cursor.fetchall())


# --- 3. sending ----------------------------------------------------------------------


# Every request goes through reengage.outbound: https, public addresses only (checked
# after resolution and pinned for the connection), no redirects, bounded time and size,
# and a short reason instead of the reply's body.
PostResult = outbound.Reply


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> PostResult:
    return outbound.post(url, body, headers, timeout)


def exponential_backoff(base_seconds: int, attempts: int) -> timedelta:
    """`base_seconds` after the first attempt, doubling after each, at most 6 hours."""
    return timedelta(seconds=min(base_seconds * 2 ** max(attempts - 1, 0), 6 * 3600))


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, 4 min, … capped at 6 hours (AUDIENCE_WEBHOOK_BACKOFF_SECONDS)."""
    return exponential_backoff(settings.AUDIENCE_WEBHOOK_BACKOFF_SECONDS, attempts)


def send_delivery(delivery_id: int, *, now: datetime) -> str:
    """Send one claimed delivery and record the outcome; returns the new status."""
    delivery = Delivery.objects.select_related("destination__audience").get(pk=delivery_id)
    if delivery.status != Delivery.Status.PENDING:
        return delivery.status
    destination = delivery.destination
    body = delivery_body(delivery)
    timestamp = int(now.timestamp())
    outcome = post(
        destination.url,
        body,
        signed_headers(destination.signing_secrets(now), delivery.webhook_id, timestamp, body),
        settings.AUDIENCE_WEBHOOK_TIMEOUT_SECONDS,
    )
    attempts = delivery.attempts + 1
    fields = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
    }
    if outcome.ok:
        fields.update(status=Delivery.Status.DELIVERED, delivered_at=now)
    elif attempts >= settings.AUDIENCE_WEBHOOK_MAX_ATTEMPTS:
        fields.update(status=Delivery.Status.DEAD)
        log.warning("webhook %s to %s is dead: %s", delivery.webhook_id, destination, outcome)
    else:
        fields.update(next_attempt_at=now + backoff(attempts))
    # Conditional on the row still being pending: a retry-by-hand in the admin wins.
    Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING).update(**fields)
    return fields.get("status", Delivery.Status.PENDING)


def retry_dead(delivery_ids: list[int], *, now: datetime) -> int:
    """Give dead deliveries a fresh set of attempts (admin action)."""
    return Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.DEAD).update(
        status=Delivery.Status.PENDING, attempts=0, next_attempt_at=now, last_error=""
    )


def send_test(destination: Destination, *, now: datetime) -> PostResult:
    """POST a signed `audience.test` message now (the admin's "send test" button)."""
    from campaigns.models.audiences import new_webhook_id

    body = json.dumps(
        {
            "type": "audience.test",
            "data": {"audience": {"id": destination.audience_id,
                                  "name": destination.audience.name}},
        },
        separators=(",", ":"),
    ).encode()  # fmt: skip
    headers = signed_headers(
        destination.signing_secrets(now), new_webhook_id(), int(now.timestamp()), body
    )
    return post(destination.url, body, headers, settings.AUDIENCE_WEBHOOK_TIMEOUT_SECONDS)
