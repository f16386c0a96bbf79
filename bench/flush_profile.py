"""Where a flush spends its time, statement by statement.

    DATABASE_URL=... REDIS_URL=... .venv/bin/python -m bench.flush_profile \
        [--events 200000] [--pass-events 50000]

Fills the stream as bench/ingest_bench.py does (page views from 20,000 visitors), then
drains it with `flush_once`, timing every SQL statement Django executes (wall time,
grouped by the statement's first words). What is not inside a statement (the staging
COPY, reading the stream, Python) is the remainder. Use it to see what a change to
tracking/storage.py buys; bench/ingest_bench.py gives the numbers to record.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from django.conf import settings
from django.core.management import call_command
from django.db import connection

from bench.ingest_bench import fill_stream  # sets Django up as the benchmark does
from tracking import flush
from tracking.models import Site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--pass-events", type=int, default=settings.FLUSH_PASS_EVENTS)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    site, _ = Site.objects.get_or_create(name="bench", defaults={"domains": ["shop.test"]})
    fill_stream(site.id, args.events)

    seconds: Counter[str] = Counter()
    calls: Counter[str] = Counter()

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = " ".join(sql.split())[:72]
            seconds[key] += time.perf_counter() - started
            calls[key] += 1

    started = time.perf_counter()
    with connection.execute_wrapper(timed):
        while flush.flush_once(max_events=args.pass_events).entries:
            pass
    total = time.perf_counter() - started
    print(f"{args.events} events in {total:.2f} s: {args.events / total:,.0f} events/s "
          f"(passes of {args.pass_events})\n")  # fmt: skip
    print("| seconds | share | calls | statement |\n|---|---|---|---|")
    for key, spent in seconds.most_common(15):
        print(f"| {spent:.3f} | {spent / total:.0%} | {calls[key]} | `{key}` |")
    rest = total - sum(seconds.values())
    print(f"| {rest:.3f} | {rest / total:.0%} | | outside statements: COPY, stream, Python |")


if __name__ == "__main__":
    main()
