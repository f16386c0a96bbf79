"""Benchmark the pages a marketer opens, on a year of data for 1,000,000 visitors.

    psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE reengage_reportbench'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/reengage_reportbench \\
    REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/report_bench.py --visitors 1000000

The database must be a scratch one of its own whose name contains "bench": the
script migrates it and, unless `--reuse` is given and data is already there,
TRUNCATEs the tracking and campaign tables and generates:

- N people (profiles, one browser each; 35 % with a verified email), and a
  year of events for them (`--events` per visitor on average, exponentially
  distributed; one heavy visitor with `--heavy-events` events and 200
  enrollments over the year);
- three campaigns (two with enrollments: abandoned cart for 35 % of the
  people, browse abandonment for 25 %), 10 % holdout, their decisions,
  messages (delivered, opened, clicked), credited orders, and the retargeted
  people's audience memberships with their add/remove change log;
- the audience day rollup, folded the way the periodic task folds it, and the
  large campaigns' report snapshots, computed the way beat computes them (timed:
  that is the reports' background cost).

All of it in SQL with `generate_series` (no Python per row). Then it times
every page a marketer opens, through Django's test client in this process
(the real middleware and admin), each `--runs` times after one warm-up, and
prints the median and worst in ms with the ratio to the baseline: the bare
admin index page, measured the same way in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.env import production_like

production_like(ALLOWED_HOSTS="testserver")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

# Pages are served from this process, without `collectstatic`'s manifest.
settings.STORAGES = {
    **settings.STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from campaigns.audiences.history import fold_days  # noqa: E402
from campaigns.models import Audience, Campaign, EmailTemplate, Step  # noqa: E402
from campaigns.people.timeline import timeline  # noqa: E402
from campaigns.reports.snapshots import refresh_large  # noqa: E402
from tracking.models import Profile, Site  # noqa: E402

TABLES = (
    "campaigns_attribution, campaigns_audienceday, campaigns_audiencechange,"
    " campaigns_audiencemember, campaigns_message, campaigns_decision, campaigns_enrollment,"
    " campaigns_step, campaigns_campaign, campaigns_emailtemplate, campaigns_audience,"
    " tracking_visitor, tracking_profile, tracking_site, tracking_event"
)

# One row per person with everything the other tables derive from (unlogged scratch).
PEOPLE = """
DROP TABLE IF EXISTS bench_people;
CREATE UNLOGGED TABLE bench_people AS
SELECT g,
       %(profile_base)s::bigint + g AS pid,
       g = 1 AS heavy,
       CASE WHEN g = 1 THEN %(now)s::timestamptz - interval '365 days'
            ELSE %(now)s::timestamptz - random() * interval '364 days' - interval '1 hour'
       END AS first_at,
       CASE WHEN g = 1 THEN %(heavy_events)s
            ELSE 1 + LEAST(floor(-ln(1 - random()) * (%(events)s - 1)), 400)::int END AS n,
       g = 1 OR random() < 0.35 AS has_email,
       random() < 0.35 AS cart,
       random() < 0.25 AS browse,
       random() < 0.10 AS holdout,
       random() AS luck,
       random() AS engagement
FROM generate_series(1, %(n)s) g;
ALTER TABLE bench_people ADD PRIMARY KEY (g);
"""

PROFILES = """
INSERT INTO tracking_profile (id, site_id, user_id, email, email_verified, traits, consent,
                              gpc, timezone, first_seen_at, last_seen_at)
SELECT pid, %(site)s, CASE WHEN has_email THEN 'u' || g END,
       CASE WHEN has_email THEN 'p' || g || '@example.com' END, has_email,
       CASE WHEN has_email THEN jsonb_build_object('first_name', 'P' || g) ELSE '{}' END,
       '{"analytics": true, "email": true, "advertising": true}', false, '',
       first_at, first_at + n * interval '2 minutes'
FROM bench_people;
SELECT setval(pg_get_serial_sequence('tracking_profile', 'id'), (SELECT max(id) FROM tracking_profile));
INSERT INTO tracking_visitor (site_id, anonymous_id, profile_id, first_seen_at, last_seen_at)
SELECT %(site)s, 'anon-' || g, pid, first_at, first_at + n * interval '2 minutes' FROM bench_people;
"""

# A person's events: a session of `n` events two minutes apart (the heavy visitor's
# spread over the year), a page view every fourth, the cart's Product Added second,
# the order last. The heavy visitor's consent for advertising flips mid-year.
EVENTS = """
INSERT INTO tracking_event (site_id, profile_id, message_id, type, name, anonymous_id,
                            user_id, timestamp, received_at, properties, context)
