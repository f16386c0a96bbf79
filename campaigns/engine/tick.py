"""Decide due enrollments: claim a batch, load its facts, decide, write. Set-based.

`tick(now=...)` runs batches until nothing is due at `now`. One batch is one
transaction:

1. claim up to `batch_size` active enrollments due at `now` whose campaign is
   active (or ended, to exit them) with `SELECT … FOR UPDATE SKIP LOCKED`, and
   load their facts in the same statement; paused and draft campaigns' rows are
   never claimed (held until the campaign is active again);
2. lock the people who may get an email (`EmailCapLock`, in id order), then load
   their recent emails (frequency caps): a concurrent batch with an email for
   the same person commits first, and its email is counted;
3. decide in pure Python (`campaigns.engine.rules.decide_batch`);
4. write, one statement each: the Decision rows, the Message rows (the outbox
   the email sender claims), audience memberships (`membership.add_members`),
   removals of converted people from audiences, and the enrollments' next due
   time or end.

Any number of ticks may run at once: a row is claimed by one transaction, and
a tick killed mid-batch rolls back, leaving its rows for the next tick. The
unique keys on (enrollment, position) of decisions and messages make a second
decision or email for a step impossible, not merely unlikely.

A batch costs `QUERIES_PER_BATCH` queries at most, whatever its size.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from psycopg2 import sql

from campaigns import audiences
from campaigns.engine import rules
from campaigns.engine.rules import Facts, NextStep, Policy, Verdict

log = logging.getLogger(__name__)

QUERIES_PER_BATCH = 8

CLAIM = """
SELECT {columns} FROM campaigns_enrollment e
WHERE e.status = 'active' AND e.due_at <= %(now)s
  AND e.campaign_id IN (SELECT id FROM campaigns_campaign WHERE status IN ('active', 'ended'))
ORDER BY e.due_at
LIMIT %(limit)s
FOR UPDATE OF e SKIP LOCKED
"""


# The claim returns the enrollment's own columns, so the facts need no second
# look-up of the rows it just locked.
def claim(columns: str) -> sql.Composed:
    """CLAIM returning `columns` (trusted SQL: column names written here, never input)."""
    return sql.SQL(CLAIM).format(columns=sql.SQL(columns))


FACTS = """
WITH e AS ({claim})
SELECT e.id, e.site_id, e.campaign_id, e.profile_id, e.next_position, e.enrolled_at,
       e.is_holdout,
       c.status, c.ends_at, c.priority, c.email_cap_count, c.email_cap_days,
       st.id, st.channel, st.template_id, st.audience_id,
       nx.position, nx.delay_minutes, nx.delay_from,
       p.email, p.email_verified,
       (p.consent ->> 'email')::boolean, (p.consent ->> 'advertising')::boolean, p.gpc, p.timezone, site.timezone,
       pol.email_cap_count, pol.email_cap_days, pol.over_cap_action,
       pol.quiet_hours_enabled, pol.quiet_hours_start, pol.quiet_hours_end,
       pol.quiet_hours_action,
       h.email_hash IS NOT NULL AND EXISTS (
           SELECT 1 FROM campaigns_suppression sup
           WHERE sup.site_id = e.site_id AND sup.email_hash = h.email_hash
       ) AS suppressed,
       h.email_hash IS NOT NULL AND EXISTS (
           SELECT 1 FROM campaigns_campaignoptout opt
           WHERE opt.campaign_id = e.campaign_id AND opt.email_hash = h.email_hash
       ) AS opted_out,
       EXISTS (
           SELECT 1 FROM tracking_event ev
           WHERE ev.profile_id = e.profile_id
             -- between the trigger and now: also prunes the months ahead
             AND ev.timestamp >= e.enrolled_at AND ev.timestamp <= %(now)s
             AND ev.type = 'track' AND ev.name = c.goal_event
       ) AS converted
