"""`manage.py engine tick [--now ISO-8601] [--batch N]`: one pass of the campaign engine."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from campaigns.engine.tick import tick

# Test-only: seconds to sleep after claiming a batch, holding its row locks, so a
# test can SIGKILL the process mid-batch. Never set in production.
PAUSE_ENV = "REENGAGE_ENGINE_TEST_PAUSE_AFTER_CLAIM"


def parse_now(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"--now {value!r} is not an ISO-8601 time like 2026-11-29T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise CommandError(f"--now {value!r} needs a time zone, e.g. a trailing Z or +01:00")
    return moment.astimezone(UTC)


class Command(BaseCommand):
    help = "Run the campaign engine: `engine tick` decides everything due now (or at --now)."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        tick_parser = sub.add_parser("tick", help="Decide every enrollment due at --now.")
        tick_parser.add_argument("--now", default=None, help="ISO-8601 time with zone")
        tick_parser.add_argument(
            "--batch", type=int, default=settings.ENGINE_BATCH_SIZE, help="rows per claim"
        )
        tick_parser.add_argument("--max-batches", type=int, default=None)

    def handle(self, *args, action: str, **options) -> None:
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        after_claim = None
        pause = float(os.environ.get(PAUSE_ENV) or 0)
        if pause:

            def after_claim(n: int) -> None:
                self.stdout.write(f"claimed {n}")
                self.stdout.flush()
                time.sleep(pause)

        now = parse_now(options["now"]) if options["now"] else datetime.now(UTC)
        result = tick(
            now=now,
            batch_size=options["batch"],
            max_batches=options["max_batches"],
            after_claim=after_claim,
        )
        self.stdout.write(f"tick at {now.isoformat()}: {result.decided} decided")
        for (outcome, reason), n in sorted(result.counts.items()):
            self.stdout.write(f"  {outcome:<12} {reason:<20} {n}")