SELECT %(site)s, p.pid, 'm-' || p.g || '-' || e, t.type, t.name, 'anon-' || p.g,
       CASE WHEN p.has_email THEN 'u' || p.g ELSE '' END, t.ts, t.ts,
       CASE WHEN t.name = 'Order Completed'
            THEN jsonb_build_object('order_id', 'o-' || p.g, 'revenue', 40 + (p.g %% 60),
                                    'currency', 'EUR')
            ELSE jsonb_build_object('product_id', 'sku-' || (e %% 500), 'price', 19.99,
                                    'url', 'https://shop.test/p/' || (e %% 500)) END,
       CASE WHEN p.heavy THEN jsonb_build_object('consent', jsonb_build_object(
                'analytics', true, 'email', true, 'advertising', e < p.n / 2))
            ELSE '{}'::jsonb END
FROM bench_people p
CROSS JOIN LATERAL generate_series(1, p.n) e
CROSS JOIN LATERAL (
    SELECT p.first_at + CASE WHEN p.heavy THEN interval '365 days' * (e - 1) / p.n
                             ELSE (e - 1) * interval '2 minutes' END AS ts,
           CASE WHEN e %% 4 = 1 THEN 'page' ELSE 'track' END AS type,
           CASE WHEN p.cart AND e = 2 THEN 'Product Added'
                WHEN p.luck < 0.08 AND e = p.n AND p.n > 2 THEN 'Order Completed'
                WHEN e %% 4 = 1 THEN 'Home'
                ELSE 'Product Viewed' END AS name
) t
"""

# Enrollments: campaign A for the cart people, B for the browsers (ids chosen, so the
# other tables can refer to them without a lookup). The heavy visitor re-enters A
# 200 times over the year. Status: converted (8 % treated, 5 % holdout), still
# active (enrolled in the last two days), else completed (treated) or control.
ENROLLMENTS = """
CREATE UNLOGGED TABLE bench_enrollments AS
SELECT %(enrollment_base)s::bigint + row_number() OVER () AS id, x.*
FROM (
    SELECT p.pid, p.has_email, p.holdout, c.campaign, c.steps, c.audience,
           p.first_at + interval '2 minutes' + k * interval '1 day' * 1.8 AS enrolled_at,
           CASE WHEN p.luck < CASE WHEN p.holdout THEN 0.05 ELSE 0.08 END THEN 'converted'
                ELSE '' END AS outcome,
           p.engagement
    FROM bench_people p
    CROSS JOIN LATERAL (VALUES (%(a)s::bigint, 2, %(audience_a)s::bigint, p.cart),
                               (%(b)s::bigint, 1, %(audience_b)s::bigint, p.browse))
        AS c(campaign, steps, audience, wanted)
    CROSS JOIN LATERAL generate_series(0, CASE WHEN p.heavy AND c.campaign = %(a)s THEN 199
                                               ELSE 0 END) k
    WHERE c.wanted OR p.heavy
) x;
UPDATE bench_enrollments SET outcome = 'active' WHERE enrolled_at > %(now)s::timestamptz - interval '2 days' AND outcome = '';
INSERT INTO campaigns_enrollment (id, site_id, campaign_id, profile_id, status, is_holdout,
    next_position, due_at, enrolled_at, last_activity_at, trigger_event_id,
    trigger_properties, exit_reason, finished_at)
SELECT id, %(site)s, campaign, pid,
       CASE outcome WHEN 'converted' THEN 'exited' WHEN 'active' THEN 'active'
            ELSE CASE WHEN holdout THEN 'control' ELSE 'completed' END END,
       holdout, CASE WHEN outcome = 'active' THEN 0 ELSE steps END,
       CASE WHEN outcome = 'active' THEN enrolled_at + interval '1 hour' END,
       enrolled_at, enrolled_at, NULL,
       '{"products": [{"name": "Blue shirt", "price": 19.99}], "value": 19.99, "currency": "EUR"}',
       CASE WHEN outcome = 'converted' THEN 'converted' ELSE '' END,
       CASE WHEN outcome = 'active' THEN NULL
            ELSE enrolled_at + steps * interval '1 day' END
