"""Enroll people into campaigns as their events are stored, and keep enrollments
right when the person acts again, converts, or turns out to be someone we knew.

Both receivers run inside the flusher's transaction (tracking.storage), so an
event is never stored without the enrollments it causes, and a replayed batch
(deduplicated by the flusher) enrolls no one twice. Everything is set-based SQL
over the temporary table of newly stored events: a constant number of
statements per batch, whatever its size.

On `events_stored`, in this order:

1. **enroll**: trigger events (a track event named like the campaign's trigger;
   the trigger "Page Viewed" matches every page view) of active campaigns within
   their dates, passing the trigger and audience conditions, for people with no
   active enrollment in the campaign and none finished within the re-entry
   cooldown. One enrollment per (campaign, person) even with several triggers in
   the batch (the first wins); the partial unique index with ON CONFLICT DO
   NOTHING is the guarantee. Holdout is decided here, from a stable hash
   (`campaigns.engine.rules.holdout_bucket`).
2. **inactivity**: any newer event of a person pushes the first step's due time
   of their enrollments in campaigns with an inactivity rule.
3. **goal**: a goal event at or after the trigger exits the enrollment at once
   (with a `converted` decision) and removes the person from audiences that drop
   members on conversion.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from psycopg2 import sql

from campaigns import audiences
from campaigns.engine.conditions import (
    ConditionError,
    compile_audience,
    compile_conditions,
    validate_audience,
    validate_conditions,
)

log = logging.getLogger(__name__)

PAGE_VIEWED = "Page Viewed"

# What an email needs from the trigger event (the cart, its value, where it was).
TRIGGER_PROPERTY_KEYS = [
    "products", "product_id", "sku", "name", "brand", "category", "variant", "price",
    "quantity", "image_url", "url", "value", "revenue", "total", "currency", "cart_id",
    "checkout_id", "coupon",
]  # fmt: skip


def holdout_bucket_sql(campaign: str, profile: str) -> str:
    """`campaigns.engine.rules.holdout_bucket` in SQL (for a statement with parameters)."""
    return (
        f"('x' || substr(md5({campaign}::text || ':' || {profile}::text), 1, 8))"
        "::bit(32)::bigint %% 100"
    )


CANDIDATES = """
SELECT c.id, c.trigger_conditions, c.audience_conditions
FROM campaigns_campaign c
WHERE c.status = 'active'
  AND (c.starts_at IS NULL OR c.starts_at <= %(now)s)
  AND (c.ends_at IS NULL OR c.ends_at > %(oldest)s)
  AND EXISTS (SELECT 1 FROM campaigns_step st WHERE st.campaign_id = c.id)
  AND EXISTS (SELECT 1 FROM {table} s
              WHERE s.site_id = c.site_id AND s.profile_id IS NOT NULL
                AND ((s.type = 'track' AND s.name = c.trigger_event)
                     OR (s.type = 'page' AND c.trigger_event = 'Page Viewed')))
ORDER BY c.id
"""

# The page URL: properties.url (page events, or track events that carry it),
# else what the snippet put in the stored event's context.
URL_SQL = """COALESCE(s.properties -> 'url', (
    SELECT te.context #> '{page,url}' FROM tracking_event te
    WHERE te.id = s.id AND te.timestamp = s.timestamp))"""

ENROLL = """
INSERT INTO campaigns_enrollment
    (site_id, campaign_id, profile_id, status, is_holdout, next_position, due_at,
     enrolled_at, last_activity_at, trigger_event_id, trigger_properties, exit_reason,
     finished_at)
SELECT s.site_id, s.campaign_id, s.profile_id, 'active', s.is_holdout, s.position, s.due_at,
       s.timestamp, s.timestamp, s.id,
       -- what the email needs from the trigger (computed for the chosen events only)
       COALESCE((SELECT jsonb_object_agg(k.key, k.value) FROM jsonb_each(s.properties) k
                 WHERE k.key = ANY(%(keys)s::text[])), '{{}}'::jsonb)
       || CASE WHEN {url} IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object('url', {url}) END,
       '', NULL
