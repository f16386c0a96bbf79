"""Add and remove audience members, set-based, recording each change once.

`add_members`, `add_matching`, `remove_members`, `remove_profiles`,
`leave_on_conversion`, `leave_on_withdrawn_consent` and `expire_members` are the
only writers of AudienceMember and AudienceChange; the
engine, rules, expiry, conversions, consent withdrawal and erasure all call
them. All run in the caller's transaction.

Hashed identifiers follow what Meta and Google document for customer lists
(see `normalize_email` and `normalize_phone`), and are only computed for people
whose email the site verified, who consented to advertising use and who did not
send Global Privacy Control, in audiences that include hashed identifiers.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import phonenumbers
from django.conf import settings
from django.db import connection
from psycopg2 import sql

# Whether a profile's hashed identifiers may go to ad platforms (alias p).
MAY_HASH = """(p.email_verified AND NOT p.gpc AND p.consent -> 'advertising' = 'true'::jsonb)"""

ADD = """
WITH source AS ({source}),
wanted AS (
    SELECT DISTINCT ON (a.id, p.id) a.id AS audience_id, p.id AS profile_id,
           %(now)s::timestamptz + make_interval(days => a.lifetime_days) AS expires_at,
           CASE WHEN a.include_hashed_emails AND {may_hash} AND COALESCE(p.email, '') <> ''
                -- Meta: trim, lower-case; Google: lower-case, no whitespace at all
                THEN encode(sha256(convert_to(
                         lower(regexp_replace(p.email, '\\s', '', 'g')), 'UTF8')), 'hex')
                ELSE '' END AS email_sha256,
           -- phones are normalised in Python (libphonenumber), after this statement
           CASE WHEN a.include_hashed_emails AND {may_hash}
                THEN NULLIF(p.traits ->> 'phone', '') END AS phone,
           -- new or rejoining (previously removed) members make an "add" change
           (m.id IS NULL OR m.removed_at IS NOT NULL) AS is_change
    -- LATERAL lookups by key: a batch costs its own size, not the tables' (the planner
    -- cannot estimate unnest() and would otherwise hash-join whole tables)
    FROM source w
    CROSS JOIN LATERAL (SELECT a.id, a.lifetime_days, a.include_hashed_emails
                        FROM campaigns_audience a WHERE a.id = w.audience_id) a
    CROSS JOIN LATERAL (SELECT p.id, p.email, p.email_verified, p.gpc, p.consent, p.traits
                        FROM tracking_profile p WHERE p.id = w.profile_id) p
    LEFT JOIN LATERAL (SELECT m.id, m.removed_at FROM campaigns_audiencemember m
                       WHERE m.audience_id = w.audience_id AND m.profile_id = w.profile_id) m
           ON true
    ORDER BY a.id, p.id
), upserted AS (
    INSERT INTO campaigns_audiencemember AS m
        (audience_id, profile_id, email_sha256, phone_sha256, phone_digits_sha256, added_by,
         added_at, expires_at, removed_at, removal_reason)
    SELECT audience_id, profile_id, email_sha256, '', '', %(reason)s, %(now)s, expires_at,
           NULL, ''
    FROM wanted
    ON CONFLICT (audience_id, profile_id) DO UPDATE SET
        expires_at = CASE WHEN m.removed_at IS NULL
                          THEN GREATEST(m.expires_at, EXCLUDED.expires_at)
                          ELSE EXCLUDED.expires_at END,
        email_sha256 = EXCLUDED.email_sha256,
        phone_sha256 = EXCLUDED.phone_sha256,
        phone_digits_sha256 = EXCLUDED.phone_digits_sha256,
        -- a rule's member that a campaign also adds stays when the rule stops matching
        added_by = CASE WHEN m.removed_at IS NOT NULL THEN EXCLUDED.added_by
                        WHEN m.added_by = 'rule' AND EXCLUDED.added_by <> 'rule'
                        THEN EXCLUDED.added_by
                        ELSE m.added_by END,
        -- a removed member rejoins: a new "add" change is due
        added_at = CASE WHEN m.removed_at IS NULL THEN m.added_at ELSE EXCLUDED.added_at END,
        removed_at = NULL,
        removal_reason = ''
    RETURNING m.id, m.audience_id, m.profile_id, m.email_sha256
), changes AS (
    INSERT INTO campaigns_audiencechange
        (audience_id, member_id, action, reason, anonymous_ids, email_sha256, phone_sha256,
         phone_digits_sha256, created_at)
    SELECT u.audience_id, u.id, 'add', %(reason)s,
           COALESCE((SELECT jsonb_agg(v.anonymous_id ORDER BY v.id) FROM tracking_visitor v
                     WHERE v.profile_id = u.profile_id), '[]'::jsonb),
           u.email_sha256, '', '', %(now)s
    FROM upserted u
    JOIN wanted w ON w.audience_id = u.audience_id AND w.profile_id = u.profile_id
    WHERE w.is_change  -- an extension of a current member is no change
    ORDER BY u.id
    RETURNING id, member_id
)
SELECT (SELECT count(*) FROM changes),
       -- [member id, raw phone, change id or null] for the phones still to hash
       (SELECT json_agg(json_build_array(u.id, w.phone, c.id))
        FROM upserted u
        JOIN wanted w ON w.audience_id = u.audience_id AND w.profile_id = u.profile_id
        LEFT JOIN changes c ON c.member_id = u.id
        WHERE w.phone IS NOT NULL)
