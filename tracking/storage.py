"""Write a batch of event envelopes to PostgreSQL, set-based, in one transaction.

Steps (each one statement over the whole batch, except identity changes):

1. COPY the batch into a temporary staging table;
2. dedupe on (site, client timestamp, messageId) against `tracking_eventkey` (and
   inside the batch);
3. stitch identities: only (anonymousId, userId) pairs whose mapping changes
   are handled one by one (rare: a login, a new device); the rest is set-based;
4. look each anonymous ID up once (`_anon`), create visitors and profiles for
   unseen anonymous IDs and userIds;
5. insert the events with their profile, update profiles (traits, email,
   consent, last seen) and sites' last event time;
6. send `tracking.signals.events_stored` so campaigns enroll in the same
   transaction, reading the temporary table `_stored`.

A transaction-level advisory lock serialises writers (the flusher and the
PostgreSQL fallback of the ingest view), so two batches never race to create
the same visitor. Replaying a batch is harmless: step 2 drops what is stored.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from psycopg2 import sql

from tracking import ad_ids, trust
from tracking.signals import events_stored, profiles_merged

log = logging.getLogger(__name__)

WRITE_LOCK = 7_346_001  # pg_advisory_xact_lock key for event writers
# Visitors' and profiles' last_seen_at are kept to this precision (fewer row writes).
LAST_SEEN_GRANULARITY = "5 minutes"

# The columns of a staged row, in the order `encode_rows` writes them (`seq` is filled by
# the staging table itself, in input order).
STAGE_COLUMNS = (
    "site_id", "message_id", "type", "name", "anonymous_id", "user_id", "previous_id",
    "ts", "received_at", "properties", "traits", "context", "email", "email_verified",
    "consent", "gpc", "timezone", "dedupe_at", "trust",
)  # fmt: skip
# A stream entry's rows carry this format; entries written before `dedupe_at` (format 1,
# no `f` field) or before `trust` (format 2) are converted by `upgrade_rows`.
ROWS_FORMAT = 3

# Every temporary table a pass creates. ON COMMIT DROP is not enough inside an outer
# transaction (tests, callers that batch several stores), so a pass drops them before
# it starts and when it ends.
DROP_TEMP_TABLES = "DROP TABLE IF EXISTS _stage, _fresh, _stored, _anon, _profile_of, _seen"

CREATE_STAGE = f"""
{DROP_TEMP_TABLES};
CREATE TEMP TABLE _stage (
    seq int GENERATED ALWAYS AS IDENTITY,
    site_id bigint NOT NULL, message_id text NOT NULL, type text NOT NULL,
    name text NOT NULL, anonymous_id text NOT NULL, user_id text NOT NULL,
    previous_id text NOT NULL, ts timestamptz NOT NULL, received_at timestamptz NOT NULL,
    properties jsonb NOT NULL, traits jsonb NOT NULL, context jsonb NOT NULL,
    email text NOT NULL, email_verified boolean NOT NULL, consent jsonb,
    gpc boolean NOT NULL, timezone text NOT NULL, dedupe_at timestamptz,
    trust smallint NOT NULL
) ON COMMIT DROP;
-- The joins below need statistics on these columns only, and a small sample serves
-- (ANALYZE reads 300 rows per point of the target: 3,000 instead of 30,000).
ALTER TABLE _stage ALTER site_id SET STATISTICS 10, ALTER message_id SET STATISTICS 10,
    ALTER type SET STATISTICS 10, ALTER anonymous_id SET STATISTICS 10,
    ALTER user_id SET STATISTICS 10;
