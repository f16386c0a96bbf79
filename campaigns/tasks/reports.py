"""Periodic report work (scheduled in settings.CELERY_BEAT_SCHEDULE): thin tasks."""

from __future__ import annotations

from datetime import UTC, datetime

from celery import shared_task

from campaigns.reports import snapshots


@shared_task(ignore_result=True)
def refresh_report_snapshots() -> int:
    """Recompute the reports of large campaigns; returns how many were computed."""
    return snapshots.refresh_large(now=datetime.now(UTC))