"""

SET_PHONES = """
UPDATE campaigns_audiencemember m SET phone_sha256 = h.e164, phone_digits_sha256 = h.digits
FROM unnest(%(members)s::bigint[], %(e164)s::text[], %(digits)s::text[]) AS h(id, e164, digits)
WHERE m.id = h.id;
UPDATE campaigns_audiencechange c SET phone_sha256 = h.e164, phone_digits_sha256 = h.digits
FROM unnest(%(changes)s::bigint[], %(e164c)s::text[], %(digitsc)s::text[]) AS h(id, e164, digits)
WHERE c.id = h.id;
"""

PAIRS = "SELECT * FROM unnest(%(audiences)s::bigint[], %(profiles)s::bigint[]) AS w(audience_id, profile_id)"

REMOVE = """
WITH removed AS (
    UPDATE campaigns_audiencemember m SET removed_at = %(now)s, removal_reason = %(reason)s
    WHERE m.removed_at IS NULL AND {where}
    RETURNING m.id, m.audience_id, m.profile_id, m.email_sha256, m.phone_sha256,
              m.phone_digits_sha256
)
INSERT INTO campaigns_audiencechange
    (audience_id, member_id, action, reason, anonymous_ids, email_sha256, phone_sha256,
     phone_digits_sha256, created_at)
SELECT r.audience_id, r.id, 'remove', %(reason)s,
       COALESCE((SELECT jsonb_agg(v.anonymous_id ORDER BY v.id) FROM tracking_visitor v
                 WHERE v.profile_id = r.profile_id), '[]'::jsonb),
       r.email_sha256, r.phone_sha256, r.phone_digits_sha256, %(now)s