FROM bench_enrollments;
SELECT setval(pg_get_serial_sequence('campaigns_enrollment', 'id'), (SELECT max(id) FROM campaigns_enrollment));
"""

# One final decision per step reached (email if verified, else retarget; control for the
# holdout), an exit for the converted at their second hour; a few rescheduled ones.
DECISIONS = """
INSERT INTO campaigns_decision (site_id, campaign_id, step_id, position, enrollment_id,
    profile_id, outcome, reason, decided_at, rescheduled_to)
SELECT %(site)s, e.campaign, st.id, pos, e.id, e.pid, d.outcome, d.reason, d.at, d.resched
FROM bench_enrollments e
CROSS JOIN LATERAL generate_series(0, e.steps - 1) pos
JOIN campaigns_step st ON st.campaign_id = e.campaign AND st.position = pos
CROSS JOIN LATERAL (
    SELECT e.enrolled_at + interval '1 hour' + pos * interval '1 day' AS at,
           CASE WHEN e.holdout THEN 'control' WHEN e.has_email THEN 'email'
                ELSE 'retarget' END AS outcome,
           CASE WHEN e.holdout THEN 'holdout' WHEN e.has_email THEN 'emailed'
                ELSE 'retargeted' END AS reason,
           NULL::timestamptz AS resched
) d
WHERE e.outcome <> 'active' AND NOT (e.outcome = 'converted' AND pos > 0)
UNION ALL
SELECT %(site)s, e.campaign, NULL, 1, e.id, e.pid, 'exit', 'converted',
       e.enrolled_at + interval '2 hours', NULL
FROM bench_enrollments e WHERE e.outcome = 'converted'
UNION ALL
SELECT %(site)s, e.campaign, NULL, 0, e.id, e.pid, 'rescheduled', 'quiet_hours',
       e.enrolled_at + interval '1 hour', e.enrolled_at + interval '9 hours'
FROM bench_enrollments e WHERE e.engagement < 0.05 AND e.outcome <> 'active'
"""

MESSAGES = """
INSERT INTO campaigns_message (site_id, campaign_id, step_id, position, enrollment_id,
    profile_id, template_id, to_email, status, created_at, sent_at, esp_message_id, error,
    attempts, promo_code, delivered_at, opened_at, clicked_at, last_event_at)
SELECT d.site_id, d.campaign_id, d.step_id, d.position, d.enrollment_id, d.profile_id,
       %(template)s, 'p' || (d.profile_id - %(profile_base)s) || '@example.com',
       CASE WHEN e.engagement < 0.12 THEN 'clicked' WHEN e.engagement < 0.40 THEN 'opened'
            WHEN e.engagement < 0.97 THEN 'delivered' ELSE 'bounced' END,
       d.decided_at, d.decided_at + interval '5 seconds', 'esp-' || d.id, '', 1, '',
       CASE WHEN e.engagement < 0.97 THEN d.decided_at + interval '1 minute' END,
       CASE WHEN e.engagement < 0.40 THEN d.decided_at + interval '3 hours' END,
       CASE WHEN e.engagement < 0.12 THEN d.decided_at + interval '3 hours 2 minutes' END,
       d.decided_at + interval '3 hours 2 minutes'
FROM campaigns_decision d JOIN bench_enrollments e ON e.id = d.enrollment_id
WHERE d.outcome = 'email';
INSERT INTO campaigns_attribution (site_id, message_id, event_id, ordered_at, revenue,
                                   currency, created_at)
SELECT m.site_id, m.id, m.id, m.clicked_at + interval '1 hour', 40 + m.id %% 60, 'EUR',
       m.clicked_at + interval '1 hour'
FROM campaigns_message m JOIN bench_enrollments e ON e.id = m.enrollment_id
WHERE m.clicked_at IS NOT NULL AND e.outcome = 'converted';
"""

# Retargeted people join their campaign's audience for 30 days (one member row per
# person and audience, as membership's upsert keeps it); expired ones and converted
# ones were removed, each change in the log at its time.
AUDIENCES = """
CREATE UNLOGGED TABLE bench_members AS
SELECT d.profile_id, e.audience, min(d.decided_at) AS added_at,
       max(d.decided_at) + interval '30 days' AS expires_at,
       bool_or(e.outcome = 'converted') AS converted
FROM campaigns_decision d JOIN bench_enrollments e ON e.id = d.enrollment_id
WHERE d.outcome = 'retarget'
GROUP BY d.profile_id, e.audience;
INSERT INTO campaigns_audiencemember (audience_id, profile_id, email_sha256, phone_sha256,
    phone_digits_sha256, added_by, added_at, expires_at, removed_at, removal_reason)
