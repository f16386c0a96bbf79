"""Audience benchmark: add 1,000,000 members, then export them, against same-run baselines.

    DATABASE_URL=postgres://…/reengage_bench REDIS_URL=redis://… \
        .venv/bin/python bench/audience_bench.py [--members 1000000] [--batch 10000]

The database must be migrated (`manage.py migrate`). The script makes its own
site with N people (half with a verified email and advertising consent, each
with one anonymous ID), measures, and deletes what it made.

- add: `membership.add_members` in batches of --batch pairs, one transaction
  each (how the engine calls it), vs. the baseline: a raw INSERT … SELECT of the
  same member rows and change rows (no upsert, no dedupe, no phones) into a
  second audience, batch by batch interleaved with ours.
- export: the streamed plain CSV (anonymous IDs + hashes) and the Meta file,
  drained as a client would, vs. the baseline: COPY (the same columns) TO STDOUT.
  Memory: the process's resident set, sampled after every chunk; "flat" means
  the growth does not depend on N.

Target (issue 6): at least 20,000 members/s each way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reengage.settings")

import django

django.setup()

from django.db import connection, transaction  # noqa: E402

from campaigns.audiences import (  # noqa: E402
    exports,
    membership,
)
from campaigns.models import Audience  # noqa: E402
from tracking.models import Site  # noqa: E402

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE / 2**20


def make_people(site: Site, n: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO tracking_profile (site_id, email, email_verified, traits, consent, gpc,
                                          timezone, first_seen_at, last_seen_at)
            SELECT %(site)s, CASE WHEN i %% 2 = 0 THEN 'Person.' || i || '@Example.com' END,
                   i %% 2 = 0, '{}', CASE WHEN i %% 2 = 0 THEN '{"advertising": true}'::jsonb
                                          ELSE '{}'::jsonb END,
                   false, '', %(now)s, %(now)s
            FROM generate_series(1, %(n)s) AS i;
            INSERT INTO tracking_visitor (site_id, anonymous_id, profile_id, first_seen_at,
                                          last_seen_at)
            SELECT %(site)s, md5(p.id::text)::uuid::text, p.id, %(now)s, %(now)s
            FROM tracking_profile p WHERE p.site_id = %(site)s;
            ANALYZE tracking_profile; ANALYZE tracking_visitor;
            """,
            {"site": site.id, "n": n, "now": NOW},
        )


def profile_ids(site: Site) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM tracking_profile WHERE site_id = %s ORDER BY id", [site.id])
        return [row[0] for row in cursor.fetchall()]


BASELINE_ADD = """
WITH inserted AS (
    INSERT INTO campaigns_audiencemember (audience_id, profile_id, email_sha256, phone_sha256,
        phone_digits_sha256, added_by, added_at, expires_at, removed_at, removal_reason)
    SELECT %(audience)s, p.id,
           CASE WHEN p.email_verified AND NOT p.gpc
                     AND p.consent -> 'advertising' = 'true'::jsonb
                THEN encode(sha256(convert_to(lower(regexp_replace(p.email, '\\s', '', 'g')),
                                              'UTF8')), 'hex') ELSE '' END,
           '', '', 'campaign', %(now)s, %(now)s + interval '30 days', NULL, ''
    FROM tracking_profile p WHERE p.id = ANY(%(profiles)s::bigint[])
    RETURNING id, audience_id, profile_id, email_sha256
)
INSERT INTO campaigns_audiencechange (audience_id, member_id, action, reason, anonymous_ids,
    email_sha256, phone_sha256, phone_digits_sha256, created_at)
SELECT i.audience_id, i.id, 'add', 'campaign',
       COALESCE((SELECT jsonb_agg(v.anonymous_id ORDER BY v.id) FROM tracking_visitor v
                 WHERE v.profile_id = i.profile_id), '[]'::jsonb),
       i.email_sha256, '', '', %(now)s
FROM inserted i
"""


def bench_add(ours: Audience, base: Audience, ids: list[int], batch: int) -> tuple[float, float]:
    """Batch by batch, ours then the baseline on the same people: both see the same noise."""
    ours_s = base_s = 0.0
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        started = time.perf_counter()
        with transaction.atomic():
            membership.add_members([(ours.id, p) for p in chunk], now=NOW)
        ours_s += time.perf_counter() - started
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(BASELINE_ADD, {"audience": base.id, "profiles": chunk, "now": NOW})
        base_s += time.perf_counter() - started
    return ours_s, base_s


