"""Periodic tracking work (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import connection
from django.db.models import Max

from tracking import flush, partitions

log = logging.getLogger(__name__)

SUMMARY_SECONDS = 60


@dataclass
class FlushSummary:
    """What this worker process flushed since its last summary line.

    The flusher runs every second: a line per run would be 86,400 lines a day,
    most saying "0 events". It says nothing while idle and, once a minute at
    most, one line with the counts of the runs that did something.
    """

    events: int = 0
    stored: int = 0
    dead: int = 0
    runs: int = 0
    since: float = 0.0

    def add(self, events: int, stored: int, dead: int, now: float) -> str | None:
        """Count one run; return the summary line when one is due."""
        if events or dead:
            if not self.runs:
                self.since = now
            self.events += events
            self.stored += stored
            self.dead += dead
            self.runs += 1
        if not self.runs or now - self.since < SUMMARY_SECONDS:
            return None
        line = (
            f"flushed {self.events} events in {self.runs} runs over the last "
            f"{round(now - self.since)}s: {self.stored} new, {self.dead} dead-lettered"
        )
        self.events = self.stored = self.dead = self.runs = 0
        return line


_summary = FlushSummary()


@shared_task(ignore_result=True)
def flush_events() -> dict:
    result = flush.flush_until_empty(budget_seconds=settings.FLUSH_BUDGET_SECONDS)
    line = _summary.add(result.events, result.stored, result.dead_letters, time.monotonic())
    if line:
        log.info(line)
    return {"events": result.events, "stored": result.stored, "dead": result.dead_letters}


@shared_task(ignore_result=True)
def fold_dropped_counts() -> int:
    return flush.fold_dropped_counts()


@shared_task(ignore_result=True)
def maintain_partitions() -> dict:
    """Create next months' partitions; enforce retention (partitions, then rows)."""
    from tracking.models import Site

    now = datetime.now(UTC)
    longest = Site.objects.aggregate(days=Max("retention_days"))["days"] or 395
    created = partitions.ensure_partitions(now, months_back=0, months_ahead=3)
    dropped = partitions.drop_partitions_before(now - timedelta(days=longest))
    deleted = 0
    # Sites that keep less than the longest retention: delete their rows.
    with connection.cursor() as cursor:
        for site_id, days in Site.objects.filter(retention_days__lt=longest).values_list(
            "id", "retention_days"
        ):
            cursor.execute(
                "DELETE FROM tracking_event WHERE site_id = %s AND timestamp < %s",
                [site_id, now - timedelta(days=days)],
            )
            deleted += cursor.rowcount
        cursor.execute(
            "DELETE FROM tracking_eventkey WHERE received_at < %s",
            [now - timedelta(days=settings.DEDUPE_WINDOW_DAYS)],
        )
    return {"created": created, "dropped": dropped, "deleted_rows": deleted}