FROM removed r
ORDER BY r.id
"""


# --- normalisation, as Meta and Google document it ----------------------------------


def normalize_email(email: str) -> str:
    """Lower-cased, with no whitespace (Meta: trim + lower-case; Google: no spaces at all)."""
    return "".join(email.split()).lower()


def normalize_phone(raw: str, default_region: str | None = None) -> str | None:
    """E.164 ("+" country code and number, Google's format), or None if not a valid number.

    A number without "+" or "00" is read in `default_region` when one is set
    (AUDIENCE_PHONE_REGION), else as digits that already start with the country code.
    """
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    candidates = [(text, None)] if text.startswith("+") else []
    if not text.startswith("+"):
        if default_region:
            candidates.append((text, default_region.upper()))
        digits = "".join(ch for ch in text if ch.isdigit())
        if digits:
            candidates.append(("+" + digits, None))
    for candidate, region in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_email(email: str) -> str:
    return sha256_hex(normalize_email(email))


def hash_phone(raw: str, default_region: str | None = None) -> tuple[str, str] | None:
    """(Google's hash of "+16505551212", Meta's hash of "16505551212"), or None."""
    e164 = normalize_phone(raw, default_region)
    if e164 is None:
        return None
    return sha256_hex(e164), sha256_hex(e164.lstrip("+"))


# --- writers ---------------------------------------------------------------------


def _add(source: sql.Composable, params: dict, *, now: datetime, reason: str) -> int:
    region = getattr(settings, "AUDIENCE_PHONE_REGION", "") or None
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(ADD).format(source=source, may_hash=sql.SQL(MAY_HASH)),
            {**params, "now": now, "reason": reason},
        )
        added, phones = cursor.fetchone()
        hashed = [(m, c, hash_phone(raw, region)) for m, raw, c in phones or []]
        hashed = [(m, c, h) for m, c, h in hashed if h]
        if hashed:
            with_change = [(c, h) for _, c, h in hashed if c is not None]
            cursor.execute(
                SET_PHONES,
                {
                    "members": [m for m, _, _ in hashed],
                    "e164": [h[0] for _, _, h in hashed],
                    "digits": [h[1] for _, _, h in hashed],
                    "changes": [c for c, _ in with_change],
                    "e164c": [h[0] for _, h in with_change],
                    "digitsc": [h[1] for _, h in with_change],
                },
            )
        return added


def add_members(pairs: list[tuple[int, int]], *, now: datetime, reason: str = "campaign") -> int:
    """Add (audience_id, profile_id) pairs; extend the expiry of current members.

    Returns how many add changes were recorded (new or rejoining members).
    """
    if not pairs:
        return 0
    params = {"audiences": [a for a, _ in pairs], "profiles": [p for _, p in pairs]}
    return _add(sql.SQL(PAIRS), params, now=now, reason=reason)


def add_matching(select_sql: sql.Composable, params: dict, *, now: datetime, reason: str) -> int:
    """Add the (audience_id, profile_id) rows a query selects, in one statement.

    For rules over the events table: no ids travel through Python.
    """
    return _add(select_sql, params, now=now, reason=reason)


def remove_members(*, where: sql.Composable, params: dict, now: datetime, reason: str) -> int:
    """Remove current members matching `where` (SQL over alias `m`); record each removal.

    Only this area's writers call it, each with its own condition: no other area
    hands SQL in (they call `remove_profiles`, `leave_on_conversion`, …).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(REMOVE).format(where=where), {**params, "now": now, "reason": reason}
        )
        return cursor.rowcount


def remove_profiles(profile_ids: list[int], *, now: datetime, reason: str) -> int:
    """Remove these people from every audience (conversion, erasure, consent withdrawn).

    On erasure the member rows also forget the hashes; the removal changes keep
    them, since a destination needs them to remove the person from its platform.
    """
    removed = remove_members(
        where=sql.SQL("m.profile_id = ANY(%(profiles)s::bigint[])"),
        params={"profiles": profile_ids},
        now=now,
        reason=reason,
    )
    if reason == "erased":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE campaigns_audiencemember SET email_sha256 = '', phone_sha256 = '',"
                " phone_digits_sha256 = '' WHERE profile_id = ANY(%s::bigint[])",
                [profile_ids],
            )
    return removed


def leave_on_withdrawn_consent(sender, *, table: str, now: datetime, **kwargs) -> int:
    """`events_stored` receiver: people whose new events refuse advertising or carry GPC
    leave every audience (reason consent_withdrawn), in the flusher's transaction.

    `table` names the flusher's temporary table of the stored events.
    """
    return remove_members(
        where=sql.SQL(
            "m.profile_id IN (SELECT DISTINCT s.profile_id FROM {table} s) AND EXISTS ("
            "SELECT 1 FROM tracking_profile p WHERE p.id = m.profile_id"
            " AND (p.gpc OR p.consent -> 'advertising' = 'false'::jsonb))"
        ).format(table=sql.Identifier(table)),
        params={},
        now=now,
        reason="consent_withdrawn",
    )


def leave_on_conversion(profile_ids: list[int], *, now: datetime) -> int:
    """People who converted leave the audiences set to drop members on conversion.

    The one place this rule is written: the engine calls it for goal events stored
    by the flusher and for conversions it finds when deciding a step.
    """
    if not profile_ids:
        return 0
    return remove_members(
        where=sql.SQL(
            "m.profile_id = ANY(%(profiles)s::bigint[]) AND m.audience_id IN "
            "(SELECT a.id FROM campaigns_audience a WHERE a.remove_on_conversion)"
        ),
        params={"profiles": sorted(profile_ids)},
        now=now,
        reason="converted",
    )


def expire_members(*, now: datetime) -> int:
    return remove_members(
        where=sql.SQL("m.expires_at <= %(cutoff)s"),
        params={"cutoff": now},
        now=now,
        reason="expired",
    )