CREATE TEMP TABLE _fresh (seq int) ON COMMIT DROP;
CREATE TEMP TABLE _stored (
    id bigint, site_id bigint, profile_id bigint, type text, name text,
    anonymous_id text, user_id text, timestamp timestamptz, properties jsonb,
    trust smallint
) ON COMMIT DROP;
"""

# The dedupe key is (site, the client's timestamp, messageId): a retry repeats both, and
# keys that start with the time land at the end of the index, where the last minutes'
# keys are, instead of at random places in a month of them (half the cost per event
# here, and the difference between memory and disk once the window outgrows memory).
# An event sent without a timestamp is keyed at NO_TIME; keys stored before the time was
# part of the key (migration 0009) sit at LEGACY_TIME and are checked while any remain.
NO_TIME = "1970-01-01T00:00:00+00:00"
LEGACY_TIME = "0001-01-01T00:00:00+00:00"

LEGACY_KEYS_LEFT = """
SELECT EXISTS (
    SELECT 1 FROM tracking_eventkey
    WHERE site_id IN (SELECT DISTINCT site_id FROM _stage) AND dedupe_at = %(legacy)s
)
"""

# The staged rows' keys: a missing client time is NO_TIME.
KEYED = """(SELECT seq, site_id, COALESCE(dedupe_at, %(no_time)s) AS key_at, message_id,
                  received_at FROM _stage)"""

DEDUPE = f"""
WITH firsts AS (
    SELECT DISTINCT ON (site_id, key_at, message_id) seq, site_id, key_at, message_id,
           received_at
    FROM {KEYED} s
    ORDER BY site_id, key_at, message_id, seq
), inserted AS (
    INSERT INTO tracking_eventkey (site_id, dedupe_at, message_id, received_at)
    SELECT site_id, key_at, message_id, received_at FROM firsts
    {{legacy}}
    ON CONFLICT DO NOTHING
    RETURNING site_id, dedupe_at, message_id
)
INSERT INTO _fresh (seq)
SELECT firsts.seq FROM firsts JOIN inserted
    ON inserted.site_id = firsts.site_id AND inserted.dedupe_at = firsts.key_at
   AND inserted.message_id = firsts.message_id
