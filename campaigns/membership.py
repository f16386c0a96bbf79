"""Add and remove audience members, set-based, recording each change once.

`add_members` and `remove_members` are the only writers of AudienceMember and
AudienceChange; the engine, rules, expiry, conversions, consent withdrawal and
erasure all call them. Both run in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection

ADD = """
WITH wanted AS (
    SELECT DISTINCT a.id AS audience_id, p.id AS profile_id,
           %(now)s::timestamptz + make_interval(days => a.lifetime_days) AS expires_at,
           CASE WHEN a.include_hashed_emails AND p.email_verified
                     AND COALESCE((p.consent ->> 'advertising')::boolean, false)
                THEN encode(sha256(convert_to(lower(btrim(p.email)), 'UTF8')), 'hex')
                ELSE '' END AS email_sha256,
           -- new or rejoining (previously removed) members make an "add" change
           (m.id IS NULL OR m.removed_at IS NOT NULL) AS is_change
    FROM unnest(%(audiences)s::bigint[], %(profiles)s::bigint[]) AS w(audience_id, profile_id)
    JOIN campaigns_audience a ON a.id = w.audience_id
    JOIN tracking_profile p ON p.id = w.profile_id
    LEFT JOIN campaigns_audiencemember m
           ON m.audience_id = w.audience_id AND m.profile_id = w.profile_id
), upserted AS (
    INSERT INTO campaigns_audiencemember
        (audience_id, profile_id, email_sha256, phone_sha256, added_at, expires_at,
         removed_at, removal_reason)
    SELECT audience_id, profile_id, email_sha256, '', %(now)s, expires_at, NULL, ''
    FROM wanted
    ON CONFLICT (audience_id, profile_id) DO UPDATE SET
        expires_at = GREATEST(campaigns_audiencemember.expires_at, EXCLUDED.expires_at),
        email_sha256 = EXCLUDED.email_sha256,
        -- a removed member rejoins: a new "add" change is due
        added_at = CASE WHEN campaigns_audiencemember.removed_at IS NULL
                        THEN campaigns_audiencemember.added_at ELSE EXCLUDED.added_at END,
        removed_at = NULL,
        removal_reason = ''
    RETURNING id, audience_id, profile_id, email_sha256
)
INSERT INTO campaigns_audiencechange
    (audience_id, member_id, action, reason, anonymous_ids, email_sha256, created_at)
SELECT u.audience_id, u.id, 'add', %(reason)s,
       COALESCE((SELECT jsonb_agg(v.anonymous_id ORDER BY v.id) FROM tracking_visitor v
                 WHERE v.profile_id = u.profile_id), '[]'::jsonb),
       u.email_sha256, %(now)s
FROM upserted u
JOIN wanted w ON w.audience_id = u.audience_id AND w.profile_id = u.profile_id
WHERE w.is_change  -- an extension of a current member is no change
"""

REMOVE = """
WITH removed AS (
    UPDATE campaigns_audiencemember m SET removed_at = %(now)s, removal_reason = %(reason)s
    WHERE m.removed_at IS NULL AND {where}
    RETURNING m.id, m.audience_id, m.profile_id, m.email_sha256
)
INSERT INTO campaigns_audiencechange
    (audience_id, member_id, action, reason, anonymous_ids, email_sha256, created_at)
SELECT r.audience_id, r.id, 'remove', %(reason)s,
       COALESCE((SELECT jsonb_agg(v.anonymous_id ORDER BY v.id) FROM tracking_visitor v
                 WHERE v.profile_id = r.profile_id), '[]'::jsonb),
       r.email_sha256, %(now)s
FROM removed r
"""


def add_members(pairs: list[tuple[int, int]], *, now: datetime, reason: str = "campaign") -> int:
    """Add (audience_id, profile_id) pairs; extend the expiry of current members.

    Returns how many add changes were recorded (new or rejoining members).
    """
    if not pairs:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            ADD,
            {
                "audiences": [a for a, _ in pairs],
                "profiles": [p for _, p in pairs],
                "now": now,
                "reason": reason,
            },
        )
        return cursor.rowcount


def remove_members(*, where: str, params: dict, now: datetime, reason: str) -> int:
    """Remove current members matching `where` (SQL over alias `m`); record each removal."""
    with connection.cursor() as cursor:
        cursor.execute(REMOVE.format(where=where), {**params, "now": now, "reason": reason})
        return cursor.rowcount


def remove_profiles(profile_ids: list[int], *, now: datetime, reason: str) -> int:
    """Remove these people from every audience (conversion, erasure, consent withdrawn)."""
    return remove_members(
        where="m.profile_id = ANY(%(profiles)s::bigint[])",
        params={"profiles": profile_ids},
        now=now,
        reason=reason,
    )


def expire_members(*, now: datetime) -> int:
    return remove_members(
        where="m.expires_at <= %(cutoff)s", params={"cutoff": now}, now=now, reason="expired"
    )
