"""Celery tasks of the campaign engine: thin, the work is in campaigns.engine.tick."""

from __future__ import annotations

from datetime import UTC, datetime

from celery import shared_task
from django.conf import settings

from campaigns.engine.tick import tick as run_tick


@shared_task(name="campaigns.tasks.engine.tick", ignore_result=True)
def tick() -> int:
    """Decide what is due now; beat runs this every ENGINE_TICK_SECONDS.

    Several may overlap (workers on several hosts): rows are claimed with SKIP
    LOCKED, so they share the work instead of repeating it.
    """
    result = run_tick(
        now=datetime.now(UTC),
        batch_size=settings.ENGINE_BATCH_SIZE,
        budget_seconds=settings.ENGINE_TICK_BUDGET_SECONDS,
    )
    return result.decided
