"""Ingest and flush benchmark: bare Django view vs /v1/track vs /v1/batch, and the flusher.

Run (uses DATABASE_URL / REDIS_URL, or the embedded services):

    .venv/bin/python bench/ingest_bench.py [--duration 15] [--soak 600]

Everything runs on this machine: gunicorn (2 sync workers, the same for every
endpoint), wrk on loopback as the load generator, PostgreSQL and Redis. Results
are printed as a Markdown table to paste into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_bench"
from bench.env import production_like  # noqa: E402

production_like(ALLOWED_HOSTS="127.0.0.1,localhost")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from reengage.pg_tuning import WRITE_TUNING  # noqa: E402
from tracking import buffer, flush  # noqa: E402
from tracking.models import Site  # noqa: E402
from tracking.storage import ROWS_FORMAT, encode_rows  # noqa: E402

WRK_SCRIPT = r"""
local counter = 0
local key = "%(key)s"
local path = "%(path)s"
local batch = %(batch)d
local delay_ms = %(delay)f
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic " .. "%(auth)s"
local thread_id = 0
setup = function(thread) thread_id = thread_id + 1; thread:set("tid", thread_id) end
request = function()
  counter = counter + 1
  local prefix = tostring(tid) .. "-" .. tostring(counter) .. "-" .. tostring(math.random(1, 1000000000))
  local one = function(i)
    return '{"type":"track","event":"Product Viewed","anonymousId":"v' .. tostring(math.random(1, 20000)) ..
      '","messageId":"' .. prefix .. "-" .. i .. '","properties":{"product_id":"p1","price":19.99},' ..
      '"context":{"page":{"url":"https://shop.test/p/1"}}}'
  end
  local body
  if path == "/v1/track" or path == "/bench/noop" then
    body = one(0)
  else
    local parts = {}
    for i = 1, batch do parts[i] = one(i) end
    body = '{"batch":[' .. table.concat(parts, ",") .. ']}'
  end
  return wrk.format(nil, path, nil, body)
end
if delay_ms > 0 then delay = function() return delay_ms end end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(port, path, key, *, seconds, connections=16, batch=1, delay=0.0) -> dict:
    import base64

    auth = base64.b64encode(f"{key}:".encode()).decode()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"key": key, "path": path, "batch": batch, "delay": delay,
                                   "auth": auth})  # fmt: skip
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def ms(label):
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": rps, "p50": ms("50"), "p99": ms("99"),
            "non2xx": int(errors.group(1)) if errors else 0}  # fmt: skip


def start_gunicorn(port: int) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings_bench",
           "REENGAGE_EMBEDDED_SERVICES": "0"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "reengage.wsgi:application", "-b",
         f"127.0.0.1:{port}", "-w", "2", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def reset_stream() -> None:
    client = buffer.client()
    client.delete(buffer.STREAM, flush.LOCK_KEY)
    flush.ensure_group(client)


def fill_stream(site_id: int, n: int) -> None:
    """An empty stream, then n single-page-view events from 20,000 visitors, 50 an entry."""
    from datetime import UTC, datetime, timedelta

    reset_stream()
    started_at = datetime.now(UTC)
    client = buffer.client()
    pipe = client.pipeline(transaction=False)
    per_entry = 50
    for start in range(0, n, per_entry):
        batch = []
        for i in range(per_entry):
            # As live traffic: each event its own time (here 20 µs apart), sent by the
            # client (so it is also the dedupe key's time), received in the same second.
            at = (started_at + timedelta(microseconds=20 * (start + i))).isoformat()
            batch.append(
                {"site_id": site_id, "message_id": f"f-{uuid.uuid4().hex}", "type": "track",
                 "name": "Product Viewed", "anonymous_id": f"fv{(start + i) % 20000}",
                 "user_id": "", "previous_id": "", "timestamp": at, "received_at": at,
                 "properties": {"product_id": "p1", "price": 19.99},
                 "traits": {}, "context": {"page": {"url": "https://shop.test/p/1"}},
                 "email": "", "email_verified": False, "consent": None, "gpc": False,
                 "timezone": "", "dedupe_at": at}
            )  # fmt: skip
        pipe.xadd(buffer.STREAM, {"c": encode_rows(batch), "n": len(batch), "f": ROWS_FORMAT})
    pipe.execute()


