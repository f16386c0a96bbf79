"""Instructions per email of the send path, counted by valgrind's callgrind.

    .venv/bin/python bench/send_instructions.py [--small 100] [--large 600]

Wall-clock numbers on these machines swing by a third within minutes (the same code
measured 272–563 emails/s in one hour, docs/benchmarks.md), so a change of a few per
cent cannot be seen in emails/s. Callgrind counts the instructions this process runs,
the same count run after run whatever else the machine is doing: what it measures is
the CPU our code spends per email, not the time the ESP or PostgreSQL take.

Each part runs twice in its own process under callgrind, for `--small` and for
`--large` emails after the same set-up; the difference divided by `large - small` is
one email's cost, start-up and set-up cancelled:

- **render alone**: bench/send_bench.py's render (context, template, layout, CSS,
  links, text part, headers checked, the AnymailMessage built);
- **bare HTTP**: one real email's POST from one asyncio event loop with aiohttp (the
  sender's transport for Anymail's HTTP backends), 64 at a time, to the stand-in;
- **full path**: `sending.send_queued` through the event loop (claim, load, checks,
  render, Anymail's payload, the POST, the answer, the finish) against the Postmark
  stand-in (tests/email/postmark_standin.py, its own process, not counted) answering at
  once.

It prints instructions per email of each and the full path's ratio to render + bare
HTTP: what the path adds around those two (claim, load, suppression re-check, Anymail's
payload and answer, finish, handing emails between threads). Needs valgrind (on every
machine kind here); takes ~6 minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("render", "bare", "full")


def child(part: str, n: int, large: int) -> None:
    """The measured process: the same set-up for every `n`, then `n` emails of `part`."""
    sys.path.insert(0, str(ROOT))
    from bench import send_bench
    from tests.email.postmark_standin import TOKEN

    os.environ["ANYMAIL_POSTMARK_SERVER_TOKEN"] = TOKEN
    url = os.environ["SEND_INSTRUCTIONS_URL"]
    send_bench.point_at(url)
    from django.conf import settings

    # Under callgrind Python runs ~50× slower: the render budget's clock must not stop
    # an email (its check still runs and is counted).
    settings.EMAIL_RENDER_MAX_SECONDS = 3600
    from bench.email_bench import fixtures

    template, messages, email_settings = fixtures()
    if part == "render":
        send_bench.bench_render(template, messages, email_settings, 50)  # warm up
        send_bench.bench_render(template, messages, email_settings, n)
        return
    if part == "bare":
        request = send_bench.request_of(send_bench.one_email(template, messages, email_settings))
        send_bench.bench_bare_loop(url, request, 50, 64)  # warm up
        if n:
            send_bench.bench_bare_loop(url, request, n, 64)
        return
    from campaigns.email import pacing, sending

    site = send_bench.scratch_site(large + 20)
    try:
        pacing.reset()
        sending.send_queued(limit=20, budget_seconds=3600, concurrency=64)  # warm up
        report = sending.send_queued(limit=n, budget_seconds=3600, concurrency=64)
        assert report.counts.get("sent", 0) == n, report.counts
    finally:
        send_bench.drop_site(site)


def instructions(part: str, n: int, large: int, url: str) -> int:
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", part, "--n", str(n), "--large", str(large),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "SEND_INSTRUCTIONS_URL": url},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or not found:
        sys.exit(f"{part} with {n} emails failed:\n{done.stderr[-3000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=600)
    parser.add_argument("--child", choices=PARTS)
    parser.add_argument("--n", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.large)
        return
    sys.path.insert(0, str(ROOT))
    from bench.send_bench import start_standin

    proc, url = start_standin(0, 0)
    try:
        per_email = {}
        for part in PARTS:
            small = instructions(part, args.small, args.large, url)
            large = instructions(part, args.large, args.large, url)
            per_email[part] = (large - small) / (args.large - args.small)
    finally:
        proc.terminate()
        proc.wait()
    print(f"instructions per email, {args.large} minus {args.small} emails, under callgrind")
    names = {"render": "render alone", "bare": "bare HTTP (event loop)", "full": "full path"}
    for part in PARTS:
        print(f"{names[part]:32}{per_email[part] / 1e6:10.2f} M")
    both = per_email["render"] + per_email["bare"]
    print(f"{'full / (render + bare HTTP)':32}{per_email['full'] / both:10.2f}")
    print(f"{'added by the path':32}{(per_email['full'] - both) / 1e6:10.2f} M")


if __name__ == "__main__":
    main()