FROM (
    SELECT DISTINCT ON (c.id, s.profile_id)
        s.id, s.site_id, s.profile_id, s.timestamp, s.properties, c.id AS campaign_id,
        -- campaigns.engine.rules.holdout_bucket(campaign, profile) < holdout_percent
        {holdout} < c.holdout_percent AS is_holdout,
        first.position,
        s.timestamp + make_interval(mins => GREATEST(first.delay_minutes,
                                                     COALESCE(c.inactivity_minutes, 0))) AS due_at
    FROM {table} s
    JOIN campaigns_campaign c
      ON c.site_id = s.site_id
     AND ((s.type = 'track' AND s.name = c.trigger_event)
          OR (s.type = 'page' AND c.trigger_event = 'Page Viewed'))
    JOIN LATERAL (SELECT st.position, st.delay_minutes FROM campaigns_step st
                  WHERE st.campaign_id = c.id ORDER BY st.position LIMIT 1) first ON true
    JOIN tracking_profile p ON p.id = s.profile_id
    WHERE c.id = ANY(%(campaigns)s::bigint[])
      AND s.profile_id IS NOT NULL
      AND s.timestamp > %(oldest)s
      AND (c.starts_at IS NULL OR c.starts_at <= s.timestamp)
      AND (c.ends_at IS NULL OR c.ends_at > s.timestamp)
      AND CASE c.id {predicates} ELSE false END
      AND NOT EXISTS (
          SELECT 1 FROM campaigns_enrollment r
          WHERE r.profile_id = s.profile_id AND r.campaign_id = c.id
            AND (r.status = 'active'
                 OR COALESCE(r.finished_at, r.enrolled_at)
                    > s.timestamp - make_interval(hours => c.reentry_cooldown_hours)))
    ORDER BY c.id, s.profile_id, s.timestamp, s.id
) s
ON CONFLICT (campaign_id, profile_id) WHERE status = 'active' DO NOTHING
"""

INACTIVITY = """
UPDATE campaigns_enrollment e SET
    last_activity_at = a.last_at,
    due_at = GREATEST(e.enrolled_at + make_interval(mins => st.delay_minutes),
                      a.last_at + make_interval(mins => c.inactivity_minutes))
FROM (SELECT profile_id, max(timestamp) AS last_at FROM {table}
      WHERE profile_id IS NOT NULL AND type IN ('track', 'page', 'screen')
      GROUP BY profile_id) a,
     campaigns_campaign c, campaigns_step st
WHERE e.status = 'active' AND e.profile_id = a.profile_id AND a.last_at > e.last_activity_at
  AND c.id = e.campaign_id AND c.inactivity_minutes IS NOT NULL
  AND st.campaign_id = e.campaign_id AND st.position = e.next_position
  AND NOT EXISTS (SELECT 1 FROM campaigns_step earlier
                  WHERE earlier.campaign_id = e.campaign_id AND earlier.position < e.next_position)
"""

GOAL_EXITS = """
WITH goals AS (
    SELECT profile_id, name, max(timestamp) AS last_at FROM {table}
    WHERE type = 'track' AND profile_id IS NOT NULL GROUP BY profile_id, name
), exited AS (
    UPDATE campaigns_enrollment e SET
        status = 'exited', exit_reason = 'converted', finished_at = %(now)s, due_at = NULL
    FROM goals g, campaigns_campaign c
    WHERE e.status = 'active' AND e.profile_id = g.profile_id
      AND c.id = e.campaign_id AND g.name = c.goal_event AND g.last_at >= e.enrolled_at
    RETURNING e.id, e.site_id, e.campaign_id, e.profile_id, e.next_position
)
INSERT INTO campaigns_decision
    (site_id, campaign_id, step_id, position, enrollment_id, profile_id, outcome, reason,
     decided_at, rescheduled_to)
SELECT x.site_id, x.campaign_id,
       (SELECT st.id FROM campaigns_step st
        WHERE st.campaign_id = x.campaign_id AND st.position = x.next_position),
       x.next_position, x.id, x.profile_id, 'exit', 'converted', %(now)s, NULL
FROM exited x
"""

# People who reached any campaign's goal in this batch.
CONVERTED_PROFILES = """
SELECT DISTINCT s.profile_id FROM {table} s
WHERE s.type = 'track' AND s.profile_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM campaigns_campaign c WHERE c.site_id = s.site_id AND c.goal_event = s.name)
"""


def _oldest_trigger(now: datetime) -> datetime:
    """Trigger events older than this (backfills, late offline queues) enroll no one:
    an abandoned-cart email about last month's cart helps nobody."""
    return now - timedelta(hours=settings.ENGINE_MAX_TRIGGER_AGE_HOURS)