def flush_benchmark(site_id: int, n: int) -> dict:
    """Flush n events already in the stream; baseline: COPY of the same rows."""
    fill_stream(site_id, n)
    client = buffer.client()
    # Baseline: raw COPY of the same rows (as the stream holds them) into a temporary table
    # with no index, no constraint, no dedupe.
    rows = b"".join(fields[b"c"] for _, fields in client.xrange(buffer.STREAM))
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE copy_baseline (site_id bigint, message_id text, "
            "type text, name text, anonymous_id text, user_id text, previous_id text, "
            "ts timestamptz, received_at timestamptz, properties jsonb, traits jsonb, "
            "context jsonb, email text, email_verified boolean, consent jsonb, gpc boolean, "
            "timezone text, dedupe_at timestamptz, trust smallint)"
        )
        started = time.perf_counter()
        cursor.cursor.copy_expert(
            "COPY copy_baseline FROM STDIN WITH (FORMAT csv, FORCE_NULL (consent, dedupe_at))",
            io.BytesIO(rows),
        )
        copy_seconds = time.perf_counter() - started
        cursor.execute("DROP TABLE copy_baseline")
    started = time.perf_counter()
    stored = 0
    while True:
        result = flush.flush_once()
        stored += result.stored
        if not result.entries:
            break
    seconds = time.perf_counter() - started
    return {"events": n, "stored": stored, "flush_eps": n / seconds, "copy_eps": n / copy_seconds}


