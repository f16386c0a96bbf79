"""Streamed exports of an audience's current members, in ad-platform formats.

Every format reads the members in keyset pages (member id > last id, on the
partial index of current members), so memory stays flat whatever the size,
and no transaction or server-side cursor is held open while a slow client reads.

- `meta`: a Meta customer-file CSV, headers `email,phone`; the email hashed
  trimmed and lower-cased, the phone hashed as country code and number, digits
  only (Meta's "customer information parameters" normalisation).
- `google`: a Google Ads Customer Match CSV, headers `Email,Phone`; the phone
  hashed in E.164 with "+" (Google's "Customer Match data formatting" guide).
- `csv`: one row per anonymous ID with the member's hashes and dates.
- `json`: a JSON array of members with their anonymous IDs and hashes.

Meta and Google files only hold members with a hashed identifier: ad
platforms cannot match first-party cookie IDs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection
from psycopg2 import sql

PAGE = 5000

MEMBERS_PAGE = """
SELECT m.id, m.email_sha256, m.phone_sha256, m.phone_digits_sha256,
       -- ISO 8601 text made by PostgreSQL: cheaper than datetimes made and printed in Python
       to_json(m.added_at) #>> '{{}}', to_json(m.expires_at) #>> '{{}}',
       {anonymous_ids}
FROM campaigns_audiencemember m
WHERE m.audience_id = %(audience)s AND m.removed_at IS NULL AND m.id > %(after)s {extra}
ORDER BY m.id
LIMIT %(limit)s
"""

ANONYMOUS_IDS = """COALESCE((SELECT array_agg(v.anonymous_id ORDER BY v.id) FROM tracking_visitor v
                  WHERE v.profile_id = m.profile_id), '{}')"""


def member_pages(
    audience_id: int, *, hashed_only: bool = False, with_ids: bool = True, after: int = 0,
    page: int | None = None, limit: int | None = None,
) -> Iterator[list[tuple]]:  # fmt: skip
    """Pages of (id, email_sha256, phone_sha256, phone_digits_sha256, added, expires, ids),
    the times as ISO 8601 text."""
    statement = sql.SQL(MEMBERS_PAGE).format(
        anonymous_ids=sql.SQL(ANONYMOUS_IDS if with_ids else "'{}'::text[]"),
        extra=sql.SQL("AND (m.email_sha256 <> '' OR m.phone_sha256 <> '')" if hashed_only else ""),
    )
    page = page or PAGE
    remaining = limit
    while remaining is None or remaining > 0:
        size = page if remaining is None else min(page, remaining)
        with connection.cursor() as cursor:
            cursor.execute(statement, {"audience": audience_id, "after": after, "limit": size})
            rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        after = rows[-1][0]
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size:
            return


def _csv_chunk(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _safe_cell(value: str) -> str:
    """Anonymous IDs come from browsers: keep spreadsheet formulas inert (OWASP CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def meta_csv(audience_id: int) -> Iterator[str]:
    yield "email,phone\n"
    for rows in member_pages(audience_id, hashed_only=True, with_ids=False):
        yield _csv_chunk([[r[1], r[3]] for r in rows])


def google_csv(audience_id: int) -> Iterator[str]:
    yield "Email,Phone\n"
    for rows in member_pages(audience_id, hashed_only=True, with_ids=False):
        yield _csv_chunk([[r[1], r[2]] for r in rows])


def plain_csv(audience_id: int) -> Iterator[str]:
    yield "anonymous_id,email_sha256,phone_sha256,added_at,expires_at\n"
    for rows in member_pages(audience_id):
        out = []
        for _id, email, phone, _digits, added, expires, ids in rows:
            for anonymous_id in ids or [""]:
                out.append([_safe_cell(anonymous_id), email, phone, added, expires])
        yield _csv_chunk(out)


def member_json(row: tuple) -> dict:
    member_id, email, phone, digits, added, expires, ids = row
    return {
        "id": member_id,
        "anonymousIds": list(ids or []),
        "emailSha256": email or None,
        "phoneSha256": phone or None,
        "phoneDigitsSha256": digits or None,
        "addedAt": added,
        "expiresAt": expires,
    }


def plain_json(audience_id: int) -> Iterator[str]:
    yield "["
    first = True
    for rows in member_pages(audience_id):
        parts = [json.dumps(member_json(r), separators=(",", ":")) for r in rows]
        yield ("" if first else ",") + ",\n".join(parts)
        first = False
    yield "]\n"


@dataclass(frozen=True)
class Format:
    stream: object
    content_type: str
    extension: str


FORMATS = {
    "meta": Format(meta_csv, "text/csv; charset=utf-8", "csv"),
    "google": Format(google_csv, "text/csv; charset=utf-8", "csv"),
    "csv": Format(plain_csv, "text/csv; charset=utf-8", "csv"),
    "json": Format(plain_json, "application/json", "json"),
}


def streaming_response(audience, format_name: str):
    """A StreamingHttpResponse of the export, named after the audience."""
    from django.http import StreamingHttpResponse
    from django.utils.text import slugify

    fmt = FORMATS[format_name]
    response = StreamingHttpResponse(fmt.stream(audience.id), content_type=fmt.content_type)
    filename = f"{slugify(audience.name) or 'audience'}-{audience.id}-{format_name}.{fmt.extension}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