SELECT audience, profile_id, '', '', '', 'campaign', added_at, expires_at,
       CASE WHEN converted THEN added_at + interval '1 hour'
            WHEN expires_at <= %(now)s THEN expires_at END,
       CASE WHEN converted THEN 'converted' WHEN expires_at <= %(now)s THEN 'expired'
            ELSE '' END
FROM bench_members;
INSERT INTO campaigns_audiencechange (audience_id, member_id, action, reason, anonymous_ids,
    email_sha256, phone_sha256, phone_digits_sha256, created_at)
SELECT audience_id, id, 'add', 'campaign',
       jsonb_build_array('anon-' || (profile_id - %(profile_base)s)), '', '', '', added_at
FROM campaigns_audiencemember
UNION ALL
SELECT audience_id, id, 'remove', removal_reason,
       jsonb_build_array('anon-' || (profile_id - %(profile_base)s)), '', '', '', removed_at
FROM campaigns_audiencemember WHERE removed_at IS NOT NULL
ORDER BY 9;
"""


def configure(now: datetime) -> dict:
    """Site, templates, audiences, campaigns and steps through the ORM."""
    site = Site.objects.create(name="Bench shop", domains=["shop.test"])
    template = EmailTemplate.objects.create(
        site=site, name="Your cart", subject="You left something", html="<p>Come back</p>"
    )
    audience_a = Audience.objects.create(site=site, name="Cart abandoners")
    audience_b = Audience.objects.create(site=site, name="Browsers")
    ids = {"site": site.id, "template": template.id}
    ids["audience_a"], ids["audience_b"] = audience_a.id, audience_b.id
    for key, name, trigger, steps, audience in (
        ("a", "Abandoned cart", "Product Added", 2, audience_a),
        ("b", "Browse abandonment", "Product Viewed", 1, audience_b),
        ("c", "Win-back", "Order Completed", 1, audience_b),
    ):
        campaign = Campaign.objects.create(
            site=site, name=name, status="active", trigger_event=trigger, holdout_percent=10,
            created_at=now - timedelta(days=366),
        )  # fmt: skip
        for position in range(steps):
            Step.objects.create(
                campaign=campaign, position=position, delay_minutes=60 + 1440 * position,
                template=template, audience=audience,
            )  # fmt: skip
        ids[key] = campaign.id
    return ids


def run(label: str, sql: str, params: dict) -> None:
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    print(f"  {label}: {time.monotonic() - started:.1f} s", flush=True)


def generate(visitors: int, events: int, heavy_events: int, now: datetime) -> None:
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLES} CASCADE")
        cursor.execute("DROP TABLE IF EXISTS bench_enrollments, bench_members")
        cursor.execute("SET synchronous_commit = off")
    ids = configure(now)
    params = {
        **ids,
        "now": now,
        "n": visitors,
        "events": events,
        "heavy_events": heavy_events,
        "profile_base": 1_000_000_000,
        "enrollment_base": 1_000_000_000,
    }
    print(f"generating {visitors:,} visitors, ~{events} events each (a year):", flush=True)
    run("people", PEOPLE, params)
    run("profiles and visitors", PROFILES, params)
    run("events", EVENTS, params)
    run("enrollments", ENROLLMENTS, params)
    run("decisions", DECISIONS, params)
    run("messages and credited orders", MESSAGES, params)
    run("audience members and changes", AUDIENCES, params)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_people, bench_enrollments, bench_members")
    vacuum()
    run_fold(now)
    print(f"generated in {time.monotonic() - started:.0f} s")


def vacuum() -> None:
    """Autovacuum is off on the shared bench machine (production runs it)."""
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"  vacuum analyze: {time.monotonic() - started:.1f} s", flush=True)


def run_fold(now: datetime) -> None:
    started = time.monotonic()
    folded = fold_days(now=now)
    print(f"  audience day fold ({folded} audience-days): {time.monotonic() - started:.1f} s")


def run_snapshots(now: datetime) -> None:
    """What beat does every REPORT_SNAPSHOT_SECONDS: the large campaigns' reports."""
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM campaigns_reportsnapshot")
    computed = refresh_large(now=now)
    seconds = time.monotonic() - started
    print(f"  report snapshots (beat's work, background): {computed} campaigns in {seconds:.1f} s")


def counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        result = {}
        for table in ("tracking_profile", "tracking_event", "campaigns_enrollment",
                      "campaigns_decision", "campaigns_message", "campaigns_audiencemember",
                      "campaigns_audiencechange"):  # fmt: skip
            cursor.execute(f"SELECT count(*) FROM {table}")
            result[table] = cursor.fetchone()[0]
        return result