FROM e
JOIN campaigns_campaign c ON c.id = e.campaign_id
JOIN tracking_profile p ON p.id = e.profile_id
-- campaigns.models.email.email_hash(), for verified addresses (the only ones mailed)
CROSS JOIN LATERAL (
    SELECT CASE WHEN p.email_verified AND p.email IS NOT NULL
                THEN encode(sha256(convert_to(lower(btrim(p.email)), 'UTF8')), 'hex') END
           AS email_hash
) h
JOIN tracking_site site ON site.id = e.site_id
LEFT JOIN campaigns_sitepolicy pol ON pol.site_id = e.site_id
LEFT JOIN campaigns_step st ON st.campaign_id = e.campaign_id AND st.position = e.next_position
LEFT JOIN LATERAL (
    SELECT s2.position, s2.delay_minutes, s2.delay_from FROM campaigns_step s2
    WHERE s2.campaign_id = e.campaign_id AND s2.position > e.next_position
    ORDER BY s2.position LIMIT 1
) nx ON true
"""
FACTS = sql.SQL(FACTS).format(
    claim=claim(
        "e.id, e.site_id, e.campaign_id, e.profile_id, e.next_position, e.enrolled_at, e.is_holdout"
    )
)

# Take turns with any other batch deciding an email for the same people (see
# EmailCapLock): an upsert locks each person's row, in id order.
LOCK_PEOPLE = """
INSERT INTO campaigns_emailcaplock (profile_id)
SELECT p FROM unnest(%(profiles)s::bigint[]) AS p ORDER BY p
ON CONFLICT (profile_id) DO UPDATE SET profile_id = EXCLUDED.profile_id
"""

# Emails that count against caps: queued or sent, not failed or refused at send
# time. Messages of profiles merged into a batch member count for the survivor.
RECENT_EMAILS = """
SELECT m.profile_id, m.campaign_id, m.created_at FROM campaigns_message m
WHERE m.profile_id = ANY(%(profiles)s::bigint[])
  AND m.created_at > %(since)s AND m.status NOT IN ('failed', 'suppressed')
UNION ALL
SELECT mp.merged_into_id, m.campaign_id, m.created_at
FROM tracking_profile mp JOIN campaigns_message m ON m.profile_id = mp.id
WHERE mp.merged_into_id = ANY(%(profiles)s::bigint[])
  AND m.created_at > %(since)s AND m.status NOT IN ('failed', 'suppressed')
"""

INSERT_DECISIONS = """
INSERT INTO campaigns_decision
    (site_id, campaign_id, step_id, position, enrollment_id, profile_id, outcome, reason,
     decided_at, rescheduled_to)
SELECT * FROM unnest(%(site)s::bigint[], %(campaign)s::bigint[], %(step)s::bigint[],
                     %(position)s::int[], %(enrollment)s::bigint[], %(profile)s::bigint[],
                     %(outcome)s::text[], %(reason)s::text[],
                     array_fill(%(now)s::timestamptz, ARRAY[%(n)s]),
                     %(rescheduled_to)s::timestamptz[])
"""

INSERT_MESSAGES = """
INSERT INTO campaigns_message
    (site_id, campaign_id, step_id, position, enrollment_id, profile_id, template_id,
     to_email, status, created_at, claimed_at, sent_at, esp_message_id, error, attempts)
SELECT site, campaign, step, position, enrollment, profile, template, to_email, 'queued',
       %(now)s, NULL, NULL, '', '', 0
FROM unnest(%(site)s::bigint[], %(campaign)s::bigint[], %(step)s::bigint[],
            %(position)s::int[], %(enrollment)s::bigint[], %(profile)s::bigint[],
            %(template)s::bigint[], %(to_email)s::text[])
     AS m(site, campaign, step, position, enrollment, profile, template, to_email)
"""

UPDATE_ENROLLMENTS = """
UPDATE campaigns_enrollment e SET
    status = u.status, next_position = u.next_position, due_at = u.due_at,
    exit_reason = u.exit_reason,
    finished_at = CASE WHEN u.finished THEN %(now)s::timestamptz END
FROM unnest(%(id)s::bigint[], %(status)s::text[], %(next_position)s::int[],
            %(due_at)s::timestamptz[], %(exit_reason)s::text[], %(finished)s::boolean[])
     AS u(id, status, next_position, due_at, exit_reason, finished)
