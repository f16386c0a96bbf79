"""Sending throughput of one worker process against an ESP with real latency.

    .venv/bin/python bench/send_bench.py [--emails 10000] [--latency 0.05 0.2]
                                         [--concurrency 32] [--throttle-every 0]

The ESP is a stand-in of Postmark's API at the HTTP boundary
(tests/email/postmark_standin.py, run as its own process so it does not share this
one's interpreter lock) answering each request after `--latency` seconds; the sender
uses the real `anymail.backends.postmark.EmailBackend`, pointed at it with
ANYMAIL_POSTMARK_API_URL. For each latency, in this one run:

- **render alone**: the send path's rendering (context, template, layout, CSS
  inlining, links, text part, headers checked, the AnymailMessage built), no I/O;
- **bare HTTP ceiling**: the same number of Postmark-shaped POSTs from
  `--concurrency` threads, each with its own `requests.Session` — what the stand-in
  and this process's HTTP stack allow at that concurrency, with no work of ours;
- **full path**: `sending.send_queued` for `--emails` queued messages on a scratch
  site (deleted afterwards): claim, load, suppression re-check, render, send, finish.

It prints emails/s (wall, and per CPU-second of this process), the ratios of the full
path to both ceilings, and this process's RSS before and after the full path.
`--throttle-every N` makes the stand-in answer every Nth request 429 with
`Retry-After: 1`, to see the adaptive slow-down (the run then also reports retries).
"""

from __future__ import annotations

import argparse
import json
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


def bench_bare_http(url: str, token: str, n: int, concurrency: int) -> tuple[float, float]:
    import requests

    body = json.dumps({
        "From": "hello@shop.example.com", "To": "p@example.com", "Subject": "Hi",
        "HtmlBody": "<p>Hi</p>", "TextBody": "Hi", "Metadata": {"message_id": "0"},
    })  # fmt: skip
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               "X-Postmark-Server-Token": token}  # fmt: skip
    left = [n]
    lock = threading.Lock()

    def worker():
        session = requests.Session()
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
    from campaigns.models import Message, Step
    from tracking.models import Profile

    Message.objects.filter(site=site).delete()
    Step.objects.filter(campaign__site=site).delete()  # steps protect their template
    Profile.objects.filter(site=site).delete()
    site.delete()


def bench_full(n: int, concurrency: int) -> tuple[tuple[float, float], dict, float, float]:
    from campaigns.email import pacing, sending

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
    args = parser.parse_args()

    from tests.email.postmark_standin import TOKEN

    os.environ["ANYMAIL_POSTMARK_SERVER_TOKEN"] = TOKEN
    for latency in args.latency:
        proc, url = start_standin(latency, args.throttle_every)
        os.environ["ANYMAIL_POSTMARK_API_URL"] = url
        try:
            django.setup()  # once; later calls do nothing
            from django.conf import settings

            settings.ANYMAIL["POSTMARK_API_URL"] = url
            settings.ANYMAIL["POSTMARK_SERVER_TOKEN"] = TOKEN
            from bench.email_bench import fixtures

            template, messages, email_settings = fixtures()
            bench_render(template, messages, email_settings, 200)  # warm up
            render = bench_render(template, messages, email_settings, min(args.emails, 3000))
            bare = bench_bare_http(url, TOKEN, args.emails, args.concurrency)
            full, counts, rss_before, rss_after = bench_full(args.emails, args.concurrency)
            stats = standin_stats(url)
        finally:
            proc.terminate()
            proc.wait()
        print(f"\nlatency {latency * 1000:.0f} ms, concurrency {args.concurrency}, "
              f"{args.emails} emails")  # fmt: skip
        print(f"{'':36}{'wall /s':>10}{'CPU /s':>10}")
        print(f"{'render alone (ceiling)':36}{render[0]:10.0f}{render[1]:10.0f}")
        print(f"{'bare HTTP, same concurrency (ceiling)':36}{bare[0]:10.0f}{bare[1]:10.0f}")
        print(f"{'full send path':36}{full[0]:10.0f}{full[1]:10.0f}   {counts}")
        lower = min(render[0], bare[0])
        print(f"{'ratio full / bare HTTP':36}{full[0] / bare[0]:10.2f}")
        print(f"{'ratio full / render alone':36}{full[0] / render[0]:10.2f}")
        print(f"{'ratio full / lower ceiling':36}{full[0] / lower:10.2f}   target >= 0.5")
        print(f"{'RSS before / after full path (MB)':36}{rss_before:10.0f}{rss_after:10.0f}")
        print(f"stand-in: {stats}")


if __name__ == "__main__":
    main()