def pages() -> list[tuple[str, str]]:
    """(label, URL) of every page a marketer opens, with the largest objects."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT campaign_id FROM campaigns_enrollment GROUP BY 1 ORDER BY count(*) DESC"
        )
        campaigns = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT profile_id FROM tracking_visitor WHERE anonymous_id = 'anon-1'")
        (heavy,) = cursor.fetchone()
        cursor.execute(
            "SELECT audience_id FROM campaigns_audiencemember GROUP BY 1 ORDER BY count(*) DESC"
        )
        audience = cursor.fetchone()[0]
        cursor.execute(
            "SELECT email FROM tracking_profile WHERE email IS NOT NULL LIMIT 1 OFFSET 5000"
        )
        email = cursor.fetchone()[0]
    largest, second = campaigns[0], campaigns[1]
    older = timeline(Profile.objects.get(pk=heavy)).older
    return [
        ("campaigns: list", "/admin/campaigns/campaign/"),
        ("campaign: change page (largest)", f"/admin/campaigns/campaign/{largest}/change/"),
        ("campaign report (largest)", f"/admin/campaigns/campaign/{largest}/report/"),
        ("campaign report (second)", f"/admin/campaigns/campaign/{second}/report/"),
        ("messages: list", "/admin/campaigns/message/"),
        ("messages: list, one status", "/admin/campaigns/message/?status__exact=clicked"),
        ("messages: search by address", f"/admin/campaigns/message/?q={email}"),
        ("enrollments: list", "/admin/campaigns/enrollment/"),
        ("enrollments: search by address", f"/admin/campaigns/enrollment/?q={email}"),
        ("decisions: list", "/admin/campaigns/decision/"),
        (
            "decisions: one campaign, one reason",
            f"/admin/campaigns/decision/?campaign__id__exact={largest}&reason=quiet_hours",
        ),
        ("profiles: list", "/admin/tracking/profile/"),
        ("profiles: search by email", f"/admin/tracking/profile/?q={email}"),
        ("profiles: search by anonymous id", "/admin/tracking/profile/?q=anon-123456"),
        ("profiles: search by user id", "/admin/tracking/profile/?q=u1"),
        ("heavy visitor: change page", f"/admin/tracking/profile/{heavy}/change/"),
        ("heavy visitor: timeline", f"/admin/tracking/profile/{heavy}/timeline/"),
        (
            "heavy visitor: timeline, next page",
            f"/admin/tracking/profile/{heavy}/timeline/?{urlencode({'before': str(older)})}",
        ),
        ("audiences: list", "/admin/campaigns/audience/"),
        ("audience: change page with chart", f"/admin/campaigns/audience/{audience}/change/"),
        ("audience members: list", "/admin/campaigns/audiencemember/"),
    ]


def timed(client: Client, url: str, runs: int) -> list[float]:
    response = client.get(url)  # warm-up (and a check)
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times


def measure(runs: int) -> None:
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    base = timed(client, "/admin/", runs)
    base_ms = statistics.median(base)
    print("\n| page | median ms | worst ms | ratio to baseline |\n|---|---|---|---|")
    print(f"| admin index (baseline) | {base_ms:.0f} | {max(base):.0f} | 1.0 |")
    slow = []
    for label, url in pages():
        times = timed(client, url, runs)
        median = statistics.median(times)
        print(f"| {label} | {median:.0f} | {max(times):.0f} | {median / base_ms:.1f} |",
              flush=True)  # fmt: skip
        if max(times) >= 1000:
            slow.append(label)
    print(f"\npages over 1 s: {', '.join(slow) if slow else 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=12, help="average events per visitor")
    parser.add_argument("--heavy-events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5, help="timed requests per page")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the data already generated, time pages only"
    )
    args = parser.parse_args()
    name = connection.settings_dict["NAME"]
    if "bench" not in name:
        sys.exit(f"refusing to empty database {name!r}: use one whose name contains 'bench'")
    call_command("migrate", verbosity=0)
    now = datetime.now(UTC)
    if not (args.reuse and Site.objects.filter(name="Bench shop").exists()):
        generate(args.visitors, args.events, args.heavy_events, now)
    else:
        run_fold(now)
    run_snapshots(now)
    print("rows:", ", ".join(f"{t} {n:,}" for t, n in counts().items()))
    measure(args.runs)


if __name__ == "__main__":
    main()