def lag_under_load(port, key, rate_delay, seconds) -> dict:
    """Run the single-event load while flushing every second; measure event→row lag."""
    reset_stream()
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM tracking_event")
        (last_id,) = cursor.fetchone()
    import threading

    result = {}

    def run_load():
        result["load"] = wrk(port, "/v1/track", key, seconds=seconds, connections=16,
                             delay=rate_delay)  # fmt: skip

    thread = threading.Thread(target=run_load)
    thread.start()
    lags, passes = [], []
    while thread.is_alive():
        tick = time.monotonic()
        flush.flush_until_empty(budget_seconds=5)  # what the beat task runs every second
        passes.append(time.monotonic() - tick)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT extract(epoch FROM clock_timestamp() - received_at), id "
                "FROM tracking_event WHERE id > %s",
                [last_id],
            )
            rows = cursor.fetchall()
        if rows:
            lags.extend(r[0] for r in rows)
            last_id = max(r[1] for r in rows)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))  # the beat interval
    thread.join()
    while flush.flush_once().entries:
        pass
    lags.sort()
    p99 = lags[int(len(lags) * 0.99) - 1] if lags else float("nan")
    passes.sort()
    return {**result["load"], "lag_p99_s": p99, "lag_max_s": lags[-1] if lags else float("nan"),
            "pass_max_s": passes[-1] if passes else float("nan"),
            "pass_median_s": passes[len(passes) // 2] if passes else float("nan")}  # fmt: skip


def postgres_settings_header() -> list[str]:
    """The server's version and write settings, and a warning when they are not the
    shipped ones (reengage/pg_tuning.py), so a result says what it ran under."""
    with connection.cursor() as cursor:
        values = {}
        for name in ["server_version", *WRITE_TUNING]:
            cursor.execute(f"SHOW {name}")
            values[name] = cursor.fetchone()[0]
    lines = ["PostgreSQL " + ", ".join(f"{name}={value}" for name, value in values.items())]
    differ = [
        f"{name}={values[name]} (ships {value})"
        for name, value in WRITE_TUNING.items()
        if values[name] != value
    ]
    if differ:
        lines.append(
            "WARNING: not the shipped PostgreSQL configuration (reengage/pg_tuning.py): "
            + ", ".join(differ)
        )
    return lines


def http_benchmarks(site: Site, args) -> list[tuple[str, ...]]:
    """The wrk runs against gunicorn: bare view, /v1/track, /v1/batch, lag, memory soak."""
    port = free_port()
    server = start_gunicorn(port)
    rows = []
    try:
        reset_stream()
        wrk(port, "/bench/noop", site.write_key, seconds=3)  # warm-up
        base = wrk(port, "/bench/noop", site.write_key, seconds=args.duration)
        reset_stream()
        track = wrk(port, "/v1/track", site.write_key, seconds=args.duration)
        reset_stream()
        batch = wrk(port, "/v1/batch", site.write_key, seconds=args.duration, batch=50)
        rows.append(
            (
                "bare Django view (204), baseline",
                f"{base['rps']:.0f} req/s",
                f"p50 {base['p50']:.1f} ms, p99 {base['p99']:.1f} ms",
                "1.00",
            )
        )
        rows.append(
            (
                "POST /v1/track (1 event)",
                f"{track['rps']:.0f} req/s",
                f"p50 {track['p50']:.1f} ms, p99 {track['p99']:.1f} ms, non-2xx {track['non2xx']}",
                f"{track['rps'] / base['rps']:.2f}",
            )
        )
        rows.append(
            (
                "POST /v1/batch (50 events)",
                f"{batch['rps'] * 50:.0f} events/s",
                f"{batch['rps']:.0f} req/s, p99 {batch['p99']:.1f} ms, non-2xx {batch['non2xx']}",
                "—",
            )
        )
        # 70 % of the bare view's rate, 16 connections: per-connection delay.
        target = 0.7 * base["rps"]
        delay = max(0.0, 16 / target * 1000 - track["p50"])
        lag = lag_under_load(port, site.write_key, delay, args.duration)
        rows.append(
            (
                f"/v1/track at ~70 % load (target {target:.0f} req/s), flushing every 1 s",
                f"{lag['rps']:.0f} req/s",
                f"p99 {lag['p99']:.1f} ms; event→row lag p99 {lag['lag_p99_s']:.2f} s "
                f"(max {lag['lag_max_s']:.2f} s); flush every 1 s took median "
                f"{lag['pass_median_s'] * 1000:.0f} ms, max {lag['pass_max_s'] * 1000:.0f} ms",
                f"{lag['rps'] / base['rps']:.2f}",
            )
        )
        if args.soak:
            pids = worker_pids(server.pid)
            before = rss_kb(pids)
            soak = wrk(port, "/v1/track", site.write_key, seconds=args.soak, delay=delay)
            while flush.flush_once().entries:
                pass
            after = rss_kb(pids)
            rows.append(
                (
                    f"memory soak {args.soak} s at ~70 % load",
                    f"{soak['rps']:.0f} req/s",
                    f"web workers RSS {before / 1024:.0f} MB → {after / 1024:.0f} MB",
                    f"{after / before:.2f}",
                )
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--flush-events", type=int, default=200_000)
    parser.add_argument("--soak", type=int, default=0, help="seconds of memory soak (e.g. 600)")
    parser.add_argument("--flush-only", action="store_true", help="only the flush and its baseline")
    args = parser.parse_args()
    if not args.flush_only and not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install -y wrk")

    header = postgres_settings_header()
    print("\n".join(header), flush=True)
    call_command("migrate", verbosity=0)
    site, _ = Site.objects.get_or_create(
        name="bench", defaults={"domains": ["shop.test"], "events_per_minute": 10**9}
    )
    Site.objects.filter(id=site.id).update(events_per_minute=10**9)
    settings.INGEST_CLIENT_EVENTS_PER_MINUTE = 0
    os.environ["INGEST_CLIENT_EVENTS_PER_MINUTE"] = "0"
    rows = []
    if not args.flush_only:
        rows += http_benchmarks(site, args)
    flush_result = flush_benchmark(site.id, args.flush_events)
    rows.append(
        (
            "raw COPY of the same rows, baseline",
            f"{flush_result['copy_eps']:.0f} rows/s",
            "",
            "1.00",
        )
    )
    rows.append(
        (
            f"flush {flush_result['events']} events (dedupe, visitors, profiles)",
            f"{flush_result['flush_eps']:.0f} events/s",
            f"stored {flush_result['stored']}",
            f"{flush_result['flush_eps'] / flush_result['copy_eps']:.2f}",
        )
    )
    print("\n" + "\n".join(header))
    print("\n| measurement | throughput | details | ratio to baseline |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
