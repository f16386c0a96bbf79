"""The ad platforms' own identifiers for a browser: validated at ingest, kept per visitor.

Events may carry `context.adIds` = {fbp, fbc, gclid, gbraid, wbraid, gaClientId}
(the snippet reads them from Meta's and Google's first-party cookies and the landing
URL; server-side SDKs may send the same). `clean` keeps the values that have the
documented form and says how many it dropped: a browser's cookie can be junk, and
junk costs the event nothing else (ingest counts it as "ad_id_invalid").

`store` runs in the flusher's transaction, after visitors and profiles are resolved:
it deletes the identifiers of people whose new events refuse advertising or carry
GPC, and upserts `tracking_adidentifiers` for the browsers of people who allow it,
from each browser's newest event that carries adIds. One statement per pass,
whatever the batch size (the two parts touch disjoint rows: a person either allows
advertising or not).

Formats (docs/audiences.md, "What we capture for ad platforms"):

- fbp: `fb.<subdomainIndex>.<creationTime ms>.<random>` (Meta, "fbp and fbc
  parameters"), fbc: `fb.<subdomainIndex>.<creationTime ms>.<fbclid>`. Meta's own
  parameter builder (facebook/capi-param-builder) may add a fifth part, a short
  token, to both; it is kept as sent.
- gaClientId: `<random>.<timestamp>`, the last two parts of the `_ga` cookie
  (`GA1.1.<random>.<timestamp>`); a whole `_ga` value is accepted and cut down.
- gclid, gbraid, wbraid: Google documents no alphabet; the values seen are
  URL-safe base64, so [A-Za-z0-9_-] is what we accept.
"""

from __future__ import annotations

import re

from psycopg2 import sql

# Longest value kept per identifier: the columns of tracking.AdIdentifiers.
MAX_LENGTHS = {
    "fbp": 100,
    "fbc": 500,
    "gclid": 200,
    "gbraid": 200,
    "wbraid": 200,
    "gaClientId": 100,
}
# Meta's optional appendix: a 2-character token or an 8-character one (capi-param-builder).
_APPENDIX = r"(?:\.[A-Za-z0-9_-]{2,8})?"
_CLICK_ID = re.compile(r"[A-Za-z0-9_-]+")
FORMATS = {
    "fbp": re.compile(r"fb\.\d{1,2}\.\d{13}\.\d{1,24}" + _APPENDIX),
    "fbc": re.compile(r"fb\.\d{1,2}\.\d{13}\.[A-Za-z0-9_-]+" + _APPENDIX),
    "gclid": _CLICK_ID,
    "gbraid": _CLICK_ID,
    "wbraid": _CLICK_ID,
    "gaClientId": re.compile(r"\d{1,20}\.\d{1,20}"),
}
_GA_COOKIE = re.compile(r"GA\d\.\d{1,2}\.(\d{1,20}\.\d{1,20})")

# The columns each identifier lands in.
COLUMNS = {
    "fbp": "fbp",
    "fbc": "fbc",
    "gclid": "gclid",
    "gbraid": "gbraid",
    "wbraid": "wbraid",
    "gaClientId": "ga_client_id",
}


def clean(raw: object) -> tuple[dict[str, str], int]:
    """(the valid identifiers, how many were dropped) from an event's `context.adIds`.

    Empty values are absent values, not invalid ones. Anything else that is not a
    string of the documented form (an unknown key, a number, a cookie cut short)
    is dropped and counted.
    """
    if raw is None:
        return {}, 0
    if not isinstance(raw, dict):
        return {}, 1
    kept: dict[str, str] = {}
    dropped = 0
    for key, value in raw.items():
        if value is None or value == "":
            continue
        if key not in FORMATS or not isinstance(value, str):
            dropped += 1
            continue
        value = value.strip()
        if key == "gaClientId" and (cookie := _GA_COOKIE.fullmatch(value)):
            value = cookie.group(1)
        if len(value) > MAX_LENGTHS[key] or not FORMATS[key].fullmatch(value):
            dropped += 1
            continue
        kept[key] = value
    return kept, dropped


# Whether a person (alias p) on a site (alias t) allows advertising: no GPC, and on
# opt-in sites a given consent, elsewhere no refusal. The same rule as the audiences'
# on-site tags and their consent receiver.
ALLOWS_ADVERTISING = """(NOT p.gpc AND CASE WHEN t.consent_mode = 'opt-in'
    THEN p.consent -> 'advertising' = 'true'::jsonb
    ELSE p.consent -> 'advertising' IS DISTINCT FROM 'false'::jsonb END)"""

