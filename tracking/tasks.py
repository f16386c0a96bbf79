"""Periodic tracking work (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import connection
from django.db.models import Max

from tracking import flush, partitions


@shared_task(ignore_result=True)
def flush_events() -> dict:
    result = flush.flush_until_empty(budget_seconds=settings.FLUSH_BUDGET_SECONDS)
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
