"""The ad-platform outbox: PlatformBatch rows, like the webhooks' Delivery rows.

1. `batch_changes` puts each enabled destination's new changes (id > its cursor)
   into batches of at most the API's limit (1,000 Conversions API events, 10,000
   customer-list rows, GA4_BATCH_SIZE changes for GA4), in change-id order; for
   customer lists a batch holds only adds or only removals (one is a POST, the
   other a DELETE or :remove). The destination's row lock serialises batchers;
   a unique key on (destination, first change) makes a second batch of the same
   changes impossible even so.
2. `claim_due` leases the oldest pending batch of each destination whose time
   has come (one conditional UPDATE; its RETURNING rows are the claim), so a
   destination's batches go out in order, two workers never send the same one,
   and a destination that fails holds back only itself.
3. `send_batch` resolves the batch's changes to the ids each platform matches on,
   sends its requests through `http.send`, and records the outcome: delivered;
   retried after Retry-After or an exponential backoff on 429, 5xx and no answer;
   dead (with the API's error) on a permanent error or after
   AD_PLATFORM_MAX_ATTEMPTS.

What a member was sent on joining is kept per (destination, member) in
PlatformMember before the first attempt: retries send the same ids, and the
leave goes to them even after an erasure deleted the browser's ids; the row is
forgotten when the leave is delivered. A join whose member has a later removal
in the log is not sent at all, and a removal with nothing remembered is not sent
either: a removal always follows its add.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from psycopg2 import sql

from campaigns.audiences.delivery import exponential_backoff
from campaigns.audiences.platforms import PLATFORMS, http
from campaigns.audiences.platforms.base import Ids, Item, PlatformAnswer, Request
from campaigns.models import (
    AudienceChange,
    PlatformBatch,
    PlatformDestination,
    PlatformInboxEntry,
    PlatformMember,
)

log = logging.getLogger(__name__)


# --- 1. batching ---------------------------------------------------------------------


def batch_changes(*, now: datetime) -> int:
    """Create batches for every enabled destination's new changes; returns how many."""
    created = 0
    for destination_id in PlatformDestination.objects.filter(enabled=True).values_list(
        "id", flat=True
    ):
        created += _batch_destination(destination_id, now=now)
    return created


def _batch_destination(destination_id: int, *, now: datetime) -> int:
    created = 0
    session: tuple[int, int] | None = None  # (session id, last seq) of this pass
    while True:
        with transaction.atomic():
            destination = (
                PlatformDestination.objects.select_for_update(skip_locked=True)
                .filter(pk=destination_id)
                .first()
            )
            if destination is None:  # another batcher holds it
                return created
            platform = PLATFORMS[destination.kind]
            size = platform.batch_size
            rows = list(
                AudienceChange.objects.filter(
                    audience_id=destination.audience_id, id__gt=destination.last_change_id
                )
                .order_by("id")
                .values_list("id", "action")[: size + 1]
            )
            if not rows:
                return created
            taken = rows[:size]
            if not platform.mixed_actions:
                first_action = taken[0][1]
                cut = next((n for n, (_, a) in enumerate(taken) if a != first_action), None)
                taken = taken[:cut] if cut is not None else taken
            more_alike = len(rows) > len(taken) and rows[len(taken)][1] == taken[0][1]
            ids = [change_id for change_id, _ in taken]
            if session is None:
                session = (ids[0], 0)
            seq = session[1] + 1
            PlatformBatch.objects.create(
                destination=destination,
                change_ids=ids,
                first_change_id=ids[0],
                action="" if platform.mixed_actions else taken[0][1],
                session_id=session[0],
                batch_seq=seq,
                last_batch_flag=not more_alike,
                estimated_num_total=size * (seq - 1) + len(ids) + (size if more_alike else 0),
                next_attempt_at=now,
                created_at=now,
            )
            session = (session[0], seq) if more_alike else None
            destination.last_change_id = ids[-1]
            destination.save(update_fields=["last_change_id"])
            created += 1
        if len(rows) <= len(taken) and len(rows) <= size:
            return created


# --- 2. claiming ---------------------------------------------------------------------

CLAIM = """
UPDATE campaigns_platformbatch b SET next_attempt_at = %(lease_until)s
WHERE b.id IN (
    SELECT DISTINCT ON (h.destination_id) h.id FROM campaigns_platformbatch h
    JOIN campaigns_platformdestination t ON t.id = h.destination_id AND t.enabled
    WHERE h.status = 'pending'
      AND (%(destination)s::bigint IS NULL OR h.destination_id = %(destination)s::bigint)
    ORDER BY h.destination_id, h.id
)
  AND b.next_attempt_at <= %(now)s AND b.status = 'pending'
RETURNING b.id
"""