def enroll_stored(*, table: str, now: datetime) -> int:
    """Steps 1–3 above for the events in `table`. Returns how many people enrolled."""
    oldest = _oldest_trigger(now)
    enrolled = 0
    with connection.cursor() as cursor:
        stored = sql.Identifier(table)
        cursor.execute(sql.SQL(CANDIDATES).format(table=stored), {"now": now, "oldest": oldest})
        campaigns = cursor.fetchall()
        predicates: list[sql.Composable] = []
        if campaigns:
            params: dict = {
                "campaigns": [c[0] for c in campaigns],
                "oldest": oldest,
                "keys": TRIGGER_PROPERTY_KEYS,
            }
            for campaign_id, trigger_conditions, audience_conditions in campaigns:
                try:
                    # Raw cursors hand jsonb back as text.
                    trigger_conditions = validate_conditions(json.loads(trigger_conditions))
                    audience_conditions = validate_audience(json.loads(audience_conditions))
                except (ConditionError, ValueError) as exc:
                    # Saved around the admin's validation: this campaign enrolls no one,
                    # but it must not stop the events (and other campaigns) being stored.
                    log.error("campaign %s has unusable conditions, skipped: %s", campaign_id, exc)
                    continue
                trigger_sql, trigger_params = compile_conditions(
                    trigger_conditions or [],
                    source="s.properties",
                    prefix=f"t{campaign_id}",
                    url_sql=URL_SQL,
                )
                audience_sql, audience_params = compile_audience(
                    audience_conditions or {},
                    profile="p",
                    event_time="s.timestamp",
                    prefix=f"a{campaign_id}",
                )
                predicates.append(
                    sql.SQL("WHEN {} THEN ({}) AND ({})").format(
                        sql.Literal(int(campaign_id)), sql.SQL(trigger_sql), sql.SQL(audience_sql)
                    )
                )
                params.update(trigger_params)
                params.update(audience_params)
        if predicates:
            cursor.execute(
                sql.SQL(ENROLL).format(
                    table=stored,
                    url=sql.SQL(URL_SQL),
                    predicates=sql.SQL(" ").join(predicates),
                    holdout=sql.SQL(holdout_bucket_sql("c.id", "s.profile_id")),
                ),
                params,
            )
            enrolled = cursor.rowcount
        cursor.execute(sql.SQL(INACTIVITY).format(table=stored))
        cursor.execute(sql.SQL(GOAL_EXITS).format(table=stored), {"now": now})
        cursor.execute(sql.SQL(CONVERTED_PROFILES).format(table=stored))
        converted = [profile_id for (profile_id,) in cursor.fetchall()]
    audiences.leave_on_conversion(converted, now=now)
    return enrolled


def on_events_stored(sender, *, table: str, count: int, now: datetime, **kwargs) -> None:
    enroll_stored(table=table, now=now)


# --- merges ------------------------------------------------------------------------

MERGE = """
WITH ranked AS (
    -- The person's active enrollments per campaign, across the merged profiles:
    -- the earliest trigger stays, the others exit.
    SELECT e.id, e.site_id, e.campaign_id, e.next_position,
           row_number() OVER (PARTITION BY e.campaign_id
                              ORDER BY e.enrolled_at, e.id) AS rank
    FROM campaigns_enrollment e
    WHERE e.status = 'active' AND e.profile_id = ANY(%(profiles)s::bigint[])
), exited AS (
    UPDATE campaigns_enrollment e SET
        status = 'exited', exit_reason = 'merged', finished_at = %(now)s, due_at = NULL
    FROM ranked r WHERE r.id = e.id AND r.rank > 1
    RETURNING e.id
), decided AS (
    INSERT INTO campaigns_decision
        (site_id, campaign_id, step_id, position, enrollment_id, profile_id, outcome, reason,
         decided_at, rescheduled_to)
    SELECT r.site_id, r.campaign_id,
           (SELECT st.id FROM campaigns_step st
            WHERE st.campaign_id = r.campaign_id AND st.position = r.next_position),
           r.next_position, r.id, %(survivor)s, 'exit', 'merged', %(now)s, NULL
    FROM ranked r WHERE r.rank > 1
)
SELECT count(*) FROM exited
"""


def merge_enrollments(*, survivor_id: int, merged_ids: list[int], now: datetime) -> int:
    """Re-point the merged profiles' enrollments and decisions to the survivor,
    keeping one active enrollment per campaign (the earliest). Returns how many exited."""
    profiles = [survivor_id, *merged_ids]
    with connection.cursor() as cursor:
        cursor.execute(MERGE, {"profiles": profiles, "survivor": survivor_id, "now": now})
        (exited,) = cursor.fetchone()
        # Exits first (a separate statement sees them), so the re-point cannot
        # collide with the one-active-per-campaign index.
        cursor.execute(
            "UPDATE campaigns_enrollment SET profile_id = %s WHERE profile_id = ANY(%s::bigint[])",
            [survivor_id, merged_ids],
        )
        cursor.execute(
            "UPDATE campaigns_decision SET profile_id = %s WHERE profile_id = ANY(%s::bigint[])",
            [survivor_id, merged_ids],
        )
    return exited


def on_profiles_merged(
    sender, *, site_id: int, survivor_id: int, merged_ids: list[int], **kwargs
) -> None:
    # The merge happens inside the flush, whose clock is not passed with this
    # signal; the database's transaction time is the flush's own.
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (now,) = cursor.fetchone()
    merge_enrollments(survivor_id=survivor_id, merged_ids=merged_ids, now=now)
