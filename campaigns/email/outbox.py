"""The outbox's state changes in batches: claim many queued Messages in one statement,
record many outcomes in another.

A claim is `queued → sending`, committed (durably, outside any transaction) before any
of those emails is handed to the ESP; the subquery's `FOR UPDATE SKIP LOCKED` lets
any number of workers claim at once without waiting for or double-claiming each
other's rows. A finish moves only rows still in `sending` (`AND status = 'sending'`),
so a row that recovery settled meanwhile is never overwritten; it commits without
waiting for the WAL flush: were it lost in a PostgreSQL crash, the row would be back
in `sending`, which recovery settles without resending. The claim, whose loss could
cause a resend, keeps its fsync.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

# The rows are picked in a MATERIALIZED CTE, not `WHERE id IN (SELECT … LIMIT n)`: the
# planner may re-run such a subquery as the inner side of a join, and with SKIP LOCKED
# each run picks other rows, so one statement could claim far more than `n`.
# They are read in order from the queue's index (created_at, id), stopping at `n`.
# Statistics that have not caught up with a campaign's new queue (autovacuum analyzes
# a minute or more later) make the planner think a sort of "a few" queued rows is
# cheaper, and it sorted every queued row on each claim: 16 ms with 20,000 queued, 51
# ms with 100,000, instead of 0.6-0.9 ms. With sorting priced out for this one
# statement (SET LOCAL: the implicit transaction of the two, which still commits with
# its fsync), the index order is the plan whatever the statistics say. The UPDATE
# finds the picked rows by id alone: they are locked and still queued (FOR UPDATE
# re-checks the condition on a row's newest version before it locks it), and a second
# `status = 'queued'` let the planner look them up through the queue's index instead,
# reading the queue again for each.
CLAIM_BATCH = """
SET LOCAL enable_sort TO OFF;
WITH picked AS MATERIALIZED (
    SELECT id FROM campaigns_message
    WHERE status = 'queued' AND (not_before IS NULL OR not_before <= %(now)s)
      AND NOT (site_id = ANY(%(excluded)s))
    ORDER BY created_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE campaigns_message AS m
SET status = 'sending', claimed_at = %(now)s, attempts = m.attempts + 1
FROM picked
WHERE m.id = picked.id
RETURNING m.id, m.site_id
"""

CLAIM_ONE = """
UPDATE campaigns_message SET status = 'sending', claimed_at = %(now)s, attempts = attempts + 1
WHERE id = %(id)s AND status = 'queued' AND (not_before IS NULL OR not_before <= %(now)s)
RETURNING id, site_id
"""

# NULL in a column of the batch means "leave it as it is".
FINISH_BATCH = """
SET LOCAL synchronous_commit TO OFF;
UPDATE campaigns_message AS m SET
    status = u.status,
    error = COALESCE(u.error, m.error),
    sent_at = COALESCE(u.sent_at, m.sent_at),
    esp_message_id = COALESCE(u.esp_id, m.esp_message_id),
    not_before = COALESCE(u.not_before, m.not_before),
    attempts = m.attempts + u.attempts_delta
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[], %s::text[],
            %s::timestamptz[], %s::int[])
     AS u(id, status, error, sent_at, esp_id, not_before, attempts_delta)
WHERE m.id = u.id AND m.status = 'sending'
RETURNING m.id
"""


@dataclass
class Finish:
    """What becomes of one claimed message. None: leave that column as it is."""

    message_id: int
    status: str
    error: str | None = None
    sent_at: datetime | None = None
    esp_id: str | None = None
    not_before: datetime | None = None
    attempts_delta: int = 0
    site_id: int | None = None  # not written: what the send-rate counters need


def claim_batch(now: datetime, limit: int, excluded: list[int]) -> list[tuple[int, int]]:
    """Claim up to `limit` due messages of sites not `excluded`: [(id, site id)], oldest
    first. Runs outside any transaction (autocommit): durable before anything is sent
    (and its planner setting ends with it)."""
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_BATCH, {"now": now, "limit": limit, "excluded": excluded})
        return sorted(cursor.fetchall())


def claim_one(message_id: int, now: datetime) -> tuple[int, int] | None:
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_ONE, {"now": now, "id": message_id})
        return cursor.fetchone()


def finish_many(finishes: list[Finish]) -> set[int]:
    """Record outcomes in one statement; returns the ids moved (the others had been
    settled by recovery meanwhile)."""
    if not finishes:
        return set()
    columns = [
        [f.message_id for f in finishes],
        [str(f.status) for f in finishes],
        [None if f.error is None else str(f.error) for f in finishes],
        [f.sent_at for f in finishes],
        [f.esp_id for f in finishes],
        [f.not_before for f in finishes],
        [f.attempts_delta for f in finishes],
    ]
    with connection.cursor() as cursor:
        # One round trip: a multi-statement string runs as one implicit transaction.
        cursor.execute(FINISH_BATCH, columns)
        return {row[0] for row in cursor.fetchall()}


def release(message_ids: list[int], not_before: datetime | None = None) -> set[int]:
    """Put claimed messages that were never handed to the backend back in the queue; the
    claim's attempt is given back (holding a message is not trying to send it)."""
    return finish_many(
        [Finish(i, "queued", not_before=not_before, attempts_delta=-1) for i in message_ids]
    )


TEMPLATE_AND_PROMO = """
UPDATE campaigns_message AS m SET template_id = u.template_id, promo_code = u.promo_code
FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS u(id, template_id, promo_code)
WHERE m.id = u.id
"""


def record_choices(choices: list[tuple[int, int, str]]) -> None:
    """The variant and promo code each message got, [(id, template id, code)], kept
    before sending so the browser view and the reports see what was sent."""
    if not choices:
        return
    with connection.cursor() as cursor:
        cursor.execute(TEMPLATE_AND_PROMO, [list(column) for column in zip(*choices, strict=True)])