def claim_due(*, now: datetime, destination_id: int | None = None) -> list[int]:
    """Lease the head-of-line batch of each destination (or of this one) that is due;
    return their ids."""
    lease = timedelta(seconds=settings.AD_PLATFORM_LEASE_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(
            CLAIM, {"now": now, "lease_until": now + lease, "destination": destination_id}
        )
        return sorted(row[0] for row in cursor.fetchall())


def send_in_turn(batch_id: int, *, clock, budget_seconds: float) -> int:
    """Send a claimed batch, then claim and send its destination's next ones while
    each is delivered and the budget lasts: a backlog drains at the API's pace, not
    one batch per beat. `clock()` gives the time. Returns how many were delivered."""
    import time

    deadline = time.monotonic() + budget_seconds
    destination_id = PlatformBatch.objects.values_list("destination_id", flat=True).get(pk=batch_id)
    delivered = 0
    while True:
        if send_batch(batch_id, now=clock()) != PlatformBatch.Status.DELIVERED:
            return delivered
        delivered += 1
        if time.monotonic() >= deadline:
            return delivered
        claimed = claim_due(now=clock(), destination_id=destination_id)
        if not claimed:
            return delivered
        batch_id = claimed[0]


# --- 3. resolving and sending --------------------------------------------------------

CHANGES = """
SELECT c.id, c.action, c.member_id, c.created_at, c.email_sha256, c.phone_sha256,
       c.phone_digits_sha256, m.profile_id, p.user_id,
       -- a join already followed by a leave in the log is not worth sending
       c.action = 'add' AND EXISTS (
           SELECT 1 FROM campaigns_audiencechange r
           WHERE r.member_id = c.member_id AND r.id > c.id AND r.action = 'remove')
FROM campaigns_audiencechange c
JOIN campaigns_audiencemember m ON m.id = c.member_id
LEFT JOIN tracking_profile p ON p.id = m.profile_id
WHERE c.id = ANY(%(ids)s)
ORDER BY c.id
"""

BROWSERS = """
SELECT DISTINCT ON (v.profile_id) v.profile_id, a.fbp, a.fbc, a.ga_client_id, a.client_ip,
       a.user_agent
FROM tracking_visitor v JOIN tracking_adidentifiers a ON a.visitor_id = v.id
WHERE v.profile_id = ANY(%(profiles)s)
ORDER BY v.profile_id, {preference} DESC, a.updated_at DESC
"""


def external_id(user_id: str | None, profile_id: int | None) -> str:
    """Meta's external_id: the shop's own customer id where known, else ours; hashed."""
    raw = user_id or (f"reengage-profile-{profile_id}" if profile_id else "")
    return hashlib.sha256(raw.encode()).hexdigest() if raw else ""


IDS_FIELDS = [f.name for f in dataclasses.fields(Ids)]

KNOWN = """
SELECT member_id, change_id, {fields} FROM campaigns_platformmember
WHERE destination_id = %(destination)s AND member_id = ANY(%(members)s::bigint[])
""".format(fields=", ".join(IDS_FIELDS))

REMEMBER = """
INSERT INTO campaigns_platformmember (destination_id, member_id, change_id, created_at, {fields})
SELECT %(destination)s, m, c, %(now)s, {unnested}
FROM unnest(%(members)s::bigint[], %(changes)s::bigint[], {arrays})
     AS r(m, c, {fields})
ON CONFLICT (destination_id, member_id) DO NOTHING
RETURNING member_id
""".format(
    fields=", ".join(IDS_FIELDS),
    unnested=", ".join(f"r.{f}" for f in IDS_FIELDS),
    arrays=", ".join(f"%({f})s::text[]" for f in IDS_FIELDS),
)


@dataclass
class Resolved:
    items: list[Item]
    skipped: int
    forget: list[tuple[int, int]]  # (member id, remove change id) once delivered


def resolve(batch: PlatformBatch, destination: PlatformDestination, now: datetime) -> Resolved:
    """The batch's changes as the ids this platform matches on. Remembers each new
    join's ids (PlatformMember) before anything is sent, so retries and the leave
    use the same ones."""
    platform = PLATFORMS[destination.kind]
    with connection.cursor() as cursor:
        cursor.execute(CHANGES, {"ids": batch.change_ids})
        changes = cursor.fetchall()
    member_ids = [row[2] for row in changes]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(KNOWN, {"destination": destination.pk, "members": member_ids})
        known = {row[0]: (row[1], Ids(*row[2:])) for row in cursor.fetchall()}
        fresh = [row for row in changes if row[1] == "add" and not row[9] and row[2] not in known]
        browsers: dict[int, tuple] = {}
        profiles = [row[7] for row in fresh if row[7]]
        if profiles and platform.browser_preference:
            cursor.execute(
                sql.SQL(BROWSERS).format(preference=sql.SQL(platform.browser_preference)),
                {"profiles": profiles},
            )
            browsers = {row[0]: row[1:] for row in cursor.fetchall()}
        remember: list[tuple[int, int, Ids]] = []
        for change_id, _, member_id, _, em, ph, ph_digits, profile_id, user_id, _ in fresh:
            fbp, fbc, ga, ip, ua = browsers.get(profile_id, ("",) * 5)
            ids = Ids(fbp=fbp, fbc=fbc, ga_client_id=ga, client_ip=ip, user_agent=ua,
                      email_sha256=em, phone_sha256=ph, phone_digits_sha256=ph_digits,
                      external_id_sha256=external_id(user_id, profile_id) if em else "")  # fmt: skip
            if platform.matchable(ids):
                remember.append((member_id, change_id, ids))
        if remember:
            # One statement; a row another worker made first (ON CONFLICT) is read back.
            columns = {f: [getattr(ids, f) for _, _, ids in remember] for f in IDS_FIELDS}
            cursor.execute(REMEMBER, {"destination": destination.pk, "now": now,
                                      "members": [m for m, _, _ in remember],
                                      "changes": [c for _, c, _ in remember], **columns})  # fmt: skip
            made = {row[0] for row in cursor.fetchall()}
            known.update({m: (c, ids) for m, c, ids in remember if m in made})
            missing = [m for m, _, _ in remember if m not in made]
            if missing:
                cursor.execute(KNOWN, {"destination": destination.pk, "members": missing})
                known.update({row[0]: (row[1], Ids(*row[2:])) for row in cursor.fetchall()})
    items, forget, skipped = [], [], 0
    # A batch resumed after some of its requests were answered (GA4) must rebuild the
    # same requests: its joins are the ones remembered by this batch's first attempt,
    # even if a leave has been logged since (it follows in a later batch).
    resuming = batch.requests_done > 0
    for change_id, action, member_id, at, *_rest, superseded in changes:
        pm = known.get(member_id)
        if resuming and action == "add" and pm is not None and pm[0] == change_id:
            superseded = False
        if pm is None or (action == "add" and superseded) or pm[0] > change_id:
            skipped += 1
            continue
        items.append(Item(change_id, action, member_id, at, pm[1]))
        if action == "remove":
            forget.append((member_id, change_id))
    return Resolved(items, skipped, forget)


def backoff(attempts: int) -> timedelta:
    """AD_PLATFORM_BACKOFF_SECONDS, doubling per attempt, at most 6 hours."""
    return exponential_backoff(settings.AD_PLATFORM_BACKOFF_SECONDS, attempts)


def send_batch(batch_id: int, *, now: datetime) -> str:
    """Send one claimed batch and record the outcome; returns the new status."""
    batch = PlatformBatch.objects.select_related("destination__audience__site").get(pk=batch_id)
    if batch.status != PlatformBatch.Status.PENDING:
        return batch.status
    destination = batch.destination
    platform = PLATFORMS[destination.kind]
    resolved = resolve(batch, destination, now)
    requests = platform.requests(destination, batch, resolved.items, now)
    if destination.uses_dev_inbox:
        with transaction.atomic():
            PlatformInboxEntry.objects.bulk_create(
                PlatformInboxEntry(destination=destination, batch=batch, method=r.method,
                                   endpoint=r.url, payload=r.payload, items=r.items,
                                   created_at=now)
                for r in requests[batch.requests_done :]
            )  # fmt: skip
            return _delivered(batch, destination, resolved, now)
    for index in range(batch.requests_done, len(requests)):
        request = requests[index]
        outcome = _send(platform, destination, request, now)
        if not outcome.ok:
            return _failed(batch, destination, outcome, now)
        # Progress is kept per request: a batch of several (GA4) resumes after the last
        # one answered, so at most the request in flight when a worker dies goes twice.
        if len(requests) == 1:
            break
        # Without waiting for the WAL flush: a database crash may forget the last few,
        # which then go again, as after a worker's death.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            PlatformBatch.objects.filter(pk=batch.pk, status=PlatformBatch.Status.PENDING).update(
                requests_done=index + 1
            )
    with transaction.atomic():
        return _delivered(batch, destination, resolved, now)