"""
# The usual case, a batch without duplicates: insert the keys and count them, nothing
# else. Fewer keys than staged rows means duplicates; the savepoint around this is then
# rolled back and DEDUPE sorts out which rows are fresh.
DEDUPE_FAST = f"""
WITH inserted AS (
    INSERT INTO tracking_eventkey (site_id, dedupe_at, message_id, received_at)
    SELECT site_id, key_at, message_id, received_at FROM {KEYED} firsts
    {{legacy}}
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""
# A scalar subquery, not NOT EXISTS: PostgreSQL runs it as one index lookup per row,
# where it plans NOT EXISTS as an anti-join that hashes every legacy key of the window
# on every pass (2M legacy keys made the key insert 15 s per 200,000 events instead of
# ~1.5 s).
LEGACY_CHECK = """
    WHERE (SELECT true FROM tracking_eventkey k WHERE k.site_id = firsts.site_id
           AND k.dedupe_at = %(legacy)s AND k.message_id = firsts.message_id) IS NULL
"""
# Only when some staged rows were not fresh (replays, duplicates inside the batch).
DROP_DUPLICATES = (
    "DELETE FROM _stage s WHERE NOT EXISTS (SELECT 1 FROM _fresh f WHERE f.seq = s.seq)"
)


# (anonymous id, user id) pairs whose current mapping differs from the batch's.
CHANGED_PAIRS = """
SELECT site_id, anon, user_id, is_alias, proven FROM (
    SELECT DISTINCT ON (site_id, anon, user_id) site_id, anon, user_id, is_alias, seq,
           bool_or(proven) OVER (PARTITION BY site_id, anon, user_id) AS proven
    FROM (
        SELECT site_id, CASE WHEN type = 'alias' THEN previous_id ELSE anonymous_id END AS anon,
               user_id, type = 'alias' AS is_alias, seq, trust > 0 AS proven
        FROM _stage WHERE user_id <> ''
    ) raw
    WHERE anon <> ''
    ORDER BY site_id, anon, user_id, seq
) pairs
WHERE NOT EXISTS (
    SELECT 1 FROM tracking_visitor v JOIN tracking_profile p ON p.id = v.profile_id
    WHERE v.site_id = pairs.site_id AND v.anonymous_id = pairs.anon AND p.user_id = pairs.user_id
)
ORDER BY seq
"""

# The batch's anonymous ids, each looked up once: its visitor (if known), first and last
# time in the batch, and its profile (a new id from the sequence for a new visitor).
# New visitors, profile resolution and last-seen updates all read this table.
ANONS = """
CREATE TEMP TABLE _anon ON COMMIT DROP AS
SELECT a.*, v.id AS visitor_id, v.last_seen_at,
       -- COALESCE evaluates nextval only for an unknown anonymous id.
       COALESCE(v.profile_id, nextval(pg_get_serial_sequence('tracking_profile', 'id')))
           AS profile_id
FROM (SELECT site_id, anonymous_id, min(ts) AS first_ts, max(ts) AS last_ts FROM _stage
      WHERE anonymous_id <> '' GROUP BY site_id, anonymous_id) a
LEFT JOIN tracking_visitor v ON v.site_id = a.site_id AND v.anonymous_id = a.anonymous_id
"""

NEW_VISITORS = """
INSERT INTO tracking_profile (id, site_id, user_id, user_id_proven, email, email_verified,
                              traits, consent, gpc, timezone, first_seen_at, last_seen_at)
SELECT profile_id, site_id, NULL, false, NULL, false, '{}', '{}', false, '', first_ts, last_ts
FROM _anon WHERE visitor_id IS NULL;
INSERT INTO tracking_visitor (site_id, anonymous_id, profile_id, first_seen_at, last_seen_at)
SELECT site_id, anonymous_id, profile_id, first_ts, last_ts FROM _anon WHERE visitor_id IS NULL;
"""

NEW_USER_PROFILES = """
INSERT INTO tracking_profile (site_id, user_id, user_id_proven, email, email_verified, traits,
                              consent, gpc, timezone, first_seen_at, last_seen_at)
SELECT site_id, user_id, bool_or(trust > 0), NULL, false, '{}', '{}', false, '', min(ts), max(ts)
FROM _stage s
WHERE user_id <> '' AND NOT EXISTS (
    SELECT 1 FROM tracking_profile p WHERE p.site_id = s.site_id AND p.user_id = s.user_id)
GROUP BY site_id, user_id
"""

# Each staged row's profile: the userId's, else the anonymous id's visitor's. A narrow
# table joined where needed is cheaper than updating the wide staging rows.
RESOLVE = """
CREATE TEMP TABLE _profile_of ON COMMIT DROP AS
SELECT s.seq, COALESCE(p.id, a.profile_id) AS profile_id
FROM _stage s
LEFT JOIN tracking_profile p ON s.user_id <> '' AND p.site_id = s.site_id AND p.user_id = s.user_id
LEFT JOIN _anon a ON a.site_id = s.site_id AND a.anonymous_id = s.anonymous_id;
ALTER TABLE _profile_of ADD PRIMARY KEY (seq);
"""

STAGED = "(_stage JOIN _profile_of USING (seq))"

INSERT_EVENTS = f"""
WITH inserted AS (
    INSERT INTO tracking_event (site_id, profile_id, message_id, type, name, anonymous_id,
                                user_id, timestamp, received_at, properties, context, trust)
    SELECT site_id, profile_id, message_id, type, name, anonymous_id, user_id, ts, received_at,
           CASE WHEN type = 'identify' THEN traits ELSE properties END,
           -- ad ids are kept per browser only (tracking.ad_ids), where withdrawal deletes them
           context - 'adIds', trust
    FROM {STAGED} ORDER BY seq
    RETURNING id, site_id, profile_id, type, name, anonymous_id, user_id, timestamp, properties,
              trust
)
INSERT INTO _stored SELECT * FROM inserted
"""

UPDATE_VISITORS = """
UPDATE tracking_visitor v SET last_seen_at = GREATEST(v.last_seen_at, a.last_ts)
FROM _anon a
WHERE v.id = a.visitor_id AND a.last_seen_at < a.last_ts - %(granularity)s::interval
"""

# What each profile's new events change: one row per profile, computed from the staged
# rows alone (a temporary table, so the update below is planned with its true size).
PROFILE_CHANGES = """
CREATE TEMP TABLE _seen ON COMMIT DROP AS
WITH seen AS (
    -- No ordered aggregates here: each would sort every profile's rows on its own.
    SELECT profile_id, min(ts) AS first_ts, max(ts) AS last_ts,
           -- The latest event's GPC signal (a tie in time counts as GPC on).
           COALESCE(max(ts) FILTER (WHERE gpc) >= max(ts) FILTER (WHERE NOT gpc), bool_or(gpc))
               AS gpc
    FROM {staged} WHERE profile_id IS NOT NULL GROUP BY profile_id
), zone AS (
    SELECT DISTINCT ON (profile_id) profile_id, timezone FROM {staged}
    WHERE timezone <> '' AND profile_id IS NOT NULL ORDER BY profile_id, ts DESC, seq DESC
), traits AS (
    SELECT s.profile_id, jsonb_object_agg(t.key, t.value ORDER BY s.ts, s.seq) AS traits
    FROM {staged} s, jsonb_each(s.traits) t
    WHERE s.type = 'identify' AND s.profile_id IS NOT NULL GROUP BY s.profile_id
), consent AS (
    SELECT s.profile_id, jsonb_object_agg(c.key, c.value ORDER BY s.ts, s.seq) AS consent
    FROM {staged} s, jsonb_each(s.consent) c
    WHERE s.consent IS NOT NULL AND s.profile_id IS NOT NULL GROUP BY s.profile_id
), email AS (
    -- A proof bound to the identity (or the secret key) outranks an email-only hash.
    SELECT DISTINCT ON (profile_id) profile_id, email, email_verified,
           email_verified AND trust > 0 AS email_proven
    FROM {staged}
    WHERE email <> '' AND profile_id IS NOT NULL
    ORDER BY profile_id, email_verified DESC, trust > 0 DESC, ts DESC, seq DESC
)
SELECT seen.*, zone.timezone, traits.traits, consent.consent, email.email, email.email_verified,
       email.email_proven
FROM seen
LEFT JOIN zone USING (profile_id)
LEFT JOIN traits USING (profile_id)
LEFT JOIN consent USING (profile_id)
LEFT JOIN email USING (profile_id)
""".replace("{staged}", STAGED)

UPDATE_PROFILES = """
UPDATE tracking_profile p SET
    first_seen_at = LEAST(p.first_seen_at, s.first_ts),
    last_seen_at = GREATEST(p.last_seen_at, s.last_ts),
    gpc = s.gpc,
    timezone = COALESCE(s.timezone, p.timezone),
    traits = p.traits || COALESCE(s.traits, '{}'),
    consent = p.consent || COALESCE(s.consent, '{}'),
    -- A verified address is replaced only by one proven for this identity (a userId-bound
    -- user_hash or the secret key): never by an unverified one, nor by an old email-only
    -- user_hash (tracking.trust).
    email = CASE WHEN s.email IS NULL THEN p.email
                 WHEN s.email_proven OR NOT p.email_verified THEN s.email
                 ELSE p.email END,
    email_verified = CASE WHEN s.email IS NULL THEN p.email_verified
                          WHEN s.email_proven OR NOT p.email_verified THEN s.email_verified
                          ELSE true END
FROM _seen s
WHERE p.id = s.profile_id AND (
    -- Write only what changed: last-seen times move in LAST_SEEN_GRANULARITY steps,
    -- so an active visitor's profile is not rewritten by every batch.
    p.last_seen_at < s.last_ts - %(granularity)s::interval
    OR p.first_seen_at > s.first_ts
    OR s.traits IS NOT NULL OR s.consent IS NOT NULL OR s.email IS NOT NULL
    OR p.gpc IS DISTINCT FROM s.gpc
    OR (s.timezone IS NOT NULL AND s.timezone <> p.timezone)
)
"""

UPDATE_SITES = """
UPDATE tracking_site t SET last_event_at = a.last
FROM (SELECT site_id, max(received_at) AS last FROM _stage GROUP BY site_id) a
WHERE t.id = a.site_id AND (t.last_event_at IS NULL OR t.last_event_at < a.last)
"""


@dataclass(frozen=True)
class StoreResult:
    received: int
    stored: int
    identity_changes: int

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


class _Duplicates(Exception):
    """The batch holds rows already stored, or the same key twice."""


def encode_rows(events: list[dict]) -> bytes:
    """Envelopes as staging rows (CSV, `STAGE_COLUMNS`), the form COPY reads.

    The ingest buffer stores events in this form, so the flusher only concatenates
    stream entries and COPYs them: no decoding and re-encoding on the hot path.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    writer.writerows(
        (
            e["site_id"], e["message_id"], e["type"], e["name"], e["anonymous_id"],
            e["user_id"], e["previous_id"], e["timestamp"], e["received_at"],
            dumps(e["properties"]), dumps(e["traits"]), dumps(e["context"]), e["email"],
            "t" if e["email_verified"] else "f",
            None if e["consent"] is None else dumps(e["consent"]),
            "t" if e["gpc"] else "f", e["timezone"], e.get("dedupe_at"), e.get("trust", 0),
        )
        for e in events
    )  # fmt: skip
    return buffer.getvalue().encode()


def upgrade_rows(rows: bytes) -> bytes:
    """Older rows as the current format: format 1 (before `dedupe_at`) gets an empty (NULL)
    `dedupe_at`; formats 1 and 2 (before `trust`) get trust 0, a browser's claim. A
    secret-key call queued across the upgrade is then stored, but as its browser's
    (fail closed: the row does not say which key sent it)."""
    reader = csv.reader(io.StringIO(rows.decode()))
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    # Every field comes back as a string and is written quoted: COPY reads a quoted "5" as 5,
    # and a quoted empty consent or dedupe_at as NULL (FORCE_NULL).
    current = len(STAGE_COLUMNS)
    for row in reader:
        if len(row) == current - 2:
            row.append(None)  # dedupe_at
        if len(row) == current - 1:
            row.append("0")  # trust
        writer.writerow(row)
    return buffer.getvalue().encode()


def store_events(events: list[dict], *, now: datetime) -> StoreResult:
    """Store envelopes exactly once. Safe to call again with the same events."""
    return store_rows([encode_rows(events)], len(events), now=now)


def store_rows(chunks: list[bytes], received: int, *, now: datetime) -> StoreResult:
    """Store `received` events given as `encode_rows` chunks, exactly once (replays are
    harmless: step 2 drops what is stored)."""
    if not received:
        return StoreResult(0, 0, 0)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
        # The planner cannot see inside the staging tables' JSON (jsonb_each), overestimates
        # some statements by orders of magnitude and JIT-compiles them: tens of ms per pass
        # spent compiling statements that run in a few ms. And the default random_page_cost
        # (4, for spinning disks) makes it hash whole profile and visitor tables (a seq scan
        # each) to update a thousand rows that index lookups reach in a fraction of the time.
        cursor.execute("SET LOCAL jit = off; SET LOCAL random_page_cost = 1.1")
        cursor.execute(CREATE_STAGE)
        with connection.wrap_database_errors:  # psycopg2 errors → Django's
            cursor.cursor.copy_expert(
                f"COPY _stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN "
                "WITH (FORMAT csv, FORCE_NULL (consent, dedupe_at))",
                io.BytesIO(b"".join(chunks)),
            )
        staged = cursor.cursor.rowcount
        # Temporary tables have no statistics until analysed; the joins below need them (only
        # the join keys': the JSON columns would cost as much as the rest of the pass).
        cursor.execute("ANALYZE _stage (site_id, message_id, type, anonymous_id, user_id)")
        times = {"no_time": NO_TIME, "legacy": LEGACY_TIME}
        cursor.execute(LEGACY_KEYS_LEFT, times)
        legacy = LEGACY_CHECK if cursor.fetchone()[0] else ""
        try:
            with transaction.atomic():  # a savepoint, rolled back if there are duplicates
                cursor.execute(sql.SQL(DEDUPE_FAST).format(legacy=sql.SQL(legacy)), times)
                if cursor.fetchone()[0] < staged:
                    raise _Duplicates
            stored = staged
        except _Duplicates:
            cursor.execute(sql.SQL(DEDUPE).format(legacy=sql.SQL(legacy)), times)
            stored = cursor.rowcount  # the fresh rows: the first of each new key
            cursor.execute(DROP_DUPLICATES)
        changes = 0
        if stored:
            # The trust model, before anything reads the staged identities (tracking.trust).
            cursor.execute(trust.CLAIMS)
            changes = _stitch(cursor)
            cursor.execute(ANONS)
            cursor.execute(NEW_VISITORS)
            cursor.execute(NEW_USER_PROFILES)
            cursor.execute(RESOLVE)
            cursor.execute(INSERT_EVENTS)
            granularity = {"granularity": LAST_SEEN_GRANULARITY}
            cursor.execute(UPDATE_VISITORS, granularity)
            cursor.execute(PROFILE_CHANGES)
            cursor.execute(UPDATE_PROFILES, granularity)
            cursor.execute(UPDATE_SITES)
            # After profiles' consent and GPC: the person's last word in the batch decides.
            ad_ids.store(cursor, stage="_stage", profiles="_profile_of")
            events_stored.send(sender=store_events, table="_stored", count=stored, now=now)
        cursor.execute(DROP_TEMP_TABLES)
    return StoreResult(received=received, stored=stored, identity_changes=changes)


# --- identity stitching (the rare, row-by-row part) ------------------------------


def _stitch(cursor) -> int:
    cursor.execute(CHANGED_PAIRS)
    pairs = cursor.fetchall()
    for site_id, anon, user_id, is_alias, proven in pairs:
        _link(cursor, site_id, anon, user_id, is_alias, proven)
    return len(pairs)


def _profile_by_user(cursor, site_id: int, user_id: str) -> int | None:
    cursor.execute(
        "SELECT id FROM tracking_profile WHERE site_id = %s AND user_id = %s", [site_id, user_id]
    )
    row = cursor.fetchone()
    return row[0] if row else None


def _new_profile(cursor, site_id: int, user_id: str | None, proven: bool) -> int:
    cursor.execute(
        """
        INSERT INTO tracking_profile (site_id, user_id, user_id_proven, email, email_verified,
                                      traits, consent, gpc, timezone, first_seen_at, last_seen_at)
        SELECT %s, %s, %s, NULL, false, '{}', '{}', false, '', min(ts), max(ts) FROM _stage
        RETURNING id
        """,
        [site_id, user_id, proven],
    )
    return cursor.fetchone()[0]


def _link(cursor, site_id: int, anon: str, user_id: str, is_alias: bool, proven: bool) -> None:
    """Make `anon` (an anonymous id, or for alias possibly an old userId) belong to `user_id`.

    Only links the trust model allows reach here (`trust.CLAIMS` demoted the others);
    `proven` says whether a proof or the secret key made this one, and is recorded on a
    profile that gets `user_id` here (`user_id_proven`)."""
    user_profile = _profile_by_user(cursor, site_id, user_id)
    if is_alias:
        old_profile = _profile_by_user(cursor, site_id, anon)
        if old_profile is not None:
            if user_profile is None:
                cursor.execute(
                    "UPDATE tracking_profile SET user_id = %s, user_id_proven = %s WHERE id = %s",
                    [user_id, proven, old_profile],
                )
            elif user_profile != old_profile:
                cursor.execute("UPDATE tracking_profile SET user_id = NULL WHERE id = %s",
                               [old_profile])  # fmt: skip
                merge_profiles(cursor, site_id, survivor=user_profile, merged=old_profile)
            return
    cursor.execute(
        """
        SELECT v.id, p.id, p.user_id FROM tracking_visitor v
        JOIN tracking_profile p ON p.id = v.profile_id
        WHERE v.site_id = %s AND v.anonymous_id = %s
        """,
        [site_id, anon],
    )
    visitor = cursor.fetchone()
    if visitor is None:
        profile = user_profile or _new_profile(cursor, site_id, user_id, proven)
        cursor.execute(
            """
            INSERT INTO tracking_visitor (site_id, anonymous_id, profile_id, first_seen_at,
                                          last_seen_at)
            SELECT %s, %s, %s, min(ts), max(ts) FROM _stage
            """,
            [site_id, anon, profile],
        )
        return
    visitor_id, visitor_profile, visitor_user = visitor
    if user_profile is None:
        if visitor_user is None:
            # First login on this browser: the anonymous profile becomes the user's.
            cursor.execute(
                "UPDATE tracking_profile SET user_id = %s, user_id_proven = %s WHERE id = %s",
                [user_id, proven, visitor_profile],
            )
        else:
            # Another person signs in on a browser known as someone else.
            new = _new_profile(cursor, site_id, user_id, proven)
            cursor.execute(
                "UPDATE tracking_visitor SET profile_id = %s WHERE id = %s", [new, visitor_id]
            )
    elif visitor_user is None:
        # A known user on a new (so far anonymous) browser: one person, one profile.
        merge_profiles(cursor, site_id, survivor=user_profile, merged=visitor_profile)
    else:
        cursor.execute(
            "UPDATE tracking_visitor SET profile_id = %s WHERE id = %s", [user_profile, visitor_id]
        )


def merge_profiles(cursor, site_id: int, *, survivor: int, merged: int) -> None:
    """Fold profile `merged` into `survivor`: visitors, events, traits, email, consent."""
    cursor.execute(
        """
        UPDATE tracking_profile s SET
            traits = m.traits || s.traits,
            consent = m.consent || s.consent,
            first_seen_at = LEAST(s.first_seen_at, m.first_seen_at),
            last_seen_at = GREATEST(s.last_seen_at, m.last_seen_at),
            email = CASE WHEN s.email IS NULL OR (m.email_verified AND NOT s.email_verified)
                         THEN m.email ELSE s.email END,
            email_verified = s.email_verified OR m.email_verified,
            timezone = COALESCE(NULLIF(s.timezone, ''), m.timezone)
        FROM tracking_profile m WHERE s.id = %s AND m.id = %s
        """,
        [survivor, merged],
    )
    cursor.execute(
        "UPDATE tracking_visitor SET profile_id = %s WHERE profile_id = %s", [survivor, merged]
    )
    cursor.execute(
        "UPDATE tracking_event SET profile_id = %s WHERE site_id = %s AND profile_id = %s",
        [survivor, site_id, merged],
    )
    cursor.execute(
        "UPDATE tracking_profile SET merged_into_id = %s, merged_at = now(), user_id = NULL"
        " WHERE id = %s",
        [survivor, merged],
    )
    profiles_merged.send(
        sender=merge_profiles, site_id=site_id, survivor_id=survivor, merged_ids=[merged]
    )