def bench_export(stream) -> tuple[float, int, float, float]:
    """Drain a stream: (seconds, bytes, RSS at start, peak RSS growth) in MB."""
    start_rss = peak = rss_mb()
    size = 0
    started = time.perf_counter()
    for chunk in stream:
        size += len(chunk)
        peak = max(peak, rss_mb())
    return time.perf_counter() - started, size, start_rss, peak - start_rss


class Sink:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)


BASELINE_EXPORT = """
COPY (SELECT v.anonymous_id, m.email_sha256, m.phone_sha256, m.added_at, m.expires_at
      FROM campaigns_audiencemember m LEFT JOIN tracking_visitor v ON v.profile_id = m.profile_id
      WHERE m.audience_id = {audience} AND m.removed_at IS NULL ORDER BY m.id)
TO STDOUT WITH (FORMAT csv, HEADER)
"""


def bench_export_baseline(audience: Audience) -> tuple[float, int]:
    sink = Sink()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(BASELINE_EXPORT.format(audience=int(audience.id)), sink)
    return time.perf_counter() - started, sink.size


def cleanup(site: Site) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM campaigns_audiencechange c USING campaigns_audience a
             WHERE c.audience_id = a.id AND a.site_id = %(site)s;
            DELETE FROM campaigns_audiencemember m USING campaigns_audience a
             WHERE m.audience_id = a.id AND a.site_id = %(site)s;
            DELETE FROM campaigns_audience WHERE site_id = %(site)s;
            DELETE FROM tracking_visitor WHERE site_id = %(site)s;
            DELETE FROM tracking_profile WHERE site_id = %(site)s;
            DELETE FROM tracking_site WHERE id = %(site)s;
            """,
            {"site": site.id},
        )


def line(name: str, n: int, ours: float, base: float, extra: str = "") -> None:
    print(
        f"{name:<22} {n:>9,} members  ours {ours:7.2f} s = {n / ours:>9,.0f}/s   "
        f"baseline {base:7.2f} s = {n / base:>9,.0f}/s   ratio {ours / base:5.2f}x slower"
        + (f"   {extra}" if extra else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    n = args.members

    site = Site.objects.create(name=f"bench-{time.time_ns()}", domains=[])
    try:
        t = time.perf_counter()
        make_people(site, n)
        ids = profile_ids(site)
        print(f"setup: {n:,} people with one anonymous ID each in {time.perf_counter() - t:.1f} s")
        ours_audience = Audience.objects.create(site=site, name="ours", include_hashed_emails=True)
        base_audience = Audience.objects.create(site=site, name="base", include_hashed_emails=True)

        add_ours, add_base = bench_add(ours_audience, base_audience, ids, args.batch)
        del ids
        line("add (add_members)", n, add_ours, add_base, f"batches of {args.batch:,}")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE campaigns_audiencemember; ANALYZE campaigns_audiencechange")

        copy_s, copy_bytes = bench_export_baseline(ours_audience)
        csv_s, csv_bytes, rss0, growth = bench_export(exports.plain_csv(ours_audience.id))
        line("export plain CSV", n, csv_s, copy_s,
             f"{csv_bytes / 2**20:,.0f} MB (COPY {copy_bytes / 2**20:,.0f} MB); "
             f"RSS {rss0:,.0f} MB, peak growth {growth:,.1f} MB")  # fmt: skip
        meta_s, meta_bytes, rss0, growth = bench_export(exports.meta_csv(ours_audience.id))
        line("export Meta file", n, meta_s, copy_s,
             f"{meta_bytes / 2**20:,.0f} MB ({n // 2:,} hashed rows); "
             f"RSS {rss0:,.0f} MB, peak growth {growth:,.1f} MB")  # fmt: skip
        ok = min(n / add_ours, n / csv_s) >= 20_000
        print(f"target 20,000 members/s each way: {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    finally:
        cleanup(site)


if __name__ == "__main__":
    sys.exit(main())