def _send(platform, destination, request: Request, now: datetime) -> PlatformAnswer:
    from campaigns.audiences.platforms.google import CredentialError

    try:
        platform.encode(destination, request, now)
    except (CredentialError, ValueError) as exc:
        return PlatformAnswer(False, None, True, f"credentials: {exc}"[:900])
    status, headers, body = http.send(
        request.method, request.send_url or request.url, headers=request.headers,
        body=request.body or None, timeout=settings.AD_PLATFORM_TIMEOUT_SECONDS,
    )  # fmt: skip
    outcome = platform.outcome(status, headers, body, now)
    if status == 401 and destination.kind == PlatformDestination.Kind.GOOGLE_AUDIENCE:
        from campaigns.audiences.platforms.google import forget_token

        forget_token(destination.credential)
    return outcome


def _delivered(batch, destination, resolved: Resolved, now: datetime) -> str:
    updated = PlatformBatch.objects.filter(pk=batch.pk, status=PlatformBatch.Status.PENDING).update(
        status=PlatformBatch.Status.DELIVERED, delivered_at=now, last_attempt_at=now,
        attempts=F("attempts") + 1, last_error="", sent=len(resolved.items),
        skipped=resolved.skipped,
    )  # fmt: skip
    if updated:
        for member_id, change_id in resolved.forget:
            PlatformMember.objects.filter(
                destination=destination, member_id=member_id, change_id__lt=change_id
            ).delete()
        PlatformDestination.objects.filter(pk=destination.pk).update(last_success_at=now)
    return PlatformBatch.Status.DELIVERED


