"""Sending throughput of one worker process against an ESP with real latency.

    .venv/bin/python bench/send_bench.py [--emails 10000] [--latency 0.05 0.2]
                                         [--concurrency 32] [--throttle-every 0]
                                         [--transports auto threads]

The ESP is a stand-in of Postmark's API at the HTTP boundary
(tests/email/postmark_standin.py, run as its own process so it does not share this
one's interpreter lock) answering each request after `--latency` seconds; the sender
uses the real `anymail.backends.postmark.EmailBackend`, pointed at it with
ANYMAIL_POSTMARK_API_URL. For each latency, in this one run:

- **render alone**: the send path's rendering (context, template, layout, CSS
  inlining, links, text part, headers checked, the AnymailMessage built), no I/O;
- **bare HTTP ceilings**: the same number of one real email's POSTs, `--concurrency`
  at a time, with no work of ours: from one asyncio event loop with aiohttp (the
  sender's transport for Anymail's HTTP backends, campaigns/email/http_sending.py),
  and from `--concurrency` threads, each with a `requests.Session` set up as the
  sending threads set up theirs (campaigns/email/senders.py), and once more with
  requests' defaults (the environment read on every call), for comparison;
- **full path**: `sending.send_queued` for `--emails` queued messages on a scratch
  site (deleted afterwards): claim, load, suppression re-check, render, send, finish —
  through the event loop (EMAIL_SEND_TRANSPORT=auto, the default) and through the
  threads (EMAIL_SEND_TRANSPORT=threads), each on its own scratch site
  (`--transports auto` for the event loop's alone, e.g. with 100,000 queued).

It prints emails/s (wall, and per CPU-second of this process), the ratios of each full
path to the ceilings (the lower ceiling is the lower of render alone and the fastest
bare HTTP), the most one core could do of render and bare HTTP together (when the ESP
answers fast, both ceilings are this process's CPU), and this process's RSS before and
after each full path.
`--throttle-every N` makes the stand-in answer every Nth request 429 with
`Retry-After: 1`, to see the adaptive slow-down (the run then also reports retries).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.env import production_like  # noqa: E402

production_like(EMAIL_MAX_TAGS="1", EMAIL_BACKEND="anymail.backends.postmark.EmailBackend")

import django  # noqa: E402

TRANSPORTS = {"auto": "event loop", "threads": "threads"}  # EMAIL_SEND_TRANSPORT


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def rates(self, n: int) -> tuple[float, float]:
        return n / self.wall, n / max(self.cpu, 1e-9)


def start_standin(latency: float, throttle_every: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.email.postmark_standin", "--latency", str(latency),
         "--throttle-every", str(throttle_every), "--retry-after", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = proc.stdout.readline().strip()
    return proc, url


def standin_stats(url: str) -> dict:
    import requests

    return requests.get(url + "_standin/stats", timeout=5).json()


def one_email(template, messages, email_settings):
    from campaigns.email import composing
    from campaigns.email.rendering import render_email

    message = messages[0]
    rendered = render_email(template, composing.email_data(message, email_settings, template.pk))
    return composing.build_email(message, template, rendered, email_settings, None)


def bench_render(template, messages, email_settings, n: int) -> tuple[float, float]:
    from campaigns.email import composing
    from campaigns.email.rendering import render_email

    with Timer() as timer:
        for i in range(n):
            message = messages[i % len(messages)]
            rendered = render_email(
                template, composing.email_data(message, email_settings, template.pk)
            )
            composing.build_email(message, template, rendered, email_settings, None)
    return timer.rates(n)


def request_of(email) -> tuple[str, dict]:
    """The body and headers the Postmark backend would send for this email."""
    from django.core.mail import get_connection

    backend = get_connection()
    params = backend.build_message_payload(email, backend.send_defaults).get_request_params(
        backend.api_url
    )
    return params["data"], params["headers"]


def bench_bare_http(
    url: str, request: tuple[str, dict], n: int, concurrency: int, *, as_sender: bool = True
) -> tuple[float, float]:
    """`n` POSTs of one real email's request (body and headers) from `concurrency`
    threads."""
    import requests

    from campaigns.email.senders import read_session_environment

    body, headers = request
    left = [n]
    lock = threading.Lock()

    def worker():
        session = requests.Session()
        if as_sender:  # the environment read once, as the sending threads' sessions do
            read_session_environment(session, url + "email")
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            response = session.post(url + "email", data=body, headers=headers, timeout=30)
            if response.status_code != 429:  # --throttle-every: a refusal is an answer too
                response.raise_for_status()
        session.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    with Timer() as timer:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return timer.rates(n)


def bench_bare_loop(url: str, request: tuple[str, dict], n: int, concurrency: int):
    """`n` POSTs of one real email's request from one asyncio event loop with aiohttp,
    `concurrency` at a time on kept-alive connections."""
    import asyncio

    import aiohttp

    body, headers = request
    data = body.encode() if isinstance(body, str) else body

    async def run():
        left = [n]
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def worker():
                while left[0] > 0:
                    left[0] -= 1
                    async with http.post(url + "email", data=data, headers=headers) as answer:
                        await answer.read()
                        if answer.status != 429:
                            answer.raise_for_status()

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    with Timer() as timer:
        asyncio.run(run())
    return timer.rates(n)


def bench_stages(url: str, n: int) -> dict[str, float]:
    """CPU milliseconds per email of each stage of the full path, one thread, one
    after the other (against a stand-in that answers at once): where the full path's
    CPU goes, and what the threads add on top (the full path's CPU per email minus
    the sum of these)."""
    import requests
    from django.core.mail import get_connection
    from django.utils import timezone

    from campaigns.email import delivery, outbox, senders

    site = scratch_site(n)
    costs: dict[str, float] = {}

    def timed(name, run):
        start = time.process_time()
        result = run()
        costs[name] = (time.process_time() - start) * 1000 / n
        return result

    try:
        now = timezone.now()
        batches = timed(
            "claim", lambda: [outbox.claim_batch(now, 64, []) for _ in range(-(-n // 64))]
        )
        ids = [message_id for batch in batches for message_id, _ in batch]
        assert len(ids) == n, len(ids)
        messages = timed("load and suppression re-check", lambda: [
            m for i in range(0, n, 64) for m in delivery.load_claimed(ids[i : i + 64])])  # fmt: skip
        cache = delivery.RunCache()
        prepared = timed("check, render, build the email", lambda: [
            delivery.prepare(m, clock=timezone.now, cache=cache) for m in messages])  # fmt: skip
        backend = get_connection()
        backend.open()
        senders.read_environment_once(backend)
        results = timed("Anymail: payload, HTTP call, answer", lambda: [
            senders.send(backend, p.job) for p in prepared])  # fmt: skip
        backend.close()
        assert not [r.error for r in results if r.error]
        session = requests.Session()
        senders.read_session_environment(session, url + "email")
        body, headers = request_of(prepared[0].job.email)
        timed("  of which the bare HTTP call", lambda: [
            session.post(url + "email", data=body, headers=headers) for _ in range(n)])  # fmt: skip
        finishes = [delivery.settle(r, timezone.now()).finish for r in results]
        timed("finish", lambda: [delivery.record(finishes[i : i + 32], timezone.now())
                                 for i in range(0, n, 32)])  # fmt: skip
    finally:
        drop_site(site)
    return costs


def scratch_site(n: int):
    from django.utils import timezone

    from bench.email_bench import HTML
    from campaigns.email.rendering import SAMPLE_TRIGGER
    from campaigns.models import (
        Campaign,
        EmailSettings,
        EmailTemplate,
        Enrollment,
        Message,
        Step,
    )
    from tracking.models import Profile, Site

    now = timezone.now()
    site = Site.objects.create(name="send bench (scratch)", postal_address="1 Market Street")
    EmailSettings.objects.create(site=site, sends_per_minute=10**9)
    template = EmailTemplate.objects.create(
        site=site, name="Cart", subject="{{ first_name }}, your cart", html=HTML,
        from_name="Shop", from_email="hello@shop.example.com",
    )  # fmt: skip
    campaign = Campaign.objects.create(site=site, name="bench")
    step = Step.objects.create(campaign=campaign, template=template)
    profiles = Profile.objects.bulk_create(
        (Profile(site=site, email=f"s{i}@example.com", email_verified=True,
                 traits={"first_name": f"S{i}"}, consent={"email": True},
                 first_seen_at=now, last_seen_at=now) for i in range(n)),
        batch_size=2000,
    )  # fmt: skip
    enrollments = Enrollment.objects.bulk_create(
        (Enrollment(site=site, campaign=campaign, profile=p, enrolled_at=now,
                    last_activity_at=now, trigger_properties=SAMPLE_TRIGGER) for p in profiles),
        batch_size=2000,
    )  # fmt: skip
    Message.objects.bulk_create(
        (Message(site=site, campaign=campaign, step=step, enrollment=e, profile=e.profile,
                 template=template, to_email=e.profile.email, created_at=now)
         for e in enrollments),
        batch_size=2000,
    )  # fmt: skip
    return site


def drop_site(site) -> None:
    from django.db import connection

    from campaigns.models import Enrollment, Message, Step
    from tracking.models import Profile

    Message.objects.filter(site=site).delete()
    Step.objects.filter(campaign__site=site).delete()  # steps protect their template
    Profile.objects.filter(site=site).delete()
    site.delete()
    # Each run leaves three dead row versions per email (insert, claim, finish). Where
    # autovacuum is off (it is on the PostgreSQL of some machines here) they pile up
    # run after run, and the claims' index scans wade through them: later runs were
    # slower than earlier ones for the same code.
    with connection.cursor() as cursor:
        for model in (Message, Enrollment, Profile):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")


def bench_full(
    n: int, concurrency: int, transport: str
) -> tuple[tuple[float, float], dict, float, float]:
    from django.conf import settings

    from campaigns.email import pacing, sending

    settings.EMAIL_SEND_TRANSPORT = transport
    site = scratch_site(n)
    try:
        pacing.reset()
        before = rss_mb()
        with Timer() as timer:
            report = sending.send_queued(limit=n, budget_seconds=3600, concurrency=concurrency)
        after = rss_mb()
        return timer.rates(report.counts.get("sent", 0)), report.counts, before, after
    finally:
        drop_site(site)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--throttle-every", type=int, default=0)
    parser.add_argument("--transports", nargs="+", choices=list(TRANSPORTS),
                        default=list(TRANSPORTS), help="the full paths to run")  # fmt: skip
    parser.add_argument("--stage-emails", type=int, default=1000,
                        help="emails for the one-thread breakdown by stage (0: none)")  # fmt: skip
    args = parser.parse_args()

    from tests.email.postmark_standin import TOKEN

    os.environ["ANYMAIL_POSTMARK_SERVER_TOKEN"] = TOKEN
    stages = {}
    if args.stage_emails:
        stages = run_stages(args.stage_emails)
    for latency in args.latency:
        proc, url = start_standin(latency, args.throttle_every)
        try:
            point_at(url)
            from bench.email_bench import fixtures

            template, messages, email_settings = fixtures()
            bench_render(template, messages, email_settings, 200)  # warm up
            render = bench_render(template, messages, email_settings, min(args.emails, 3000))
            request = request_of(one_email(template, messages, email_settings))
            default = bench_bare_http(url, request, args.emails, args.concurrency, as_sender=False)
            threads = bench_bare_http(url, request, args.emails, args.concurrency)
            loop = bench_bare_loop(url, request, args.emails, args.concurrency)
            fulls = {t: bench_full(args.emails, args.concurrency, t) for t in args.transports}
            stats = standin_stats(url)
        finally:
            proc.terminate()
            proc.wait()
        print(f"\nlatency {latency * 1000:.0f} ms, concurrency {args.concurrency}, "
              f"{args.emails} emails")  # fmt: skip
        print(f"{'':40}{'wall /s':>10}{'CPU /s':>10}")
        print(f"{'render alone (ceiling)':40}{render[0]:10.0f}{render[1]:10.0f}")
        print(f"{'bare HTTP, requests defaults':40}{default[0]:10.0f}{default[1]:10.0f}")
        print(f"{'bare HTTP, threads as the sender':40}{threads[0]:10.0f}{threads[1]:10.0f}")
        print(f"{'bare HTTP, event loop (aiohttp)':40}{loop[0]:10.0f}{loop[1]:10.0f}")
        bare = max(threads[0], loop[0])
        lower = min(render[0], bare)
        for transport, (full, counts, _, _) in fulls.items():
            name = f"full send path, {TRANSPORTS[transport]}"
            print(f"{name:40}{full[0]:10.0f}{full[1]:10.0f}   {counts}")
        for transport, (full, _, rss_before, rss_after) in fulls.items():
            print(f"{TRANSPORTS[transport]}:")
            print(f"{'  ratio full / fastest bare HTTP':40}{full[0] / bare:10.2f}")
            print(f"{'  ratio full / render alone':40}{full[0] / render[0]:10.2f}")
            print(f"{'  ratio full / lower ceiling':40}{full[0] / lower:10.2f}   target >= 0.5")
            print(f"{'  RSS before / after full path (MB)':40}{rss_before:10.0f}{rss_after:10.0f}")
            print(f"{'  CPU ms per email':40}{1000 / full[1]:10.2f}")
        # Both ceilings are this process's CPU when the ESP is fast: one interpreter lock
        # can do at most this much of both per second, with nothing else of ours.
        both = 1 / (1 / render[1] + 1 / max(threads[1], loop[1]))
        print(f"{'render + bare HTTP on one core, /s':40}{both:10.0f}   (CPU-bound bound)")
        print(f"stand-in: {stats}")
        if stages and "threads" in fulls:
            alone = sum(v for k, v in stages.items() if not k.startswith(" "))
            cpu = 1000 / fulls["threads"][0][1]
            print(f"CPU ms per email through the threads: full path {cpu:.2f}, its stages one "
                  f"after the other {alone:.2f}, the threads add {cpu - alone:.2f}")  # fmt: skip


def point_at(url: str) -> None:
    from tests.email.postmark_standin import TOKEN

    os.environ["ANYMAIL_POSTMARK_API_URL"] = url
    django.setup()  # once; later calls do nothing
    from django.conf import settings

    settings.ANYMAIL["POSTMARK_API_URL"] = url
    settings.ANYMAIL["POSTMARK_SERVER_TOKEN"] = TOKEN


def run_stages(n: int) -> dict[str, float]:
    proc, url = start_standin(0, 0)
    try:
        point_at(url)
        bench_stages(url, min(n, 200))  # warm up
        stages = bench_stages(url, n)
    finally:
        proc.terminate()
        proc.wait()
    print(f"\nCPU ms per email by stage, one thread, {n} emails, a stand-in answering at once")
    for name, value in stages.items():
        print(f"{name:40}{value:8.3f}")
    return stages


if __name__ == "__main__":
    main()