# Every browser of a person whose new events withdraw advertising consent or carry GPC,
# if the person (after this batch) no longer allows advertising. The ARRAY() subqueries
# run first and are usually empty: the delete then costs nothing, and otherwise it
# reaches the few rows by their keys, never by scanning the tables.
DELETE_WITHDRAWN = """
DELETE FROM tracking_adidentifiers ai WHERE ai.visitor_id = ANY(ARRAY(
    SELECT v.id FROM tracking_visitor v
    JOIN tracking_profile p ON p.id = v.profile_id
    JOIN tracking_site t ON t.id = p.site_id
    WHERE v.profile_id = ANY(ARRAY(
        SELECT po.profile_id FROM {stage} s JOIN {profiles} po USING (seq)
        WHERE s.gpc OR s.consent -> 'advertising' = 'false'::jsonb))
      AND NOT {allows}))
RETURNING 1
"""

# How stale a stored row's IP, user agent and time may get before an unchanged batch
# rewrites it (as visitors' last_seen_at in tracking.storage): an active browser's row
# is not rewritten by every pass.
REFRESH = "5 minutes"

# Each browser's newest event with adIds in the batch (ties: the later in the batch)
# gives its ids, IP and user agent. A value it has replaces the stored one; an
# identifier it lacks keeps its stored value (a server-side call may know only fbp
# where the browser's last event had the click ids).
UPSERT = """
WITH deleted AS ({delete}), newest AS (
    SELECT DISTINCT ON (v.id) v.id AS visitor_id, s.site_id, s.ts,
           s.context -> 'adIds' AS ids,
           left(COALESCE(s.context ->> 'ip', ''), 45) AS client_ip,
           left(COALESCE(s.context ->> 'userAgent', ''), 512) AS user_agent
    FROM {stage} s
    JOIN tracking_visitor v ON v.site_id = s.site_id AND v.anonymous_id = s.anonymous_id
    JOIN tracking_profile p ON p.id = v.profile_id
    JOIN tracking_site t ON t.id = s.site_id
    WHERE s.anonymous_id <> '' AND s.context ? 'adIds' AND {allows}
    ORDER BY v.id, s.ts DESC, s.seq DESC
), upserted AS (
    INSERT INTO tracking_adidentifiers AS ai
        (visitor_id, site_id, {columns}, client_ip, user_agent, updated_at)
    SELECT n.visitor_id, n.site_id, {values}, n.client_ip, n.user_agent, n.ts
    FROM newest n
    ON CONFLICT (visitor_id) DO UPDATE SET {updates},
        client_ip = COALESCE(NULLIF(EXCLUDED.client_ip, ''), ai.client_ip),
        user_agent = COALESCE(NULLIF(EXCLUDED.user_agent, ''), ai.user_agent),
        updated_at = EXCLUDED.updated_at
    -- An offline queue's late event does not overwrite what a newer one stored, and a
    -- row is rewritten only for a changed value or once it is REFRESH old.
    WHERE ai.updated_at <= EXCLUDED.updated_at
      AND ({changed} OR ai.updated_at < EXCLUDED.updated_at - %(refresh)s::interval)
    RETURNING 1
)
SELECT (SELECT count(*) FROM deleted), (SELECT count(*) FROM upserted)
"""
_NEW_OR_OLD = "COALESCE(NULLIF(EXCLUDED.{col}, ''), ai.{col})"
_CHANGED = "(EXCLUDED.{col} <> '' AND EXCLUDED.{col} <> ai.{col})"


def statement(stage: str, profiles: str) -> sql.Composed:
    tables = {
        "stage": sql.Identifier(stage),
        "profiles": sql.Identifier(profiles),
        "allows": sql.SQL(ALLOWS_ADVERTISING),
    }
    columns = list(COLUMNS.values())
    return sql.SQL(UPSERT).format(
        **tables,
        delete=sql.SQL(DELETE_WITHDRAWN.strip()).format(**tables),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        values=sql.SQL(", ").join(
            sql.SQL("COALESCE(n.ids ->> {}, '')").format(sql.Literal(k)) for k in COLUMNS
        ),
        updates=sql.SQL(", ").join(
            sql.SQL("{} = " + _NEW_OR_OLD.format(col=c)).format(sql.Identifier(c)) for c in columns
        ),
        changed=sql.SQL(" OR ").join(
            sql.SQL(_CHANGED.format(col=c)) for c in [*columns, "client_ip", "user_agent"]
        ),
    )


def store(cursor, *, stage: str, profiles: str) -> tuple[int, int]:
    """(rows deleted, rows written) for the staged batch.

    `stage` is the flusher's temporary table of the batch's new (deduplicated) events,
    `profiles` its table of each staged row's profile (`seq`, `profile_id`). Runs
    after profiles' consent and GPC are updated from the batch, so a person's last
    word in the batch decides.
    """
    cursor.execute(statement(stage, profiles), {"refresh": REFRESH})
    deleted, written = cursor.fetchone()
    return deleted, written