WHERE e.id = u.id
"""


def pg_array(values: list) -> str:
    """A PostgreSQL array literal (`'{1,2,NULL}'`) for a list of ints, datetimes, bools,
    strings or None; cast it in SQL (`%(ids)s::bigint[]`).

    psycopg2 adapts a Python list element by element; for the thousands of values of a
    batch that costs more than the statements themselves, so columns travel as one
    string each. Strings are double-quoted with backslash escapes, as the array input
    syntax requires.
    """
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
        elif value is True:
            parts.append("t")
        elif value is False:
            parts.append("f")
        elif isinstance(value, int):
            parts.append(str(value))
        elif isinstance(value, datetime):
            parts.append('"' + value.isoformat() + '"')
        else:
            text = str(value).replace("\\", "\\\\").replace('"', '\\"')
            parts.append('"' + text + '"')
    return "{" + ",".join(parts) + "}"


@dataclass
class TickResult:
    decided: int = 0
    batches: int = 0
    counts: Counter = field(default_factory=Counter)  # (outcome, reason) → n

    def add(self, other: TickResult) -> None:
        self.decided += other.decided
        self.batches += other.batches
        self.counts.update(other.counts)


def _facts(row: tuple) -> Facts:
    (enrollment_id, site_id, campaign_id, profile_id, position, enrolled_at, is_holdout,
     status, ends_at, priority, c_cap_count, c_cap_days,
     step_id, channel, template_id, audience_id,
     nx_position, nx_delay, nx_from,
     email, email_verified, consent_email, consent_ads, gpc, profile_tz, site_tz,
     cap_count, cap_days, over_cap, quiet_on, quiet_start, quiet_end, quiet_action,
     suppressed, opted_out, converted) = row  # fmt: skip
    policy = (
        Policy()
        if cap_count is None
        else Policy(cap_count, cap_days, over_cap, quiet_on, quiet_start, quiet_end, quiet_action)
    )
    return Facts(
        enrollment_id=enrollment_id,
        site_id=site_id,
        campaign_id=campaign_id,
        profile_id=profile_id,
        position=position,
        enrolled_at=enrolled_at,
        is_holdout=is_holdout,
        campaign_status=status,
        campaign_ends_at=ends_at,
        campaign_priority=priority,
        campaign_cap_count=c_cap_count,
        campaign_cap_days=c_cap_days,
        converted=converted,
        step_id=step_id,
        channel=channel or rules.EMAIL_ELSE_RETARGET,
        template_id=template_id,
        audience_id=audience_id,
        next_step=None if nx_position is None else NextStep(nx_position, nx_delay, nx_from),
        email=email,
        email_verified=email_verified,
        consent={
            purpose: given
            for purpose, given in (("email", consent_email), ("advertising", consent_ads))
            if given is not None
        },
        gpc=gpc,
        timezone=profile_tz if rules.valid_zone(profile_tz) else site_tz,
        suppressed=suppressed,
        opted_out=opted_out,
        policy=policy,
    )


def _load_recent_emails(cursor, batch: list[Facts], now: datetime) -> None:
    days = max(
        max(f.policy.email_cap_days, f.campaign_cap_days or 0) if f.policy.email_cap_count else
        (f.campaign_cap_days or 0)
        for f in batch
    )  # fmt: skip
    if not days:
        return
    cursor.execute(
        RECENT_EMAILS,
        {
            "profiles": pg_array(sorted({f.profile_id for f in batch})),
            "since": now - timedelta(days=days),
        },
    )
    by_profile: dict[int, list[tuple[datetime, int]]] = {}
    for profile_id, campaign_id, created_at in cursor.fetchall():
        by_profile.setdefault(profile_id, []).append((created_at, campaign_id))
    for f in batch:
        f.recent_emails = by_profile.get(f.profile_id, [])


def _write(cursor, batch: list[Facts], outcomes: list[Verdict], now: datetime) -> None:
    def column(get) -> str:
        return pg_array([get(f, o) for f, o in zip(batch, outcomes, strict=True)])

    cursor.execute(
        INSERT_DECISIONS,
        {
            "site": column(lambda f, o: f.site_id),
            "campaign": column(lambda f, o: f.campaign_id),
            "step": column(lambda f, o: f.step_id),
            "position": column(lambda f, o: f.position),
            "enrollment": column(lambda f, o: f.enrollment_id),
            "profile": column(lambda f, o: f.profile_id),
            "outcome": column(lambda f, o: o.outcome),
            "reason": column(lambda f, o: o.reason),
            "rescheduled_to": column(lambda f, o: o.rescheduled_to),
            "now": now,
            "n": len(batch),
        },
    )
    emails = [f for f, o in zip(batch, outcomes, strict=True) if o.outcome == rules.EMAIL]
    if emails:
        cursor.execute(
            INSERT_MESSAGES,
            {
                "site": pg_array([f.site_id for f in emails]),
                "campaign": pg_array([f.campaign_id for f in emails]),
                "step": pg_array([f.step_id for f in emails]),
                "position": pg_array([f.position for f in emails]),
                "enrollment": pg_array([f.enrollment_id for f in emails]),
                "profile": pg_array([f.profile_id for f in emails]),
                "template": pg_array([f.template_id for f in emails]),
                "to_email": pg_array([f.email for f in emails]),
                "now": now,
            },
        )
    pairs = sorted(
        {
            (f.audience_id, f.profile_id)
            for f, o in zip(batch, outcomes, strict=True)
            if o.outcome == rules.RETARGET
        }
    )
    if pairs:
        audiences.add_members(pairs, now=now, reason="campaign")
    converted = sorted(
        {f.profile_id for f, o in zip(batch, outcomes, strict=True) if o.reason == "converted"}
    )
    audiences.leave_on_conversion(converted, now=now)
    cursor.execute(
        UPDATE_ENROLLMENTS,
        {
            "id": column(lambda f, o: f.enrollment_id),
            "status": column(lambda f, o: o.status),
            "next_position": column(lambda f, o: o.next_position),
            "due_at": column(lambda f, o: None if o.finished else o.due_at),
            "exit_reason": column(lambda f, o: o.reason if o.status == "exited" else ""),
            "finished": column(lambda f, o: o.finished),
            "now": now,
        },
    )


def run_batch(
    *, now: datetime, batch_size: int, after_claim: Callable[[int], None] | None = None
) -> TickResult:
    """Claim, decide and write one batch in one transaction."""
    result = TickResult()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(FACTS, {"now": now, "limit": batch_size})
        batch = [_facts(row) for row in cursor.fetchall()]
        if not batch:
            return result
        people = sorted({f.profile_id for f in batch if rules.may_email(f, now)})
        if people:
            # Before counting their emails: a concurrent batch's emails to them are
            # committed (and counted) by the time this returns.
            cursor.execute(LOCK_PEOPLE, {"profiles": pg_array(people)})
        _load_recent_emails(cursor, batch, now)
        if after_claim is not None:
            after_claim(len(batch))  # tests: die or wait here, claim and facts in hand
        outcomes = rules.decide_batch(batch, now)
        _write(cursor, batch, outcomes, now)
    result.batches = 1
    result.decided = len(batch)
    result.counts.update((o.outcome, o.reason) for o in outcomes)
    return result


def tick(
    *,
    now: datetime,
    batch_size: int = 1000,
    budget_seconds: float | None = None,
    max_batches: int | None = None,
    after_claim: Callable[[int], None] | None = None,
) -> TickResult:
    """Decide everything due at `now`, batch after batch, until nothing is left (or the
    time budget or batch limit is spent: the rest waits for the next tick)."""
    total = TickResult()
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    while True:
        result = run_batch(now=now, batch_size=batch_size, after_claim=after_claim)
        total.add(result)
        if result.decided < batch_size:
            break
        if max_batches is not None and total.batches >= max_batches:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
    if total.decided:
        log.info("engine tick at %s: %s decisions %s", now.isoformat(), total.decided,
                 dict(total.counts))  # fmt: skip
    return total
