"""Ad-platform delivery benchmark: deliver N audience joins to the platforms' stand-ins,
against a bare HTTP loop to the same stand-in in the same run.

    DATABASE_URL=postgres://…/reengage_bench REDIS_URL=redis://… \
        .venv/bin/python bench/platform_bench.py [--joins 1000000] [--ga4-joins 50000]

The database must be migrated (`manage.py migrate`). The script makes its own site
with N people (verified email, advertising consent, one browser with `_fbp` and a
GA4 client id), adds them to an audience (`membership.add_members`, not timed),
then for each kind of destination:

- ours: `outbox.batch_changes`, then `claim_due` + `send_batch` until every batch
  is delivered: the whole path (cursor, batches, PlatformMember rows, payloads,
  HTTP, outcomes), one process, one destination at a time;
- bare: the same stand-in, one representative request body built once and POSTed
  again and again with `http.send` (no database): what the HTTP round trip and the
  stand-in's schema checks alone cost.

The stand-ins (tests/audiences/platform_standins.py, with every schema check on)
run in their own process, so their parsing does not share our interpreter.
Memory is this process's resident set after every batch: "flat" means its growth
does not depend on N. The API's own limits are printed beside the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reengage.settings")

TOKEN = "EAAB-bench-token-0123456789"
SECRET = "ga4-bench-secret"
MEASUREMENT = "G-BENCH1234"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def serve(kind: str) -> None:
    """Child process: run one stand-in and print its URL."""
    from tests.audiences.platform_standins import GA4StandIn, GoogleStandIn, MetaStandIn

    stand_in = {
        "meta": lambda: MetaStandIn(token=TOKEN, keep=False),
        "google": lambda: GoogleStandIn(static_token=TOKEN, keep=False),
        "ga4": lambda: GA4StandIn(measurement_id=MEASUREMENT, api_secret=SECRET, keep=False),
    }[kind]()
    print(stand_in.url, flush=True)
    while True:
        time.sleep(3600)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE / 2**20


def start_stand_in(kind: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)  # fmt: skip
    return proc, proc.stdout.readline().strip()


def stats(url: str) -> dict:
    from campaigns.audiences.platforms import http

    _, _, body = http.send("GET", url + "/_stats", headers={}, body=None, timeout=10)
    return json.loads(body)


def make_people(site, n: int, now: datetime) -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO tracking_profile (site_id, email, email_verified, traits, consent, gpc,
                                          timezone, first_seen_at, last_seen_at)
            SELECT %(site)s, 'Person.' || i || '@Example.com', true, '{}',
                   '{"advertising": true}'::jsonb, false, '', %(now)s, %(now)s
            FROM generate_series(1, %(n)s) AS i;
            INSERT INTO tracking_visitor (site_id, anonymous_id, profile_id, first_seen_at,
                                          last_seen_at)
            SELECT %(site)s, md5(p.id::text)::uuid::text, p.id, %(now)s, %(now)s
            FROM tracking_profile p WHERE p.site_id = %(site)s;
            INSERT INTO tracking_adidentifiers (visitor_id, site_id, fbp, fbc, gclid, gbraid,
                wbraid, ga_client_id, client_ip, user_agent, updated_at)
            SELECT v.id, %(site)s, 'fb.1.1764000000000.' || v.id, '', '', '', '',
                   v.id || '.1764000000', '203.0.113.9', 'Mozilla/5.0 (bench)', %(now)s
            FROM tracking_visitor v WHERE v.site_id = %(site)s;
            ANALYZE tracking_profile; ANALYZE tracking_visitor; ANALYZE tracking_adidentifiers;
            """,
            {"site": site.id, "n": n, "now": now},
        )
        cursor.execute("SELECT id FROM tracking_profile WHERE site_id = %s ORDER BY id", [site.id])
        return [row[0] for row in cursor.fetchall()]


def add_all(audience, profiles: list[int], now: datetime) -> None:
    from django.db import connection, transaction

    from campaigns.audiences import membership

    for i in range(0, len(profiles), 10_000):
        with transaction.atomic():
            membership.add_members([(audience.id, p) for p in profiles[i : i + 10_000]], now=now)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE campaigns_audiencemember; ANALYZE campaigns_audiencechange")