def _failed(batch, destination, outcome: PlatformAnswer, now: datetime) -> str:
    attempts = batch.attempts + 1
    error = f"HTTP {outcome.status}: {outcome.error}" if outcome.status else outcome.error
    fields = {"attempts": attempts, "last_attempt_at": now,
              "last_status_code": outcome.status, "last_error": error[:1000]}  # fmt: skip
    if not outcome.retryable or attempts >= settings.AD_PLATFORM_MAX_ATTEMPTS:
        fields["status"] = PlatformBatch.Status.DEAD
        log.warning("ad-platform batch %s to %s is dead: %s", batch.pk, destination, error)
    else:
        wait = backoff(attempts)
        if outcome.retry_after is not None:
            wait = timedelta(seconds=min(outcome.retry_after, 6 * 3600))
        fields["next_attempt_at"] = now + wait
    PlatformBatch.objects.filter(pk=batch.pk, status=PlatformBatch.Status.PENDING).update(**fields)
    PlatformDestination.objects.filter(pk=destination.pk).update(
        last_error_at=now, last_error=error[:1000]
    )
    return fields.get("status", PlatformBatch.Status.PENDING)


def retry_dead(batch_ids: list[int], *, now: datetime) -> int:
    """Give dead batches a fresh set of attempts (admin action)."""
    # From its first request again: joins whose leave is logged by now are then skipped.
    return PlatformBatch.objects.filter(id__in=batch_ids, status=PlatformBatch.Status.DEAD).update(
        status=PlatformBatch.Status.PENDING, attempts=0, requests_done=0, next_attempt_at=now,
        last_error="",
    )  # fmt: skip


def send_test(destination: PlatformDestination, *, now: datetime) -> PlatformAnswer:
    """One harmless request now (the admin's "send test"): a test event, a read of
    the audience, or a validate-only upload; recorded in the dev inbox when the
    destination has no credentials."""
    platform = PLATFORMS[destination.kind]
    request = platform.test_request(destination, now)
    if destination.uses_dev_inbox:
        PlatformInboxEntry.objects.create(destination=destination, method=request.method,
                                          endpoint=request.url, payload=request.payload,
                                          items=request.items, created_at=now)  # fmt: skip
        return PlatformAnswer(True, None, False, "recorded in the dev ad-platform inbox")
    outcome = _send(platform, destination, request, now)
    if outcome.ok:
        PlatformDestination.objects.filter(pk=destination.pk).update(last_success_at=now)
    else:
        PlatformDestination.objects.filter(pk=destination.pk).update(
            last_error_at=now, last_error=(outcome.error or f"HTTP {outcome.status}")[:1000]
        )
    return outcome
