"""Benchmark the campaign engine: N due enrollments decided end to end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/reengage_engine_bench \\
    REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/engine_bench.py --n 1000000 --batch 5000

The database must be a scratch one of its own whose name contains "bench": the
script migrates it and TRUNCATEs the sites, profiles and campaign tables first.
Create it once: `psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE reengage_engine_bench'`.

1. seed N profiles (half with a verified email) and N enrollments of one
   campaign, all due at T, with SQL `generate_series` (no Python per row);
2. baseline, the floor of any claim-based engine: claim batches with the same
   `SELECT … FOR UPDATE SKIP LOCKED` and only push each claimed row's due time
   by a day (one UPDATE per batch), until nothing is due at T;
3. the engine: `campaigns.decide.tick(now=T + 1 day)` — claim, load facts,
   decide in Python, write decisions, messages (half), audience members
   (half) and the enrollments' end — until nothing is due. Every
   `--vacuum-every` decisions it runs VACUUM ANALYZE on the engine's tables, in
   the timed part: autovacuum is off on the shared bench machine (see vacuum()).

Prints rows/s of both, their ratio, and the peak RSS of this process (run two
sizes to see that it does not grow with N).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.env import production_like

production_like()

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from psycopg2 import sql  # noqa: E402

from campaigns.engine.tick import TickResult, claim, tick  # noqa: E402
from campaigns.models import Audience, Campaign, EmailTemplate, Step  # noqa: E402
from tracking.models import Site  # noqa: E402

T = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed(n: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE campaigns_audiencechange, campaigns_audiencemember, campaigns_message,"
            " campaigns_decision, campaigns_enrollment, campaigns_step, campaigns_campaign,"
            " campaigns_emailtemplate, campaigns_audience, campaigns_sitepolicy,"
            " campaigns_suppression, tracking_visitor, tracking_profile, tracking_site CASCADE"
        )
        # The configuration through the ORM (its defaults follow the schema); the
        # N people and enrollments in SQL.
        site = Site.objects.create(name="bench", write_key="wk_bench", secret_key="sk_bench").id
        template = EmailTemplate.objects.create(
            site_id=site, name="cart", subject="Your cart", html="<p>hi</p>"
        ).id
        audience = Audience.objects.create(site_id=site, name="abandoners").id
        campaign = Campaign.objects.create(
            site_id=site, name="bench", status="active", holdout_percent=0,
            reentry_cooldown_hours=0,
        )  # fmt: skip
        Step.objects.create(
            campaign=campaign, position=0, delay_minutes=60, template_id=template,
            audience_id=audience,
        )  # fmt: skip
        campaign = campaign.id
        cursor.execute(
            "INSERT INTO tracking_profile (site_id, email, email_verified, traits, consent, gpc,"
            " timezone, first_seen_at, last_seen_at)"
            " SELECT %(site)s, CASE WHEN g %% 2 = 0 THEN 'p' || g || '@example.com' END,"
            " g %% 2 = 0, '{}', '{}', false, '', %(start)s, %(start)s"
            " FROM generate_series(1, %(n)s) g",
            {"site": site, "n": n, "start": T - timedelta(hours=1)},
        )
        cursor.execute(
            "INSERT INTO campaigns_enrollment (site_id, campaign_id, profile_id, status,"
            " is_holdout, next_position, due_at, enrolled_at, last_activity_at,"
            " trigger_properties, exit_reason)"
            " SELECT %(site)s, %(campaign)s, p.id, 'active', false, 0, %(due)s, %(start)s,"
            " %(start)s, '{}', '' FROM tracking_profile p WHERE p.site_id = %(site)s",
            {"site": site, "campaign": campaign, "due": T, "start": T - timedelta(hours=1)},
        )
    vacuum()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tracking_profile, campaigns_campaign")


BASELINE = sql.SQL("""
WITH claimed AS ({claim})
UPDATE campaigns_enrollment e SET due_at = e.due_at + interval '1 day'
FROM claimed WHERE e.id = claimed.id
""").format(claim=claim("e.id"))


def vacuum() -> None:
    """Stand in for autovacuum, which is off on the shared bench machine's PostgreSQL
    (production runs it): without it the planner keeps the statistics of empty tables
    and the due index fills with entries of decided rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            "VACUUM ANALYZE campaigns_enrollment, campaigns_decision, campaigns_message,"
            " campaigns_audiencemember, campaigns_audiencechange"
        )


def baseline(batch: int) -> int:
    done = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(BASELINE, {"now": T, "limit": batch})
            done += cursor.rowcount
            if cursor.rowcount < batch:
                return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="due enrollments")
    parser.add_argument("--batch", type=int, default=5000, help="rows per claim")
    parser.add_argument(
        "--vacuum-every",
        type=int,
        default=100_000,
        help="VACUUM ANALYZE the engine's tables after this many decisions (0: never)",
    )
    args = parser.parse_args()
    name = connection.settings_dict["NAME"]
    if "bench" not in name:
        sys.exit(f"refusing to empty database {name!r}: use one whose name contains 'bench'")
    call_command("migrate", verbosity=0)

    started = time.monotonic()
    seed(args.n)
    print(f"seeded {args.n:,} due enrollments in {time.monotonic() - started:.1f} s")

    started = time.monotonic()
    claimed = baseline(args.batch)
    base_seconds = time.monotonic() - started
    assert claimed == args.n, claimed
    vacuum()  # not timed: the engine starts from the same clean state as the baseline
    base_rate = claimed / base_seconds
    print(f"baseline (claim + push due time): {claimed:,} rows in {base_seconds:.1f} s"
          f" = {base_rate:,.0f} rows/s")  # fmt: skip

    rss_before = peak_rss_mb()
    started = time.monotonic()
    result = TickResult()
    vacuum_seconds = 0.0
    slice_batches = max(1, args.vacuum_every // args.batch) if args.vacuum_every else None
    while True:
        part = tick(now=T + timedelta(days=1), batch_size=args.batch, max_batches=slice_batches)
        result.add(part)
        if part.decided < args.batch * (slice_batches or 1) or not slice_batches:
            break
        vacuum_started = time.monotonic()
        vacuum()
        vacuum_seconds += time.monotonic() - vacuum_started
    seconds = time.monotonic() - started
    assert result.decided == args.n, result.decided
    rate = result.decided / seconds
    print(f"engine (claim, facts, decide, write): {result.decided:,} decisions in {seconds:.1f} s"
          f" = {rate:,.0f} decisions/s; {result.batches} batches")  # fmt: skip
    print(f"  (including {vacuum_seconds:.1f} s of VACUUM ANALYZE every {args.vacuum_every:,};"
          f" without it {result.decided / (seconds - vacuum_seconds):,.0f} decisions/s)")  # fmt: skip
    print("  outcomes:", {f"{o}/{r}": n for (o, r), n in sorted(result.counts.items())})
    print(f"ratio engine/baseline: {rate / base_rate:.2f}")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (before the engine run: {rss_before:.0f} MB)")


if __name__ == "__main__":
    main()