def deliver(destination) -> dict:
    """Ours: batch, claim, send until nothing is pending; memory after every batch."""
    from django.db import reset_queries

    from campaigns.audiences.platforms import outbox
    from campaigns.models import PlatformBatch

    start_rss = rss_mb()
    samples = []
    started = time.perf_counter()
    outbox.batch_changes(now=datetime.now(UTC))
    batched = time.perf_counter() - started
    sent = 0
    while True:
        claimed = outbox.claim_due(now=datetime.now(UTC))
        if not claimed:
            break
        for batch_id in claimed:
            status = outbox.send_batch(batch_id, now=datetime.now(UTC))
            assert status == "delivered", PlatformBatch.objects.get(pk=batch_id).last_error
            sent += 1
            reset_queries()
            samples.append(rss_mb())
    seconds = time.perf_counter() - started
    items = sum(
        PlatformBatch.objects.filter(destination=destination).values_list("sent", flat=True)
    )
    return {"seconds": seconds, "batching_seconds": batched, "batches": sent, "items": items,
            "rss_start": start_rss, "rss_10pct": samples[len(samples) // 10] if samples else 0,
            "rss_end": samples[-1] if samples else 0, "rss_peak": max(samples, default=0)}  # fmt: skip


def bare(platform, destination, requests: int, items_per_request: int) -> dict:
    """The HTTP round trip alone: one representative body, POSTed `requests` times."""
    from campaigns.audiences.platforms import http
    from campaigns.audiences.platforms.base import Ids, Item

    now = datetime.now(UTC)
    items = [Item(i, "add", i, now, Ids(fbp=f"fb.1.1764000000000.{i}", ga_client_id=f"{i}.1",
                                         client_ip="203.0.113.9", user_agent="Mozilla/5.0",
                                         email_sha256="a" * 64))
             for i in range(1, items_per_request + 1)]  # fmt: skip

    class Batch:
        session_id, batch_seq, last_batch_flag, estimated_num_total = 1, 1, True, 1

    request = platform.requests(destination, Batch, items, now)[0]
    platform.encode(destination, request, now)
    started = time.perf_counter()
    for _ in range(requests):
        status, _, _ = http.send(request.method, request.send_url or request.url,
                                 headers=request.headers, body=request.body, timeout=30)  # fmt: skip
        assert status is not None and status < 300, status
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "requests": requests, "items": requests * request.items}


LIMITS = {
    "meta_capi": "1,000 events/request; Meta publishes no fixed request rate for the CAPI",
    "google_audience": "10,000 members/request, 300 requests/min/project = 50,000 members/s",
    "ga4": "1 browser (≤25 events)/request; no published request rate",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve")
    parser.add_argument("--joins", type=int, default=1_000_000)
    parser.add_argument("--ga4-joins", type=int, default=50_000)
    parser.add_argument("--keep", action="store_true", help="keep the rows made")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    import django

    django.setup()
    from django.conf import settings

    from campaigns.audiences.platforms import PLATFORMS
    from campaigns.models import Audience, PlatformDestination
    from tracking.models import Site

    children = {kind: start_stand_in(kind) for kind in ("meta", "google", "ga4")}
    settings.META_GRAPH_URL = children["meta"][1]
    settings.GOOGLE_DATAMANAGER_URL = children["google"][1]
    settings.GA4_MP_URL = children["ga4"][1]
    site = Site.objects.create(name="Platform bench", domains=["bench.test"])
    try:
        now = datetime.now(UTC)
        t = time.perf_counter()
        profiles = make_people(site, args.joins, now)
        audience = Audience.objects.create(site=site, name="Bench", include_hashed_emails=True)
        add_all(audience, profiles, now)
        small = Audience.objects.create(site=site, name="Bench GA4")
        add_all(small, profiles[: args.ga4_joins], now)
        print(f"setup: {len(profiles):,} people and joins in {time.perf_counter() - t:.1f} s",
              flush=True)  # fmt: skip

        runs = [
            ("meta_capi", audience, {"pixel_id": "1234567890"}, TOKEN, children["meta"][1]),
            ("google_audience", audience, {"google_operating_account_id": "1234567890",
                                           "google_audience_id": "555",
                                           "google_terms_accepted": True}, TOKEN,
             children["google"][1]),
            ("ga4", small, {"measurement_id": MEASUREMENT}, SECRET, children["ga4"][1]),
        ]  # fmt: skip
        for kind, target, fields, credential, url in runs:
            destination = PlatformDestination(audience=target, name=kind, kind=kind, **fields)
            destination.credential = credential
            destination.save()
            platform = PLATFORMS[kind]
            size = 1 if kind == "ga4" else platform.batch_size
            ours = deliver(destination)
            requests = max(ours["batches"] if kind != "ga4" else ours["items"], 1)
            base = bare(platform, destination, max(20, min(requests, 2000 if kind == "ga4" else 300)),
                        size)  # fmt: skip
            seen = stats(url)
            ours_rate = ours["items"] / ours["seconds"]
            base_rate = base["items"] / base["seconds"]
            print(json.dumps({"kind": kind, "ours": ours, "bare": base,
                              "stand_in_violations": seen["violations"]}), flush=True)  # fmt: skip
            print(f"{kind}: {ours['items']:,} joins in {ours['seconds']:.1f} s = "
                  f"{ours_rate:,.0f}/s (batching {ours['batching_seconds']:.1f} s) | bare HTTP "
                  f"loop {base_rate:,.0f}/s | ratio {base_rate / ours_rate:.2f}x | RSS "
                  f"{ours['rss_start']:.0f} -> {ours['rss_10pct']:.0f} (10%) -> "
                  f"{ours['rss_end']:.0f} MB (peak {ours['rss_peak']:.0f}) | limit: "
                  f"{LIMITS[kind]}", flush=True)  # fmt: skip
    finally:
        for proc, _ in children.values():
            proc.kill()
            proc.wait()
        if not args.keep:
            from django.db import connection

            t = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute("SELECT id FROM campaigns_audience WHERE site_id = %s", [site.id])
                audiences = [row[0] for row in cursor.fetchall()]
                cursor.execute(
                    "DELETE FROM campaigns_platformmember m USING campaigns_platformdestination d"
                    " WHERE m.destination_id = d.id AND d.audience_id = ANY(%s);"
                    "DELETE FROM campaigns_audiencechange WHERE audience_id = ANY(%s);",
                    [audiences, audiences],
                )
            site.delete()
            print(f"cleanup {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
